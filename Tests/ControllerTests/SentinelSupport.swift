import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RaftRuntime
import Testing

@testable import Controller

#if canImport(Glibc)
import Glibc
#endif

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Polls `condition` until it holds. The deadline is only a safety net for a hung test; no
/// test asserts anything about how long things take.
func eventually(_ what: String, timeout: Duration = .seconds(90), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TimedOut(what: what)
}

func quietLogger(_ label: String = "test") -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .critical
    return logger
}

func temporaryDirectory(_ prefix: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A cluster CA on disk with member 1, operator `operator` and sentinels for `tunnels`.
struct SentinelPKI {
    let directory: CertificateDirectory

    init(tunnels: [String], cluster: String = "test") throws {
        directory = CertificateDirectory(path: try temporaryDirectory("sentinel-pki"))
        try directory.bootstrap(clusterName: cluster, members: [1], hosts: ["127.0.0.1"], clients: ["operator"])
        for tunnel in tunnels { try directory.issueSentinel(tunnel: tunnel, ipAddresses: ["127.0.0.1"]) }
    }

    func read(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    func credentials(for tunnel: String) throws -> SentinelCredentials {
        try SentinelCredentials(
            tunnel: tunnel, caFile: directory.caCertificatePath, certificateFile: directory.sentinelCertificatePath(tunnel),
            keyFile: directory.sentinelKeyPath(tunnel))
    }

    func memberClient() throws -> SentinelClient {
        try SentinelClient(
            caFile: directory.caCertificatePath, certificateFile: directory.memberCertificatePath(1), keyFile: directory.memberKeyPath(1),
            logger: quietLogger())
    }

    func operatorClient() throws -> SentinelClient {
        try SentinelClient(
            caFile: directory.caCertificatePath, certificateFile: directory.clientCertificatePath("operator"),
            keyFile: directory.clientKeyPath("operator"), logger: quietLogger())
    }

    /// A raw HTTPS client trusting this CA, presenting `certificate`/`key` if given, without
    /// host name checks: for tests that look at what the server does, not at the client.
    func rawClient(certificate: String?, key: String?, trusting caPath: String? = nil) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(try read(caPath ?? directory.caCertificatePath).utf8)))
        tls.certificateVerification = .noHostnameVerification
        if let certificate, let key {
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(try read(certificate).utf8)).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(try read(key).utf8), format: .pem))
        }
        return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: .init(tlsConfiguration: tls))
    }
}

func tunnelConfig(_ name: String, port: Int, probes: [ProbeTarget], require: ProbeRequirement = .all) -> TunnelConfig {
    TunnelConfig(
        name: name, instance: InstanceSelector(tagKey: "t", tagValue: name), sentinel: HostPort(host: "127.0.0.1", port: UInt16(port)),
        probes: probes, require: require)
}

/// Answers from a script: a target is up when its entry says so (default up).
final class ScriptedProber: TargetProber {
    private let up = NIOLockedValueBox<[ProbeTarget: Bool]>([:])

    func set(_ target: ProbeTarget, up value: Bool) { up.withLockedValue { $0[target] = value } }

    func probe(_ target: ProbeTarget, timeout: Duration) async -> ProbeOutcome {
        if up.withLockedValue({ $0[target] ?? true }) { return .success(target, rtt: .microseconds(1500)) }
        return .failure(target, "scripted failure")
    }
}

/// A port that nothing listens on (bound and closed again; the kernel does not hand it out
/// again at once).
func closedPort() async throws -> Int {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress?.port ?? 0
    try await channel.close()
    return port
}

/// A TCP listener that accepts and holds connections.
func tcpListener() async throws -> any Channel {
    try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
}

/// A tiny HTTP server answering every request with `status`.
func httpServer(status: HTTPResponseStatus) async throws -> any Channel {
    try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                try channel.pipeline.syncOperations.addHandler(FixedStatusHandler(status: status))
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
}

final class FixedStatusHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let status: HTTPResponseStatus
    init(status: HTTPResponseStatus) { self.status = status }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: "2")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: "ok")))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

/// Sends raw bytes over mutual TLS and collects everything the server sends until it closes.
func rawTLSExchange(port: Int, send bytes: String, certificate: String, key: String, ca: String) async throws -> String {
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(try String(contentsOfFile: ca, encoding: .utf8).utf8)))
    tls.certificateVerification = .noHostnameVerification
    tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(try String(contentsOfFile: certificate, encoding: .utf8).utf8)).map {
        .certificate($0)
    }
    tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(try String(contentsOfFile: key, encoding: .utf8).utf8), format: .pem))
    let context = try NIOSSLContext(configuration: tls)
    let collected = NIOLockedValueBox("")
    let closed = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Void.self)
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                try channel.pipeline.syncOperations.addHandler(Collector(collected: collected))
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    channel.closeFuture.cascade(to: closed)
    try await channel.writeAndFlush(ByteBuffer(string: bytes))
    try await closed.futureResult.get()
    return collected.withLockedValue { $0 }
}

final class Collector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let collected: NIOLockedValueBox<String>
    init(collected: NIOLockedValueBox<String>) { self.collected = collected }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        collected.withLockedValue { $0 += String(buffer: buffer) }
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

/// The `switchman` binary next to this package (`swift build --build-tests` builds it).
var switchmanBinary: String {
    repoRoot.appendingPathComponent(".build/debug/switchman").path
}

struct ChildProcessError: Error, CustomStringConvertible {
    var description: String
}

/// A child process started with posix_spawn (copied from ActuatorsTests). Foundation's
/// `Process.waitUntilExit()` spins a run loop on the calling thread, which starves Swift
/// concurrency's small cooperative pool on a 2-core machine; here waiting happens on a
/// dedicated thread instead. `@unchecked Sendable`: `exitStatus` and `waiters` are only
/// touched under `lock`.
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    private let lock = NSLock()
    private var exitStatus: Int32?
    private var waiters: [CheckedContinuation<Int32, Never>] = []

    init(_ args: [String], stdout: String, stderr: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        // NIO's listening sockets are not close-on-exec: without this a child inherits a
        // test's listener and keeps its port accepting after the test closed it.
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap({ Int32($0) }) ?? []
        where fd > 2 && fcntl(fd, F_GETFD) != -1 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        let environment = ProcessInfo.processInfo.environment
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, args[0], &actions, &attr, argv, envp)
        guard rc == 0 else { throw ChildProcessError(description: "posix_spawn \(args[0]) failed: \(rc)") }
        self.pid = pid
        startMonitor()
    }

    /// Waits for exit (the monitor thread reaps the child); the exit status, 128+signal if killed.
    func wait() async -> Int32 {
        await withCheckedContinuation { (cont: CheckedContinuation<Int32, Never>) in
            let done: Int32? = lock.withLock {
                if let exitStatus { return exitStatus }
                waiters.append(cont)
                return nil
            }
            if let done { cont.resume(returning: done) }
        }
    }

    var hasExited: Bool { lock.withLock { exitStatus != nil } }

    private func startMonitor() {
        let pid = self.pid
        Thread { [self] in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
            let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            let toResume = lock.withLock { () -> [CheckedContinuation<Int32, Never>] in
                exitStatus = code
                defer { waiters = [] }
                return waiters
            }
            toResume.forEach { $0.resume(returning: code) }
        }.start()
    }

    func signal(_ signal: Int32) { _ = Glibc.kill(pid, signal) }

    func forceStop() async {
        _ = Glibc.kill(pid, SIGKILL)
        _ = await wait()
    }
}
