#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A child process started with posix_spawn. Foundation's `Process.waitUntilExit()` spins a
/// run loop on the calling thread, which starves Swift concurrency's small cooperative pool
/// on a 2-core machine; here waiting happens on a dedicated thread instead. The child gets an
/// empty signal mask and default handlers, so SIGTERM/SIGKILL reach it whatever this process
/// has blocked. `@unchecked Sendable`: `exitStatus` and `waiters` are only touched under `lock`.
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    private let lock = NSLock()
    private var exitStatus: Int32?
    private var waiters: [CheckedContinuation<Int32, Never>] = []

    init(_ args: [String], environment: [String: String], stdin: String? = nil, stdout: String, stderr: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin ?? "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        // NIO's listening sockets are not close-on-exec: without this a child inherits a
        // test's listener and keeps its port accepting after the test closed it.
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap({ Int32($0) }) ?? []
        where fd > 2 && fcntl(fd, F_GETFD) != -1 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = (["/usr/bin/env"] + args).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/usr/bin/env", &actions, &attr, argv, envp)
        guard rc == 0 else { throw MotoError.unexpected("posix_spawn \(args.first ?? "") failed: \(rc)") }
        self.pid = pid
        startMonitor()
    }

    /// Waits for exit (the monitor thread reaps the child); returns the exit status, 128+signal if killed.
    func wait() async -> Int32 {
        await withCheckedContinuation { (cont: CheckedContinuation<Int32, Never>) in
            let done: Int32? = lock.withLock {
                if let exitStatus { return exitStatus }
                waiters.append(cont)
                return nil
            }
            if let done { cont.resume(returning: done) }
        }
    }

    var hasExited: Bool { lock.withLock { exitStatus != nil } }

    private func startMonitor() {
        let pid = self.pid
        Thread { [self] in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
            let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            let toResume = lock.withLock { () -> [CheckedContinuation<Int32, Never>] in
                exitStatus = code
                defer { waiters = [] }
                return waiters
            }
            toResume.forEach { $0.resume(returning: code) }
        }.start()
    }

    /// SIGKILL and reap: test fixtures hold nothing worth a graceful shutdown.
    func forceStop() async {
        _ = Glibc.kill(pid, SIGKILL)
        _ = await wait()
    }
}
