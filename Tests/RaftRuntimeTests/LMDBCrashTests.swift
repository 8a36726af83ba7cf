import Foundation
import Raft
import Testing

@testable import RaftRuntime

#if canImport(Glibc)
import Glibc
#endif

/// `switchman debug crash-writer` killed with SIGKILL at seeded random moments and restarted:
/// every batch it acknowledged must survive, intact and contiguous.
@Suite("LMDB crash test")
struct LMDBCrashTests {
    #if os(Linux)
    /// `.build/debug/switchman`, next to this package (`swift build --build-tests` builds it).
    static var writerBinary: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // LMDBCrashTests.swift, RaftRuntimeTests, Tests
        return url.appendingPathComponent(".build/debug/switchman").path
    }

    /// The writer binary, and how many kills with which seed (SWITCHMAN_CRASH_KILLS/SEED).
    static func settings() throws -> (binary: String, kills: Int, seed: UInt64) {
        let binary = writerBinary
        try #require(
            FileManager.default.isExecutableFile(atPath: binary),
            "\(binary) is missing: run `swift build --build-tests` first")
        let environment = ProcessInfo.processInfo.environment
        let kills = environment["SWITCHMAN_CRASH_KILLS"].flatMap { Int($0) } ?? 8
        let seed = environment["SWITCHMAN_CRASH_SEED"].flatMap { UInt64($0) } ?? 0x5EED_CAFE
        return (binary, kills, seed)
    }

    @Test func ackedBatchesSurviveSIGKILL() throws {
        let (binary, kills, seed) = try Self.settings()
        var rng = SeededRandom(seed: seed)

        let dir = try ScratchDirectory("lmdb-crash")
        defer { dir.remove() }
        let storeDir = dir.path + "/store"
        let stderrPath = dir.path + "/writer.stderr"

        var maxAcked: UInt64 = 0
        var ackLines = 0
        var verified = 0
        var killedBeforeFirstAck = 0
        for round in 0..<kills {
            // Mostly kill after a random number of acks; now and then right at start-up,
            // while the writer is still opening the store.
            let acksBeforeKill = Int.random(in: 0..<8, using: &rng) == 0 ? 0 : Int.random(in: 1...40, using: &rng)
            let child = try ChildProcess(binary, ["debug", "crash-writer", "--dir", storeDir], stderrPath: stderrPath)
            var seen = 0
            while seen < acksBeforeKill {
                guard let line = try child.output.nextLine(timeout: .seconds(120)) else {
                    child.kill()
                    let stderr = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
                    Issue.record("writer exited by itself in round \(round), seed \(seed): \(stderr)")
                    return
                }
                let acked = try parseAck(line)
                #expect(acked > maxAcked, "acks must rise across restarts (round \(round), seed \(seed))")
                maxAcked = max(maxAcked, acked)
                ackLines += 1
                seen += 1
            }
            child.kill()  // SIGKILL and reap
            if acksBeforeKill == 0 { killedBeforeFirstAck += 1 }
            // Acks printed before the kill but not read yet are claims too.
            while let line = try child.output.nextLine(timeout: .seconds(120)) {
                let acked = try parseAck(line)
                maxAcked = max(maxAcked, acked)
                ackLines += 1
            }

            let store = try openStore(storeDir)
            defer { store.close() }
            let state = try store.load()  // also checks contiguity and commit ≤ last
            let last = state.entries.last?.index ?? 0
            #expect(state.snapshot == nil)
            #expect(state.entries.first.map { $0.index == 1 } ?? true)
            #expect(last >= maxAcked, "acked through \(maxAcked) but only \(last) survived (round \(round), seed \(seed))")
            // Entries and hard state share a transaction: a commit short of the last entry
            // would mean a torn transaction.
            #expect(state.hardState.commit == last, "round \(round), seed \(seed)")
            for e in state.entries {
                guard e.data == LMDBStoreDebugTools.crashPayload(index: e.index),
                    e.term == LMDBStoreDebugTools.crashTerm(index: e.index), e.kind == .normal
                else {
                    Issue.record("entry \(e.index) differs from what was written (round \(round), seed \(seed))")
                    return
                }
            }
            verified += state.entries.count
        }
        print(
            "LMDB crash test: seed \(seed), \(kills) SIGKILLs (\(killedBeforeFirstAck) during start-up), "
                + "\(ackLines) ack lines, acked through index \(maxAcked), \(verified) entry checks")
        #expect(maxAcked > 0)
    }

    /// The same through the whole shell: a single-replica RaftNode with 32 proposals in
    /// flight (group commit). Every proposal `propose` acknowledged must be in the log at the
    /// index it was acknowledged at, byte for byte, and the log must restore into a core.
    @Test func acknowledgedProposalsSurviveSIGKILL() throws {
        let (binary, kills, seed) = try Self.settings()
        var rng = SeededRandom(seed: seed)
        let dir = try ScratchDirectory("raft-crash")
        defer { dir.remove() }
        let storeDir = dir.path + "/store"
        let stderrPath = dir.path + "/writer.stderr"
        var acked: [UInt64: UInt64] = [:]  // index -> proposal number
        var checks = 0
        for round in 0..<kills {
            let acksBeforeKill = Int.random(in: 1...200, using: &rng)
            let child = try ChildProcess(binary, ["debug", "raft-crash-writer", "--dir", storeDir], stderrPath: stderrPath)
            var seen = 0
            while seen < acksBeforeKill {
                guard let line = try child.output.nextLine(timeout: .seconds(120)) else {
                    child.kill()
                    let stderr = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
                    Issue.record("writer exited by itself in round \(round), seed \(seed): \(stderr)")
                    return
                }
                let (index, k) = try parseProposalAck(line)
                acked[index] = k
                seen += 1
            }
            child.kill()
            while let line = try child.output.nextLine(timeout: .seconds(120)) {
                let (index, k) = try parseProposalAck(line)
                acked[index] = k
            }
            let store = try openStore(storeDir)
            defer { store.close() }
            let state = try store.load()
            // The persisted state must restore into a core (contiguity, terms, commit).
            _ = try RaftCore(config: RaftConfig(id: 1, randomSeed: 1), bootstrap: Membership(voters: [1]), restoring: state)
            let byIndex = Dictionary(uniqueKeysWithValues: state.entries.map { ($0.index, $0) })
            for (index, k) in acked {
                checks += 1
                guard let e = byIndex[index], RaftCrashWriter.proposalNumber(e) == k else {
                    Issue.record("acknowledged proposal \(k) at index \(index) is missing or torn (round \(round), seed \(seed))")
                    return
                }
            }
            #expect(state.hardState.commit <= (state.entries.last?.index ?? 0))
        }
        print("Raft crash test: seed \(seed), \(kills) SIGKILLs, \(acked.count) acknowledged proposals, \(checks) checks")
        #expect(acked.count > kills)
    }

    private func parseProposalAck(_ line: String) throws -> (UInt64, UInt64) {
        let parts = line.split(separator: " ")
        guard parts.count == 3, parts[0] == "acked", let index = UInt64(parts[1]), let k = UInt64(parts[2]) else {
            throw UnexpectedOutput(line: line)
        }
        return (index, k)
    }

    private func parseAck(_ line: String) throws -> UInt64 {
        let parts = line.split(separator: " ")
        guard parts.count == 2, parts[0] == "acked", let n = UInt64(parts[1]) else {
            throw UnexpectedOutput(line: line)
        }
        return n
    }
    #endif
}

