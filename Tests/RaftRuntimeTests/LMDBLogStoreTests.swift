import CLMDB
import Foundation
import Raft
import Testing

@testable import RaftRuntime

@Suite("LMDB log store")
struct LMDBLogStoreTests {
    private func entries(_ range: ClosedRange<UInt64>, term: UInt64 = 1) -> [Entry] {
        range.map { Entry(term: term, index: $0, data: Array("entry \($0)".utf8)) }
    }

    /// Persists `requests` into a fresh store and into the reference, then checks both after
    /// a reopen.
    private func roundTrip(_ requests: [PersistRequest], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dir = try ScratchDirectory("lmdb-rt")
        defer { dir.remove() }
        let reference = InMemoryRaftStorage()
        do {
            let store = try openStore(dir.path)
            for r in requests {
                try store.persist(r)
                try reference.persist(r)
                #expect(firstDifference(try store.load(), try reference.load()) == nil, sourceLocation: sourceLocation)
            }
            store.close()
        }
        let reopened = try openStore(dir.path)
        defer { reopened.close() }
        #expect(firstDifference(try reopened.load(), try reference.load()) == nil, sourceLocation: sourceLocation)
    }

    @Test func emptyStoreLoadsEmptyState() throws {
        let dir = try ScratchDirectory("lmdb-empty")
        defer { dir.remove() }
        let store = try openStore(dir.path + "/nested/dir")
        defer { store.close() }
        #expect(try store.load() == PersistentState())
    }

    @Test func entriesAndHardStateRoundTrip() throws {
        let m = Membership(voters: [1, 2, 3], learners: [4])
        var es = entries(1...300)
        es[7] = Entry(term: 1, index: 8, kind: .membership, data: RaftCodec.encode(m))
        es[9].data = []
        es[10].data = [UInt8](repeating: 7, count: 100_000)  // overflow pages
        try roundTrip([
            PersistRequest(entries: Array(es[0..<100]), hardState: HardState(term: 1, vote: 2, commit: 50)),
            PersistRequest(entries: Array(es[100...])),
            PersistRequest(hardState: HardState(term: 9, vote: 0, commit: 300)),
        ])
    }

    @Test func truncationReplacesTheTail() throws {
        try roundTrip([
            PersistRequest(entries: entries(1...20), hardState: HardState(term: 1, vote: 1, commit: 5)),
            PersistRequest(truncateFrom: 11, entries: entries(11...13, term: 2), hardState: HardState(term: 2, vote: 3, commit: 5)),
            PersistRequest(truncateFrom: 13, entries: [], hardState: HardState(term: 3, vote: 0, commit: 5)),
            PersistRequest(truncateFrom: 6),
        ])
    }

    @Test func compactionKeepsSnapshotAndTail() throws {
        let snap = Snapshot(metadata: SnapshotMetadata(index: 10, term: 1, membership: Membership(voters: [1])), data: [1, 2, 3])
        let snap2 = Snapshot(metadata: SnapshotMetadata(index: 30, term: 1, membership: Membership(voters: [1, 2])), data: [])
        try roundTrip([
            PersistRequest(entries: entries(1...40), hardState: HardState(term: 1, vote: 1, commit: 35)),
            PersistRequest(snapshot: snap, compactThrough: 10),
            PersistRequest(snapshot: snap2, compactThrough: 30, entries: entries(41...42)),
            // Compacting the whole log.
            PersistRequest(
                snapshot: Snapshot(metadata: SnapshotMetadata(index: 42, term: 1, membership: Membership(voters: [1])), data: [9]),
                compactThrough: 42, hardState: HardState(term: 1, vote: 1, commit: 42)),
            PersistRequest(entries: entries(43...44)),
        ])
    }

    @Test func snapshotInstallReplacesTheWholeLog() throws {
        let ahead = Snapshot(metadata: SnapshotMetadata(index: 100, term: 4, membership: Membership(voters: [1, 2, 3])), data: Array(repeating: 5, count: 10_000))
        let inside = Snapshot(metadata: SnapshotMetadata(index: 105, term: 5, membership: Membership(voters: [1, 2, 3])), data: [42])
        try roundTrip([
            PersistRequest(entries: entries(1...20), hardState: HardState(term: 1, vote: 1, commit: 10)),
            // Leader's snapshot far beyond our log: everything goes.
            PersistRequest(snapshot: ahead, compactThrough: 100, truncateFrom: 101, hardState: HardState(term: 4, vote: 0, commit: 100)),
            PersistRequest(entries: entries(101...110, term: 4), hardState: HardState(term: 4, vote: 0, commit: 103)),
            // A snapshot inside our log whose term disagrees: the tail goes too.
            PersistRequest(snapshot: inside, compactThrough: 105, truncateFrom: 106, hardState: HardState(term: 5, vote: 0, commit: 105)),
        ])
    }

