import Foundation
import Raft

/// The file under the write-ahead log; a test puts a power-loss-simulating one in its place.
protocol WALFile: AnyObject {
    /// Up to `count` bytes from `offset` (fewer at the end of the file).
    func read(at offset: Int, count: Int) throws -> [UInt8]
    func write(_ bytes: [UInt8], at offset: Int) throws
    /// Makes every completed write durable (`fdatasync`).
    func sync() throws
    func size() throws -> Int
    func close()
}

struct WALIOError: Error, CustomStringConvertible {
    var path: String
    var operation: String
    var code: Int32

    var description: String { "write-ahead log \(path): \(operation) failed: \(String(cString: strerror(code))) (errno \(code))" }
}

/// The log file on disk, held with an exclusive `flock`: a second process on the same data
/// directory (a debug command pointed at a running replica) is refused instead of writing
/// beside the first. A child this process forks shares the lock until it execs, so a close
/// and reopen can meet it for a moment (seen in CI): the lock is tried for up to 2 s.
final class POSIXWALFile: WALFile {
    let path: String
    private var fd: Int32

    init(path: String) throws {
        self.path = path
        fd = Foundation.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw WALIOError(path: path, operation: "open", code: errno) }
        var attempts = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK && attempts < 200 {
            attempts += 1
            usleep(10_000)
        }
        guard attempts < 200, flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            Foundation.close(fd)
            throw WALIOError(path: path, operation: "lock (is another switchman process using this data directory?)", code: code)
        }
    }

    func read(at offset: Int, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { buf -> Int in
                guard let base = buf.baseAddress else { return 0 }
                return pread(fd, base + done, count - done, off_t(offset + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw WALIOError(path: path, operation: "read", code: errno)
            }
            if n == 0 { break }
            done += n
        }
        out.removeLast(count - done)
        return out
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { buf -> Int in
                guard let base = buf.baseAddress else { return 0 }
                return pwrite(fd, base + done, bytes.count - done, off_t(offset + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw WALIOError(path: path, operation: "write", code: errno)
            }
            if n == 0 { throw WALIOError(path: path, operation: "write", code: EIO) }
            done += n
        }
    }

    func sync() throws {
        guard fdatasync(fd) == 0 else { throw WALIOError(path: path, operation: "fdatasync", code: errno) }
    }

    func size() throws -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw WALIOError(path: path, operation: "fstat", code: errno) }
        return Int(st.st_size)
    }

    func close() {
        guard fd >= 0 else { return }
        Foundation.close(fd)
        fd = -1
    }

    deinit { close() }
}

/// The record format of the write-ahead log: a 16-byte header (payload length, CRC-32C of
/// sequence and payload, sequence number; little-endian) and the payload, an encoded batch
/// of persist requests (never a snapshot: those go straight to LMDB).
enum WALRecord {
    static let headerSize = 16

    static func encode(sequence: UInt64, batch: [PersistRequest]) -> [UInt8] {
        var body: [UInt8] = []
        put64(&body, sequence)
        put32(&body, UInt32(batch.count))
        for r in batch {
            var flags: UInt8 = 0
            if r.compactThrough != nil { flags |= 1 }
            if r.truncateFrom != nil { flags |= 2 }
            if r.hardState != nil { flags |= 4 }
            body.append(flags)
            if let c = r.compactThrough { put64(&body, c) }
            if let t = r.truncateFrom { put64(&body, t) }
            if let hs = r.hardState { putBytes(&body, RaftCodec.encode(hs)) }
            put32(&body, UInt32(r.entries.count))
            for e in r.entries { putBytes(&body, RaftCodec.encode(e)) }
        }
        var record: [UInt8] = []
        record.reserveCapacity(8 + body.count)
        put32(&record, UInt32(body.count - 8))
        put32(&record, CRC32C.checksum(body))
        record += body
        return record
    }

    /// The valid records from the start of `bytes`, in order. The scan stops at the first
    /// record that is torn (bad length or checksum) or stale (its sequence number does not
    /// follow the one before: a leftover of an earlier pass over the file).
    static func scan(_ bytes: [UInt8]) -> [(sequence: UInt64, batch: [PersistRequest])] {
        var out: [(sequence: UInt64, batch: [PersistRequest])] = []
        var offset = 0
        while offset + headerSize <= bytes.count {
            let length = Int(get32(bytes, offset))
            let crc = get32(bytes, offset + 4)
            guard length > 0, offset + headerSize + length <= bytes.count else { break }
            let body = Array(bytes[(offset + 8)..<(offset + headerSize + length)])
            guard CRC32C.checksum(body) == crc else { break }
            let sequence = get64(body, 0)
            if let last = out.last, sequence != last.sequence + 1 { break }
            guard let batch = decodeBatch(body, from: 8) else { break }
            out.append((sequence, batch))
            offset += headerSize + length
        }
        return out
    }

