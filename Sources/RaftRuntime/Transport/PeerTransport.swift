import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// Carries opaque messages between cluster members over mutual TLS.
///
/// Each member dials one outbound connection to every peer and only ever *writes* on it; it
/// only ever *reads* on the connections peers dialled to it (as etcd's rafthttp streams). So
/// two members have two connections between them, one per direction, and there is no race
/// over which of them survives.
///
/// `send` never blocks: it appends to the peer's bounded queue or drops the message and says
/// so. Delivery is best-effort and in order per connection; Raft retransmits what is lost.
public final class PeerTransport: Sendable {
    public let localMemberID: UInt64
    public let clusterName: String
    /// Everything peers send us, in arrival order per peer. Finishes on `shutdown()`.
    public let inbound: AsyncStream<InboundMessage>

    private let context: TransportContext
    private let group: any EventLoopGroup
    private let listenHost: String
    private let listenPort: Int
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    private enum Lifecycle {
        case created
        case starting
        case running(any Channel)
        case stopped
    }

    private struct State {
        var lifecycle: Lifecycle = .created
        var addresses: [UInt64: PeerAddress] = [:]
        var peers: [UInt64: OutboundPeer] = [:]
        var inboundChannels: [ObjectIdentifier: any Channel] = [:]
        var isRunning: Bool {
            if case .running = lifecycle { return true }
            return false
        }
    }

    public init(
        configuration: PeerTransportConfiguration,
        credentials: PeerTLSCredentials,
        logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws {
        try configuration.limits.validate()
        let nameBytes = configuration.clusterName.utf8.count
        guard nameBytes > 0, nameBytes <= Hello.maximumClusterNameBytes else {
            throw PeerTransportError.invalidClusterName(configuration.clusterName)
        }
        let identity = try credentials.localIdentity()
        guard identity == .member(configuration.localMemberID) else {
            throw PeerTransportError.wrongLocalCertificate(
                .identityMismatch(expected: configuration.localMemberID, certificate: identity)
            )
        }

        var logger = logger
        logger[metadataKey: "member"] = "\(configuration.localMemberID)"
        let (stream, continuation) = AsyncStream.makeStream(
            of: InboundMessage.self,
            bufferingPolicy: .bufferingOldest(configuration.limits.inboundBufferMessages)
        )
        self.localMemberID = configuration.localMemberID
        self.clusterName = configuration.clusterName
        self.inbound = stream
        self.group = eventLoopGroup
        self.listenHost = configuration.listenHost
        self.listenPort = configuration.listenPort
        self.logger = logger
        self.context = TransportContext(
            localMemberID: configuration.localMemberID,
            clusterName: configuration.clusterName,
            limits: configuration.limits,
            logger: logger,
            counters: TransportCounters(localMemberID: configuration.localMemberID),
            serverTLS: try credentials.makeServerContext(),
            clientTLS: try credentials.makeClientContext(),
            inbound: continuation,
            localIncarnation: configuration.localIncarnation,
            incarnations: configuration.incarnations
        )
        self.state = NIOLockedValueBox(State())
        setPeers(configuration.peers)
    }

    public var statistics: PeerTransportStatistics { context.counters.snapshot }

    /// The bound address once started (useful with port 0).
    public var listeningAddress: SocketAddress? {
        state.withLockedValue { state in
            if case .running(let channel) = state.lifecycle { return channel.localAddress }
            return nil
        }
    }

    public var listeningPort: Int? { listeningAddress?.port }

    /// Binds the listener and starts dialling peers.
    public func start() async throws {
        try state.withLockedValue { state in
            switch state.lifecycle {
            case .created: state.lifecycle = .starting
            case .starting, .running: throw PeerTransportError.alreadyStarted
            case .stopped: throw PeerTransportError.shutDown
            }
        }
        let context = self.context
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    guard self.admit(channel) else {
                        throw ChannelError.ioOnClosedChannel
                    }
                    try channel.pipeline.syncOperations.addHandlers([
                        NIOSSLServerHandler(context: context.serverTLS),
                        ByteToMessageHandler(FrameDecoder(maximumPayloadSize: context.limits.maximumFramePayloadSize)),
                        MessageToByteHandler(FrameEncoder()),
                        InboundConnectionHandler(context: context),
                    ])
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: listenHost, port: listenPort).get()
        } catch {
            state.withLockedValue { $0.lifecycle = .stopped }
            context.inbound.finish()
            throw error
        }
        let peers: [OutboundPeer]? = state.withLockedValue { state in
            guard case .starting = state.lifecycle else { return nil }
            state.lifecycle = .running(channel)
            return Array(state.peers.values)
        }
        guard let peers else {
            // shutdown() ran while we were binding.
            try? await channel.close()
            throw PeerTransportError.shutDown
        }
        logger.info("peer transport listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        for peer in peers { peer.start() }
    }

