import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RaftRuntime
import ServiceLifecycle
import X509

/// Problems that stop a sentinel from starting, worded for the operator who has to fix them.
public enum SentinelError: Error, CustomStringConvertible {
    case unreadableFile(what: String, path: String, reason: String, hint: String?)
    case invalidCertificate(path: String, reason: String)
    case notSignedByCA(path: String, caPath: String)
    case keyDoesNotMatch(keyPath: String, certificatePath: String)
    case cannotListen(HostPort, reason: String)

    public var description: String {
        switch self {
        case .unreadableFile(let what, let path, let reason, let hint):
            return "cannot read the \(what) \(path): \(reason)" + (hint.map { "; \($0)" } ?? "")
        case .invalidCertificate(let path, let reason): return "\(path): \(reason)"
        case .notSignedByCA(let path, let caPath): return "\(path) is not signed by the cluster CA in \(caPath)"
        case .keyDoesNotMatch(let keyPath, let certificatePath): return "the key \(keyPath) does not belong to the certificate \(certificatePath)"
        case .cannotListen(let address, let reason): return "cannot listen on \(address): \(reason)"
        }
    }
}

/// A sentinel's TLS material: the cluster CA (the only trust root for clients), and its own
/// certificate and key, checked at load to name the tunnel and chain to the CA, so a
/// misplaced file fails at start instead of in every client's handshake.
public struct SentinelCredentials: Sendable {
    public let tunnel: String
    let trustRoots: [NIOSSLCertificate]
    let certificateChain: [NIOSSLCertificate]
    let privateKey: NIOSSLPrivateKey

    public init(tunnel: String, caFile: String, certificateFile: String, keyFile: String) throws {
        let hint = "create it with `switchman certs sentinel --dir DIR --tunnel \(tunnel) --ip ADDRESS`"
        func read(_ what: String, _ path: String, hint: String?) throws -> String {
            do {
                return try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                let reason = FileManager.default.fileExists(atPath: path) ? "\(error.localizedDescription)" : "no such file"
                throw SentinelError.unreadableFile(what: what, path: path, reason: reason, hint: hint)
            }
        }
        let caPEM = try read("cluster CA certificate", caFile, hint: nil)
        let certificatePEM = try read("sentinel certificate", certificateFile, hint: hint)
        let keyPEM = try read("sentinel key", keyFile, hint: hint)
        try self.init(tunnel: tunnel, caPEM: caPEM, certificatePEM: certificatePEM, keyPEM: keyPEM, paths: (caFile, certificateFile, keyFile))
    }

    public init(tunnel: String, caPEM: String, certificatePEM: String, keyPEM: String) throws {
        try self.init(tunnel: tunnel, caPEM: caPEM, certificatePEM: certificatePEM, keyPEM: keyPEM, paths: ("CA PEM", "certificate PEM", "key PEM"))
    }

