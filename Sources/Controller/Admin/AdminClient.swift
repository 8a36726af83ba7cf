import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Why an admin call failed. `exitStatus` (``AdminExitStatus``) turns it into the CLI's exit code.
public enum AdminClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No endpoint gave an HTTP answer: each one's reason (connection refused, TLS refused,
    /// timeout, ...), keyed by `host:port`, in the order they were tried (`order`).
    case unreachable([String: String], order: [String])
    /// A replica answered with an error document (`AdminError`) and its HTTP status.
    case server(AdminError, status: Int)
    /// A replica answered, but not with a document this CLI can read.
    case decoding(endpoint: String, status: Int, reason: String)
    /// A follower named the leader (`409 not_leader`), but its admin address could not be
    /// learned from `GET /v1/members`, or the leader could not be reached there.
    case leaderRedirectFailed(leader: UInt64, reason: String)
    /// The client was given nothing to talk to, or was shut down.
    case noEndpoints
    case shutDown

    public var description: String {
        switch self {
        case .unreachable(let reasons, let order):
            let parts = order.map { "\($0): \(reasons[$0] ?? "failed")" }
            return "no admin endpoint answered (\(parts.joined(separator: "; ")))"
        case .server(let error, let status):
            var text = "HTTP \(status) \(error.code): \(error.message)"
            if let leader = error.leader { text += " (leader: \(leader))" }
            return text
        case .decoding(let endpoint, let status, let reason):
            return "\(endpoint) answered HTTP \(status) with an unreadable body: \(reason)"
        case .leaderRedirectFailed(let leader, let reason):
            return "the write must go to the leader (member \(leader)), but \(reason)"
        case .noEndpoints: return "no admin endpoints given"
        case .shutDown: return "the admin client is shut down"
        }
    }
}

/// Exit codes of the operator commands (docs/ADMIN.md, "CLI"). Scripts test for 3 to tell
/// "the cluster cannot decide right now" from every other failure.
public enum AdminExitStatus: Int32, Sendable {
    case ok = 0
    /// Any error not below, including "no endpoint answered at all": an unreachable replica
    /// set says nothing about quorum (it may be the operator's network), so it is not 3.
    case error = 1
    /// Bad flags, missing endpoints or certificates.
    case usage = 2
    /// A replica answered `503` with `no_leader` or `no_quorum`.
    case noQuorum = 3

    public static func of(_ error: any Error) -> AdminExitStatus {
        if error is AdminUsageError { return .usage }
        if let error = error as? AdminClientError, case .server(let body, let status) = error, status == 503,
            body.code == "no_leader" || body.code == "no_quorum"
        {
            return .noQuorum
        }
        return .error
    }
}

/// Talks to the admin API (docs/ADMIN.md) of a cluster's replicas over mutual TLS.
///
/// Endpoints are tried in turn: a connection failure, refused TLS handshake or timeout moves
/// on to the next one; an HTTP answer, whatever its status, is final. The one exception is
/// a write answered `409 not_leader` naming the leader: the client asks the same replica for
/// the membership (`GET /v1/members?stale=true`, which needs no quorum), finds the leader's
/// `admin` address and sends the write there, once.
///
/// Every write is safe to send twice (drain/undrain set a state, member add/remove are
/// no-ops when already done, a second transfer is harmless), which is why a timeout on one
/// endpoint may move a write on to the next.
///
/// TLS: 1.3 only; the cluster CA is the only trust root; the operator's (or a member's)
/// certificate is presented. The server certificate must chain to the CA, but its host name
/// is not checked (`.noHostnameVerification`): endpoints are often IP addresses or names
/// other than the `--host` values the member certificate was issued for, and replicas are
/// identified by the member id in the certificate, not by name (docs/TLS.md). The residual
/// trust is "anything the cluster CA issued with serverAuth", i.e. members and sentinels.
public final class AdminClient: Sendable {
    public let endpoints: [HostPort]
    public let timeout: Duration
    private let http: HTTPClient
    private let logger: Logger
    private let closed = NIOLockedValueBox(false)
    /// Admin documents are small; events at the maximum limit are the largest (~1 MiB).
    public static let maximumBodyBytes = 16 << 20

