import Foundation

#if canImport(Glibc)
import Glibc
#endif

// What the test targets share: one way to run a child process. Every integration test that
// starts switchman, moto or awscli goes through it.

public struct ChildProcessError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// A child process started with posix_spawn. Foundation's `Process.waitUntilExit()` spins a
/// run loop on the calling thread, which starves Swift concurrency's small cooperative pool
/// on a 2-core machine; here waiting happens on a dedicated thread instead. The child gets an
/// empty signal mask and default handlers, so SIGTERM/SIGKILL reach it whatever this process
/// has blocked. `@unchecked Sendable`: `exitStatus` and `waiters` are only touched under `lock`.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    private let lock = NSLock()
    private var exitStatus: Int32?
    private var waiters: [CheckedContinuation<Int32, Never>] = []

    /// Output goes to files, never pipes: a pipe nobody drains blocks the child when full.
    /// `combinedOutput`: stdout and stderr into one file, appended (a restarted process keeps
    /// its earlier output above the new one).
    public convenience init(
        _ args: [String], environment: [String: String] = ProcessInfo.processInfo.environment, combinedOutput: String
    ) throws {
        try self.init(args, environment: environment) { actions in
            posix_spawn_file_actions_addopen(&actions, 1, combinedOutput, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
    }

    /// `stdin`: a file to read from (default /dev/null). stderr is appended to, so a process
    /// restarted with the same files keeps its earlier complaints.
    public convenience init(
        _ args: [String], environment: [String: String] = ProcessInfo.processInfo.environment, stdin: String? = nil,
        stdout: String, stderr: String
    ) throws {
        try self.init(args, environment: environment, stdin: stdin) { actions in
            posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        }
    }

    private init(
        _ args: [String], environment: [String: String], stdin: String? = nil, output: (inout posix_spawn_file_actions_t) -> Void
    ) throws {
        guard let program = args.first else { throw ChildProcessError(description: "ChildProcess: no program given") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin ?? "/dev/null", O_RDONLY, 0)
        output(&actions)
        // Close every other descriptor in the child. Not all of this process's sockets are
        // close-on-exec (NIO's listeners are not): without this a child inherits, say, a test's
        // listening socket, and the port keeps accepting after the test closed it.
        Self.closeInheritedDescriptors(&actions)
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

        // Absolute paths are run directly, so the pid is the program's own (signals reach it,
        // not a wrapper); bare names go through env(1), which searches PATH.
        let argv0 = program.hasPrefix("/") ? [] : ["/usr/bin/env"]
        let executable = program.hasPrefix("/") ? program : "/usr/bin/env"
        let argv: [UnsafeMutablePointer<CChar>?] = (argv0 + args).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attr, argv, envp)
        guard rc == 0 else { throw ChildProcessError(description: "posix_spawn \(program) failed: \(String(cString: strerror(rc)))") }
        self.pid = pid
        startMonitor()
    }

    /// glibc ≥ 2.34 closes them all atomically (`addclosefrom_np`, which Swift's Glibc module
    /// does not import, hence dlsym); elsewhere each descriptor open right now gets a close action.
    private static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        if let closeFrom = Self.closeFrom, closeFrom(&actions, 3) == 0 { return }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap { Int32($0) } ?? []
        for fd in open where fd > 2 && fcntl(fd, F_GETFD) != -1 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
    }

    /// Waits for exit (the monitor thread reaps the child); returns the exit status, 128+signal if killed.
    public func wait() async -> Int32 {
        await withCheckedContinuation { (cont: CheckedContinuation<Int32, Never>) in
            let done: Int32? = lock.withLock {
                if let exitStatus { return exitStatus }
                waiters.append(cont)
                return nil
            }
            if let done { cont.resume(returning: done) }
        }
    }

    /// Waits at most `timeout` seconds; nil if the process is still running then.
    public func wait(timeout: TimeInterval) async -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while !hasExited && Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        return lock.withLock { exitStatus }
    }

    /// True once the child has been reaped. (After SIGKILL, `kill -0` still succeeds until the
    /// zombie is reaped, so this, not `kill -0`, is the test of "gone".)
    public var hasExited: Bool { lock.withLock { exitStatus != nil } }
    public var status: Int32? { lock.withLock { exitStatus } }

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

    /// Sends `signal` unless the child is already reaped (its pid could belong to someone else by then).
    public func signal(_ signal: Int32) {
        lock.withLock {
            if exitStatus == nil { _ = kill(pid, signal) }
        }
    }

    /// SIGKILL and reap.
    public func forceStop() async {
        signal(SIGKILL)
        _ = await wait()
    }
}