    private init(tunnel: String, caPEM: String, certificatePEM: String, keyPEM: String, paths: (ca: String, cert: String, key: String)) throws {
        self.tunnel = tunnel
        let ca: Certificate
        let leaf: Certificate
        let key: Certificate.PrivateKey
        do { ca = try Certificate(pemEncoded: caPEM) } catch { throw SentinelError.invalidCertificate(path: paths.ca, reason: "not a PEM certificate (\(error))") }
        do { leaf = try Certificate(pemEncoded: certificatePEM) } catch {
            throw SentinelError.invalidCertificate(path: paths.cert, reason: "not a PEM certificate (\(error))")
        }
        do { key = try Certificate.PrivateKey(pemEncoded: keyPEM) } catch {
            throw SentinelError.invalidCertificate(path: paths.key, reason: "not a PEM private key (\(error))")
        }
        let named: String
        do { named = try SentinelIdentity.tunnel(of: leaf) } catch { throw SentinelError.invalidCertificate(path: paths.cert, reason: "\(error)") }
        guard named == tunnel else {
            throw SentinelError.invalidCertificate(path: paths.cert, reason: "\(SentinelCertificateError.wrongTunnel(expected: tunnel, certificate: named))")
        }
        guard leaf.issuer == ca.subject, ca.publicKey.isValidSignature(leaf.signature, for: leaf) else {
            throw SentinelError.notSignedByCA(path: paths.cert, caPath: paths.ca)
        }
        guard key.publicKey == leaf.publicKey else { throw SentinelError.keyDoesNotMatch(keyPath: paths.key, certificatePath: paths.cert) }
        do {
            trustRoots = try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))
            certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
            privateKey = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        } catch {
            throw SentinelError.invalidCertificate(path: paths.cert, reason: "TLS cannot use it (\(error))")
        }
    }

    /// Mutual TLS 1.3: clients must present a certificate from the cluster CA. Which of those
    /// may read is decided per request (``SentinelAccess``).
    func makeServerContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: certificateChain.map { .certificate($0) },
            privateKey: .privateKey(privateKey),
            trustRoots: .certificates(trustRoots))
        configuration.minimumTLSVersion = .tlsv13
        // Client certificates name members and operators by URI, not host, so there is no
        // host name to check them against.
        configuration.certificateVerification = .noHostnameVerification
        return try NIOSSLContext(configuration: configuration)
    }
}

/// Who may read a sentinel: replicas (they poll it) and operators (they debug with it).
/// Anything else from the cluster CA, such as another tunnel's sentinel certificate, is
/// refused with 403: a VPN instance's key should open nothing but its own listener.
public enum SentinelAccess {
    public static func allows(_ identity: PeerIdentity) -> Bool {
        switch identity {
        case .member, .client: return true
        }
    }
}

/// `switchman sentinel`: probes its tunnel's targets every `probeInterval` and serves the
/// verdict over mutual TLS (docs/SENTINEL.md).
///
/// A swift-service-lifecycle `Service`: `run()` binds (unless `start()` already did), probes
/// until graceful shutdown or cancellation, then closes the listener and waits for it.
public final class Sentinel: Service, Sendable {
    public let tunnel: TunnelConfig
    public let interval: Duration
    public let timeout: Duration
    private let prober: any TargetProber
    private let credentials: SentinelCredentials
    private let listenAddress: HostPort?
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state: NIOLockedValueBox<SentinelRecorder>
    private let server = NIOLockedValueBox<(any Channel)?>(nil)
    private let accepted = NIOLockedValueBox(0)
    /// Open client connections, so stopping closes kept-alive ones too, not only the listener.
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    /// `listen` overrides the tunnel's `sentinel:` address (port 0 picks a free port).
    public init(
        tunnel: TunnelConfig, health: HealthConfig, prober: any TargetProber, credentials: SentinelCredentials,
        listen: HostPort? = nil, historyLimit: Int = SentinelRecorder.defaultHistoryLimit, instanceId: String? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
    ) {
        self.tunnel = tunnel
        self.interval = health.probeInterval
        self.timeout = health.probeTimeout
        self.prober = prober
        self.credentials = credentials
        self.listenAddress = listen
        self.group = eventLoopGroup
        var logger = logger
        logger[metadataKey: "tunnel"] = "\(tunnel.name)"
        self.logger = logger
        self.state = NIOLockedValueBox(SentinelRecorder(
            tunnel: tunnel.name, requirement: tunnel.require, historyLimit: historyLimit, instanceId: instanceId))
    }

    /// The current verdict, history included.
    public var report: SentinelReport { state.withLockedValue { $0.report } }

    /// Connections accepted since the listener was bound (TCP accepts, before TLS). A
    /// replica keeps one connection per sentinel, so this stays near the number of pollers.
    public var acceptedConnections: Int { accepted.withLockedValue { $0 } }

    /// Where the server listens, once bound.
    public var localAddress: SocketAddress? { server.withLockedValue { $0?.localAddress } }