    private static func decodeBatch(_ p: [UInt8], from start: Int) -> [PersistRequest]? {
        var i = start
        func u32() -> UInt32? {
            guard i + 4 <= p.count else { return nil }
            defer { i += 4 }
            return get32(p, i)
        }
        func u64() -> UInt64? {
            guard i + 8 <= p.count else { return nil }
            defer { i += 8 }
            return get64(p, i)
        }
        func bytes() -> [UInt8]? {
            guard let n = u32().map(Int.init), i + n <= p.count else { return nil }
            defer { i += n }
            return Array(p[i..<(i + n)])
        }
        guard let count = u32() else { return nil }
        var batch: [PersistRequest] = []
        for _ in 0..<count {
            guard i < p.count else { return nil }
            let flags = p[i]
            i += 1
            var r = PersistRequest()
            if flags & 1 != 0 {
                guard let c = u64() else { return nil }
                r.compactThrough = c
            }
            if flags & 2 != 0 {
                guard let t = u64() else { return nil }
                r.truncateFrom = t
            }
            if flags & 4 != 0 {
                guard let b = bytes(), let hs = try? RaftCodec.decodeHardState(b) else { return nil }
                r.hardState = hs
            }
            guard let n = u32() else { return nil }
            for _ in 0..<n {
                guard let b = bytes(), let e = try? RaftCodec.decodeEntry(b) else { return nil }
                r.entries.append(e)
            }
            batch.append(r)
        }
        return i == p.count ? batch : nil
    }

    private static func put32(_ a: inout [UInt8], _ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { a += $0 } }
    private static func put64(_ a: inout [UInt8], _ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { a += $0 } }
    private static func putBytes(_ a: inout [UInt8], _ b: [UInt8]) {
        put32(&a, UInt32(b.count))
        a += b
    }
    private static func get32(_ a: [UInt8], _ i: Int) -> UInt32 {
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(a[i + k]) << (8 * UInt32(k)) }
        return v
    }
    private static func get64(_ a: [UInt8], _ i: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(a[i + k]) << (8 * UInt64(k)) }
        return v
    }
}

/// CRC-32C (Castagnoli), the checksum etcd's WAL and ext4 use; none of our dependencies
/// provides one.
enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        bytes.withUnsafeBufferPointer { buf in
            table.withUnsafeBufferPointer { t in
                for b in buf { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
            }
        }
        return c ^ 0xFFFF_FFFF
    }
}

/// The log records not yet folded into LMDB, and the fold thread's wake-up.
final class FoldQueue: @unchecked Sendable {
    // Safe: every field is behind `condition`.
    private let condition = NSCondition()
    private var records: [(sequence: UInt64, batch: [PersistRequest])] = []
    private var stopping = false
    private var paused = false
    private var running = true

    func append(_ record: (sequence: UInt64, batch: [PersistRequest])) {
        condition.lock()
        records.append(record)
        condition.signal()
        condition.unlock()
    }

    func takeAll() -> [(sequence: UInt64, batch: [PersistRequest])] {
        condition.lock()
        defer { condition.unlock() }
        let all = records
        records = []
        return all
    }

    private var lastFold = Date.distantPast

    /// Waits until there is something to fold and `interval` has passed since the last fold
    /// (true), or until the store stops (false). Spacing the folds keeps LMDB's two flushes
    /// per commit from queueing in front of the log's own fdatasync on the same device.
    func waitForWork(interval: TimeInterval) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while (records.isEmpty || paused) && !stopping { condition.wait() }
        let due = lastFold.addingTimeInterval(interval)
        while Date() < due && !stopping { _ = condition.wait(until: due) }
        lastFold = Date()
        return !stopping
    }

    func pause() {
        condition.lock()
        paused = true
        condition.unlock()
    }

    /// Stops the fold thread and waits until it has left its loop.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while running { condition.wait() }
        condition.unlock()
    }

    func requestStop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    func exited() {
        condition.lock()
        running = false
        condition.broadcast()
        condition.unlock()
    }
}
