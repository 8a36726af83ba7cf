import Foundation

/// Everything one multi-process test started: processes, moto, listeners. `withCluster`
/// tears it all down when the test ends, whether it passed, threw or failed an expectation,
/// and on a thrown error attaches the last lines of every log to the error. A typical test:
///
///     try await withCluster { c in
///         let world = try await c.motoWorld()
///         let pki = try await c.pki(members: [1, 2, 3], sentinels: world.vpnInstances.map(\.tag))
///         var sentinels: [String: String] = [:]
///         for vpn in world.vpnInstances { sentinels[vpn.tag] = "127.0.0.1:\(try LoopbackPorts.unused())" }
///         let config = try await ConfigWriter.loopback(world: world, pki: pki,
///             dataRoot: c.directory.appendingPathComponent("data"), sentinels: sentinels)
///         let path = try c.write(config)
///         for id in 1...3 { try c.spawn("replica-\(id)", ["serve", "--config", path, "--id", "\(id)", "--bootstrap"]) }
///         let a = try world.instance("vpn-a"), b = try world.instance("vpn-b")
///         try await world.terminate(a.instanceID)
///         let seen = try await world.awaitRouteTarget(table: world.zones[0].routeTableID,
///                                                     destination: world.remoteCIDR, toBe: b.instanceID)
///         try #require(seen == b.instanceID)  // throws → the error carries every log's tail
///     }
///
/// Prefer `try #require` for checks whose failure needs the logs: it throws, and the thrown
/// error comes back with every log's tail. A plain `#expect` does not throw; give it
/// `c.logTails()` as its comment.
final class ClusterScope: Sendable {
    /// The test's own temp directory: logs, certificates, config, data directories.
    let directory: URL
    private let processes = Locked<[SwitchmanProcess]>([])
    /// Extra logs to show on failure (moto's), by name.
    private let extraLogs = Locked<[(name: String, file: URL)]>([])
    /// Async teardown steps, run last-registered first.
    private let cleanups = Locked<[@Sendable () async -> Void]>([])

    init(directory: URL) {
        self.directory = directory
    }

    var logDirectory: URL { directory.appendingPathComponent("logs") }
    var allProcesses: [SwitchmanProcess] { processes.withLock { $0 } }

    /// Starts `switchman ARGS` with its log in `logs/<name>.log`; it is killed when the scope ends.
    @discardableResult
    func spawn(_ name: String, _ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) throws -> SwitchmanProcess {
        try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
        guard !processes.withLock({ $0.contains { $0.name == name } }) else {
            throw HarnessError.unexpected("a process named \(name) already exists in this scope")
        }
        let process = try SwitchmanProcess(name: name, arguments: arguments, logDirectory: logDirectory, environment: environment)
        processes.withLock { $0.append(process) }
        return process
    }

    func process(_ name: String) throws -> SwitchmanProcess {
        guard let found = processes.withLock({ $0.first { $0.name == name } }) else {
            throw HarnessError.unexpected("no process named \(name)")
        }
        return found
    }

    /// Runs `cleanup` when the scope ends (after processes are killed).
    func onTeardown(_ cleanup: @escaping @Sendable () async -> Void) {
        cleanups.withLock { $0.append(cleanup) }
    }

    func attachLog(_ name: String, _ file: URL) {
        extraLogs.withLock { $0.append((name, file)) }
    }

    /// Starts moto, builds the world; moto is stopped and its log shown on failure.
    /// `recordingTo`: moto appends every request it serves (headers included) to this file,
    /// the independent write log of the fencing checks.
    func motoWorld(_ spec: MotoWorld.Spec = MotoWorld.Spec(), recordingTo recording: URL? = nil) async throws -> MotoWorld {
        let moto = try await MotoServer.start(in: directory, recordingTo: recording)
        onTeardown { await moto.stop() }
        attachLog("moto", moto.logFile)
        return try await MotoWorld.build(on: moto, spec: spec)
    }

    /// Certificates in `<dir>/pki`.
    func pki(members: [UInt64] = [1, 2, 3], sentinels: [String] = []) async throws -> ClusterPKI {
        try await ClusterPKI.generate(in: directory.appendingPathComponent("pki"), members: members, sentinels: sentinels)
    }

    /// A TCP listener (a tunnel's probe target), closed when the scope ends.
    func tcpFlapper(open: Bool = true) async throws -> TCPFlapper {
        let flapper = try await TCPFlapper.start(open: open)
        onTeardown { await flapper.close() }
        return flapper
    }

    /// Writes `config` to `<dir>/<name>` and returns its path.
    func write(_ config: ConfigWriter, name: String = "switchman.yaml") throws -> String {
        let url = directory.appendingPathComponent(name)
        try config.write(to: url)
        return url.path
    }

    /// The last `lines` lines of every process's log and of the attached logs, one block each.
    func logTails(_ lines: Int = 40) -> String {
        var out = "logs in \(directory.path)"
        for p in allProcesses {
            let state = p.isRunning ? "running, pid \(p.pid.map(String.init) ?? "?")" : "exited \(p.exitStatus.map(String.init) ?? "?")"
            out += "\n--- \(p.name) [\(state)] \(p.logFile.path), last \(lines) lines:\n\(p.logTail(lines))"
        }
        for (name, file) in extraLogs.withLock({ $0 }) {
            out += "\n--- \(name) \(file.path), last \(lines) lines:\n\(tail(of: file, lines: lines))"
        }
        return out
    }

    /// Kills every process (SIGKILL: nothing in a test process is worth a graceful stop, and
    /// it cannot hang), then runs the teardown steps.
    func tearDown() async {
        for p in allProcesses { await p.kill() }
        let steps = cleanups.withLock { steps -> [@Sendable () async -> Void] in
            defer { steps = [] }
            return steps
        }
        for step in steps.reversed() { await step() }
    }
}

/// Runs `body` in a fresh `ClusterScope` and always tears it down. If `body` throws, the error
/// is rethrown as `HarnessError.scopeFailed` carrying the last lines of every log, and the
/// temp directory is kept for inspection; on success it is removed (unless
/// `SWITCHMAN_KEEP_TEST_DIRS` is set). For `#expect` failures that do not throw, put
/// `scope.logTails()` in the expectation's comment.
func withCluster<T>(_ tag: String = #function, logLines: Int = 40, _ body: (ClusterScope) async throws -> T) async throws -> T {
    let scope = ClusterScope(directory: try TestPaths.makeTempDir(tag))
    do {
        let result = try await body(scope)
        await scope.tearDown()
        if ProcessInfo.processInfo.environment["SWITCHMAN_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(at: scope.directory)
        }
        return result
    } catch {
        // Read the logs after the kill so they hold each process's last words.
        await scope.tearDown()
        throw HarnessError.scopeFailed(underlying: error, logs: scope.logTails(logLines))
    }
}
