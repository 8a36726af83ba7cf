import Controller
import Foundation
import Testing

/// Headless Chromium, the independent witness for the dashboard: what the operator's browser
/// shows after running the page's own script, not what our server meant to send.
enum Chromium {
    /// Fails (never skips) without it: a skipped browser test looks like a passing one in CI.
    static func require() throws -> String {
        for name in ["chromium", "chromium-browser"] {
            if let path = try? Tools.require(name) { return path }
        }
        throw HarnessError.missingTool(
            "chromium", hint: "the dashboard test loads the page in a real browser: `apt-get install -y chromium` (.ci/run does)")
    }

    /// Flags every run shares. Its own profile directory per call: two runs (or a crashed
    /// one) never fight over a profile lock.
    static func baseArguments(_ binary: String, profile: URL) -> [String] {
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--user-data-dir=\(profile.path)", "--virtual-time-budget=5000"]
    }

    /// The DOM after the page's script ran (its first render happens from the embedded data;
    /// the virtual time budget lets a few polls run too).
    static func dumpDOM(_ binary: String, url: String, scratch: URL) async throws -> String {
        let profile = scratch.appendingPathComponent("chromium-profile-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: profile) }
        let args = baseArguments(binary, profile: profile) + ["--dump-dom", url]
        let r = try await runProcess(args, timeout: 120)
        guard r.status == 0 else { throw HarnessError.command(args: args, status: r.status, stdout: r.stdout, stderr: r.stderr) }
        return r.stdout
    }

    static func screenshot(_ binary: String, url: String, to file: URL, scratch: URL) async throws {
        let profile = scratch.appendingPathComponent("chromium-profile-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: profile) }
        let args = baseArguments(binary, profile: profile) + ["--screenshot=\(file.path)", "--window-size=1400,1000", "--hide-scrollbars", url]
        let r = try await runProcess(args, timeout: 120)
        guard r.status == 0 else { throw HarnessError.command(args: args, status: r.status, stdout: r.stdout, stderr: r.stderr) }
    }
}

/// The start tag of the first element carrying `attribute` (e.g. `data-tunnel="a-vpn1"`).
private func startTag(in dom: String, with attribute: String) -> String? {
    guard let hit = dom.range(of: attribute), let open = dom[..<hit.lowerBound].lastIndex(of: "<"),
        let close = dom[hit.upperBound...].firstIndex(of: ">")
    else { return nil }
    return String(dom[open...close])
}

extension RunningCluster {
    /// The operator's environment, as `cli` builds it.
    func operatorEnvironment() throws -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["SWITCHMAN_ENDPOINTS"] = try [UInt64(1), 2, 3].map { try adminAddress($0) }.joined(separator: ",")
        env["SWITCHMAN_CA"] = pki.caCert
        env["SWITCHMAN_CERT"] = pki.operatorClient.cert
        env["SWITCHMAN_KEY"] = pki.operatorClient.key
        return env
    }
}

extension ClusterTests {
@Suite struct DashboardBrowserTests {
    /// `switchman dashboard` against three real replicas, read by headless Chromium: the
    /// leader, both tunnels and the route tables show; a write through the dashboard needs
    /// its CSRF header and reaches the cluster; a broken tunnel shows as down and its route
    /// on the other tunnel. Screenshots are kept and their paths printed.
    @Test func dashboardInARealBrowser() async throws {
        let chromium = try Chromium.require()
        // Kept after the test (withCluster removes its own directory on success).
        let shots = try TestPaths.makeTempDir("dashboard-screenshots")
        try await withCluster { scope in
            let c = try await RunningCluster.start(scope, dns: false)
            let zones = c.zoneRoutes
            try #require(zones.count == 2, "the world has two zones")
            let a = zones[0], b = zones[1]
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(b.own)], "initial placement")
            _ = try await c.waitForLeader()

            let port = try LoopbackPorts.unused()
            let dashboard = try scope.spawn("dashboard", ["dashboard", "--listen", "127.0.0.1:\(port)"], environment: try c.operatorEnvironment())
            let url = "http://127.0.0.1:\(port)/"
            let up = await dashboard.waitForLog(containing: "switchman dashboard: \(url)", timeout: 60)
            try #require(up, "the dashboard prints its URL once it listens\n\(scope.logTails())")

            var dom = ""
            func load() async throws -> String {
                dom = try await Chromium.dumpDOM(chromium, url: url, scratch: scope.directory)
                return dom
            }

