import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// What every connection of one transport shares. Immutable, so plainly Sendable.
final class TransportContext: Sendable {
    let localMemberID: UInt64
    let clusterName: String
    let limits: PeerTransportLimits
    let logger: Logger
    let counters: TransportCounters
    let serverTLS: NIOSSLContext
    let clientTLS: NIOSSLContext
    let inbound: AsyncStream<InboundMessage>.Continuation
    let localIncarnation: UInt64
    let incarnations: IncarnationBook?

    init(
        localMemberID: UInt64,
        clusterName: String,
        limits: PeerTransportLimits,
        logger: Logger,
        counters: TransportCounters,
        serverTLS: NIOSSLContext,
        clientTLS: NIOSSLContext,
        inbound: AsyncStream<InboundMessage>.Continuation,
        localIncarnation: UInt64 = 0,
        incarnations: IncarnationBook? = nil
    ) {
        self.localIncarnation = localIncarnation
        self.incarnations = incarnations
        self.localMemberID = localMemberID
        self.clusterName = clusterName
        self.limits = limits
        self.logger = logger
        self.counters = counters
        self.serverTLS = serverTLS
        self.clientTLS = clientTLS
        self.inbound = inbound
    }

    /// The authenticated inbound connection of each member. A member keeps exactly one
    /// outbound connection to us, so when it authenticates a new one, any older one is a
    /// half-open leftover (e.g. from a partition) and is closed instead of holding a slot
    /// until TCP keepalive notices.
    private let authenticatedInbound = NIOLockedValueBox<[UInt64: any Channel]>([:])

    func registerInbound(_ channel: any Channel, memberID: UInt64) -> (any Channel)? {
        authenticatedInbound.withLockedValue { $0.updateValue(channel, forKey: memberID) }
    }

    func unregisterInbound(_ channel: any Channel, memberID: UInt64) {
        authenticatedInbound.withLockedValue { table in
            if let current = table[memberID], current === channel { table[memberID] = nil }
        }
    }

    func deliver(_ message: InboundMessage) {
        counters.messageReceived()
        if case .dropped = inbound.yield(message) {
            counters.dropped("inbound_full")
        }
    }
}

/// The single outbound connection to one peer, its bounded send queue and its reconnect loop.
///
/// Safety of `@unchecked Sendable`: `queue` is guarded by its own lock and may be used from any
/// thread; every other `var` is touched only on `eventLoop` (each entry point either asserts
/// that or hops there first), and the `let`s are Sendable.
final class OutboundPeer: @unchecked Sendable {
    let peerID: UInt64
    let eventLoop: any EventLoop
    private let context: TransportContext
    private let logger: Logger
    private let queue = NIOLockedValueBox(SendQueue())

    /// Told whether a message was handed to the connection whole (true) or dropped before
    /// that (false). Called once, on the peer's event loop or the caller's thread.
    typealias WriteCallback = @Sendable (Bool) -> Void

    private struct SendQueue {
        var messages = CircularBuffer<(payload: [UInt8], onWritten: WriteCallback?)>()
        var bytes = 0
        var pumpScheduled = false
        var stopped = false
    }

    private enum State {
        case idle
        case connecting
        case handshaking(any Channel)
        case ready(any Channel)
        case waiting(Scheduled<Void>)
        case stopped
    }

    // Event-loop confined.
    private var address: PeerAddress
    private var state: State = .idle
    /// Increments whenever the current attempt is abandoned, so late callbacks from an old
    /// connection cannot disturb a newer one.
    private var generation = 0
    private var consecutiveFailures = 0
    private var everConnected = false
    private var current: (payload: [UInt8], offset: Int, onWritten: WriteCallback?)?

    init(peerID: UInt64, address: PeerAddress, eventLoop: any EventLoop, context: TransportContext) {
        self.peerID = peerID
        self.address = address
        self.eventLoop = eventLoop
        self.context = context
        var logger = context.logger
        logger[metadataKey: "peer"] = "\(peerID)"
        self.logger = logger
    }

