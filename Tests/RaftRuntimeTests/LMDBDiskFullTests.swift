import Foundation
import Raft
import Testing

@testable import RaftRuntime

#if canImport(Glibc)
import Glibc
#endif

/// A real ENOSPC: the store lives on a 1 MiB tmpfs. Needs root to mount (CI runs as root);
/// when running as root, a failed mount fails the test rather than skipping it.
@Suite("LMDB log store on a full disk")
struct LMDBDiskFullTests {
    #if os(Linux)
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func enospcIsDiskFullStopsTheStoreAndLeavesTheLastWriteIntact() throws {
        let mountPoint = try ScratchDirectory("lmdb-tmpfs")
        defer { mountPoint.remove() }
        guard mount("tmpfs", mountPoint.path, "tmpfs", 0, "size=1m") == 0 else {
            let why = String(cString: strerror(errno))
            Issue.record("mount -t tmpfs -o size=1m on \(mountPoint.path) failed: \(why)")
            return
        }
        defer { _ = umount2(mountPoint.path, Int32(MNT_DETACH)) }

        let dir = mountPoint.path + "/store"
        // The map (64 MiB) is far larger than the file system, so the disk fills first. The
        // write-ahead log (64 KiB here) owns its blocks from the start: LMDB is what fills
        // the disk, while folding the log in.
        let config = LMDBLogStore.Configuration(walBytes: 64 << 10)
        let store = try openStore(dir, config)
        let reference = InMemoryRaftStorage()
        var next: UInt64 = 1
        var failure: LMDBStoreError?
        while failure == nil {
            let batch = (next..<next + 16).map { Entry(term: 1, index: $0, data: LMDBStoreDebugTools.crashPayload(index: $0)) }
            let r = PersistRequest(entries: batch, hardState: HardState(term: 1, vote: 1, commit: next + 15))
            do {
                try store.persist(r)
                try reference.persist(r)
                next += 16
            } catch let e as LMDBStoreError {
                failure = e
            }
            try #require(next < 1_000_000, "a 1 MiB tmpfs never filled")
        }
        let cause = try #require(failure)
        guard case .diskFull(let path, let detail) = cause else {
            Issue.record("expected diskFull, got \(cause)")
            return
        }
        #expect(path.hasSuffix("/store"))
        #expect(detail.lowercased().contains("space"), "\(detail)")
        #expect(next > 1, "not even one batch fit")
        #expect(store.isPoisoned)
        #expect(throws: LMDBStoreError.poisoned(after: cause)) {
            try store.persist(PersistRequest(hardState: HardState(term: 5, vote: 0, commit: 0)))
        }
        #expect(firstDifference(try store.load(), try reference.load()) == nil)
        store.close()

        // Reopened in place, on the still-full disk: exactly the acknowledged writes.
        let reopened = try openStore(dir, config)
        defer { reopened.close() }
        let loaded = try reopened.load()
        #expect(firstDifference(loaded, try reference.load()) == nil)
        #expect(loaded.entries.last?.index == next - 1)
    }
    #endif
}
