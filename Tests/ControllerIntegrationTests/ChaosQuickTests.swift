import Foundation
import Testing

// chaos/run's quick selection (issue 8): isolate the leader, kill it with a write held in the
// proxy, pause it right after its lease check, each on a cluster in network namespaces, and
// every checker over the recorded history. The seed changes per run (the date) so CI keeps
// exploring; a failure prints the command that replays it. Needs root, nft and moto_server,
// which .ci/run installs; it fails (never skips) without them.

extension ClusterTests {
@Suite struct ChaosQuickTests {
    @Test func quickScenariosPassEveryChecker() async throws {
        _ = try Tools.require("moto_server")
        _ = try Tools.require("nft")
        guard getuid() == 0 else {
            throw HarnessError.missingTool("root", hint: "chaos/run creates network namespaces and nftables rules; run the tests as root (CI does)")
        }
        let root = TestPaths.packageRoot()
        let checker = root.appendingPathComponent(".build/debug/switchman-chaos").path
        guard FileManager.default.isExecutableFile(atPath: checker) else {
            throw HarnessError.missingTool(checker, hint: "build it with `swift build --build-tests`")
        }
        let report = try TestPaths.makeTempDir("chaos-quick")
        let seed = Int(Date().timeIntervalSince1970 / 86_400) % 100_000
        var env = ProcessInfo.processInfo.environment
        env["SWITCHMAN_BINARY"] = try SwitchmanBinary.require()
        env["SWITCHMAN_CHAOS_BINARY"] = checker
        let args = [root.appendingPathComponent("chaos/run").path, "--scenario", "quick", "--seed", "\(seed)",
                    "--duration", "25", "--report", report.path]
        let r = try await runProcess(args, environment: env, timeout: 1200)
        #expect(r.status == 0, """
            chaos/run (seed \(seed)) exited \(r.status); report kept in \(report.path)
            stdout: \(r.stdout.suffix(6000))
            stderr: \(r.stderr.suffix(3000))
            """)
        // Every quick scenario ran, and each run's verdict names all eight checkers, passed.
        let data = try Data(contentsOf: report.appendingPathComponent("summary.json"))
        let summary = try #require(try JSONSerialization.jsonObject(with: data) as? [String: [[String: Any]]])
        #expect(Set(summary.keys) == ["isolate-leader", "kill-leader-write-in-flight", "pause-leader"])
        for (scenario, runs) in summary {
            for run in runs {
                let names = Set(((run["checkers"] as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String })
                #expect(names.isSuperset(of: ["one-leader-per-term", "no-stale-write", "committed-entries-survive",
                                              "state-machines-agree", "route-linearizable", "convergence", "no-flapping", "no-write-loop"]),
                        "\(scenario): \(names)")
                #expect(run["ok"] as? Bool == true, "\(scenario) seed \(seed): \(run)")
                let stats = run["stats"] as? [String: Any] ?? [:]
                #expect((stats["writes"] as? Int ?? 0) > 0, "\(scenario): no AWS write was made, so nothing was tested")
            }
        }
        if r.status == 0 { try? FileManager.default.removeItem(at: report) }
    }
}
}
