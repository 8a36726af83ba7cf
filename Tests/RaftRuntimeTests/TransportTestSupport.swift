import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Testing

@testable import RaftRuntime

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Polls `condition` until it holds. The deadline is only a safety net for a hung test; no
/// test asserts anything about how long things take.
func eventually(
    _ what: String,
    timeout: Duration = .seconds(90),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TimedOut(what: what)
}

func testLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .critical
    return logger
}

/// A throwaway cluster PKI held in memory.
struct TestPKI {
    let ca: ClusterCertificateAuthority
    let caPEM: String

    init(cluster: String = "test") throws {
        ca = try ClusterCertificateAuthority.generate(clusterName: cluster)
        caPEM = try ca.certificate.serializeAsPEM().pemString
    }

    func credentials(_ issued: IssuedCertificate) throws -> PeerTLSCredentials {
        try PeerTLSCredentials(caPEM: caPEM, certificatePEM: issued.certificatePEM(), privateKeyPEM: issued.privateKeyPEM())
    }

    func member(_ id: UInt64) throws -> PeerTLSCredentials {
        try credentials(ca.issueMember(id: id, hosts: ["127.0.0.1", "localhost"]))
    }

    func client(_ name: String) throws -> PeerTLSCredentials {
        try credentials(ca.issueClient(name: name))
    }
}

func fastLimits() -> PeerTransportLimits {
    var limits = PeerTransportLimits()
    limits.reconnectBaseDelay = .milliseconds(10)
    limits.reconnectMaximumDelay = .milliseconds(300)
    // Not the default 10 s: with every suite starting at once on 2 cores, a TLS handshake and
    // hello took longer than that in CI and the server closed the connection under the test
    // (newerConnectionFromSameMemberSupersedesOlder: "I/O on closed channel"). The test of
    // the timeout itself sets its own.
    limits.handshakeTimeout = .seconds(60)
    return limits
}

func makeTransport(
    id: UInt64,
    pki: TestPKI,
    cluster: String = "test",
    port: Int = 0,
    limits: PeerTransportLimits = fastLimits(),
    credentials: PeerTLSCredentials? = nil
) throws -> PeerTransport {
    try PeerTransport(
        configuration: PeerTransportConfiguration(
            localMemberID: id,
            clusterName: cluster,
            listenHost: "127.0.0.1",
            listenPort: port,
            limits: limits
        ),
        credentials: credentials ?? pki.member(id),
        logger: testLogger("transport-\(id)")
    )
}

func address(of transport: PeerTransport) throws -> PeerAddress {
    guard let port = transport.listeningPort else { throw TimedOut(what: "listening port") }
    return PeerAddress(host: "127.0.0.1", port: port)
}

/// Collects a transport's inbound stream so tests can poll it.
final class Inbox: Sendable {
    private let box = NIOLockedValueBox<[InboundMessage]>([])
    private let task: Task<Void, Never>

    init(_ transport: PeerTransport) {
        let box = self.box
        let stream = transport.inbound
        task = Task {
            for await message in stream { box.withLockedValue { $0.append(message) } }
        }
    }

    var messages: [InboundMessage] { box.withLockedValue { $0 } }
    func messages(from id: UInt64) -> [InboundMessage] { messages.filter { $0.from == id } }

    deinit { task.cancel() }
}

/// A hand-driven client for attacking the listener: optional TLS with any credentials, raw
/// bytes written after the handshake, and a record of what the server sent back.
final class RawClient: Sendable {
    let channel: any Channel
    private let received: NIOLockedValueBox<[Frame]>
    private let handshakeDone: NIOLockedValueBox<Bool>

    var frames: [Frame] { received.withLockedValue { $0 } }
    var wasAccepted: Bool { frames.contains { $0.kind == .helloAccepted } }
    var handshakeCompleted: Bool { handshakeDone.withLockedValue { $0 } }
    var isClosed: Bool { !channel.isActive }

    private init(channel: any Channel, received: NIOLockedValueBox<[Frame]>, handshakeDone: NIOLockedValueBox<Bool>) {
        self.channel = channel
        self.received = received
        self.handshakeDone = handshakeDone
    }

    static func connect(to address: PeerAddress, tls: PeerTLSCredentials?) async throws -> RawClient {
        let received = NIOLockedValueBox<[Frame]>([])
        let handshakeDone = NIOLockedValueBox(false)
        let sslContext = try tls?.makeClientContext()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: sslContext, serverHostname: nil)
                        )
                    }
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(FrameDecoder(maximumPayloadSize: 1 << 20)),
                        RecordingHandler(received: received, handshakeDone: handshakeDone),
                    ])
                }
            }
            .connect(host: address.host, port: address.port).get()
        return RawClient(channel: channel, received: received, handshakeDone: handshakeDone)
    }

    /// Writes raw bytes (no framing of its own; use `encode` for well-formed frames).
    func write(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
    }

    static func encode(_ kind: Frame.Kind, _ payload: [UInt8]) -> [UInt8] {
        var out = ByteBufferAllocator().buffer(capacity: payload.count + 5)
        let frame = Frame(kind: kind, payload: ByteBufferAllocator().buffer(bytes: payload))
        try? FrameEncoder().encode(data: frame, out: &out)
        return Array(out.readableBytesView)
    }

    static func hello(memberID: UInt64, cluster: String = "test", incarnation: UInt64 = 0) -> [UInt8] {
        let payload = Hello(memberID: memberID, incarnation: incarnation, clusterName: cluster).encode(allocator: ByteBufferAllocator())
        return encode(.hello, Array(payload.readableBytesView))
    }

    func close() async {
        try? await channel.close()
    }
}

private final class RecordingHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    let received: NIOLockedValueBox<[Frame]>
    let handshakeDone: NIOLockedValueBox<Bool>

    init(received: NIOLockedValueBox<[Frame]>, handshakeDone: NIOLockedValueBox<Bool>) {
        self.received = received
        self.handshakeDone = handshakeDone
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            handshakeDone.withLockedValue { $0 = true }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        received.withLockedValue { $0.append(frame) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Deterministic bytes whose value depends on position, so a reordered or repeated chunk
/// cannot go unnoticed.
func patternedBytes(count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var state = seed
        var index = 0
        while index < count {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            var word = state ^ (state >> 29)
            let end = min(index + 8, count)
            while index < end {
                buffer[index] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                index += 1
            }
        }
        initialized = count
    }
}

/// What the kernel has on a local TCP port (from /proc/net/tcp), for failure messages.
func listenersOn(port: Int) -> String {
    guard let table = try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8) else { return "no /proc/net/tcp" }
    let hex = String(format: ":%04X", port)
    let states = ["01": "ESTABLISHED", "06": "TIME_WAIT", "0A": "LISTEN", "08": "CLOSE_WAIT", "04": "FIN_WAIT1", "05": "FIN_WAIT2"]
    let rows = table.split(separator: "\n").dropFirst().compactMap { line -> String? in
        let f = line.split(separator: " ")
        guard f.count > 3, f[1].hasSuffix(hex) else { return nil }
        return "\(f[1])->\(f[2]) \(states[String(f[3])] ?? String(f[3]))"
    }
    return rows.isEmpty ? "nothing on port \(port)" : rows.joined(separator: ", ")
}
