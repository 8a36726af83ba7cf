import Foundation
import Hummingbird
import HummingbirdTLS
import Logging
import Metrics
import NIOCore
import NIOSSL
import Prometheus
import RaftRuntime

/// A request's context: Hummingbird's, plus the channel, from which the caller's certificate
/// is read (mutual TLS: who is asking decides what they may do, and names drains).
public struct AdminRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// The admin API of one replica (docs/ADMIN.md): HTTPS with mutual TLS on the member's admin
/// address, served by Hummingbird; `/metrics` in the Prometheus text format.
public enum AdminServer {
    /// Routes every swift-metrics metric of the process into one Prometheus registry (call
    /// once, before anything records a metric).
    public static func bootstrapMetrics() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }

    /// The application to run as a `Service` beside the replica.
    public static func make(
        replica: ControllerReplica, credentials: PeerTLSCredentials, host: String, port: Int,
        registry: PrometheusCollectorRegistry?, logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        let view = AdminView(replica: replica)
        let router = Router(context: AdminRequestContext.self)
        router.add(middleware: IdentityMiddleware(logger: logger))

        router.get("/v1/status") { request, _ in
            try await answer { () async throws(AdminError) in try await view.status(stale: isStale(request)) }
        }
        router.get("/v1/members") { request, _ in
            try await answer { () async throws(AdminError) in try await view.membersDocument(stale: isStale(request)) }
        }
        router.get("/v1/tunnels") { request, _ in
            try await answer { () async throws(AdminError) in try await view.tunnelsDocument(stale: isStale(request)) }
        }
        router.get("/v1/routes") { request, _ in
            try await answer { () async throws(AdminError) in try await view.routesDocument(stale: isStale(request)) }
        }
        router.get("/v1/events") { request, _ in
            let since = request.uri.queryParameters.get("since").flatMap(UInt64.init) ?? 0
            let limit = request.uri.queryParameters.get("limit").flatMap(Int.init) ?? 100
            return try await answer { () async throws(AdminError) in
                try await view.eventsDocument(stale: isStale(request), since: since, limit: min(limit, 10_000))
            }
        }
        router.post("/v1/tunnels/:name/drain") { request, context in
            let name = context.parameters.get("name") ?? ""
            let body = try? await request.decode(as: AdminDrainRequest.self, context: context)
            let by = await callerName(context)
            return try await answer { () async throws(AdminError) in
                guard let body, !body.reason.isEmpty else { throw AdminError(code: "bad_request", message: "give a reason: {\"reason\": \"...\"}") }
                return try await submit(view, tunnel: name, .drain(tunnel: name, reason: body.reason, by: by), what: "drained")
            }
        }
        router.post("/v1/tunnels/:name/undrain") { request, context in
            let name = context.parameters.get("name") ?? ""
            let by = await callerName(context)
            return try await answer { () async throws(AdminError) in
                try await submit(view, tunnel: name, .undrain(tunnel: name, by: by), what: "undrained")
            }
        }
        router.post("/v1/leader/transfer") { request, context in
            let body = try? await request.decode(as: AdminTransferRequest.self, context: context)
            return try await answer { () async throws(AdminError) in try await transfer(view, to: body?.to) }
        }
        router.post("/v1/members") { request, context in
            let body = try? await request.decode(as: AdminMemberRequest.self, context: context)
            return try await answer { () async throws(AdminError) in
                guard let body else { throw AdminError(code: "bad_request", message: "body must be {\"id\": N, \"peer\": \"host:port\", \"learner\": bool}") }
                return try await addMember(view, body)
            }
        }
        router.delete("/v1/members/:id") { _, context in
            let id = context.parameters.get("id").flatMap(UInt64.init)
            return try await answer { () async throws(AdminError) in
                guard let id, id > 0 else { throw AdminError(code: "bad_request", message: "member id must be a positive integer") }
                return try await removeMember(view, id)
            }
        }
        router.get("/metrics") { _, _ in
            let text = registry?.emitToBuffer() ?? []
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: text)))
        }

        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: credentials.certificateChain.map { .certificate($0) }, privateKey: .privateKey(credentials.privateKey))
        tls.minimumTLSVersion = .tlsv13
        tls.trustRoots = .certificates(credentials.trustRoots)
        // Clients connect by address, so there is no name to check; the chain must lead to the
        // cluster CA, and the middleware checks who the certificate names.
        tls.certificateVerification = .noHostnameVerification
        return Application(
            router: router, server: try .tls(.http1(), tlsConfiguration: tls),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "switchman"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    static func isStale(_ request: Request) -> Bool {
        request.uri.queryParameters.get("stale").map { $0 == "true" || $0 == "1" || $0.isEmpty } ?? false
    }

    static func callerName(_ context: AdminRequestContext) async -> String {
        (try? await identity(of: context.channel)).map { "\($0)" } ?? "unknown"
    }

    static func identity(of channel: any Channel) async throws -> PeerIdentity? {
        guard let cert = try await channel.nioSSL_peerCertificate().get() else { return nil }
        return try PeerIdentity.from(derEncoded: try cert.toDERBytes())
    }

    static func submit(_ view: AdminView, tunnel: String, _ command: ControllerCommand, what: String) async throws(AdminError) -> AdminResult {
        guard view.replica.config.tunnel(named: tunnel) != nil else {
            let known = view.replica.config.tunnels.map(\.name).joined(separator: ", ")
            throw AdminError(code: "not_found", message: "no tunnel named \"\(tunnel)\" (tunnels: \(known))")
        }
        do {
            let p = try await view.replica.submit(command)
            return AdminResult(ok: true, message: "\(tunnel) \(what)", index: p.index, term: p.term)
        } catch {
            throw AdminView.adminError(error)
        }
    }

    static func requireLeader(_ view: AdminView) async throws(AdminError) -> RaftNodeStatus {
        let s = await view.node.status
        guard s.role == .leader else {
            throw s.leader == 0
                ? AdminError(code: "no_leader", message: "no leader is known; the cluster may have lost its quorum")
                : AdminError(code: "not_leader", message: "replica \(s.leader) leads; ask it", leader: s.leader)
        }
        return s
    }

    static func transfer(_ view: AdminView, to requested: UInt64?) async throws(AdminError) -> AdminResult {
        let s = try await requireLeader(view)
        let voters = s.membership.voters.subtracting([s.id])
        guard let target = requested ?? voters.max(by: { (s.matchIndexes[$0] ?? 0, $1) < (s.matchIndexes[$1] ?? 0, $0) }) else {
            throw AdminError(code: "bad_request", message: "no other voter to hand leadership to")
        }
        guard voters.contains(target) else {
            throw AdminError(code: "bad_request", message: "member \(target) is not a voter other than the leader (voters: \(voters.sorted()))")
        }
        do {
            try await view.node.transferLeadership(to: target)
            return AdminResult(ok: true, message: "leadership handed from \(s.id) to \(target)", term: s.term)
        } catch {
            throw AdminView.adminError(error)
        }
    }

    static func addMember(_ view: AdminView, _ body: AdminMemberRequest) async throws(AdminError) -> AdminResult {
        guard body.id > 0, let address = PeerAddress(body.peer) else {
            throw AdminError(code: "bad_request", message: "id must be positive and peer host:port (got id \(body.id), peer \"\(body.peer)\")")
        }
        _ = try await requireLeader(view)
        do {
            let p = body.learner == true
                ? try await view.node.addLearner(body.id, address: address)
                : try await view.node.addVoter(body.id, address: address)
            return AdminResult(ok: true, message: "member \(body.id) added as \(body.learner == true ? "learner" : "voter")", index: p.index, term: p.term)
        } catch {
            throw AdminView.adminError(error)
        }
    }

    static func removeMember(_ view: AdminView, _ id: UInt64) async throws(AdminError) -> AdminResult {
        _ = try await requireLeader(view)
        do {
            let p = try await view.node.removeMember(id)
            return AdminResult(ok: true, message: "member \(id) removed", index: p.index, term: p.term)
        } catch {
            throw AdminView.adminError(error)
        }
    }

    /// Encodes a document, or the error with its status.
    static func answer<T: Encodable>(_ body: () async throws(AdminError) -> T) async throws -> Response {
        let result: Result<T, AdminError>
        do {
            result = .success(try await body())
        } catch {
            result = .failure(error)
        }
        switch result {
        case .success(let value): return try json(.ok, value)
        case .failure(let error): return try json(status(for: error.code), error)
        }
    }

    static func status(for code: String) -> HTTPResponse.Status {
        switch code {
        case "bad_request": return .badRequest
        case "forbidden": return .forbidden
        case "not_found": return .notFound
        case "not_leader": return .conflict
        case "no_leader", "no_quorum": return .serviceUnavailable
        default: return .internalServerError
        }
    }

    static func json<T: Encodable>(_ status: HTTPResponse.Status, _ value: T) throws -> Response {
        let data = try AdminJSON.encoder().encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Lets members and operators in; anything else with a CA-signed certificate (a sentinel's)
/// gets 403. Certificates from other CAs never get this far: the handshake refuses them.
struct IdentityMiddleware: RouterMiddleware {
    typealias Context = AdminRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let identity: PeerIdentity?
        do {
            identity = try await AdminServer.identity(of: context.channel)
        } catch {
            identity = nil
        }
        guard identity != nil else {
            logger.warning("admin request refused: the certificate names no member or operator", metadata: ["path": "\(request.uri.path)"])
            return try AdminServer.json(.forbidden, AdminError(code: "forbidden", message: "only members and operators may use the admin API"))
        }
        return try await next(request, context)
    }
}
