#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import SwitchmanTestSupport

/// The `switchman` executable under test: `$SWITCHMAN_BINARY` if set, else
/// `<package root>/.build/debug/switchman` (what `swift build --build-tests` produces).
enum SwitchmanBinary {
    static var path: String {
        if let override = ProcessInfo.processInfo.environment["SWITCHMAN_BINARY"], !override.isEmpty { return override }
        return TestPaths.packageRoot().appendingPathComponent(".build/debug/switchman").path
    }

    /// The path, or an error saying how to build it. Tests fail (never skip) without it.
    static func require() throws -> String {
        let binary = path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw HarnessError.missingTool(binary, hint: "build it first with `swift build --build-tests` (or set SWITCHMAN_BINARY)")
        }
        return binary
    }

    /// Runs `switchman ARGS` to completion.
    static func run(_ args: [String], environment: [String: String] = ProcessInfo.processInfo.environment,
                    timeout: TimeInterval = 120) async throws -> CommandResult {
        try await runProcess([try require()] + args, environment: environment, timeout: timeout)
    }

    /// Runs `switchman ARGS` and throws unless it exits 0.
    @discardableResult
    static func runChecked(_ args: [String], timeout: TimeInterval = 120) async throws -> CommandResult {
        let result = try await run(args, timeout: timeout)
        guard result.status == 0 else {
            throw HarnessError.command(args: ["switchman"] + args, status: result.status, stdout: result.stdout, stderr: result.stderr)
        }
        return result
    }
}

/// One long-running `switchman ARGS` process (a `serve` replica, a `sentinel`) whose stdout
/// and stderr go to `logFile`. Restarts append to the same file below a marker line, so a
/// failure message shows the whole life of the replica.
final class SwitchmanProcess: Sendable, CustomStringConvertible {
    let name: String
    let arguments: [String]
    let environment: [String: String]
    let logFile: URL
    private let binary: String
    private let child = Locked<ChildProcess?>(nil)
    private let starts = Locked(0)

    /// Starts the process at once.
    init(name: String, arguments: [String], logDirectory: URL,
         environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.name = name
        self.arguments = arguments
        self.environment = environment
        self.binary = try SwitchmanBinary.require()
        self.logFile = logDirectory.appendingPathComponent("\(name).log")
        try start()
    }

    var description: String { "\(name) (switchman \(arguments.joined(separator: " ")))" }

    /// Starts it again if it is not running (after `kill()`/`terminate()`); no-op otherwise.
    func start() throws {
        try child.withLock { current in
            if let current, !current.hasExited { return }
            let n = starts.withLock { count -> Int in
                count += 1
                return count
            }
            let marker = "=== harness: start #\(n) of \(name) at \(Date()): switchman \(arguments.joined(separator: " "))\n"
            appendToLog(marker)
            current = try ChildProcess([binary] + arguments, environment: environment, combinedOutput: logFile.path)
        }
    }

    private func appendToLog(_ text: String) {
        if let handle = FileHandle(forWritingAtPath: logFile.path) {
            handle.seekToEndOfFile()
            handle.write(Data(text.utf8))
            try? handle.close()
        } else {
            // No file yet (first start): create it; if that fails the spawn reports the real error.
            _ = FileManager.default.createFile(atPath: logFile.path, contents: Data(text.utf8))
        }
    }

    var pid: pid_t? { child.withLock { $0?.pid } }
    var isRunning: Bool { child.withLock { $0.map { !$0.hasExited } ?? false } }
    /// Exit status of the last run (128+signal when killed), nil while running.
    var exitStatus: Int32? { child.withLock { $0?.status } }
    var startCount: Int { starts.current }

    /// SIGTERM, then wait up to `gracePeriod` seconds for a clean exit; SIGKILL after that.
    /// Returns the exit status (nil if it was not running).
    @discardableResult
    func terminate(gracePeriod: TimeInterval = 15) async -> Int32? {
        guard let process = child.withLock({ $0 }) else { return nil }
        process.signal(SIGTERM)
        if let status = await process.wait(timeout: gracePeriod) {
            appendToLog("=== harness: \(name) exited \(status) after SIGTERM\n")
            return status
        }
        appendToLog("=== harness: \(name) ignored SIGTERM for \(Int(gracePeriod))s; SIGKILL\n")
        await process.forceStop()
        return process.status
    }

    /// SIGKILL and reap (a crash: no cleanup runs in the process).
    func kill() async {
        guard let process = child.withLock({ $0 }) else { return }
        let wasRunning = !process.hasExited
        await process.forceStop()
        if wasRunning { appendToLog("=== harness: \(name) killed with SIGKILL\n") }
    }

    /// SIGSTOP / SIGCONT: the process stays alive but silent (a hung replica).
    func pause() { child.withLock { $0?.signal(SIGSTOP) } }
    func resume() { child.withLock { $0?.signal(SIGCONT) } }

    /// `terminate()` (or `kill()` when `graceful` is false), then start again with the same
    /// arguments, data directory and log file.
    func restart(graceful: Bool = true) async throws {
        if graceful { await terminate() } else { await kill() }
        try start()
    }

    /// Waits until the process exits by itself; nil if still running after `timeout`.
    func waitForExit(timeout: TimeInterval = 60) async -> Int32? {
        guard let process = child.withLock({ $0 }) else { return nil }
        return await process.wait(timeout: timeout)
    }

    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// The last `lines` lines of the log, for failure messages.
    func logTail(_ lines: Int = 40) -> String { tail(of: logFile, lines: lines) }

    /// Polls the log until it contains `text`.
    func waitForLog(containing text: String, timeout: TimeInterval = 60) async -> Bool {
        await eventually(timeout: timeout) { log.contains(text) }
    }
}