            // Everything an operator looks for first.
            let complete = try await eventually(timeout: 120, every: 1) {
                let page = try await load()
                guard let leader = c.leader()?.id else { return false }
                return startTag(in: page, with: "id=\"leader\"")?.contains("data-leader=\"\(leader)\"") == true
                    && c.tunnels.allSatisfy { startTag(in: page, with: "data-tunnel=\"\($0)\"")?.contains("data-state=\"up\"") == true }
                    && zones.allSatisfy { startTag(in: page, with: "data-table=\"\($0.table)\"")?.contains("data-actual=\"\($0.own)\"") == true }
            }
            try #require(complete, "the page shows the leader, both tunnels up and the routes on their own tunnels; DOM:\n\(dom.prefix(6000))")
            #expect(dom.contains("data-member=\"1\"") && dom.contains("data-member=\"2\"") && dom.contains("data-member=\"3\""))
            #expect(dom.contains("data-observation=\"up\""), "the tunnels × replicas matrix has observations")
            #expect(dom.contains("data-kind=\"intent\""), "the timeline has the initial route writes")
            #expect(!dom.contains("No cluster data"))
            // The dashboard asks the leader first once it knows it: its lease and its view of
            // every member show.
            let leased = try await eventually(timeout: 60, every: 1) {
                let page = try await load()
                guard let lease = startTag(in: page, with: "id=\"lease\""), let at = page.range(of: lease), let leader = c.leader()?.id else { return false }
                // `<dd id="lease">1.2s left</dd>`
                return page[at.upperBound...].prefix { $0 != "<" }.hasSuffix(" left")
                    && startTag(in: page, with: "data-member=\"\(leader)\"")?.contains("data-role=\"leader\"") == true
            }
            #expect(leased, "the page shows the leader's lease; DOM:\n\(dom.prefix(6000))")
            let healthy = shots.appendingPathComponent("dashboard-healthy.png")
            try await Chromium.screenshot(chromium, url: url, to: healthy, scratch: scope.directory)

            // A write through the dashboard: refused without the page's header, done with it.
            func post(_ path: String, _ body: String, header: Bool) async throws -> (status: Int, body: String) {
                var args = ["curl", "-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
                            "-H", "Content-Type: application/json", "--data", body, "http://127.0.0.1:\(port)\(path)"]
                if header { args += ["-H", "X-Switchman-Dashboard: 1"] }
                let r = try await runProcess(args, timeout: 90)
                let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
                return (lines.last.flatMap { Int($0) } ?? 0, lines.dropLast().joined(separator: "\n") + r.stderr)
            }
            let forged = try await post("/api/tunnels/\(a.own)/drain", #"{"reason":"forged"}"#, header: false)
            #expect(forged.status == 403, "\(forged.body)")
            let drained = try await post("/api/tunnels/\(a.own)/drain", #"{"reason":"dashboard test"}"#, header: true)
            #expect(drained.status == 200, "\(drained.body)")
            try await c.expectRoutes([a.table: try c.eni(b.own), b.table: try c.eni(b.own)], "drained through the dashboard")
            let showsDrain = try await eventually(timeout: 60, every: 1) {
                let page = try await load()
                return startTag(in: page, with: "data-tunnel=\"\(a.own)\"")?.contains("data-drained=\"yes\"") == true && page.contains("dashboard test")
            }
            #expect(showsDrain, "the page shows the drain and its reason; DOM:\n\(dom.prefix(6000))")
            let undrained = try await post("/api/tunnels/\(a.own)/undrain", "{}", header: true)
            #expect(undrained.status == 200, "\(undrained.body)")
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(b.own)], "back after the undrain")

            // The far side of tunnel a stops answering: the page shows it down and zone a's
            // route on tunnel b, and the failover in the timeline.
            try #require(c.targets[a.own] != nil)
            await c.targets[a.own]?.close()
            try await c.expectRoutes([a.table: try c.eni(b.own), b.table: try c.eni(b.own)], "failover away from \(a.own)")
            let failedOver = try await eventually(timeout: 120, every: 1) {
                let page = try await load()
                return startTag(in: page, with: "data-tunnel=\"\(a.own)\"")?.contains("data-state=\"down\"") == true
                    && startTag(in: page, with: "data-table=\"\(a.table)\"")?.contains("data-actual=\"\(b.own)\"") == true
            }
            try #require(failedOver, "the page shows \(a.own) down and \(a.table) on \(b.own); DOM:\n\(dom.prefix(6000))")
            #expect(dom.contains("data-kind=\"tunnelDown\""), "the failover is in the timeline")
            #expect(dom.contains("data-observation=\"down\""), "the replicas' observations say down")

            let failover = shots.appendingPathComponent("dashboard-failover.png")
            try await Chromium.screenshot(chromium, url: url, to: failover, scratch: scope.directory)
            for shot in [healthy, failover] {
                let data = try Data(contentsOf: shot)
                #expect(data.count > 10_000 && data.starts(with: [0x89, 0x50, 0x4E, 0x47]), "\(shot.path) is a PNG screenshot (\(data.count) bytes)")
            }
            print("dashboard screenshots: \(healthy.path) \(failover.path)")
            #expect(dashboard.isRunning, "the dashboard kept running\n\(dashboard.logTail())")
        }
    }
}
}
