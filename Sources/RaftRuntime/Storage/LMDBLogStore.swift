import CLMDB
import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import Raft

/// The durable Raft log: an LMDB environment in one directory, with a write-ahead log in
/// front of it.
///
/// Layout: database `entries` maps the index (8 bytes big-endian, so cursor order is log
/// order) to `RaftCodec.encode(Entry)`; database `meta` holds the hard state, the snapshot
/// metadata and the snapshot data under fixed keys.
///
/// A `persist` appends one record (checksummed, numbered) to `raft.wal` and `fdatasync`s it:
/// one device flush, where an LMDB commit takes two in series (its data pages, then its meta
/// page). A thread of the store's own folds the records into LMDB behind that, many per
/// transaction, and notes in `meta` the last record folded in, in the same transaction. The
/// log file is written with zeros when created, so appends overwrite blocks it already owns;
/// when the next record would not fit, everything is folded in first and the log starts
/// over at offset 0. Opening replays the records LMDB does not have yet; the scan stops at
/// the first torn record, or at a leftover of an earlier pass (its number does not follow).
/// A request is either wholly durable or wholly absent after a crash. A persist that carries
/// a snapshot goes to LMDB directly, after everything before it.
///
/// A full map grows (doubling, up to `Configuration.maxMapSize`) and the transaction is run
/// again from scratch: an aborted LMDB transaction leaves nothing behind, so this re-runs a
/// write that never happened, not a failed fsync. Any other failure poisons the store: it
/// refuses every later write (DESIGN.md safety rule 1).
///
/// `@unchecked Sendable`: the LMDB handles are raw pointers. Every use of them happens under
/// `lock`, so there is never more than one transaction at a time in this process, which is
/// also what `mdb_env_set_mapsize` requires. The environment is opened with `MDB_NOTLS`, so a
/// read transaction is not tied to the thread that began it.
public final class LMDBLogStore: RaftStorage, @unchecked Sendable {
    public struct Configuration: Sendable, Hashable {
        /// The map size the environment starts with. LMDB keeps the larger of this and what
        /// the existing file already uses.
        public var initialMapSize: Int
        /// The map never grows beyond this; a write that does not fit fails with `diskFull`.
        public var maxMapSize: Int

        /// The write-ahead log's size on disk (it grows only for a record larger than this).
        public var walBytes: Int
        /// The least time between two folds of the log into LMDB (etcd commits its bbolt
        /// backend every 100 ms for the same reason).
        public var foldInterval: Duration

        public init(
            initialMapSize: Int = 64 << 20, maxMapSize: Int = 8 << 30, walBytes: Int = 8 << 20,
            foldInterval: Duration = .milliseconds(50)
        ) {
            self.initialMapSize = initialMapSize
            self.maxMapSize = max(maxMapSize, initialMapSize)
            self.walBytes = max(walBytes, 4096)
            self.foldInterval = foldInterval
        }
    }

    public let path: String
    public let configuration: Configuration
    private let logger: Logger
    private let lock = NIOLock()
    // Guarded by `lock`.
    private var env: OpaquePointer?
    private var entriesDB: MDB_dbi = 0
    private var metaDB: MDB_dbi = 0
    private var mapSize: Int
    private var poison: LMDBStoreError?
    /// A fold that failed on the store's thread, for the next caller to hear first.
    private var backgroundFailure: LMDBStoreError?

    // The write-ahead log. `appendLock` orders the callers (persist, load, close) and guards
    // the file, its tail and the numbering; `applyLock` makes folds happen one at a time and
    // in order, and guards `stranded`. Order: appendLock, then applyLock, then lock.
    private let appendLock = NIOLock()
    private let applyLock = NIOLock()
    private let queue = FoldQueue()
    private var wal: (any WALFile)?
    private var walTail = 0
    private var nextSequence: UInt64 = 1
    /// Records taken for a fold that failed: still only in the log file (and here).
    private var stranded: [(sequence: UInt64, batch: [PersistRequest])] = []

