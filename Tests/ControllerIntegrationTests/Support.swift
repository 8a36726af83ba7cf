#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
@_exported import SwitchmanTestSupport
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
