import CoreMetrics
import NIOConcurrencyHelpers

/// A metrics backend that keeps only what the benchmark reports: how many durable writes
/// `RaftNode` made (and how long they took) and how many proposals each log append carried.
final class BenchMetrics: MetricsFactory {
    static let durableWriteLabel = "switchman_raft_fsync_seconds"
    static let batchLabel = "switchman_raft_proposal_batch_size"

    /// count and sum of what was recorded.
    final class Aggregate: RecorderHandler, TimerHandler, @unchecked Sendable {
        // Safe: every access goes through `box`.
        private let box = NIOLockedValueBox<(count: UInt64, sum: Double)>((0, 0))
        func record(_ value: Int64) { record(Double(value)) }
        func record(_ value: Double) { box.withLockedValue { $0.count += 1; $0.sum += value } }
        func recordNanoseconds(_ duration: Int64) { record(Double(duration) / 1e9) }
        var value: (count: UInt64, sum: Double) { box.withLockedValue { $0 } }
    }

    let durableWrites = Aggregate()
    let batches = Aggregate()

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        NOOPMetricsHandler.instance
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        label == Self.batchLabel ? batches : NOOPMetricsHandler.instance
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        label == Self.durableWriteLabel ? durableWrites : NOOPMetricsHandler.instance
    }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}
