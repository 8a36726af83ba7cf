import Foundation
import SwitchmanTestSupport
import Testing

/// bench/proxy.py, the AWS realism layer, between the replicas and moto: what the replicas
/// see is what AWS would answer (propagated routes, blackholes, lagging reads, shuffled
/// interfaces, AWS's error codes, latency, throttling). awscli reads moto directly, so the
/// witness sees the truth. Every request is logged (`log`), with the modes that touched it.
final class RealismProxy: Sendable {
    let port: Int
    let process: ChildProcess
    let log: URL
    let control: URL

    var endpoint: String { "http://127.0.0.1:\(port)" }

    static func start(in directory: URL, upstream: String) async throws -> RealismProxy {
        let script = TestPaths.packageRoot().appendingPathComponent("bench/proxy.py").path
        let log = directory.appendingPathComponent("realism.jsonl")
        let control = directory.appendingPathComponent("realism-control.json")
        try Data("{}".utf8).write(to: control)
        let output = directory.appendingPathComponent("realism-proxy.log")
        for _ in 0..<5 {
            let port = try LoopbackPorts.unused()
            let process = try ChildProcess(
                ["python3", script, "--port", String(port), "--upstream", upstream, "--log", log.path, "--control", control.path],
                environment: ProcessInfo.processInfo.environment, combinedOutput: output.path)
            _ = await eventually(timeout: 60) {
                if process.hasExited { return true }
                return await isListening(port: port)
            }
            if !process.hasExited, await isListening(port: port) {
                return RealismProxy(port: port, process: process, log: log, control: control)
            }
            await process.forceStop()
            if !tail(of: output, lines: 20).contains("in use") { break }
        }
        throw HarnessError.didNotStart(what: "bench/proxy.py", log: tail(of: output, lines: 40))
    }

    private init(port: Int, process: ChildProcess, log: URL, control: URL) {
        self.port = port
        self.process = process
        self.log = log
        self.control = control
    }

    func stop() async { await process.forceStop() }

    /// Replaces the realism settings (bench/proxy.py's docstring lists them); the proxy
    /// re-reads the file when its mtime changes.
    func set(_ settings: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: settings, options: [.sortedKeys])
        let tmp = control.appendingPathExtension("tmp")
        try data.write(to: tmp)
        guard rename(tmp.path, control.path) == 0 else { throw HarnessError.unexpected("cannot replace \(control.path): errno \(errno)") }
        try FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: control.path)
    }

    /// The request lines of the log, in arrival order (response lines, which carry `done_ns`,
    /// are skipped; a half-written last line ends the read).
    func requests() -> [[String: Any]] {
        guard let text = try? String(contentsOf: log, encoding: .utf8) else { return [] }
        var out: [[String: Any]] = []
        for line in text.split(separator: "\n") {
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { break }
            if obj["done_ns"] == nil, obj["late_applied"] == nil { out.append(obj) }
        }
        return out
    }

    /// The response lines (status, and the realism modes that acted on the answer).
    func responses() -> [[String: Any]] {
        guard let text = try? String(contentsOf: log, encoding: .utf8) else { return [] }
        var out: [[String: Any]] = []
        for line in text.split(separator: "\n") {
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { break }
            if obj["done_ns"] != nil { out.append(obj) }
        }
        return out
    }

    static let routeWrites: Set<String> = ["CreateRoute", "ReplaceRoute", "DeleteRoute"]

    /// Route writes among `requests`, optionally for one table.
    static func routeWrites(_ requests: ArraySlice<[String: Any]>, table: String? = nil) -> [[String: Any]] {
        requests.filter { r in
            guard let action = r["action"] as? String, routeWrites.contains(action) else { return false }
            return table == nil || r["RouteTableId"] as? String == table
        }
    }

    static func count(_ requests: ArraySlice<[String: Any]>, _ action: String) -> Int {
        requests.filter { $0["action"] as? String == action }.count
    }

    /// Waits until at least `reads` more DescribeRouteTables calls than at `mark` have been
    /// made: each is a drift check of the leader's or the confirmation of a write, and
    /// "nothing was written" is only worth saying after the reconciler had that many reads
    /// to answer.
    func awaitReads(after mark: Int, _ reads: Int, timeout: TimeInterval = 120) async throws -> ArraySlice<[String: Any]> {
        var since: ArraySlice<[String: Any]> = []
        let ok = await eventually(timeout: timeout, every: 0.25) {
            let all = requests()
            since = all.count > mark ? all[mark...] : []
            return Self.count(since, "DescribeRouteTables") >= reads
        }
        if !ok { throw HarnessError.unexpected("only \(Self.count(since, "DescribeRouteTables")) route table reads in \(Int(timeout)) s, expected \(reads)") }
        return since
    }
}

/// The realism layer's own tests (bench/proxy_test.py: every mode against a real moto,
/// read with awscli through the proxy and directly), run as part of the test command.
@Suite struct RealismLayerTests {
    @Test func everyRealismModeBehavesAsAWSDoes() async throws {
        _ = try Tools.require("moto_server")
        let script = TestPaths.packageRoot().appendingPathComponent("bench/proxy_test.py").path
        let result = try await runProcess(["python3", script], timeout: 600)
        #expect(result.status == 0, "bench/proxy_test.py failed:\n\(result.stdout.suffix(3000))\n\(result.stderr.suffix(6000))")
    }
}