    /// PEM strings: the cluster CA, and the operator's certificate and key.
    public init(
        endpoints: [HostPort], caPEM: String, certificatePEM: String, keyPEM: String, timeout: Duration = .seconds(10),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "switchman.admin-client")
    ) throws {
        // Chain verification on, host name verification off: see the type's comment.
        let tls = try ClusterClientTLS.configuration(
            caPEM: caPEM, certificatePEM: certificatePEM, keyPEM: keyPEM, verification: .noHostnameVerification)
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.redirectConfiguration = .disallow
        // AsyncHTTPClient would otherwise retry a refused connection or TLS handshake with
        // backoff until the request's deadline: a down replica would cost the whole timeout
        // before the next endpoint is tried.
        configuration.connectionPool.retryConnectionEstablishment = false
        let nanos = max(1, timeout.nanoseconds)
        configuration.timeout = .init(connect: .nanoseconds(nanos), read: .nanoseconds(nanos))
        self.endpoints = endpoints
        self.timeout = timeout
        self.http = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: configuration)
        self.logger = logger
    }

    /// Reads the three PEM files (`--ca`, `--cert`, `--key`).
    public convenience init(
        endpoints: [HostPort], caFile: String, certificateFile: String, keyFile: String, timeout: Duration = .seconds(10),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "switchman.admin-client")
    ) throws {
        func read(_ what: String, _ path: String) throws -> String {
            do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw AdminUsageError("cannot read the \(what) \(path): \(error.localizedDescription)")
            }
        }
        let ca = try read("CA certificate (--ca)", caFile)
        let certificate = try read("certificate (--cert)", certificateFile)
        let key = try read("key (--key)", keyFile)
        // Checked here so a wrong file is reported as the operator's mistake (exit 2), by name.
        func check(_ what: String, _ path: String, _ parse: () throws -> Int) throws {
            let count: Int
            do { count = try parse() } catch {
                throw AdminUsageError("\(what) \(path) is not usable for TLS: \(error)")
            }
            guard count > 0 else { throw AdminUsageError("\(what) \(path) holds no PEM certificate") }
        }
        try check("--ca", caFile) { try NIOSSLCertificate.fromPEMBytes(Array(ca.utf8)).count }
        try check("--cert", certificateFile) { try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)).count }
        try check("--key", keyFile) {
            _ = try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem)
            return 1
        }
        try self.init(
            endpoints: endpoints, caPEM: ca, certificatePEM: certificate, keyPEM: key, timeout: timeout, eventLoopGroup: eventLoopGroup,
            logger: logger)
    }

    public func shutdown() async {
        let wasClosed = closed.withLockedValue { closed in
            defer { closed = true }
            return closed
        }
        if !wasClosed { try? await http.shutdown() }
    }

    // MARK: Reads

    public func status(stale: Bool = false) async throws -> AdminStatus {
        try await read("/v1/status", stale: stale)
    }

    /// The status from `preferred` first, then from the endpoints in their usual order. The
    /// dashboard prefers the leader's admin address: only the leader knows its lease and
    /// hears from every member.
    public func status(stale: Bool = false, preferring preferred: HostPort?) async throws -> AdminStatus {
        try await read("/v1/status", stale: stale, preferring: preferred)
    }

    public func members(stale: Bool = false) async throws -> AdminMembers {
        try await read("/v1/members", stale: stale)
    }

    public func tunnels(stale: Bool = false) async throws -> AdminTunnels {
        try await read("/v1/tunnels", stale: stale)
    }

    public func routes(stale: Bool = false) async throws -> AdminRoutes {
        try await read("/v1/routes", stale: stale)
    }

    /// Events with `seq > since`, oldest first, at most `limit` (the server's default 100).
    public func events(since: UInt64? = nil, limit: Int? = nil, stale: Bool = false) async throws -> AdminEvents {
        var query: [(String, String)] = []
        if let since { query.append(("since", String(since))) }
        if let limit { query.append(("limit", String(limit))) }
        return try await read("/v1/events", stale: stale, query: query)
    }

    // MARK: Writes

    public func drain(tunnel: String, reason: String) async throws -> AdminResult {
        try await write(.POST, "/v1/tunnels/\(Self.pathSegment(tunnel))/drain", body: AdminDrainRequest(reason: reason))
    }

    public func undrain(tunnel: String) async throws -> AdminResult {
        try await write(.POST, "/v1/tunnels/\(Self.pathSegment(tunnel))/undrain", body: nil as AdminDrainRequest?)
    }

    /// `to: nil` lets the leader pick the most caught-up voter.
    public func transferLeader(to: UInt64? = nil) async throws -> AdminResult {
        try await write(.POST, "/v1/leader/transfer", body: AdminTransferRequest(to: to))
    }

    public func addMember(id: UInt64, peer: String, learner: Bool = false) async throws -> AdminResult {
        try await write(.POST, "/v1/members", body: AdminMemberRequest(id: id, peer: peer, learner: learner ? true : nil))
    }

    public func removeMember(id: UInt64) async throws -> AdminResult {
        try await write(.DELETE, "/v1/members/\(id)", body: nil as AdminDrainRequest?)
    }

    // MARK: Plumbing

    /// One HTTP exchange's outcome: an answer (any status) or a transport failure.
    struct Answer {
        var endpoint: HostPort
        var status: Int
        var body: Data
    }

    private func read<T: Decodable>(_ path: String, stale: Bool, query: [(String, String)] = [], preferring preferred: HostPort? = nil) async throws -> T {
        var query = query
        if stale { query.append(("stale", "true")) }
        let answer = try await firstAnswer(method: .GET, path: path, query: query, body: nil, preferring: preferred)
        return try Self.decode(answer)
    }

    private func write<B: Encodable>(_ method: HTTPMethod, _ path: String, body: B?) async throws -> AdminResult {
        let data = try body.map { try AdminJSON.encoder().encode($0) }
        let answer = try await firstAnswer(method: method, path: path, query: [], body: data)
        guard answer.status == 409, let error = try? AdminJSON.decoder().decode(AdminError.self, from: answer.body),
            error.code == "not_leader", let leader = error.leader, leader != 0
        else {
            return try Self.decode(answer)
        }
        // Transfers and membership changes must be made on the leader: find its address
        // through the replica that named it, then ask there, once (no redirect chains).
        let leaderAddress = try await adminAddress(of: leader, askingAt: answer.endpoint)
        logger.debug("retrying the write at the leader", metadata: ["leader": "\(leader)", "address": "\(leaderAddress)"])
        let retried: Answer
        do {
            retried = try await exchange(endpoint: leaderAddress, method: method, path: path, query: [], body: data)
        } catch {
            throw AdminClientError.leaderRedirectFailed(leader: leader, reason: "its admin address \(leaderAddress) failed: \(Self.describe(error))")
        }
        return try Self.decode(retried)
    }

    private func adminAddress(of leader: UInt64, askingAt endpoint: HostPort) async throws -> HostPort {
        let members: AdminMembers
        do {
            let answer = try await exchange(endpoint: endpoint, method: .GET, path: "/v1/members", query: [("stale", "true")], body: nil)
            members = try Self.decode(answer)
        } catch {
            throw AdminClientError.leaderRedirectFailed(leader: leader, reason: "GET /v1/members at \(endpoint) failed: \(Self.describe(error))")
        }
        guard let member = members.members.first(where: { $0.id == leader }) else {
            throw AdminClientError.leaderRedirectFailed(leader: leader, reason: "\(endpoint) does not list it among the members")
        }
        guard let address = HostPort.parse(member.admin) else {
            throw AdminClientError.leaderRedirectFailed(leader: leader, reason: "its admin address \"\(member.admin)\" is not host:port")
        }
        return address
    }

    /// Tries each endpoint in order until one gives an HTTP answer.
    private func firstAnswer(method: HTTPMethod, path: String, query: [(String, String)], body: Data?, preferring preferred: HostPort? = nil) async throws -> Answer {
        guard !endpoints.isEmpty else { throw AdminClientError.noEndpoints }
        var reasons: [String: String] = [:]
        var order: [String] = []
        let tried = preferred.map { [$0] + endpoints.filter { $0 != preferred } } ?? endpoints
        for endpoint in tried {
            do {
                return try await exchange(endpoint: endpoint, method: method, path: path, query: query, body: body)
            } catch let error as AdminClientError where error == .shutDown {
                throw error
            } catch {
                let key = endpoint.description
                let reason = Self.describe(error)
                logger.debug("admin endpoint failed, trying the next", metadata: ["endpoint": "\(key)", "reason": "\(reason)"])
                if reasons[key] == nil { order.append(key) }
                reasons[key] = reason
            }
        }
        throw AdminClientError.unreachable(reasons, order: order)
    }

    /// One request to one endpoint. Throws only when no HTTP answer arrived.
    private func exchange(endpoint: HostPort, method: HTTPMethod, path: String, query: [(String, String)], body: Data?) async throws -> Answer {
        if closed.withLockedValue({ $0 }) { throw AdminClientError.shutDown }
        var url = "https://\(endpoint)\(path)"
        if !query.isEmpty {
            url += "?" + query.map { "\($0.0)=\(Self.queryValue($0.1))" }.joined(separator: "&")
        }
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "switchman-cli")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await http.execute(request, timeout: .nanoseconds(max(1, timeout.nanoseconds)), logger: logger)
        let buffer = try await response.body.collect(upTo: Self.maximumBodyBytes)
        return Answer(endpoint: endpoint, status: Int(response.status.code), body: Data(buffer.readableBytesView))
    }

    /// A 2xx answer decodes as `T`; anything else as the error document.
    static func decode<T: Decodable>(_ answer: Answer) throws -> T {
        let decoder = AdminJSON.decoder()
        if (200..<300).contains(answer.status) {
            do { return try decoder.decode(T.self, from: answer.body) } catch {
                throw AdminClientError.decoding(endpoint: answer.endpoint.description, status: answer.status, reason: describeDecoding(error))
            }
        }
        if let error = try? decoder.decode(AdminError.self, from: answer.body) {
            throw AdminClientError.server(error, status: answer.status)
        }
        // Not one of ours (a proxy, an old server): keep the status, show the start of the body.
        let text = String(decoding: answer.body.prefix(200), as: UTF8.self)
        throw AdminClientError.server(AdminError(code: "http_\(answer.status)", message: text.isEmpty ? "(empty body)" : text), status: answer.status)
    }

    static func describeDecoding(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return keys.isEmpty ? "" : " at \(keys)"
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing field \"\(key.stringValue)\"\(path(context))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "\(context.debugDescription)\(path(context))"
        @unknown default: return "\(error)"
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            if error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout { return "timed out" }
            if error == .remoteConnectionClosed { return "the connection was closed (TLS refused?)" }
        }
        if let error = error as? NIOSSLError { return "TLS: \(error)" }
        if let error = error as? BoringSSLError { return "TLS: \(error)" }
        return LiveTargetProber.describeConnectError(error, timeout: .zero)
    }

    /// Tunnel names are restricted (docs/CONFIG.md), but a typo should reach the server as
    /// a 404, not as a different path.
    static func pathSegment(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    static func queryValue(_ text: String) -> String { pathSegment(text) }
}