    /// Binds the mTLS listener. Separate from `run()` so a command can report "port in use"
    /// before it settles into its service group.
    public func start() async throws {
        if server.withLockedValue({ $0 != nil }) { return }
        let address = listenAddress ?? tunnel.sentinel
        let context = try credentials.makeServerContext()
        let snapshot: @Sendable () -> SentinelReport = { [state] in state.withLockedValue { $0.report } }
        let logger = self.logger
        let accepted = self.accepted
        let connections = self.connections
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    accepted.withLockedValue { $0 += 1 }
                    let id = ObjectIdentifier(channel)
                    connections.withLockedValue { $0[id] = channel }
                    channel.closeFuture.whenComplete { _ in _ = connections.withLockedValue { $0.removeValue(forKey: id) } }
                    return channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        // A client that stops mid-handshake or mid-request would otherwise
                        // hold its connection forever.
                        try sync.addHandler(IdleStateHandler(allTimeout: .seconds(30)))
                        try sync.addHandler(IdleConnectionCloser())
                        try sync.addHandler(NIOSSLServerHandler(context: context))
                        // withErrorHandling: a malformed request gets a 400 and closes its
                        // own connection, nobody else's.
                        try sync.configureHTTPServerPipeline(withErrorHandling: true)
                        try sync.addHandler(SentinelHTTPHandler(snapshot: snapshot, logger: logger))
                    }
                }
                .bind(host: address.host, port: Int(address.port))
                .get()
        } catch {
            throw SentinelError.cannotListen(address, reason: LiveTargetProber.describeIOError(error))
        }
        server.withLockedValue { $0 = channel }
        logger.info(
            "sentinel listening (mTLS)",
            metadata: [
                "address": "\(channel.localAddress.map { "\($0)" } ?? "\(address)")",
                "targets": "\(tunnel.probes.map(\.description).joined(separator: ", "))",
                "require": "\(tunnel.require.rawValue)",
            ])
    }

    public func run() async throws {
        try await start()
        do {
            try await cancelWhenGracefulShutdown {
                try await self.probeLoop()
            }
        } catch is CancellationError {
            // Shutdown, graceful or not: fall through and close the listener.
        } catch {
            await stopServer()
            throw error
        }
        await stopServer()
        logger.info("sentinel stopped")
    }

    private func stopServer() async {
        let channel = server.withLockedValue { channel in
            defer { channel = nil }
            return channel
        }
        try? await channel?.close()
        // Closing the listener leaves accepted connections open: a replica polling over a
        // kept-alive connection would go on reading a report that no longer changes.
        let open = connections.withLockedValue { Array($0.values) }
        for connection in open { try? await connection.close() }
    }

    private func probeLoop() async throws {
        let clock = ContinuousClock()
        var next = clock.now
        while true {
            try Task.checkCancellation()
            _ = await runRound()
            next = next.advanced(by: interval)
            // An overlong round (a slow thread pool, say) does not make rounds pile up: the
            // next one starts a full interval from now instead.
            if next < clock.now { next = clock.now.advanced(by: interval) }
            try await Task.sleep(until: next, clock: clock)
        }
    }

    /// Probes every target at once and records the round. Public for tests and tools.
    @discardableResult
    public func runRound() async -> SentinelRound {
        let targets = tunnel.probes
        let timeout = self.timeout
        let prober = self.prober
        let outcomes = await withTaskGroup(of: (Int, ProbeOutcome).self) { group in
            for (index, target) in targets.enumerated() {
                group.addTask { (index, await prober.probe(target, timeout: timeout)) }
            }
            var results = [ProbeOutcome?](repeating: nil, count: targets.count)
            for await (index, outcome) in group { results[index] = outcome }
            return results.compactMap { $0 }
        }
        let (entry, previous) = state.withLockedValue { recorder -> (SentinelRound, Bool?) in
            let previous = recorder.history.last?.healthy
            return (recorder.record(outcomes, at: Date()), previous)
        }
        let failures = outcomes.filter { !$0.ok }.map { "\($0.target): \($0.error ?? "failed")" }
        if previous != entry.healthy {
            // Changes are what an operator looks for; steady state stays at debug.
            if entry.healthy {
                logger.notice("tunnel healthy", metadata: ["round": "\(entry.round)"])
            } else {
                logger.warning("tunnel unhealthy", metadata: ["round": "\(entry.round)", "failures": "\(failures.joined(separator: "; "))"])
            }
        } else {
            logger.debug(
                "probe round", metadata: ["round": "\(entry.round)", "healthy": "\(entry.healthy)", "failures": "\(failures.joined(separator: "; "))"])
        }
        return entry
    }
}