struct UnexpectedOutput: Error, CustomStringConvertible {
    var line: String
    var description: String { "unexpected line from the writer: \(line)" }
}

#if os(Linux)
/// A child process with its stdout on a pipe, started with posix_spawn so that the pipe's
/// write end lives only in the child (EOF arrives exactly when the child is gone).
final class ChildProcess {
    let pid: pid_t
    let output: LineReader
    private var reaped = false

    init(_ path: String, _ arguments: [String], stderrPath: String) throws {
        var fds: [Int32] = [-1, -1]
        // CLOEXEC: children other tests spawn must not inherit the pipe (Glibc's module does
        // not export pipe2, hence the separate fcntl; dup2 onto fd 1 clears the flag there).
        guard pipe(&fds) == 0 else { throw SystemCallError(errno, "pipe") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        // NIO's listening sockets are not close-on-exec: without this a child inherits a
        // test's listener and keeps its port accepting after the test closed it.
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap({ Int32($0) }) ?? []
        where fd > 2 && fcntl(fd, F_GETFD) != -1 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
        let argv = ([path] + arguments).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var cArgs = argv + [nil]
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, &cArgs, environ)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw SystemCallError(rc, "posix_spawn \(path)")
        }
        pid = child
        output = LineReader(fd: fds[0])
    }

    /// SIGKILL, then reap, so the store's files are no longer in use by the child.
    func kill() {
        guard !reaped else { return }
        _ = Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = true
    }

    deinit {
        kill()
        close(output.fd)
    }
}

/// Reads lines from a file descriptor, waiting with poll() up to a deadline so a hung child
/// fails the test instead of hanging it.
final class LineReader {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var eof = false

    init(fd: Int32) { self.fd = fd }

    /// The next line, or nil at end of file.
    func nextLine(timeout: Duration) throws -> String? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            if eof { return buffer.isEmpty ? nil : String(decoding: buffer, as: UTF8.self) }
            guard ContinuousClock.now < deadline else { throw TimedOut(what: "a line from the child") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, 200)
            if ready < 0 && errno != EINTR { throw SystemCallError(errno, "poll") }
            guard ready > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw SystemCallError(errno, "read")
            }
            if n == 0 { eof = true } else { buffer.append(contentsOf: chunk[..<n]) }
        }
    }
}

struct SystemCallError: Error, CustomStringConvertible {
    var code: Int32
    var what: String
    init(_ code: Int32, _ what: String) {
        self.code = code
        self.what = what
    }
    var description: String { "\(what): \(String(cString: strerror(code)))" }
}
#endif