    /// Tracks inbound connections so shutdown can close them, and caps how many there are.
    private func admit(_ channel: any Channel) -> Bool {
        let key = ObjectIdentifier(channel)
        let admitted = state.withLockedValue { state in
            guard state.isRunning, state.inboundChannels.count < context.limits.maximumInboundConnections else {
                return false
            }
            state.inboundChannels[key] = channel
            return true
        }
        guard admitted else {
            context.counters.rejectedHandshake("too_many_connections")
            logger.warning("refusing inbound connection: limit reached or shutting down")
            return false
        }
        channel.closeFuture.whenComplete { [state] _ in
            state.withLockedValue { _ = $0.inboundChannels.removeValue(forKey: key) }
        }
        return true
    }

    /// Replaces the peer set (membership change). New peers are dialled, removed peers are
    /// disconnected and their queued messages dropped, moved peers are re-dialled.
    /// The local member id is ignored if present.
    public func setPeers(_ addresses: [UInt64: PeerAddress]) {
        updatePeers { $0 = addresses }
    }

    public func addPeer(_ id: UInt64, address: PeerAddress) {
        updatePeers { $0[id] = address }
    }

    public func removePeer(_ id: UInt64) {
        updatePeers { $0[id] = nil }
    }

    /// Applies `change` to the address book and reconciles connections with it, all under one
    /// lock acquisition so concurrent membership changes cannot lose each other's updates.
    private func updatePeers(_ change: (inout [UInt64: PeerAddress]) -> Void) {
        var toStart: [OutboundPeer] = []
        var toStop: [OutboundPeer] = []
        var toMove: [(OutboundPeer, PeerAddress)] = []
        state.withLockedValue { state in
            if case .stopped = state.lifecycle { return }
            change(&state.addresses)
            state.addresses[localMemberID] = nil
            for (id, peer) in state.peers where state.addresses[id] == nil {
                toStop.append(peer)
                state.peers[id] = nil
            }
            for (id, address) in state.addresses {
                if let existing = state.peers[id] {
                    toMove.append((existing, address))
                } else {
                    let peer = OutboundPeer(peerID: id, address: address, eventLoop: group.next(), context: context)
                    state.peers[id] = peer
                    if state.isRunning { toStart.append(peer) }
                }
            }
        }
        for peer in toStop { _ = peer.stop() }
        for (peer, address) in toMove { peer.update(address: address) }
        for peer in toStart { peer.start() }
    }

    public func membersRemoved(_ ids: Set<UInt64>) { context.incarnations?.forget(ids) }

    public var peerIDs: Set<UInt64> {
        state.withLockedValue { Set($0.peers.keys) }
    }

    /// Queues `payload` for `peer` and returns at once. See ``SendResult``. When enqueued,
    /// `onWritten` is later told whether the whole message was written to the connection
    /// (handed to TLS and the socket) or dropped first (connection lost mid-message, stopped).
    @discardableResult
    public func send(to peer: UInt64, _ payload: [UInt8], onWritten: (@Sendable (Bool) -> Void)? = nil) -> SendResult {
        guard payload.count <= context.limits.maximumMessageSize else {
            context.counters.dropped("too_large")
            return .droppedTooLarge
        }
        let target: OutboundPeer?? = state.withLockedValue { state in
            if case .stopped = state.lifecycle { return .none }
            return .some(state.peers[peer])
        }
        guard let known = target else { return .droppedNotRunning }
        guard let outbound = known else {
            context.counters.dropped("unknown_peer")
            return .droppedUnknownPeer
        }
        return outbound.enqueue(payload, onWritten: onWritten)
    }

    /// Messages waiting for `peer` (not counting one being written).
    public func queuedMessages(for peer: UInt64) -> Int {
        state.withLockedValue { $0.peers[peer] }?.queuedMessages ?? 0
    }

    /// Closes the listener and every connection, drops queued messages, finishes `inbound`.
    /// Safe to call more than once.
    public func shutdown() async {
        let (server, peers, inboundChannels): ((any Channel)?, [OutboundPeer], [any Channel]) = state.withLockedValue {
            state in
            let server: (any Channel)?
            if case .running(let channel) = state.lifecycle { server = channel } else { server = nil }
            state.lifecycle = .stopped
            let peers = Array(state.peers.values)
            state.peers = [:]
            let channels = Array(state.inboundChannels.values)
            state.inboundChannels = [:]
            return (server, peers, channels)
        }
        if let server { try? await server.close() }
        for peer in peers { try? await peer.stop().get() }
        for channel in inboundChannels {
            // Reset rather than a graceful close: half-closed sockets of this incarnation would
            // otherwise hold our port for up to a minute and keep a restart from binding it.
            if let socket = channel as? any SocketOptionProvider {
                try? await socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
            }
            try? await channel.close()
        }
        context.inbound.finish()
        logger.info("peer transport stopped")
    }
}

/// Runs inside the process's `ServiceGroup`: listens until graceful shutdown (SIGTERM), then
/// closes every connection.
extension PeerTransport: Service {
    public func run() async throws {
        try await start()
        // Cancellation and graceful shutdown both end the wait; either way we close down.
        try? await gracefulShutdown()
        await shutdown()
    }
}