/// Closes a connection when `IdleStateHandler` says it has been silent too long.
final class IdleConnectionCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// `GET /v1/verdict` → the report as JSON; other paths 404, other methods 405. The caller's
/// identity is checked on every request (``SentinelAccess``).
final class SentinelHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let snapshot: @Sendable () -> SentinelReport
    private let logger: Logger
    private var head: HTTPRequestHead?

    init(snapshot: @escaping @Sendable () -> SentinelReport, logger: Logger) {
        self.snapshot = snapshot
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break  // GET bodies are ignored; NIOHTTP1 bounds what it parses.
        case .end:
            guard let head else { return }
            self.head = nil
            respond(context: context, head: head)
        }
    }

    /// Parser and TLS errors end here. NIOHTTP1's error handler has already answered a
    /// malformed request with 400 but leaves closing to the pipeline: close this connection,
    /// and only this one.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("closing a connection after an error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let identity: PeerIdentity
        do {
            let tls = try context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
            guard let certificate = tls.peerCertificate else { throw PeerIdentityError.noIdentity }
            identity = try PeerIdentity.from(derEncoded: try certificate.toDERBytes())
        } catch {
            logger.warning("refused a client without a member or operator identity", metadata: ["reason": "\(error)"])
            send(context: context, status: .forbidden, json: #"{"error":"a member or operator certificate is required"}"#, keepAlive: false)
            return
        }
        guard SentinelAccess.allows(identity) else {
            send(context: context, status: .forbidden, json: #"{"error":"not allowed"}"#, keepAlive: false)
            return
        }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard path == "/v1/verdict" else {
            send(context: context, status: .notFound, json: #"{"error":"not found; try GET /v1/verdict"}"#, keepAlive: head.isKeepAlive)
            return
        }
        guard head.method == .GET else {
            send(context: context, status: .methodNotAllowed, json: #"{"error":"only GET"}"#, keepAlive: head.isKeepAlive)
            return
        }
        // `?history=N` keeps the last N rounds of the history (replicas ask for none: at a
        // poll every probe interval, 120 rounds were 17 kB of each answer nobody read).
        var limit: Int? = nil
        if let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first {
            for pair in query.split(separator: "&") where pair.hasPrefix("history=") {
                guard let n = Int(pair.dropFirst("history=".count)), n >= 0 else {
                    send(context: context, status: .badRequest, json: #"{"error":"history must be a whole number of rounds, 0 or more"}"#,
                         keepAlive: head.isKeepAlive)
                    return
                }
                limit = n
            }
        }
        do {
            var report = snapshot()
            if let limit { report.history = Array(report.history.suffix(limit)) }
            let body = try SentinelReport.makeEncoder().encode(report)
            send(context: context, status: .ok, json: String(decoding: body, as: UTF8.self), keepAlive: head.isKeepAlive)
        } catch {
            logger.error("cannot encode the report", metadata: ["error": "\(error)"])
            send(context: context, status: .internalServerError, json: #"{"error":"cannot encode the report"}"#, keepAlive: false)
        }
    }

    private func send(context: ChannelHandlerContext, status: HTTPResponseStatus, json: String, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(json.utf8.count))
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: json.utf8.count)
        buffer.writeString(json)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
