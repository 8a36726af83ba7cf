import BenchSupport
import NIOConcurrencyHelpers
import Raft
import RaftRuntime

/// Counts applied puts and keeps the last one: enough to make applying cost something real
/// (decode the entry) without measuring a key-value store.
final class BenchStateMachine: RaftStateMachine {
    private struct State {
        var applied: UInt64 = 0
        var lastKey: [UInt8] = []
        var lastValue: [UInt8] = []
    }
    private let state = NIOLockedValueBox(State())

    func apply(_ entry: Entry) {
        guard entry.kind == .normal, !entry.data.isEmpty, let (k, v) = try? BenchEntry.decode(entry.data) else { return }
        state.withLockedValue {
            $0.applied += 1
            $0.lastKey = k
            $0.lastValue = v
        }
    }

    func snapshot() -> [UInt8] {
        state.withLockedValue { s in
            var out = BenchEntry.encode(key: s.lastKey, value: s.lastValue)
            withUnsafeBytes(of: s.applied.bigEndian) { out += $0 }
            return out
        }
    }

    func restore(from snapshot: Snapshot) throws {
        let d = snapshot.data
        guard d.count >= 8 else {
            state.withLockedValue { $0 = State() }
            return
        }
        let (k, v) = try BenchEntry.decode(Array(d[..<(d.count - 8)]))
        let applied = d[(d.count - 8)...].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        state.withLockedValue { $0 = State(applied: applied, lastKey: k, lastValue: v) }
    }
}
