import Foundation

/// What the dashboard needs from the cluster. `AdminClient` is the real one (mutual TLS with
/// the operator's certificate, endpoint failover); tests give the server a fake, so the
/// page's data endpoints are checked without a cluster.
public protocol DashboardBackend: Sendable {
    /// Tries `preferring` (the last known leader's admin address) first, then the endpoints.
    func status(stale: Bool, preferring: HostPort?) async throws -> AdminStatus
    /// Events with `seq > since`, oldest first, at most `limit`.
    func events(since: UInt64?, limit: Int?, stale: Bool) async throws -> AdminEvents
    func drain(tunnel: String, reason: String) async throws -> AdminResult
    func undrain(tunnel: String) async throws -> AdminResult
    func transferLeader(to: UInt64?) async throws -> AdminResult
}

// AdminClient's methods already have these shapes (their default arguments do not matter to
// conformance), so the dashboard calls exactly what the CLI calls.
extension AdminClient: DashboardBackend {}

/// The dashboard's `/api/status` document: the cluster's `AdminStatus` when a replica
/// answered, and why not (or why it is degraded) when not.
public struct DashboardStatus: Codable, Sendable, Hashable {
    /// nil when no replica gave a usable answer.
    public var status: AdminStatus?
    /// Set when the linearizable read failed: `status` is then either nil or a replica's own
    /// (stale) view, fetched so the operator still sees something during a quorum loss.
    public var error: AdminError?
    /// When the dashboard asked the cluster.
    public var fetchedAt: Date
    /// The admin endpoints the dashboard talks to, in the order it tries them.
    public var endpoints: [String]

    public init(status: AdminStatus?, error: AdminError?, fetchedAt: Date, endpoints: [String]) {
        self.status = status
        self.error = error
        self.fetchedAt = fetchedAt
        self.endpoints = endpoints
    }
}

enum DashboardErrors {
    /// The HTTP status and error document the dashboard answers with when a call to the
    /// cluster failed. A replica's own answer (404 unknown tunnel, 409, 503 no quorum) is
    /// passed on as it came, so the page shows the cluster's words; anything else is the
    /// dashboard's gateway failing (502).
    static func describe(_ error: any Error) -> (status: Int, body: AdminError) {
        if let error = error as? AdminClientError {
            switch error {
            case .server(let body, let status):
                return ((400..<600).contains(status) ? status : 502, body)
            case .unreachable:
                return (502, AdminError(code: "unreachable", message: error.description))
            case .leaderRedirectFailed(let leader, _):
                return (502, AdminError(code: "unreachable", message: error.description, leader: leader))
            case .decoding, .noEndpoints, .shutDown:
                return (502, AdminError(code: "bad_gateway", message: error.description))
            }
        }
        if let error = error as? AdminError { return (502, error) }
        return (502, AdminError(code: "bad_gateway", message: "\(error)"))
    }

    /// Whether a stale read could still answer: the cluster answered that it cannot decide
    /// right now (no leader / no quorum), so some replica is up and has its own copy.
    static func isNoQuorum(_ error: any Error) -> Bool {
        AdminExitStatus.of(error) == .noQuorum
    }
}

/// Answers `/api/status` for every open page from one cluster read at a time: a laptop with
/// five dashboard tabs polling every second must not become five linearizable reads a
/// second on the cluster. Concurrent callers share the read in flight; an answer younger
/// than `maxAge` is reused.
actor DashboardStatusSource {
    private let backend: any DashboardBackend
    private let maxAge: Duration
    private let endpoints: [String]
    private let clock = ContinuousClock()
    private var last: (at: ContinuousClock.Instant, value: DashboardStatus)?
    private var inFlight: Task<DashboardStatus, Never>?
    /// The admin address of the leader named by the last answer: asked first next time, so
    /// the page shows the leader's lease and its view of every member.
    private var leaderAddress: HostPort?

    init(backend: any DashboardBackend, maxAge: Duration, endpoints: [String]) {
        self.backend = backend
        self.maxAge = maxAge
        self.endpoints = endpoints
    }

    func current() async -> DashboardStatus {
        if let last, clock.now - last.at < maxAge { return last.value }
        if let inFlight { return await inFlight.value }
        let (backend, endpoints, preferred) = (backend, endpoints, leaderAddress)
        let task = Task { await Self.fetch(backend, endpoints: endpoints, preferring: preferred) }
        inFlight = task
        let value = await task.value
        inFlight = nil
        last = (clock.now, value)
        // After a failure, or with no leader known, back to the configured order: a leader
        // that stopped answering would otherwise cost every poll a timeout.
        leaderAddress = value.error != nil ? nil : value.status.flatMap { status in
            status.members.first { $0.id == status.leader && status.leader != 0 }.flatMap { HostPort.parse($0.admin) }
        }
        return value
    }

    /// After a write: the next page poll must show its effect, not a cached answer.
    func invalidate() {
        last = nil
    }

    static func fetch(_ backend: any DashboardBackend, endpoints: [String], preferring: HostPort?) async -> DashboardStatus {
        do {
            let status = try await backend.status(stale: false, preferring: preferring)
            return DashboardStatus(status: status, error: nil, fetchedAt: Date(), endpoints: endpoints)
        } catch {
            let failure = DashboardErrors.describe(error).body
            guard DashboardErrors.isNoQuorum(error) else {
                return DashboardStatus(status: nil, error: failure, fetchedAt: Date(), endpoints: endpoints)
            }
            // Without a quorum the replicas' own copies are the best picture there is; the
            // page says loudly that it is stale (consistency "stale" plus the error).
            let stale = try? await backend.status(stale: true, preferring: nil)
            return DashboardStatus(status: stale, error: failure, fetchedAt: Date(), endpoints: endpoints)
        }
    }
}
