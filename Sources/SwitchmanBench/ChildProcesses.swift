import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

struct SpawnError: Error, CustomStringConvertible {
    var description: String
}

/// A child started with posix_spawn. We reap it ourselves with waitpid, so after SIGKILL we
/// know for certain when it is gone (`kill -0` succeeds on an unreaped zombie).
final class ChildProcess: Sendable {
    let name: String
    let pid: pid_t
    let executable: String
    let arguments: [String]
    let logPath: String
    private let reaped = NIOLockedValueBox(false)

    private init(name: String, pid: pid_t, executable: String, arguments: [String], logPath: String) {
        self.name = name
        self.pid = pid
        self.executable = executable
        self.arguments = arguments
        self.logPath = logPath
    }

    /// Starts `executable` with stdout and stderr appended to `logPath`.
    static func spawn(name: String, executable: String, arguments: [String], logPath: String) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else {
            throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        let child = ChildProcess(name: name, pid: pid, executable: executable, arguments: arguments, logPath: logPath)
        ChildRegistry.shared.add(child)
        return child
    }

    /// Whether the child has exited (reaps it if so).
    var hasExited: Bool {
        reaped.withLockedValue { done in
            if done { return true }
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno == ECHILD) { done = true }
            return done
        }
    }

    /// SIGKILL and reap: once this returns the process no longer exists.
    func killAndReap() {
        reaped.withLockedValue { done in
            guard !done else { return }
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            done = true
        }
        ChildRegistry.shared.remove(self)
    }

    /// user+system CPU seconds from /proc/<pid>/stat (fields 14 and 15, in clock ticks).
    var cpuSeconds: Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name (which may contain spaces) start at field 3.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        return (utime + stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// VmRSS from /proc/<pid>/status, in KiB.
    var residentKiB: Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        }
        return nil
    }

    var logTail: String {
        guard let text = try? String(contentsOfFile: logPath, encoding: .utf8) else { return "" }
        return text.split(separator: "\n").suffix(15).joined(separator: "\n")
    }
}

/// Every child still running, so that any way out of the benchmark (normal end, error,
/// SIGINT/SIGTERM) kills them all.
final class ChildRegistry: Sendable {
    static let shared = ChildRegistry()
    private let children = NIOLockedValueBox<[pid_t: ChildProcess]>([:])

    func add(_ c: ChildProcess) { children.withLockedValue { $0[c.pid] = c } }
    func remove(_ c: ChildProcess) { _ = children.withLockedValue { $0.removeValue(forKey: c.pid) } }

    func killAll() {
        let all = children.withLockedValue { $0.values }
        for c in all { c.killAndReap() }
    }
}

/// user+system CPU seconds of this process (the load generator).
func selfCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return s(usage.ru_utime) + s(usage.ru_stime)
}

/// CPU seconds all cores spent busy since boot (/proc/stat), to tell how much of the shared
/// machine other work took during a run.
func machineBusySeconds() -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
        let line = text.split(separator: "\n").first, line.hasPrefix("cpu ")
    else { return nil }
    let f = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard f.count >= 8 else { return nil }
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
    return busy / Double(sysconf(Int32(_SC_CLK_TCK)))
}