    // MARK: Any thread

    func enqueue(_ payload: [UInt8], onWritten: WriteCallback? = nil) -> SendResult {
        let limits = context.limits
        let (result, schedulePump): (SendResult, Bool) = queue.withLockedValue { queue in
            if queue.stopped { return (.droppedNotRunning, false) }
            let overCount = queue.messages.count >= limits.sendQueueMessages
            let overBytes = !queue.messages.isEmpty && queue.bytes + payload.count > limits.sendQueueBytes
            if overCount || overBytes { return (.droppedQueueFull, false) }
            queue.messages.append((payload, onWritten))
            queue.bytes += payload.count
            let schedule = !queue.pumpScheduled
            queue.pumpScheduled = true
            return (.enqueued, schedule)
        }
        if result == .droppedQueueFull { context.counters.dropped("queue_full") }
        if schedulePump { eventLoop.execute { self.pump() } }
        return result
    }

    var queuedMessages: Int { queue.withLockedValue { $0.messages.count } }

    func start() {
        eventLoop.execute { self.connect() }
    }

    func update(address newAddress: PeerAddress) {
        eventLoop.execute {
            guard newAddress != self.address else { return }
            self.logger.info("peer address changed", metadata: ["from": "\(self.address)", "to": "\(newAddress)"])
            self.address = newAddress
            if case .stopped = self.state { return }
            if case .idle = self.state { return }
            self.abandonCurrentConnection()
            self.consecutiveFailures = 0
            self.connect()
        }
    }

    /// Stops for good: no more reconnects, queued messages are discarded.
    func stop() -> EventLoopFuture<Void> {
        let dropped = queue.withLockedValue { queue -> [WriteCallback] in
            queue.stopped = true
            let callbacks = queue.messages.compactMap(\.onWritten)
            queue.messages.removeAll()
            queue.bytes = 0
            return callbacks
        }
        for callback in dropped { callback(false) }
        return eventLoop.submit {
            let channel = self.abandonCurrentConnection()
            self.state = .stopped
            return channel
        }.flatMap { channel in
            guard let channel else { return self.eventLoop.makeSucceededVoidFuture() }
            return channel.close().recover { _ in }
        }
    }

    // MARK: Event loop

    /// Leaves the current attempt behind (its callbacks become no-ops) and returns its channel,
    /// which is being closed.
    @discardableResult
    private func abandonCurrentConnection() -> (any Channel)? {
        eventLoop.assertInEventLoop()
        generation += 1
        if let dropped = current {
            current = nil
            context.counters.dropped("in_flight")
            dropped.onWritten?(false)
        }
        switch state {
        case .handshaking(let channel), .ready(let channel):
            state = .idle
            channel.close(promise: nil)
            return channel
        case .waiting(let scheduled):
            scheduled.cancel()
            state = .idle
        case .connecting:
            state = .idle
        case .idle, .stopped:
            break
        }
        return nil
    }