    private let commitTimer = Timer(label: "switchman_storage_fsync_seconds")
    private let bytesWritten = Counter(label: "switchman_storage_bytes_written_total")
    private let entriesWritten = Counter(label: "switchman_storage_entries_written_total")
    private let mapGrowths = Counter(label: "switchman_storage_map_growths_total")
    private let writeFailures = Counter(label: "switchman_storage_write_failures_total")
    private let walSyncTimer = Timer(label: "switchman_storage_wal_fsync_seconds")
    private let folds = Counter(label: "switchman_storage_wal_folds_total")

    /// Paths (resolved) with an open environment in this process.
    private static let openPaths = NIOLockedValueBox<Set<String>>([])

    /// Opens (creating if missing) the store in `directory`.
    public convenience init(directory: String, configuration: Configuration = Configuration(), logger: Logger) throws {
        try self.init(directory: directory, configuration: configuration, logger: logger) { try POSIXWALFile(path: $0) }
    }

    init(
        directory: String, configuration: Configuration, logger: Logger, walFile: (String) throws -> any WALFile
    ) throws {
        self.configuration = configuration
        self.logger = logger
        self.mapSize = configuration.initialMapSize
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw LMDBStoreError.openFailed(path: directory, code: -1, message: "cannot create directory: \(error)")
        }
        guard let resolved = realpath(directory, nil) else {
            throw LMDBStoreError.openFailed(path: directory, code: errno, message: String(cString: strerror(errno)))
        }
        self.path = String(cString: resolved)
        free(resolved)

        let claimed = Self.openPaths.withLockedValue { $0.insert(path).inserted }
        guard claimed else { throw LMDBStoreError.alreadyOpen(path: path) }

