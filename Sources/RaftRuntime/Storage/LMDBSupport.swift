import CLMDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the LMDB store failed. Every case names enough (path, key, LMDB code) for an operator
/// to act on it without reading the code.
public enum LMDBStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The disk or the configured maximum map size is exhausted. Nothing of the failed write
    /// was committed; the store refuses further writes.
    case diskFull(path: String, detail: String)
    /// LMDB reported an error while writing or committing. The store refuses further writes.
    case writeFailed(code: Int32, message: String)
    /// LMDB reported an error while reading.
    case readFailed(code: Int32, message: String)
    case openFailed(path: String, code: Int32, message: String)
    /// LMDB forbids two environments on the same files in one process (its locks are
    /// per-process: closing one would release the other's).
    case alreadyOpen(path: String)
    case closed(path: String)
    /// A value on disk does not decode.
    case corruptValue(path: String, key: String, reason: String)
    /// The values decode but do not form a valid log (a gap, a key that disagrees with its
    /// entry, a commit beyond the log...).
    case inconsistentLog(path: String, reason: String)
    /// A previous write failed; the store stays stopped (DESIGN.md safety rule 1: a failed
    /// write is never retried).
    indirect case poisoned(after: LMDBStoreError)

    public var description: String {
        switch self {
        case .diskFull(let path, let detail): return "LMDB store at \(path) is full: \(detail)"
        case .writeFailed(let code, let message): return "LMDB write failed (\(code)): \(message)"
        case .readFailed(let code, let message): return "LMDB read failed (\(code)): \(message)"
        case .openFailed(let path, let code, let message):
            return "cannot open LMDB store at \(path) (\(code)): \(message)"
        case .alreadyOpen(let path): return "LMDB store at \(path) is already open in this process"
        case .closed(let path): return "LMDB store at \(path) is closed"
        case .corruptValue(let path, let key, let reason):
            return "LMDB store at \(path): value under \(key) is corrupt: \(reason)"
        case .inconsistentLog(let path, let reason): return "LMDB store at \(path) holds an invalid log: \(reason)"
        case .poisoned(let cause): return "LMDB store refuses writes after an earlier failure: \(cause)"
        }
    }
}

/// An LMDB return code, carried out of a transaction body so the caller can tell a full map
/// (retryable: nothing was committed) from everything else.
struct MDBCode: Error {
    var rc: Int32
    var message: String { lmdbMessage(rc) }
}

func lmdbMessage(_ rc: Int32) -> String {
    guard let cString = mdb_strerror(rc) else { return "unknown error \(rc)" }
    return String(cString: cString)
}

@inline(__always)
func check(_ rc: Int32) throws(MDBCode) {
    guard rc == 0 else { throw MDBCode(rc: rc) }
}

/// Entry keys are the index in 8 big-endian bytes, so LMDB's lexicographic key order is index
/// order and a cursor walks the log front to back.
enum EntryKey {
    static func encode(_ index: UInt64) -> [UInt8] {
        withUnsafeBytes(of: index.bigEndian) { Array($0) }
    }

    static func decode(_ bytes: [UInt8]) -> UInt64? {
        guard bytes.count == 8 else { return nil }
        return bytes.reduce(0) { ($0 << 8) | UInt64($1) }
    }
}

/// Keys in the `meta` database.
enum MetaKey {
    static let hardState: [UInt8] = Array("hard-state".utf8)
    static let snapshotMetadata: [UInt8] = Array("snapshot-metadata".utf8)
    static let snapshotData: [UInt8] = Array("snapshot-data".utf8)
    static func record(_ name: String) -> [UInt8] { Array("record/\(name)".utf8) }
    /// The number of the last write-ahead log record folded into LMDB.
    static let walFolded: [UInt8] = Array("wal-folded".utf8)
}

extension Array where Element == UInt8 {
    /// Lends these bytes to LMDB as an `MDB_val`. LMDB never writes through a key or data
    /// pointer passed to `mdb_put`/`mdb_get`/`mdb_cursor_get` (SET_RANGE only reads the key),
    /// so handing it a pointer derived from an immutable buffer is sound.
    func withMDBVal<R>(_ body: (inout MDB_val) throws(MDBCode) -> R) throws(MDBCode) -> R {
        let result: Result<R, MDBCode> = withUnsafeBytes { raw in
            var val = MDB_val(mv_size: raw.count, mv_data: UnsafeMutableRawPointer(mutating: raw.baseAddress))
            do throws(MDBCode) { return .success(try body(&val)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

extension MDB_val {
    /// Copies the value out of the memory map (valid only until the transaction ends).
    var bytes: [UInt8] {
        guard mv_size > 0, let data = mv_data else { return [] }
        return Array(UnsafeRawBufferPointer(start: data, count: mv_size))
    }
}