    private func connect() {
        eventLoop.assertInEventLoop()
        switch state {
        case .idle, .waiting: break
        case .connecting, .handshaking, .ready, .stopped: return
        }
        generation += 1
        let attempt = generation
        state = .connecting
        if everConnected || consecutiveFailures > 0 { context.counters.reconnect() }

        let context = self.context
        let target = address
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(context.limits.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(
                .writeBufferWaterMark,
                value: .init(low: context.limits.chunkSize, high: 2 * context.limits.chunkSize)
            )
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tls = try NIOSSLClientHandler(context: context.clientTLS, serverHostname: nil)
                    try channel.pipeline.syncOperations.addHandlers([
                        tls,
                        ByteToMessageHandler(FrameDecoder(maximumPayloadSize: context.limits.maximumFramePayloadSize)),
                        MessageToByteHandler(FrameEncoder()),
                        OutboundConnectionHandler(peer: self, attempt: attempt, context: context),
                    ])
                }
            }
        bootstrap.connect(host: target.host, port: target.port).whenComplete { result in
            switch result {
            case .success(let channel):
                self.connected(channel, attempt: attempt)
            case .failure(let error):
                self.failed(attempt: attempt, reason: "connect to \(target) failed: \(error)")
            }
        }
    }

    private func connected(_ channel: any Channel, attempt: Int) {
        eventLoop.assertInEventLoop()
        guard attempt == generation, case .connecting = state else {
            channel.close(promise: nil)
            return
        }
        state = .handshaking(channel)
        let timeout = context.limits.handshakeTimeout
        eventLoop.scheduleTask(in: timeout) {
            guard attempt == self.generation, case .handshaking = self.state else { return }
            self.context.counters.rejectedHandshake("timeout")
            self.failed(attempt: attempt, reason: "peer did not accept us within \(timeout)")
        }
    }

    /// The server checked our certificate and hello and said yes.
    func accepted(attempt: Int) {
        eventLoop.assertInEventLoop()
        guard attempt == generation, case .handshaking(let channel) = state else { return }
        state = .ready(channel)
        consecutiveFailures = 0
        everConnected = true
        context.counters.outboundEstablished()
        logger.info("connected to peer", metadata: ["address": "\(address)"])
        pump()
    }

    func failed(attempt: Int, reason: String) {
        eventLoop.assertInEventLoop()
        guard attempt == generation else { return }
        switch state {
        case .stopped, .waiting, .idle: return
        case .connecting, .handshaking, .ready: break
        }
        abandonCurrentConnection()
        consecutiveFailures += 1
        context.counters.connectionError()
        let delay = backoff(failures: consecutiveFailures)
        // The first failure is news; the rest of an outage is noise.
        let level: Logger.Level = consecutiveFailures == 1 ? .warning : .debug
        logger.log(
            level: level,
            "peer connection lost, reconnecting",
            metadata: [
                "reason": "\(reason)", "retry_in_ms": "\(delay.nanoseconds / 1_000_000)",
                "failures": "\(consecutiveFailures)",
            ]
        )
        state = .waiting(eventLoop.scheduleTask(in: delay) { self.connect() })
    }

    private func backoff(failures: Int) -> TimeAmount {
        let limits = context.limits
        let exponent = min(failures - 1, 30)
        let base = limits.reconnectBaseDelay.nanoseconds
        let cap = limits.reconnectMaximumDelay.nanoseconds
        let (scaled, overflow) = base.multipliedReportingOverflow(by: Int64(1) << exponent)
        let ceiling = overflow ? cap : min(cap, scaled)
        let half = ceiling / 2
        return .nanoseconds(half + Int64.random(in: 0...max(half, 0)))
    }

    /// Moves queued messages onto the connection while it is writable. Large messages go out
    /// a chunk at a time, so a snapshot never sits in NIO's buffers whole and the next chunk
    /// waits until the socket drains (back-pressure through `channelWritabilityChanged`).
    func pump() {
        eventLoop.assertInEventLoop()
        queue.withLockedValue { $0.pumpScheduled = false }
        guard case .ready(let channel) = state else { return }
        let chunkSize = context.limits.chunkSize
        var unflushed = 0
        while channel.isWritable {
            if current == nil {
                let next: (payload: [UInt8], onWritten: WriteCallback?)? = queue.withLockedValue { queue in
                    guard let message = queue.messages.popFirst() else { return nil }
                    queue.bytes -= message.payload.count
                    return message
                }
                guard let next else { break }
                current = (next.payload, 0, next.onWritten)
            }
            guard let (payload, offset, onWritten) = current else { break }
            let end = min(offset + chunkSize, payload.count)
            let isLast = end == payload.count
            var buffer = channel.allocator.buffer(capacity: end - offset)
            buffer.writeBytes(payload[offset..<end])
            var promise: EventLoopPromise<Void>? = nil
            if isLast, let onWritten {
                let p = channel.eventLoop.makePromise(of: Void.self)
                p.futureResult.whenComplete { onWritten((try? $0.get()) != nil) }
                promise = p
            }
            channel.write(Frame(kind: isLast ? .message : .fragment, payload: buffer), promise: promise)
            context.counters.frameSent(bytes: Frame.headerSize + end - offset, endsMessage: isLast)
            current = isLast ? nil : (payload, end, onWritten)
            unflushed += Frame.headerSize + end - offset
            // Flushing per chunk lets the TLS handler hand bytes to the socket, which is what
            // makes `isWritable` reflect how much is really waiting.
            if unflushed >= chunkSize {
                channel.flush()
                unflushed = 0
            }
        }
        if unflushed > 0 { channel.flush() }
    }
}

