import Metrics
import NIOConcurrencyHelpers

/// A snapshot of the transport's counters, also exported through swift-metrics. Tests and
/// `switchman status` read this; dashboards read the metrics.
public struct PeerTransportStatistics: Equatable, Sendable {
    public var messagesSent = 0
    public var framesSent = 0
    public var bytesSent = 0
    public var messagesReceived = 0
    public var framesReceived = 0
    public var bytesReceived = 0
    /// `send` refused because the peer's queue was full.
    public var droppedQueueFull = 0
    /// Dropped because the connection died while the message was being written.
    public var droppedInFlight = 0
    /// Dropped because the consumer of `inbound` fell behind.
    public var droppedInbound = 0
    public var connectionErrors = 0
    /// Dial attempts after the first one to a peer (each retry counts).
    public var reconnects = 0
    public var outboundConnectionsEstablished = 0
    public var inboundConnectionsAccepted = 0
    /// Inbound or outbound peers refused: TLS failure, wrong identity, bad hello, timeout.
    public var rejectedHandshakes = 0
    public var malformedFrames = 0

    public init() {}
}

final class TransportCounters: Sendable {
    private let stats = NIOLockedValueBox(PeerTransportStatistics())
    private let dimensions: [(String, String)]

    private let messagesSentMetric: Counter
    private let framesSentMetric: Counter
    private let bytesSentMetric: Counter
    private let messagesReceivedMetric: Counter
    private let framesReceivedMetric: Counter
    private let bytesReceivedMetric: Counter
    private let connectionErrorsMetric: Counter
    private let reconnectsMetric: Counter

    init(localMemberID: UInt64) {
        let dimensions = [("member", String(localMemberID))]
        self.dimensions = dimensions
        messagesSentMetric = Counter(label: "switchman_transport_messages_sent_total", dimensions: dimensions)
        framesSentMetric = Counter(label: "switchman_transport_frames_sent_total", dimensions: dimensions)
        bytesSentMetric = Counter(label: "switchman_transport_bytes_sent_total", dimensions: dimensions)
        messagesReceivedMetric = Counter(label: "switchman_transport_messages_received_total", dimensions: dimensions)
        framesReceivedMetric = Counter(label: "switchman_transport_frames_received_total", dimensions: dimensions)
        bytesReceivedMetric = Counter(label: "switchman_transport_bytes_received_total", dimensions: dimensions)
        connectionErrorsMetric = Counter(label: "switchman_transport_connection_errors_total", dimensions: dimensions)
        reconnectsMetric = Counter(label: "switchman_transport_reconnects_total", dimensions: dimensions)
    }

    var snapshot: PeerTransportStatistics { stats.withLockedValue { $0 } }

    func frameSent(bytes: Int, endsMessage: Bool) {
        stats.withLockedValue {
            $0.framesSent += 1
            $0.bytesSent += bytes
            if endsMessage { $0.messagesSent += 1 }
        }
        framesSentMetric.increment()
        bytesSentMetric.increment(by: Int64(bytes))
        if endsMessage { messagesSentMetric.increment() }
    }

    func frameReceived(bytes: Int) {
        stats.withLockedValue {
            $0.framesReceived += 1
            $0.bytesReceived += bytes
        }
        framesReceivedMetric.increment()
        bytesReceivedMetric.increment(by: Int64(bytes))
    }

    func messageReceived() {
        stats.withLockedValue { $0.messagesReceived += 1 }
        messagesReceivedMetric.increment()
    }

    /// Drops are rare, so their labelled counters are looked up on demand.
    func dropped(_ reason: String) {
        stats.withLockedValue {
            switch reason {
            case "queue_full": $0.droppedQueueFull += 1
            case "in_flight": $0.droppedInFlight += 1
            case "inbound_full": $0.droppedInbound += 1
            default: break
            }
        }
        Counter(label: "switchman_transport_messages_dropped_total", dimensions: dimensions + [("reason", reason)])
            .increment()
    }

    func connectionError() {
        stats.withLockedValue { $0.connectionErrors += 1 }
        connectionErrorsMetric.increment()
    }

    func reconnect() {
        stats.withLockedValue { $0.reconnects += 1 }
        reconnectsMetric.increment()
    }

    func outboundEstablished() {
        stats.withLockedValue { $0.outboundConnectionsEstablished += 1 }
    }

    func inboundAccepted() {
        stats.withLockedValue { $0.inboundConnectionsAccepted += 1 }
    }

    func rejectedHandshake(_ reason: String) {
        stats.withLockedValue { $0.rejectedHandshakes += 1 }
        Counter(label: "switchman_transport_rejected_handshakes_total", dimensions: dimensions + [("reason", reason)])
            .increment()
    }

    func malformedFrame() {
        stats.withLockedValue { $0.malformedFrames += 1 }
        Counter(label: "switchman_transport_malformed_frames_total", dimensions: dimensions).increment()
    }
}
