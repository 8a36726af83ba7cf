import AsyncHTTPClient
import Foundation
import SwitchmanTestSupport
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