/// Client side of one outbound connection: check the server is the member we meant to reach,
/// say hello, wait for the server to accept, then let `OutboundPeer` write.
final class OutboundConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private let peer: OutboundPeer
    private let attempt: Int
    private let context: TransportContext
    private var helloSent = false
    private var accepted = false

    init(peer: OutboundPeer, attempt: Int, context: TransportContext) {
        self.peer = peer
        self.attempt = attempt
        self.context = context
    }

    func userInboundEventTriggered(context channelContext: ChannelHandlerContext, event: Any) {
        if let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent {
            verifyServerAndSayHello(channelContext)
        }
        channelContext.fireUserInboundEventTriggered(event)
    }

    private func verifyServerAndSayHello(_ channelContext: ChannelHandlerContext) {
        let identity: PeerIdentity
        do {
            identity = try PeerIdentity.ofPeer(on: channelContext)
        } catch {
            reject(channelContext, reason: "bad_certificate", detail: "server certificate unusable: \(error)")
            return
        }
        guard identity == .member(peer.peerID) else {
            reject(
                channelContext,
                reason: "wrong_identity",
                detail: "server certificate names \(identity), expected member \(peer.peerID)"
            )
            return
        }
        let hello = Hello(memberID: context.localMemberID, incarnation: context.localIncarnation, clusterName: context.clusterName)
        helloSent = true
        channelContext.writeAndFlush(
            wrapOutboundOut(Frame(kind: .hello, payload: hello.encode(allocator: channelContext.channel.allocator))),
            promise: nil
        )
    }

    func channelRead(context channelContext: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard helloSent, !accepted, frame.kind == .helloAccepted else {
            context.counters.malformedFrame()
            failConnection(channelContext, reason: "unexpected \(frame.kind) frame from server")
            return
        }
        accepted = true
        peer.accepted(attempt: attempt)
    }

    func channelWritabilityChanged(context channelContext: ChannelHandlerContext) {
        if channelContext.channel.isWritable { peer.pump() }
        channelContext.fireChannelWritabilityChanged()
    }

    func channelInactive(context channelContext: ChannelHandlerContext) {
        peer.failed(attempt: attempt, reason: "connection closed")
        channelContext.fireChannelInactive()
    }

    func errorCaught(context channelContext: ChannelHandlerContext, error: any Error) {
        if !accepted, error is NIOSSLError {
            context.counters.rejectedHandshake("tls")
        } else if error is FrameError {
            context.counters.malformedFrame()
        }
        failConnection(channelContext, reason: "\(error)")
    }

    private func reject(_ channelContext: ChannelHandlerContext, reason: String, detail: String) {
        context.counters.rejectedHandshake(reason)
        context.logger.error(
            "refusing peer connection",
            metadata: ["peer": "\(peer.peerID)", "reason": "\(reason)", "detail": "\(detail)"]
        )
        failConnection(channelContext, reason: detail)
    }

    private func failConnection(_ channelContext: ChannelHandlerContext, reason: String) {
        peer.failed(attempt: attempt, reason: reason)
        channelContext.close(promise: nil)
    }
}
