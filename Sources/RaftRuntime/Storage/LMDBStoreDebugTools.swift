import Raft

/// The crash test's writer and the storage benchmark, kept in the library so that the
/// `switchman debug` subcommands only parse arguments and print, and so the tests can compute
/// the very same expected bytes.
public enum LMDBStoreDebugTools {
    /// The payload of entry `index` in the crash test: 200–2000 bytes derived from the index
    /// alone, so a reader can check every byte of every entry without a side channel.
    public static func crashPayload(index: UInt64) -> [UInt8] {
        var rng = Mix64(seed: index)
        let count = 200 + Int(rng.next() % 1801)
        var bytes = [UInt8]()
        bytes.reserveCapacity(count + 8)
        while bytes.count < count {
            withUnsafeBytes(of: rng.next().littleEndian) { bytes.append(contentsOf: $0) }
        }
        bytes.removeLast(bytes.count - count)
        return bytes
    }

    /// The term of entry `index` in the crash test (terms rise now and then, as in a real log).
    public static func crashTerm(index: UInt64) -> UInt64 { 1 + index / 1000 }

    /// Appends batches of 1–64 crash-test entries forever, one `persist` (one fsync) each,
    /// calling `acked` with the last index after each batch is durable. Starts after whatever
    /// `store` already holds. Returns only by throwing (a failed write stops the writer).
    public static func runCrashWriter(store: LMDBLogStore, acked: (UInt64) -> Void) throws -> Never {
        let state = try store.load()
        var last = state.entries.last?.index ?? state.snapshot?.metadata.index ?? 0
        var rng = Mix64(seed: last &+ 0x5eed)
        while true {
            let count = 1 + rng.next() % 64
            let entries = (last + 1...last + count).map {
                Entry(term: crashTerm(index: $0), index: $0, data: crashPayload(index: $0))
            }
            last += count
            try store.persist(
                PersistRequest(entries: entries, hardState: HardState(term: crashTerm(index: last), vote: 1, commit: last)))
            acked(last)
        }
    }

    public struct BenchmarkResult: Sendable {
        public var entriesPerBatch: Int
        public var entryBytes: Int
        public var batches: Int
        public var seconds: Double
        public var batchesPerSecond: Double { Double(batches) / seconds }
        /// One commit per batch; on Linux each commit is one fdatasync of the data pages and
        /// one O_DSYNC write of the meta page.
        public var fsyncsPerSecond: Double { batchesPerSecond }
        public var entriesPerSecond: Double { batchesPerSecond * Double(entriesPerBatch) }
    }

    /// Times `batches` persists of `entriesPerBatch` entries of `entryBytes` bytes, each with
    /// a hard state, appended after what `store` holds.
    public static func benchmark(
        store: LMDBLogStore, entriesPerBatch: Int, entryBytes: Int, batches: Int
    ) throws -> BenchmarkResult {
        let state = try store.load()
        var last = state.entries.last?.index ?? state.snapshot?.metadata.index ?? 0
        let data = [UInt8](repeating: 0xab, count: entryBytes)
        let clock = ContinuousClock()
        let elapsed = try clock.measure {
            for _ in 0..<batches {
                let entries = (0..<UInt64(entriesPerBatch)).map { Entry(term: 1, index: last + 1 + $0, data: data) }
                last += UInt64(entriesPerBatch)
                try store.persist(PersistRequest(entries: entries, hardState: HardState(term: 1, vote: 1, commit: last)))
            }
        }
        let c = elapsed.components
        return BenchmarkResult(
            entriesPerBatch: entriesPerBatch, entryBytes: entryBytes, batches: batches,
            seconds: Double(c.seconds) + Double(c.attoseconds) / 1e18)
    }
}

/// SplitMix64: a tiny deterministic generator, enough to spread bytes.
struct Mix64 {
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