        do {
            try open()
            try openLog(try walFile(path + "/raft.wal"))
        } catch {
            wal?.close()
            wal = nil
            if let env { mdb_env_close(env) }
            env = nil
            _ = Self.openPaths.withLockedValue { $0.remove(path) }
            throw error
        }
        let queue = self.queue
        let interval = configuration.foldInterval
        let thread = Thread { [weak self] in Self.foldLoop(queue, interval: interval) { self } }
        thread.name = "switchman-wal-fold"
        thread.start()
        logger.info("opened LMDB store", metadata: ["path": "\(path)", "map_size": "\(mapSize)"])
    }

    deinit {
        // Not `stop()`: the fold thread may be the one dropping the last reference.
        queue.requestStop()
        // Only an instance that still holds the environment owns the path's registration: a
        // closed one, or one whose open failed (possibly because another instance holds the
        // path), must not release it.
        guard let env else { return }
        mdb_env_close(env)
        _ = Self.openPaths.withLockedValue { $0.remove(path) }
    }

    /// Folds what the log holds into LMDB, then closes both; the directory can then be opened
    /// again in this process.
    public func close() {
        appendLock.withLock {
            applyLock.withLock { try? fold() }
            shut()
        }
    }

    /// Like a power cut for a test: nothing more is folded in, and what only the log file
    /// holds stays there.
    func abandonForTesting() {
        appendLock.withLock { shut() }
    }

    func pauseFoldsForTesting() { queue.pause() }

    /// Must be called with `appendLock` held.
    private func shut() {
        queue.stop()
        wal?.close()
        wal = nil
        lock.withLock {
            guard let env else { return }
            mdb_env_close(env)
            self.env = nil
            _ = Self.openPaths.withLockedValue { $0.remove(path) }
        }
    }

    /// The current map size (grows on demand).
    public var currentMapSize: Int { lock.withLock { mapSize } }

    /// Whether an earlier failed write stopped the store.
    public var isPoisoned: Bool { lock.withLock { poison != nil } }

    private func open() throws {
        var created: OpaquePointer?
        var rc = mdb_env_create(&created)
        guard rc == 0, let created else { throw LMDBStoreError.openFailed(path: path, code: rc, message: lmdbMessage(rc)) }
        env = created
        rc = mdb_env_set_maxdbs(created, 2)
        if rc == 0 { rc = mdb_env_set_mapsize(created, configuration.initialMapSize) }
        // No MDB_NOSYNC / MDB_NOMETASYNC: commit must fsync data and meta page.
        if rc == 0 { rc = mdb_env_open(created, path, UInt32(MDB_NOTLS), 0o600) }
        guard rc == 0 else { throw LMDBStoreError.openFailed(path: path, code: rc, message: lmdbMessage(rc)) }
        refreshMapSize(created)

        var entries: MDB_dbi = 0
        var meta: MDB_dbi = 0
        try write(created) { txn throws(MDBCode) in
            try check(mdb_dbi_open(txn, "entries", UInt32(MDB_CREATE), &entries))
            try check(mdb_dbi_open(txn, "meta", UInt32(MDB_CREATE), &meta))
        }
        entriesDB = entries
        metaDB = meta
    }

    private func refreshMapSize(_ env: OpaquePointer) {
        var info = MDB_envinfo()
        if mdb_env_info(env, &info) == 0 { mapSize = info.me_mapsize }
    }

    // MARK: - RaftStorage

    /// What LMDB holds, with what only the log holds on top (after a fold that failed, e.g.
    /// on a full disk: those writes were acknowledged and stay visible).
    public func load() throws -> PersistentState {
        try appendLock.withLock {
            let onlyInTheLog: [(sequence: UInt64, batch: [PersistRequest])] = applyLock.withLock {
                try? fold()
                return stranded
            }
            var state = try lock.withLock {
                guard let env else { throw LMDBStoreError.closed(path: path) }
                do {
                    return try read(env) { txn in try self.readState(txn) }
                } catch let e as MDBCode {
                    throw LMDBStoreError.readFailed(code: e.rc, message: e.message)
                }
            }
            for (_, batch) in onlyInTheLog { for r in batch { state.apply(r) } }
            return state
        }
    }

    public func persist(_ request: PersistRequest) throws {
        try persist(batch: [request])
    }

    /// Group commit: every request of the batch, in order, in one log record and one fsync.
    /// A fold that failed on the store's thread is what the next caller hears, not the
    /// poisoning that followed from it.
    public func persist(batch requests: [PersistRequest]) throws {
        do {
            try append(requests.filter { !$0.isEmpty })
        } catch {
            let first: LMDBStoreError? = lock.withLock {
                defer { backgroundFailure = nil }
                return backgroundFailure
            }
            throw first ?? error
        }
    }

    private func append(_ requests: [PersistRequest]) throws {
        try appendLock.withLock {
            try lock.withLock {
                guard env != nil else { throw LMDBStoreError.closed(path: path) }
                if let poison { throw LMDBStoreError.poisoned(after: poison) }
            }
            guard !requests.isEmpty else { return }
            guard let wal else { throw LMDBStoreError.closed(path: path) }
            if requests.contains(where: { $0.snapshot != nil }) {
                try persistDirectly(requests)
                return
            }
            let record = WALRecord.encode(sequence: nextSequence, batch: requests)
            if walTail > 0 && walTail + record.count > configuration.walBytes {
                try applyLock.withLock { try fold() }
                walTail = 0
            }
            let started = ContinuousClock.now
            do {
                try wal.write(record, at: walTail)
                try wal.sync()
            } catch {
                let e = classify((error as? WALIOError)?.code ?? EIO)
                lock.withLock { poison = e }
                writeFailures.increment()
                logger.error("write-ahead log write failed; the store refuses further writes", metadata: ["path": "\(path)", "error": "\(error)"])
                throw e
            }
            walSyncTimer.record(duration: ContinuousClock.now - started)
            queue.append((nextSequence, requests))
            nextSequence += 1
            walTail += record.count
            bytesWritten.increment(by: record.count)
            entriesWritten.increment(by: requests.reduce(0) { $0 + $1.entries.count })
        }
    }

    /// A snapshot (possibly large) goes to LMDB in one synced transaction, after everything
    /// the log holds; the log then starts over. Must be called with `appendLock` held.
    private func persistDirectly(_ requests: [PersistRequest]) throws {
        try applyLock.withLock {
            try fold()
            let sequence = nextSequence
            try lock.withLock {
                guard let env else { throw LMDBStoreError.closed(path: path) }
                var bytes = 0
                try writeOrPoison(env) { txn throws(MDBCode) in
                    bytes = 0
                    for request in requests { bytes += try self.apply(request, txn) }
                    try self.put(txn, self.metaDB, MetaKey.walFolded, Self.encode64(sequence))
                }
                bytesWritten.increment(by: bytes)
            }
            nextSequence += 1
        }
        walTail = 0
        entriesWritten.increment(by: requests.reduce(0) { $0 + $1.entries.count })
    }

    // MARK: - The write-ahead log

    /// Opens the log file (writing it with zeros up to its size) and folds into LMDB the
    /// records LMDB does not have yet. Called once, from `init`.
    private func openLog(_ file: any WALFile) throws {
        wal = file
        let size = try file.size()
        if size < configuration.walBytes {
            try file.write([UInt8](repeating: 0, count: configuration.walBytes - size), at: size)
            try file.sync()
        }
        let records = WALRecord.scan(try file.read(at: 0, count: max(size, configuration.walBytes)))
        let folded = try lock.withLock {
            guard let env else { throw LMDBStoreError.closed(path: path) }
            return try read(env) { txn in try self.get(txn, self.metaDB, MetaKey.walFolded) }.map(Self.decode64) ?? 0
        }
        if let first = records.first, first.sequence > folded + 1 {
            throw LMDBStoreError.inconsistentLog(
                path: path,
                reason: "the write-ahead log begins at record \(first.sequence), but LMDB holds the records only through \(folded)")
        }
        nextSequence = max(records.last?.sequence ?? 0, folded) + 1
        walTail = 0
        let replay = records.filter { $0.sequence > folded }
        guard !replay.isEmpty else { return }
        stranded = replay
        do {
            try applyLock.withLock { try fold() }
            logger.info(
                "replayed the write-ahead log", metadata: ["path": "\(path)", "records": "\(replay.count)", "through": "\(nextSequence - 1)"])
        } catch {
            // Acknowledged writes that LMDB cannot take (a full disk): `load` still returns
            // them, and the store refuses new writes until it is opened with room again.
            let e = error as? LMDBStoreError ?? .writeFailed(code: EIO, message: "\(error)")
            lock.withLock { backgroundFailure = e }
            logger.error(
                "cannot fold the write-ahead log into LMDB; writes are refused", metadata: ["path": "\(path)", "error": "\(e)"])
        }
    }

    /// Moves every record not yet in LMDB into it, in one synced transaction. Must be called
    /// with `applyLock` held.
    private func fold(onTheStoresThread: Bool = false) throws {
        let records = stranded + queue.takeAll()
        guard let last = records.last else { return }
        stranded = records
        try lock.withLock {
            guard let env else { throw LMDBStoreError.closed(path: path) }
            if let poison { throw LMDBStoreError.poisoned(after: poison) }
            do throws(LMDBStoreError) {
                try writeOrPoison(env) { txn throws(MDBCode) in
                    for (_, batch) in records { for r in batch { _ = try self.apply(r, txn) } }
                    try self.put(txn, self.metaDB, MetaKey.walFolded, Self.encode64(last.sequence))
                }
            } catch {
                // Under the same lock as the poisoning, so no caller sees one without the other.
                if onTheStoresThread && backgroundFailure == nil { backgroundFailure = error }
                throw error
            }
        }
        stranded = []
        folds.increment()
    }

    /// The store's own thread: folds whatever has queued up, as soon as it has.
    private static func foldLoop(_ queue: FoldQueue, interval: Duration, _ store: () -> LMDBLogStore?) {
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        while queue.waitForWork(interval: seconds) {
            guard let s = store() else { break }
            do {
                try s.applyLock.withLock { try s.fold(onTheStoresThread: true) }
            } catch {
                s.logger.error("folding the write-ahead log into LMDB failed", metadata: ["path": "\(s.path)", "error": "\(error)"])
            }
        }
        queue.exited()
    }

    private static func encode64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }
    private static func decode64(_ b: [UInt8]) -> UInt64 { b.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } }

    // MARK: - Records beside the log

    /// A record of the runtime's own (the directory's identity, the peers' incarnations),
    /// kept in `meta` under `record/<name>` so it can never collide with the log's keys.
    public func readRecord(_ name: String) throws -> [UInt8]? {
        try lock.withLock {
            guard let env else { throw LMDBStoreError.closed(path: path) }
            do {
                return try read(env) { txn in try self.get(txn, self.metaDB, MetaKey.record(name)) }
            } catch let e as MDBCode {
                throw LMDBStoreError.readFailed(code: e.rc, message: e.message)
            }
        }
    }

    /// Writes a record in its own transaction, as durably as `persist`. A failure poisons
    /// the store like any other failed write.
    public func writeRecord(_ name: String, _ value: [UInt8]) throws {
        try lock.withLock {
            guard let env else { throw LMDBStoreError.closed(path: path) }
            if let poison { throw LMDBStoreError.poisoned(after: poison) }
            try writeOrPoison(env) { txn throws(MDBCode) in try self.put(txn, self.metaDB, MetaKey.record(name), value) }
        }
    }

    // MARK: - Transactions

    /// `write`, and on failure the store refuses every later write (DESIGN.md rule 1).
    /// Must be called with `lock` held.
    private func writeOrPoison(_ env: OpaquePointer, _ body: (OpaquePointer) throws(MDBCode) -> Void) throws(LMDBStoreError) {
        do throws(LMDBStoreError) {
            try write(env, body)
        } catch {
            poison = error
            writeFailures.increment()
            logger.error("LMDB write failed; the store refuses further writes", metadata: ["path": "\(path)", "error": "\(error)"])
            throw error
        }
    }

    /// Runs `body` in a write transaction and commits it. On a full map the transaction is
    /// aborted, the map grows and `body` runs again in a fresh transaction (nothing of the
    /// aborted one reached the disk). Must be called with `lock` held.
    private func write(_ env: OpaquePointer, _ body: (OpaquePointer) throws(MDBCode) -> Void) throws(LMDBStoreError) {
        while true {
            var txn: OpaquePointer?
            var rc = mdb_txn_begin(env, nil, 0, &txn)
            if rc == MDB_MAP_RESIZED {
                // Another process grew the map; adopt its size and begin again.
                rc = mdb_env_set_mapsize(env, 0)
                refreshMapSize(env)
                if rc == 0 { continue }
            }
            guard rc == 0, let txn else { throw classify(rc) }
            do {
                try body(txn)
            } catch {
                mdb_txn_abort(txn)
                guard error.rc == MDB_MAP_FULL else { throw classify(error.rc) }
                try grow(env)
                continue
            }
            let start = ContinuousClock.now
            rc = mdb_txn_commit(txn)  // frees txn whether or not it succeeds
            let elapsed = (ContinuousClock.now - start).components
            commitTimer.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
            if rc == 0 { return }
            // MAP_FULL from commit comes from allocating pages for the free list, before any
            // page is written: still nothing on disk.
            guard rc == MDB_MAP_FULL else { throw classify(rc) }
            try grow(env)
        }
    }

    private func read<R>(_ env: OpaquePointer, _ body: (OpaquePointer) throws -> R) throws -> R {
        var txn: OpaquePointer?
        var rc = mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn)
        if rc == MDB_MAP_RESIZED {
            rc = mdb_env_set_mapsize(env, 0)
            refreshMapSize(env)
            if rc == 0 { rc = mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn) }
        }
        guard rc == 0, let txn else { throw MDBCode(rc: rc) }
        defer { mdb_txn_abort(txn) }
        return try body(txn)
    }

    private func grow(_ env: OpaquePointer) throws(LMDBStoreError) {
        guard mapSize < configuration.maxMapSize else {
            throw .diskFull(path: path, detail: "the map reached its configured maximum of \(configuration.maxMapSize) bytes")
        }
        let newSize = mapSize > configuration.maxMapSize / 2 ? configuration.maxMapSize : mapSize * 2
        let rc = mdb_env_set_mapsize(env, newSize)
        guard rc == 0 else { throw .writeFailed(code: rc, message: "growing the map to \(newSize) bytes: \(lmdbMessage(rc))") }
        logger.info("LMDB map grew", metadata: ["path": "\(path)", "from": "\(mapSize)", "to": "\(newSize)"])
        refreshMapSize(env)
        mapGrowths.increment()
    }

    private func classify(_ rc: Int32) -> LMDBStoreError {
        if rc == ENOSPC || rc == EDQUOT {
            return .diskFull(path: path, detail: lmdbMessage(rc))
        }
        if rc == MDB_MAP_FULL {
            return .diskFull(path: path, detail: "the map is full")
        }
        // LMDB turns a short write into EIO (mdb_page_flush), and a short write is what a
        // file system that runs out of space mid-write produces. Tell that apart from a
        // failing device by looking at the free space.
        if rc == EIO, let free = freeBytes(), free < 1 << 20 {
            return .diskFull(
                path: path, detail: "a write came up short (LMDB reports EIO) with only \(free) bytes free on the file system (no space left on device)")
        }
        return .writeFailed(code: rc, message: lmdbMessage(rc))
    }

    private func freeBytes() -> Int? {
        var st = statvfs()
        guard statvfs(path, &st) == 0 else { return nil }
        return Int(st.f_bavail) * Int(st.f_frsize)
    }

    // MARK: - Writing one request

    /// The steps of one `PersistRequest`, in the order it documents. Returns the bytes put.
    private func apply(_ request: PersistRequest, _ txn: OpaquePointer) throws(MDBCode) -> Int {
        var bytes = 0
        if let s = request.snapshot {
            let meta = RaftCodec.encode(s.metadata)
            try put(txn, metaDB, MetaKey.snapshotMetadata, meta)
            try put(txn, metaDB, MetaKey.snapshotData, s.data)
            bytes += meta.count + s.data.count
        }
        if let c = request.compactThrough {
            try deleteEntries(txn, from: nil) { $0 <= c }
        }
        if let t = request.truncateFrom {
            try deleteEntries(txn, from: t) { _ in true }
        }
        for e in request.entries {
            let value = RaftCodec.encode(e)
            try put(txn, entriesDB, EntryKey.encode(e.index), value)
            bytes += value.count + 8
        }
        if let hs = request.hardState {
            let value = RaftCodec.encode(hs)
            try put(txn, metaDB, MetaKey.hardState, value)
            bytes += value.count
        }
        return bytes
    }

    private func put(_ txn: OpaquePointer, _ db: MDB_dbi, _ key: [UInt8], _ value: [UInt8]) throws(MDBCode) {
        try key.withMDBVal { (k: inout MDB_val) throws(MDBCode) in
            try value.withMDBVal { (v: inout MDB_val) throws(MDBCode) in
                try check(mdb_put(txn, db, &k, &v, 0))
            }
        }
    }

    /// Deletes entries from `start` (or the first) onwards for as long as `condition(index)` holds.
    private func deleteEntries(
        _ txn: OpaquePointer, from start: UInt64?, while condition: (UInt64) -> Bool
    ) throws(MDBCode) {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, entriesDB, &cursor))
        guard let cursor else { throw MDBCode(rc: EINVAL) }
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val()
        var value = MDB_val()
        var rc: Int32
        if let start {
            rc = try EntryKey.encode(start).withMDBVal { (k: inout MDB_val) throws(MDBCode) in
                let rc = mdb_cursor_get(cursor, &k, &value, MDB_SET_RANGE)
                key = k
                return rc
            }
        } else {
            rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
        }
        while rc == 0 {
            // A malformed key is deleted too when it sorts inside the range: it can only be
            // junk, and load() would reject it anyway.
            let index = EntryKey.decode(key.bytes) ?? (start ?? 0)
            guard condition(index) else { return }
            try check(mdb_cursor_del(cursor, 0))
            // After a delete the cursor already sits on the following item; MDB_NEXT
            // returns that item rather than skipping it.
            rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
        }
        guard rc == MDB_NOTFOUND else { throw MDBCode(rc: rc) }
    }

    // MARK: - Reading and validating

    private func readState(_ txn: OpaquePointer) throws -> PersistentState {
        var state = PersistentState()
        if let bytes = try get(txn, metaDB, MetaKey.hardState) {
            do { state.hardState = try RaftCodec.decodeHardState(bytes) } catch {
                throw LMDBStoreError.corruptValue(path: path, key: "meta/hard-state", reason: "\(error)")
            }
        }
        let snapMeta = try get(txn, metaDB, MetaKey.snapshotMetadata)
        let snapData = try get(txn, metaDB, MetaKey.snapshotData)
        switch (snapMeta, snapData) {
        case (nil, nil):
            break
        case (let m?, let d?):
            do { state.snapshot = Snapshot(metadata: try RaftCodec.decodeSnapshotMetadata(m), data: d) } catch {
                throw LMDBStoreError.corruptValue(path: path, key: "meta/snapshot-metadata", reason: "\(error)")
            }
        default:
            throw LMDBStoreError.inconsistentLog(
                path: path, reason: "snapshot metadata and snapshot data are not both present")
        }

        let snapIndex = state.snapshot?.metadata.index ?? 0
        var lastTerm = state.snapshot?.metadata.term ?? 0
        var expected = snapIndex + 1
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, entriesDB, &cursor))
        guard let cursor else { throw MDBCode(rc: EINVAL) }
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val()
        var value = MDB_val()
        var rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
        while rc == 0 {
            let keyBytes = key.bytes
            guard let index = EntryKey.decode(keyBytes) else {
                throw LMDBStoreError.corruptValue(
                    path: path, key: "entries/\(keyBytes.hexString)", reason: "key is \(keyBytes.count) bytes, not 8")
            }
            let entry: Entry
            do { entry = try RaftCodec.decodeEntry(value.bytes) } catch {
                throw LMDBStoreError.corruptValue(path: path, key: "entries/\(index)", reason: "\(error)")
            }
            guard entry.index == index else {
                throw LMDBStoreError.inconsistentLog(
                    path: path, reason: "entry under key \(index) says it has index \(entry.index)")
            }
            guard index == expected else {
                throw LMDBStoreError.inconsistentLog(
                    path: path,
                    reason: "entries are not contiguous: expected index \(expected), found \(index) "
                        + "(snapshot index \(snapIndex))")
            }
            guard entry.term >= lastTerm else {
                throw LMDBStoreError.inconsistentLog(path: path, reason: "entry terms decrease at index \(index)")
            }
            state.entries.append(entry)
            lastTerm = entry.term
            expected += 1
            rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
        }
        guard rc == MDB_NOTFOUND else { throw MDBCode(rc: rc) }
        let last = expected - 1
        guard state.hardState.commit <= last else {
            throw LMDBStoreError.inconsistentLog(
                path: path, reason: "commit index \(state.hardState.commit) is beyond the last entry \(last)")
        }
        return state
    }

    private func get(_ txn: OpaquePointer, _ db: MDB_dbi, _ key: [UInt8]) throws(MDBCode) -> [UInt8]? {
        try key.withMDBVal { (k: inout MDB_val) throws(MDBCode) -> [UInt8]? in
            var v = MDB_val()
            let rc = mdb_get(txn, db, &k, &v)
            if rc == MDB_NOTFOUND { return nil }
            try check(rc)
            return v.bytes
        }
    }
}

extension Array where Element == UInt8 {
    fileprivate var hexString: String {
        map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
    }
}
