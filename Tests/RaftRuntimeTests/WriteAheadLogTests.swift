import Foundation
import Raft
import Testing

@testable import RaftRuntime

/// A disk that loses, at a power cut, whatever was written but not yet synced.
final class PowerLossDisk: @unchecked Sendable {
    // Safe: tests use one disk from one task.
    var durable: [UInt8] = []
}

/// The write-ahead log's file on a `PowerLossDisk`. With `honoursSync: false` it behaves as
/// if the store never called fdatasync, which is what the power-cut test must notice.
final class PowerLossFile: WALFile {
    private let disk: PowerLossDisk
    private let honoursSync: Bool
    private var volatile: [UInt8]

    init(_ disk: PowerLossDisk, honoursSync: Bool = true) {
        self.disk = disk
        self.honoursSync = honoursSync
        volatile = disk.durable
    }

    func read(at offset: Int, count: Int) throws -> [UInt8] {
        guard offset < volatile.count else { return [] }
        return Array(volatile[offset..<min(volatile.count, offset + count)])
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        if volatile.count < offset + bytes.count { volatile += [UInt8](repeating: 0, count: offset + bytes.count - volatile.count) }
        volatile.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
    }

    func sync() throws { if honoursSync { disk.durable = volatile } }
    func size() throws -> Int { volatile.count }
    func close() {}
}

@Suite("LMDB log store: the write-ahead log")
struct WriteAheadLogTests {
    private func open(_ dir: String, _ disk: PowerLossDisk, honoursSync: Bool = true, walBytes: Int = 1 << 20) throws -> LMDBLogStore {
        try LMDBLogStore(
            directory: dir, configuration: .init(walBytes: walBytes), logger: testLogger("wal-test")
        ) { _ in PowerLossFile(disk, honoursSync: honoursSync) }
    }

    /// The writes acknowledged before a power cut are there after it, though none of them had
    /// been folded into LMDB: they were only in the log, and only its fsync kept them. A store
    /// that skipped the fsync (the file ignores it) loses them, and the test sees that.
    @Test(arguments: [true, false])
    func everyAcknowledgedWriteSurvivesAPowerCut(honoursSync: Bool) throws {
        let dir = try ScratchDirectory("wal-power")
        defer { dir.remove() }
        let disk = PowerLossDisk()
        let store = try open(dir.path, disk, honoursSync: honoursSync)
        store.pauseFoldsForTesting()
        let reference = InMemoryRaftStorage()
        for i in 1...50 as ClosedRange<UInt64> {
            let r = PersistRequest(
                entries: [Entry(term: 1, index: i, data: LMDBStoreDebugTools.crashPayload(index: i))],
                hardState: HardState(term: 1, vote: 1, commit: i - 1))
            try store.persist(r)
            try reference.persist(r)
        }
        store.abandonForTesting()

        let reopened = try open(dir.path, disk)
        defer { reopened.close() }
        let loaded = try reopened.load()
        if honoursSync {
            #expect(firstDifference(loaded, try reference.load()) == nil)
        } else {
            #expect(loaded.entries.isEmpty, "without the fsync the power cut took every write")
        }
    }

    /// Random requests (appends, truncations, compactions and snapshot installs) through a
    /// log small enough to start over many times, with power cuts at random points (folds
    /// running): after each, exactly the acknowledged state. Leftovers of earlier passes
    /// over the file and records torn by the cut are not replayed.
    @Test(arguments: [UInt64(1), 2, 3])
    func powerCutsAnywhereLoseNothingAcknowledged(seed: UInt64) throws {
        let dir = try ScratchDirectory("wal-cuts")
        defer { dir.remove() }
        let disk = PowerLossDisk()
        var gen = RequestGenerator(seed: seed)
        var rng = SeededRandom(seed: seed &* 31)
        var acknowledged = PersistentState()
        var persisted = 0
        for cut in 0..<12 {
            let store = try open(dir.path, disk, walBytes: 8 << 10)
            let loaded = try store.load()
            if let d = firstDifference(loaded, acknowledged) {
                Issue.record("seed \(seed), after power cut \(cut): \(d)")
                store.close()
                return
            }
            for _ in 0..<Int.random(in: 20...120, using: &rng) {
                let r = gen.next()
                try store.persist(r)
                acknowledged.apply(r)
                persisted += 1
            }
            if Bool.random(using: &rng) {
                // A write torn by the cut, right after the last record: never acknowledged,
                // never replayed (a valid header with a body that does not match it).
                let valid = WALRecord.scan(disk.durable)
                let tail = valid.reduce(0) { $0 + WALRecord.encode(sequence: $1.sequence, batch: $1.batch).count }
                var torn = WALRecord.encode(sequence: (valid.last?.sequence ?? 0) + 1, batch: [PersistRequest(hardState: HardState(term: 99, vote: 9, commit: 0))])
                torn[torn.count - 1] ^= 0x5A
                if tail + torn.count > disk.durable.count { disk.durable += [UInt8](repeating: 0, count: tail + torn.count - disk.durable.count) }
                disk.durable.replaceSubrange(tail..<(tail + torn.count), with: torn)
            }
            store.abandonForTesting()
        }
        #expect(persisted > 500)
    }

    /// Two processes on one data directory would interleave their records: the second is
    /// refused, naming the likely cause.
    @Test func aSecondOpenOfTheSameLogIsRefused() throws {
        let dir = try ScratchDirectory("wal-lock")
        defer { dir.remove() }
        let store = try openStore(dir.path)
        defer { store.close() }
        #expect(throws: WALIOError.self) { _ = try POSIXWALFile(path: dir.path + "/raft.wal") }
        do {
            _ = try POSIXWALFile(path: dir.path + "/raft.wal")
        } catch {
            #expect("\(error)".contains("another switchman process"))
        }
    }

    @Test func recordsRoundTripAndAStaleOrTornRecordEndsTheScan() {
        let a = [PersistRequest(truncateFrom: 3, entries: [Entry(term: 2, index: 3, data: [1, 2])], hardState: HardState(term: 2, vote: 1, commit: 2))]
        let b = [PersistRequest(compactThrough: 2), PersistRequest(hardState: HardState(term: 3, vote: 0, commit: 3))]
        let r1 = WALRecord.encode(sequence: 7, batch: a)
        let r2 = WALRecord.encode(sequence: 8, batch: b)
        let stale = WALRecord.encode(sequence: 3, batch: b)
        let scanned = WALRecord.scan(r1 + r2 + stale)
        #expect(scanned.map(\.sequence) == [7, 8])
        #expect(scanned.first?.batch == a && scanned.last?.batch == b)
        var torn = r1 + r2
        torn[torn.count - 1] ^= 0xFF
        #expect(WALRecord.scan(torn).map(\.sequence) == [7])
        #expect(WALRecord.scan([UInt8](repeating: 0, count: 64)).isEmpty)
    }
}
