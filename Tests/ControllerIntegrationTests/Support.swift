#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOCore
import NIOPosix

// Basic pieces the harness is built from: errors, temp paths, free ports, polling, a lock box,
// child processes and running a program to completion. Adapted from ActuatorsTests (test
// targets cannot import each other).

/// Everything the harness throws. Messages say what to do, because the person reading them
/// is usually looking at a CI log.
enum HarnessError: Error, CustomStringConvertible {
    /// A program the test needs is not installed (CI installs them; locally, see README).
    case missingTool(String, hint: String)
    /// A command exited non-zero.
    case command(args: [String], status: Int32, stdout: String, stderr: String)
    /// A command did not finish in time and was killed.
    case commandTimedOut(args: [String], seconds: TimeInterval)
    case didNotStart(what: String, log: String)
    case unexpected(String)
    /// A `withCluster` body failed; `logs` holds the last lines of every process's log.
    case scopeFailed(underlying: any Error, logs: String)

    var description: String {
        switch self {
        case .missingTool(let tool, let hint):
            return "\(tool) not found on PATH (\(ProcessInfo.processInfo.environment["PATH"] ?? "")): \(hint)"
        case .command(let args, let status, let stdout, let stderr):
            return "`\(args.joined(separator: " "))` exited \(status)\nstdout: \(stdout.suffix(4000))\nstderr: \(stderr.suffix(4000))"
        case .commandTimedOut(let args, let seconds):
            return "`\(args.joined(separator: " "))` did not finish within \(Int(seconds))s and was killed"
        case .didNotStart(let what, let log):
            return "\(what) did not start; its log ends with:\n\(log)"
        case .unexpected(let what):
            return what
        case .scopeFailed(let underlying, let logs):
            return "\(underlying)\n\(logs)"
        }
    }
}

// MARK: - paths and tools

enum TestPaths {
    /// The package root, found from this file's location (Tests/ControllerIntegrationTests/…).
    static func packageRoot(_ file: String = #filePath) -> URL {
        URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static func makeTempDir(_ tag: String) throws -> URL {
        // Keep the tag short and path-safe: it may be a test's #function ("name()").
        let safe = String(tag.filter { $0.isLetter || $0.isNumber || $0 == "-" }.prefix(40))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("switchman-it-\(safe)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}

enum Tools {
    /// The absolute path of `name` on PATH, or a `missingTool` error. Integration tests must
    /// fail, not skip, when a tool is missing: a skipped test looks like a passing one in CI.
    static func require(_ name: String, hint: String = "install with `pip install 'moto[server]' awscli` (.ci/run does)") throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw HarnessError.missingTool(name, hint: hint)
    }
}

// MARK: - ports, polling, locking

/// Ports already handed out by `unusedPort()`, so two parallel tests never get the same one.
private let handedOutPorts = Locked<Set<Int>>([])

/// A port nothing listens on: bind port 0, note it, close. Another process may still grab it
/// before our child binds it; callers that start servers retry on "address in use".
func unusedPort() async throws -> Int {
    while true {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        if port > 0, handedOutPorts.withLock({ $0.insert(port).inserted }) { return port }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` right now.
func isListening(port: Int) async -> Bool {
    do {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(2))
            .connect(host: "127.0.0.1", port: port).get()
        try? await channel.close()
        return true
    } catch {
        return false
    }
}

/// Polls `condition` until it holds or `timeout` passes; never assumes how fast anything is
/// (this machine has 2 cores and other builds may be running).
func eventually(timeout: TimeInterval = 60, every interval: TimeInterval = 0.1, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if try await condition() { return true }
        try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
    }
    return try await condition()
}

/// Polls `produce` until it returns a value or `timeout` passes; returns the last value (nil
/// when it never produced one). For "wait until the route points at X" style checks.
func eventuallyValue<T>(timeout: TimeInterval = 60, every interval: TimeInterval = 0.2, _ produce: () async throws -> T?) async rethrows -> T? {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if let value = try await produce() { return value }
        try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
    }
    return try await produce()
}

/// Thread-safe mutable box. `@unchecked Sendable` is safe because `value` is only touched
/// while holding `lock`, and is itself Sendable, so nothing read out of it is shared unsafely.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

extension Locked {
    var current: Value { withLock { $0 } }
}

// MARK: - child processes

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

    /// Output goes to files, never pipes: a pipe nobody drains blocks the child when full.
    /// `combinedOutput`: stdout and stderr into one file, appended (a restarted process keeps
    /// its earlier output above the new one).
    convenience init(_ args: [String], environment: [String: String], combinedOutput: String) throws {
        try self.init(args, environment: environment) { actions in
            posix_spawn_file_actions_addopen(&actions, 1, combinedOutput, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
    }

    convenience init(_ args: [String], environment: [String: String], stdout: String, stderr: String) throws {
        try self.init(args, environment: environment) { actions in
            posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        }
    }

    private init(_ args: [String], environment: [String: String], output: (inout posix_spawn_file_actions_t) -> Void) throws {
        guard let program = args.first else { throw HarnessError.unexpected("ChildProcess: no program given") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
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
        guard rc == 0 else { throw HarnessError.unexpected("posix_spawn \(program) failed: \(String(cString: strerror(rc)))") }
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

    /// Waits at most `timeout` seconds; nil if the process is still running then.
    func wait(timeout: TimeInterval) async -> Int32? {
        _ = await eventually(timeout: timeout, every: 0.05) { hasExited }
        return lock.withLock { exitStatus }
    }

    /// True once the child has been reaped. (After SIGKILL, `kill -0` still succeeds until the
    /// zombie is reaped, so this, not `kill -0`, is the test of "gone".)
    var hasExited: Bool { lock.withLock { exitStatus != nil } }
    var status: Int32? { lock.withLock { exitStatus } }

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
    func signal(_ signal: Int32) {
        lock.withLock {
            if exitStatus == nil { _ = kill(pid, signal) }
        }
    }

    /// SIGKILL and reap.
    func forceStop() async {
        signal(SIGKILL)
        _ = await wait()
    }
}

struct CommandResult: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion, output captured through temp files (a pipe could fill up);
/// killed after `timeout` seconds so a hung tool fails the test instead of hanging it.
func runProcess(_ args: [String], environment: [String: String] = ProcessInfo.processInfo.environment,
                timeout: TimeInterval = 120) async throws -> CommandResult {
    let dir = try TestPaths.makeTempDir("proc")
    defer { try? FileManager.default.removeItem(at: dir) }
    let out = dir.appendingPathComponent("out"), err = dir.appendingPathComponent("err")
    let child = try ChildProcess(args, environment: environment, stdout: out.path, stderr: err.path)
    guard let status = await child.wait(timeout: timeout) else {
        await child.forceStop()
        throw HarnessError.commandTimedOut(args: args, seconds: timeout)
    }
    return CommandResult(status: status, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
}

/// The last `lines` lines of a text file ("" if it cannot be read).
func tail(of file: URL, lines: Int) -> String {
    guard let text = try? String(contentsOf: file, encoding: .utf8) else { return "" }
    var all = text.split(separator: "\n", omittingEmptySubsequences: false)
    if all.last == "" { all.removeLast() }  // the final newline ends the last line, it starts none
    return all.suffix(lines).joined(separator: "\n")
}