    /// Many seeded random requests, checked against the in-memory reference, reopening the
    /// store at random points.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func randomizedAgainstReference(seed: UInt64) throws {
        let dir = try ScratchDirectory("lmdb-random-\(seed)")
        defer { dir.remove() }
        var gen = RequestGenerator(seed: seed)
        var rng = SeededRandom(seed: seed &* 7919)
        let reference = InMemoryRaftStorage()
        var store = try openStore(dir.path, .init(initialMapSize: 256 << 10))
        var reopens = 0
        for step in 0..<400 {
            let r = gen.next()
            try store.persist(r)
            try reference.persist(r)
            if Int.random(in: 0..<25, using: &rng) == 0 {
                store.close()
                store = try openStore(dir.path, .init(initialMapSize: 256 << 10))
                reopens += 1
            }
            if step % 10 == 0 || Int.random(in: 0..<5, using: &rng) == 0 {
                let difference = firstDifference(try store.load(), try reference.load())
                #expect(difference == nil, "seed \(seed) step \(step)")
                if difference != nil { return }
            }
        }
        #expect(firstDifference(try store.load(), try reference.load()) == nil)
        store.close()
        let final = try openStore(dir.path)
        #expect(firstDifference(try final.load(), try reference.load()) == nil)
        final.close()
        #expect(reopens > 0)
    }

    @Test func onlyOneEnvironmentPerPathInAProcess() throws {
        let dir = try ScratchDirectory("lmdb-twice")
        defer { dir.remove() }
        let store = try openStore(dir.path)
        #expect(throws: LMDBStoreError.alreadyOpen(path: store.path)) { try openStore(dir.path + "/.") }
        // The failed attempt must not have released the first one's claim.
        #expect(throws: LMDBStoreError.alreadyOpen(path: store.path)) { try openStore(dir.path) }
        store.close()
        let again = try openStore(dir.path)
        again.close()
        #expect(throws: LMDBStoreError.closed(path: again.path)) { try again.load() }
    }

    // MARK: - Corruption

    /// Writes `value` under `key` in database `db` with raw LMDB calls, bypassing the store.
    private func rawPut(_ dir: String, db: String, key: [UInt8], value: [UInt8]?) throws {
        var env: OpaquePointer?
        try #require(mdb_env_create(&env) == 0)
        defer { mdb_env_close(env) }
        try #require(mdb_env_set_maxdbs(env, 4) == 0)
        try #require(mdb_env_open(env, dir, 0, 0o600) == 0)
        var txn: OpaquePointer?
        try #require(mdb_txn_begin(env, nil, 0, &txn) == 0)
        var dbi: MDB_dbi = 0
        try #require(mdb_dbi_open(txn, db, UInt32(MDB_CREATE), &dbi) == 0)
        let rc: Int32 = key.withUnsafeBytes { kb in
            var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            guard let value else { return mdb_del(txn, dbi, &k, nil) }
            return value.withUnsafeBytes { vb in
                var v = MDB_val(mv_size: vb.count, mv_data: UnsafeMutableRawPointer(mutating: vb.baseAddress))
                return mdb_put(txn, dbi, &k, &v, 0)
            }
        }
        try #require(rc == 0)
        try #require(mdb_txn_commit(txn) == 0)
    }

    /// A store with entries 1...10 and a hard state, closed.
    private func seededStore() throws -> ScratchDirectory {
        let dir = try ScratchDirectory("lmdb-corrupt")
        let store = try openStore(dir.path)
        try store.persist(PersistRequest(entries: entries(1...10), hardState: HardState(term: 1, vote: 1, commit: 8)))
        store.close()
        return dir
    }

    private func loadError(_ dir: String) throws -> LMDBStoreError? {
        let store = try openStore(dir)
        defer { store.close() }
        do {
            _ = try store.load()
            return nil
        } catch let e as LMDBStoreError {
            return e
        }
    }

    private func bigEndian(_ i: UInt64) -> [UInt8] { withUnsafeBytes(of: i.bigEndian) { Array($0) } }

    @Test func garbageEntryValueIsReportedWithItsIndex() throws {
        let dir = try seededStore()
        defer { dir.remove() }
        try rawPut(dir.path, db: "entries", key: bigEndian(4), value: [0xde, 0xad, 0xbe, 0xef])
        let error = try #require(try loadError(dir.path))
        guard case .corruptValue(_, let key, _) = error else { Issue.record("unexpected \(error)"); return }
        #expect(key == "entries/4")
        #expect("\(error)".contains("entries/4"))
    }

    @Test func truncatedEntryIsReported() throws {
        let dir = try seededStore()
        defer { dir.remove() }
        var torn = RaftCodec.encode(Entry(term: 1, index: 6, data: Array("entry 6".utf8)))
        torn.removeLast(3)
        try rawPut(dir.path, db: "entries", key: bigEndian(6), value: torn)
        let error = try #require(try loadError(dir.path))
        guard case .corruptValue(_, "entries/6", _) = error else { Issue.record("unexpected \(error)"); return }
    }

    @Test func gapInIndexesIsReported() throws {
        let dir = try seededStore()
        defer { dir.remove() }
        try rawPut(dir.path, db: "entries", key: bigEndian(5), value: nil)
        let error = try #require(try loadError(dir.path))
        guard case .inconsistentLog(_, let reason) = error else { Issue.record("unexpected \(error)"); return }
        #expect(reason.contains("expected index 5, found 6"))
    }

    @Test func entryUnderTheWrongKeyIsReported() throws {
        let dir = try seededStore()
        defer { dir.remove() }
        try rawPut(dir.path, db: "entries", key: bigEndian(3), value: RaftCodec.encode(Entry(term: 1, index: 4)))
        let error = try #require(try loadError(dir.path))
        guard case .inconsistentLog = error else { Issue.record("unexpected \(error)"); return }
    }

    @Test func badKeyLengthAndBadMetaAreReported() throws {
        let dir = try seededStore()
        defer { dir.remove() }
        try rawPut(dir.path, db: "meta", key: Array("hard-state".utf8), value: [1, 0x80])
        guard case .corruptValue(_, "meta/hard-state", _) = try #require(try loadError(dir.path)) else {
            Issue.record("hard state corruption not reported")
            return
        }
        try rawPut(dir.path, db: "meta", key: Array("hard-state".utf8), value: RaftCodec.encode(HardState(term: 1, vote: 1, commit: 99)))
        guard case .inconsistentLog(_, let reason) = try #require(try loadError(dir.path)) else {
            Issue.record("commit beyond log not reported")
            return
        }
        #expect(reason.contains("commit index 99"))
        try rawPut(dir.path, db: "meta", key: Array("hard-state".utf8), value: RaftCodec.encode(HardState(term: 1, vote: 1, commit: 1)))
        try rawPut(dir.path, db: "entries", key: [0, 0, 0], value: [1])
        guard case .corruptValue(_, "entries/000000", _) = try #require(try loadError(dir.path)) else {
            Issue.record("short key not reported")
            return
        }
        try rawPut(dir.path, db: "entries", key: [0, 0, 0], value: nil)
        try rawPut(dir.path, db: "meta", key: Array("snapshot-data".utf8), value: [1])
        guard case .inconsistentLog = try #require(try loadError(dir.path)) else {
            Issue.record("snapshot data without metadata not reported")
            return
        }
    }

    // MARK: - Map size

    @Test func tinyMapGrowsTransparently() throws {
        let dir = try ScratchDirectory("lmdb-grow")
        defer { dir.remove() }
        let config = LMDBLogStore.Configuration(initialMapSize: 64 << 10, maxMapSize: 1 << 30)
        let reference = InMemoryRaftStorage()
        let store = try openStore(dir.path, config)
        let initial = store.currentMapSize
        var next: UInt64 = 1
        for _ in 0..<40 {
            let batch = (next..<next + 16).map { Entry(term: 1, index: $0, data: LMDBStoreDebugTools.crashPayload(index: $0)) }
            let r = PersistRequest(entries: batch, hardState: HardState(term: 1, vote: 1, commit: next + 15))
            try store.persist(r)
            try reference.persist(r)
            next += 16
        }
        #expect(store.currentMapSize > initial)
        #expect(firstDifference(try store.load(), try reference.load()) == nil)
        store.close()
        let reopened = try openStore(dir.path, config)
        #expect(firstDifference(try reopened.load(), try reference.load()) == nil)
        reopened.close()
    }

    @Test func mapAtItsMaximumIsDiskFullAndStopsTheStore() throws {
        let dir = try ScratchDirectory("lmdb-max")
        defer { dir.remove() }
        let config = LMDBLogStore.Configuration(initialMapSize: 64 << 10, maxMapSize: 512 << 10)
        let reference = InMemoryRaftStorage()
        let store = try openStore(dir.path, config)
        var next: UInt64 = 1
        var failure: LMDBStoreError?
        while failure == nil {
            let batch = (next..<next + 8).map { Entry(term: 1, index: $0, data: LMDBStoreDebugTools.crashPayload(index: $0)) }
            let r = PersistRequest(entries: batch, hardState: HardState(term: 1, vote: 1, commit: next + 7))
            do {
                try store.persist(r)
                try reference.persist(r)
                next += 8
            } catch let e as LMDBStoreError {
                failure = e
            }
            try #require(next < 100_000, "the map never filled")
        }
        guard case .diskFull(let path, let detail) = try #require(failure) else {
            Issue.record("expected diskFull, got \(String(describing: failure))")
            return
        }
        #expect(path == store.path)
        #expect(detail.contains("maximum"))
        #expect(store.isPoisoned)
        #expect(store.currentMapSize == 512 << 10)
        // Fail-stop: even a tiny write is refused now.
        let cause = try #require(failure)
        #expect(throws: LMDBStoreError.poisoned(after: cause)) {
            try store.persist(PersistRequest(hardState: HardState(term: 2, vote: 0, commit: 0)))
        }
        // Reads still see the last successful write.
        #expect(firstDifference(try store.load(), try reference.load()) == nil)
        store.close()
        let reopened = try openStore(dir.path, config)
        #expect(firstDifference(try reopened.load(), try reference.load()) == nil)
        reopened.close()
    }
}
