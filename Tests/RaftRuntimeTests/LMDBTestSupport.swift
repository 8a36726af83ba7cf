import Foundation
import Logging
import Raft
import Testing

@testable import RaftRuntime

/// A fresh directory under the system temp dir, removed by `remove()`.
struct ScratchDirectory {
    let path: String

    init(_ label: String) throws {
        let base = FileManager.default.temporaryDirectory.path
        path = "\(base)/switchman-\(label)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

func openStore(_ dir: String, _ configuration: LMDBLogStore.Configuration = .init()) throws -> LMDBLogStore {
    try LMDBLogStore(directory: dir, configuration: configuration, logger: testLogger("lmdb-test"))
}

/// A seeded generator (SplitMix64) so every randomized test replays exactly from its seed.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Produces valid persist requests (ones a correct Raft core could emit) against a model of
/// the persisted state: appends, conflicting truncations, compactions, snapshot installs,
/// hard-state-only writes.
struct RequestGenerator {
    var rng: SeededRandom
    var model = PersistentState()

    init(seed: UInt64) { rng = SeededRandom(seed: seed) }

    private var snapIndex: UInt64 { model.snapshot?.metadata.index ?? 0 }
    private var lastIndex: UInt64 { model.entries.last?.index ?? snapIndex }
    private var lastTerm: UInt64 { model.entries.last?.term ?? model.snapshot?.metadata.term ?? 0 }
    private var maxTerm: UInt64 { max(lastTerm, model.hardState.term) }

    private mutating func entries(from first: UInt64, count: Int, term: UInt64) -> [Entry] {
        (0..<UInt64(count)).map { i in
            if Int.random(in: 0..<10, using: &rng) == 0 {
                let m = Membership(voters: [1, 2, UInt64.random(in: 3...9, using: &rng)], learners: [11])
                return Entry(term: term, index: first + i, kind: .membership, data: RaftCodec.encode(m))
            }
            let n = Int.random(in: 0...(Int.random(in: 0..<20, using: &rng) == 0 ? 5000 : 300), using: &rng)
            return Entry(term: term, index: first + i, data: (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) })
        }
    }

    private mutating func hardState(commitAtMost last: UInt64, term: UInt64) -> HardState {
        let low = max(model.hardState.commit, snapIndex)
        let commit = low >= last ? low : UInt64.random(in: low...last, using: &rng)
        return HardState(term: term, vote: UInt64.random(in: 0...3, using: &rng), commit: commit)
    }

    mutating func next() -> PersistRequest {
        var r = PersistRequest()
        switch Int.random(in: 0..<100, using: &rng) {
        case 0..<50:  // append
            let term = Int.random(in: 0..<8, using: &rng) == 0 ? maxTerm + 1 : max(maxTerm, 1)
            r.entries = entries(from: lastIndex + 1, count: Int.random(in: 1...12, using: &rng), term: term)
            if Bool.random(using: &rng) { r.hardState = hardState(commitAtMost: lastIndex + UInt64(r.entries.count), term: term) }
        case 50..<65:  // conflict: truncate the uncommitted tail and append in a newer term
            let low = max(model.hardState.commit, snapIndex) + 1
            let from = low > lastIndex + 1 ? lastIndex + 1 : UInt64.random(in: low...(lastIndex + 1), using: &rng)
            let term = maxTerm + 1
            r.truncateFrom = from
            r.entries = entries(from: from, count: Int.random(in: 0...6, using: &rng), term: term)
            r.hardState = HardState(term: term, vote: 2, commit: model.hardState.commit)
        case 65..<78:  // compaction through a committed index
            let low = snapIndex + 1
            let high = model.hardState.commit
            guard low <= high else { return r }
            let i = UInt64.random(in: low...high, using: &rng)
            let t = model.entries.first { $0.index == i }?.term ?? lastTerm
            let m = Membership(voters: [1, 2, 3])
            r.snapshot = Snapshot(
                metadata: SnapshotMetadata(index: i, term: t, membership: m),
                data: (0..<Int.random(in: 0...3000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            r.compactThrough = i
            if Bool.random(using: &rng) {
                r.entries = entries(from: lastIndex + 1, count: Int.random(in: 1...3, using: &rng), term: max(maxTerm, 1))
            }
        case 78..<86:  // snapshot install from a leader, possibly far ahead of our log
            let i = max(model.hardState.commit, snapIndex) + UInt64.random(in: 1...40, using: &rng)
            let t = maxTerm + 1
            r.snapshot = Snapshot(
                metadata: SnapshotMetadata(index: i, term: t, membership: Membership(voters: [1, 2, 3], learners: [4])),
                data: Array("state at \(i)".utf8))
            r.compactThrough = i
            r.truncateFrom = i + 1
            r.hardState = HardState(term: t, vote: 0, commit: i)
        case 86..<96:  // vote or commit only
            r.hardState = hardState(commitAtMost: lastIndex, term: maxTerm + UInt64.random(in: 0...1, using: &rng))
        default:  // nothing at all
            break
        }
        model.apply(r)
        return r
    }
}

/// A short account of the first difference between two states (nil when equal), so that a
/// failing comparison does not dump kilobytes of entry bytes.
func firstDifference(_ actual: PersistentState, _ expected: PersistentState) -> String? {
    if actual.hardState != expected.hardState { return "hard state \(actual.hardState) != \(expected.hardState)" }
    if actual.snapshot?.metadata != expected.snapshot?.metadata {
        return "snapshot \(String(describing: actual.snapshot?.metadata)) != \(String(describing: expected.snapshot?.metadata))"
    }
    if actual.snapshot?.data != expected.snapshot?.data { return "snapshot data differs" }
    for (a, e) in zip(actual.entries, expected.entries) where a != e {
        return "entry \(e.index): got index \(a.index) term \(a.term) kind \(a.kind) \(a.data.count) bytes, "
            + "expected term \(e.term) kind \(e.kind) \(e.data.count) bytes"
    }
    if actual.entries.count != expected.entries.count {
        return "\(actual.entries.count) entries (last \(actual.entries.last?.index ?? 0)), expected "
            + "\(expected.entries.count) (last \(expected.entries.last?.index ?? 0))"
    }
    return nil
}
