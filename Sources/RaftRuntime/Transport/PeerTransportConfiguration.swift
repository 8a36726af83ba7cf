import NIOCore

/// Where a peer listens. Parsed from `host:port` or `[v6]:port`.
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            port = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
            guard !host.contains(":") else { return nil }
        }
        guard !host.isEmpty, let number = Int(port), (1...65535).contains(number) else { return nil }
        self.init(host: String(host), port: number)
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Bounds on everything a peer (or a slow network) could make us hold in memory.
public struct PeerTransportLimits: Sendable {
    /// Largest frame payload accepted or sent. A longer length prefix closes the connection
    /// before any of the payload is buffered.
    public var maximumFramePayloadSize: Int = 1 << 20
    /// Messages longer than this are split into `fragment` frames of this size.
    /// Must not exceed `maximumFramePayloadSize`.
    public var chunkSize: Int = 1 << 20
    /// Largest message (after reassembly) accepted or sent: Raft snapshots.
    public var maximumMessageSize: Int = 1 << 30
    /// Per-peer send queue bound, in messages. When full, `send` drops the new message.
    public var sendQueueMessages: Int = 1024
    /// Per-peer send queue bound, in bytes. A single message above this bound is still taken
    /// when the queue is empty, so a snapshot up to `maximumMessageSize` can always be sent.
    public var sendQueueBytes: Int = 256 << 20
    /// Messages received but not yet taken from `inbound`; beyond this they are dropped.
    public var inboundBufferMessages: Int = 4096
    /// Concurrent inbound connections; more are closed at once.
    public var maximumInboundConnections: Int = 256
    /// Time from TCP accept/connect until the peer is authenticated (TLS plus hello).
    public var handshakeTimeout: TimeAmount = .seconds(10)
    public var connectTimeout: TimeAmount = .seconds(5)
    /// Reconnect backoff: min(max, base * 2^failures), then half of it randomised (jitter), so
    /// replicas restarted together do not reconnect in lock-step.
    public var reconnectBaseDelay: TimeAmount = .milliseconds(50)
    public var reconnectMaximumDelay: TimeAmount = .seconds(5)

    public init() {}

    func validate() throws {
        guard maximumFramePayloadSize >= 64, maximumFramePayloadSize < Int(UInt32.max) else {
            throw PeerTransportError.invalidLimits("maximumFramePayloadSize must be between 64 and 2^32-2")
        }
        guard chunkSize >= 1, chunkSize <= maximumFramePayloadSize else {
            throw PeerTransportError.invalidLimits("chunkSize must be between 1 and maximumFramePayloadSize")
        }
        guard maximumMessageSize >= 0, sendQueueMessages >= 1, sendQueueBytes >= 0, inboundBufferMessages >= 1,
            maximumInboundConnections >= 1
        else {
            throw PeerTransportError.invalidLimits("queue and connection bounds must be positive")
        }
        guard reconnectBaseDelay > .zero, reconnectMaximumDelay >= reconnectBaseDelay else {
            throw PeerTransportError.invalidLimits("reconnect delays must be positive and base <= maximum")
        }
    }
}

public struct PeerTransportConfiguration: Sendable {
    public var localMemberID: UInt64
    public var clusterName: String
    public var listenHost: String
    /// 0 picks a free port; read it back from ``PeerTransport/listeningPort``.
    public var listenPort: Int
    public var peers: [UInt64: PeerAddress]
    public var limits: PeerTransportLimits
    /// This node's data directory's incarnation, said in every hello (0: not said).
    public var localIncarnation: UInt64 = 0
    /// Refuses a peer whose incarnation changed; nil checks nothing (tests of the transport).
    public var incarnations: IncarnationBook? = nil

    public init(
        localMemberID: UInt64,
        clusterName: String,
        listenHost: String,
        listenPort: Int,
        peers: [UInt64: PeerAddress] = [:],
        limits: PeerTransportLimits = PeerTransportLimits()
    ) {
        self.localMemberID = localMemberID
        self.clusterName = clusterName
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.peers = peers
        self.limits = limits
    }
}

public enum PeerTransportError: Error, CustomStringConvertible {
    case invalidLimits(String)
    case invalidClusterName(String)
    case wrongLocalCertificate(PeerTLSCredentialsError)
    case alreadyStarted
    case shutDown

    public var description: String {
        switch self {
        case .invalidLimits(let why): return "invalid transport limits: \(why)"
        case .invalidClusterName(let name): return "invalid cluster name \"\(name)\""
        case .wrongLocalCertificate(let error): return error.description
        case .alreadyStarted: return "transport already started"
        case .shutDown: return "transport has been shut down"
        }
    }
}

/// What became of a message handed to ``PeerTransport/send(to:_:)``. Raft tolerates message
/// loss, so every `dropped…` outcome is safe to ignore; it is reported so the caller may treat
/// the peer as unreachable (as etcd's `ReportUnreachable`).
public enum SendResult: Equatable, Sendable {
    case enqueued
    case droppedQueueFull
    case droppedUnknownPeer
    case droppedTooLarge
    case droppedNotRunning
}

public struct InboundMessage: Equatable, Sendable {
    public var from: UInt64
    public var payload: [UInt8]

    public init(from: UInt64, payload: [UInt8]) {
        self.from = from
        self.payload = payload
    }
}
