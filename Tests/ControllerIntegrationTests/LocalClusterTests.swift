#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Testing

// The local cluster as a newcomer runs it: `cluster/up`, a drill, `cluster/down` (the shell
// scripts in cluster/), checked from outside with awscli configured only by the env file
// `cluster/up` writes. The scripts build nothing here (`--no-build`): they use the
// `.build/debug/switchman` the test run already has (or $SWITCHMAN_BINARY).

/// One `cluster/up --dir DIR` and what it left in DIR.
struct LocalCluster {
    let dir: URL

    static func script(_ name: String) -> String {
        TestPaths.packageRoot().appendingPathComponent("cluster/\(name)").path
    }

    /// The scripts' environment: ours, with the binary the tests use.
    static func scriptEnvironment() throws -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["SWITCHMAN_BINARY"] = try SwitchmanBinary.require()
        env.removeValue(forKey: "SWITCHMAN_LOCAL_DIR")
        return env
    }

    /// Runs `cluster/NAME --dir DIR ARGS`; throws with its output unless it exits 0.
    @discardableResult
    func run(_ name: String, _ args: [String] = [], timeout: TimeInterval = 120) async throws -> CommandResult {
        let full = [Self.script(name), "--dir", dir.path] + args
        let result = try await runProcess(full, environment: try Self.scriptEnvironment(), timeout: timeout)
        guard result.status == 0 else {
            throw HarnessError.command(args: full, status: result.status, stdout: result.stdout, stderr: result.stderr)
        }
        return result
    }

    /// `cluster/up` with free ports, no installs and no build.
    @discardableResult
    func up() async throws -> CommandResult {
        try await run("up", ["--base-port", "auto", "--no-install", "--no-build", "--timeout", "240"], timeout: 600)
    }

    /// KEY=value lines of DIR/world (the ids cluster/up seeded).
    func world() throws -> [String: String] {
        let text = try String(contentsOf: dir.appendingPathComponent("world"), encoding: .utf8)
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return values
    }

    func world(_ key: String) throws -> String {
        guard let value = try world()[key] else { throw HarnessError.unexpected("no \(key) in \(dir.path)/world") }
        return value
    }

    /// The `export K='V'` assignments of DIR/env (PATH left out).
    func envFile() throws -> [String: String] {
        let text = try String(contentsOf: dir.appendingPathComponent("env"), encoding: .utf8)
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("export ") {
            let assignment = line.dropFirst("export ".count)
            guard let eq = assignment.firstIndex(of: "=") else { continue }
            let key = String(assignment[..<eq])
            var value = String(assignment[assignment.index(after: eq)...])
            guard key != "PATH" else { continue }
            if value.hasPrefix("'"), value.hasSuffix("'"), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            values[key] = value
        }
        return values
    }

    /// awscli configured by nothing but the env file (and no user AWS config), JSON parsed.
    func aws(_ args: [String]) async throws -> JSON {
        var env = ProcessInfo.processInfo.environment
        for key in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"] {
            env.removeValue(forKey: key)
        }
        env["AWS_CONFIG_FILE"] = "/nonexistent"
        env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
        env.merge(try envFile()) { _, new in new }
        let full = ["aws", "--output", "json"] + args
        let result = try await runProcess(full, environment: env)
        guard result.status == 0 else {
            throw HarnessError.command(args: full, status: result.status, stdout: result.stdout, stderr: result.stderr)
        }
        return JSON(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)), context: "aws \(args.prefix(2).joined(separator: " "))")
    }

    /// Route table → where its route to VPC a or VPC b points (ENI, else instance).
    func routeTargets(_ tables: [String]) async throws -> [String: String] {
        let out = try await aws(["ec2", "describe-route-tables", "--route-table-ids"] + tables)
        var targets: [String: String] = [:]
        for t in out["RouteTables"]?.array ?? [] {
            guard let id = t["RouteTableId"]?.string else { continue }
            for r in t["Routes"]?.array ?? [] where ["172.16.0.0/16", "10.0.0.0/16"].contains(r["DestinationCidrBlock"]?.string ?? "") {
                targets[id] = r["NetworkInterfaceId"]?.string ?? r["InstanceId"]?.string
            }
        }
        return targets
    }

    /// Polls awscli until the tables point at `expected` (table → ENI).
    func expectRoutes(_ expected: [String: String], _ what: String, timeout: TimeInterval = 120) async throws {
        var last: [String: String] = [:]
        let ok = try await eventually(timeout: timeout, every: 0.5) {
            last = try await routeTargets(Array(expected.keys))
            return last == expected
        }
        if !ok { throw HarnessError.unexpected("\(what): routes are \(last), expected \(expected)") }
    }

    /// Process name → pid, from DIR/pids.
    func pidFiles() -> [String: pid_t] {
        let pids = dir.appendingPathComponent("pids")
        var found: [String: pid_t] = [:]
        for file in (try? FileManager.default.contentsOfDirectory(atPath: pids.path)) ?? [] where file.hasSuffix(".pid") {
            let text = (try? String(contentsOf: pids.appendingPathComponent(file), encoding: .utf8)) ?? ""
            if let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) { found[String(file.dropLast(4))] = pid }
        }
        return found
    }

    /// Running (not zombie) processes whose command line names DIR: every local-cluster
    /// process but moto (which is named by its port).
    func processesNamingDir() -> Set<pid_t> {
        var found: Set<pid_t> = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), Self.isRunning(pid),
                  let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let cmdline = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            if cmdline.contains(dir.path) { found.insert(pid) }
        }
        return found
    }

    /// Alive and not a zombie (a killed process whose parent is gone may stay a zombie until
    /// init reaps it).
    static func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].split(separator: " ").first
        return state != nil && state != "Z" && state != "X"
    }

    /// The last lines of every process log in DIR/logs, for a failing test's message.
    func logTails(lines: Int = 25) -> String {
        let logs = dir.appendingPathComponent("logs")
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: logs.path)) ?? []).sorted()
        return files.map { "--- \($0):\n\(tail(of: logs.appendingPathComponent($0), lines: lines))" }.joined(separator: "\n")
    }
}

/// Runs `cluster/up` in a fresh directory, then `body`, and always `cluster/down` (then, if
/// anything is still running, SIGKILL by pid file) — also when `up` or `body` fails.
func withLocalCluster(_ body: (LocalCluster, CommandResult) async throws -> Void) async throws {
    let parent = try TestPaths.makeTempDir("local-cluster")
    let cluster = LocalCluster(dir: parent.appendingPathComponent("state"))
    func cleanUp() async {
        let pids = cluster.pidFiles()
        _ = try? await cluster.run("down", timeout: 120)
        for pid in pids.values where LocalCluster.isRunning(pid) { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(at: parent)
    }
    do {
        let up = try await cluster.up()
        try await body(cluster, up)
    } catch {
        let logs = cluster.logTails()
        await cleanUp()
        throw HarnessError.scopeFailed(underlying: error, logs: logs)
    }
    await cleanUp()
}

extension ClusterTests {
@Suite struct LocalClusterTests {
    /// up → routes at their own AZ's instance; tunnel a1 down → rtb-a1 through a2; a1 up →
    /// back to a1; down → nothing left running and the directory gone.
    @Test func upTunnelDrillFailoverFailbackAndDown() async throws {
        var checkedDown = false
        try await withLocalCluster { c, up in
            #expect(up.stdout.contains("source \(c.dir.path)/env"), "cluster/up tells where the env file is")
            #expect(up.stdout.contains("Try next"))

            let env = try c.envFile()
            for key in ["SWITCHMAN_ENDPOINTS", "SWITCHMAN_CA", "SWITCHMAN_CERT", "SWITCHMAN_KEY", "AWS_ENDPOINT_URL",
                        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"] {
                #expect(env[key]?.isEmpty == false, "the env file sets \(key)")
            }
            #expect(env["SWITCHMAN_ENDPOINTS"]?.split(separator: ",").count == 3)

            let w = try c.world()
            func eni(_ t: String) throws -> String { try c.world("ENI_\(t)") }
            func rtb(_ t: String) throws -> String { try c.world("RTB_\(t)") }
            #expect(w["CIDR_a"] == "10.0.0.0/16" && w["CIDR_b"] == "172.16.0.0/16")
            let ownAZ = [try rtb("a1"): try eni("a1"), try rtb("a2"): try eni("a2"),
                         try rtb("b1"): try eni("b1"), try rtb("b2"): try eni("b2")]
            try await c.expectRoutes(ownAZ, "after cluster/up", timeout: 30)

            // The hosted zone has a record per VPN instance naming its address.
            let records = try await c.aws(["route53", "list-resource-record-sets", "--hosted-zone-id", try c.world("ZONE_ID")])
            let a = (records["ResourceRecordSets"]?.array ?? []).filter { $0["Type"]?.string == "A" }
            let zoneName = try c.world("ZONE_NAME")
            for t in ["a1", "a2", "b1", "b2"] {
                let value = a.first { $0["Name"]?.string == "\(t).\(zoneName)." }?["ResourceRecords"]?.array.first?["Value"]?.string
                #expect(value == (try c.world("IP_\(t)")), "DNS record of \(t)")
            }

            // Tunnel a1's far side stops answering: rtb-a1 fails over to a2; the others stay.
            try await c.run("drill", ["tunnel-down", "a1"])
            var failedOver = ownAZ
            failedOver[try rtb("a1")] = try eni("a2")
            try await c.expectRoutes(failedOver, "after tunnel-down a1")

            // It answers again: after the hold-down, rtb-a1 comes back to a1.
            try await c.run("drill", ["tunnel-up", "a1"])
            try await c.expectRoutes(ownAZ, "after tunnel-up a1")

            // An Auto Scaling group replaces a1's instance: its check is on and its old sentinel
            // is gone; the leader turns the check off and waits for the new instance's own
            // sentinel before rtb-a1 goes to the new ENI (issue #16).
            let replaced = try await c.run("drill", ["replace-instance", "a1"])
            let newENI = try #require(replaced.stdout.split(separator: "\n").first { $0.contains("new:") }?
                .split(separator: " ").first { $0.hasPrefix("eni-") }.map(String.init), "\(replaced.stdout)")
            var replacedRoutes = ownAZ
            replacedRoutes[try rtb("a1")] = newENI
            try await c.expectRoutes(replacedRoutes, "after replace-instance a1")
            let check = try await c.aws(["ec2", "describe-network-interface-attribute", "--network-interface-id", newENI,
                                         "--attribute", "sourceDestCheck"])
            #expect(check["SourceDestCheck"]?["Value"]?.bool == false, "awscli reads the replacement's check off")
            // a1's Elastic IP, the far side's peer address, is on the new interface.
            var addressENI: String? = nil
            let followed = try await eventually(timeout: 120, every: 0.5) {
                let out = try await c.aws(["ec2", "describe-addresses", "--allocation-ids", try c.world("EIP_a1")])
                addressENI = out["Addresses"]?.array.first?["NetworkInterfaceId"]?.string
                return addressENI == newENI
            }
            #expect(followed, "awscli reads a1's Elastic IP on \(newENI), got \(addressENI ?? "none")")
            #expect(replaced.stdout.contains(try c.world("PUBLIC_IP_a1")), "the drill names the Elastic IP")

            // The replicas reached "AWS" only through the realism layer, and it acted.
            let requests = (try? String(contentsOf: c.dir.appendingPathComponent("logs/aws-requests.jsonl"), encoding: .utf8)) ?? ""
            #expect(requests.contains("\"action\":\"ReplaceRoute\"") || requests.contains("\"action\":\"CreateRoute\""),
                    "route writes went through the realism layer")
            #expect(requests.contains("\"latency\""), "the realism layer added latency")

            // down: every process gone (also those the drills restarted), the directory too.
            let pids = c.pidFiles()
            #expect(pids.count == 13, "moto, the realism layer, 4 responders, 4 sentinels, 3 replicas: \(pids.keys.sorted())")
            let down = try await c.run("down")
            #expect(down.stdout.contains("Removed"))
            let running = pids.filter { LocalCluster.isRunning($0.value) }
            #expect(running.isEmpty, "still running after cluster/down: \(running)")
            #expect(c.processesNamingDir().isEmpty, "processes naming \(c.dir.path) after cluster/down")
            #expect(!FileManager.default.fileExists(atPath: c.dir.path), "cluster/down removed \(c.dir.path)")
            checkedDown = true
        }
        #expect(checkedDown)
    }

    /// A second `cluster/up` on a running cluster starts nothing: it says so, prints the
    /// status, and every process is the one the first run started.
    @Test func upTwiceIsIdempotent() async throws {
        try await withLocalCluster { c, _ in
            let before = c.pidFiles()
            #expect(before.count == 13)
            let namingDir = c.processesNamingDir()
            #expect(namingDir.count == 12, "the realism layer, responders, sentinels and replicas name the state dir: \(namingDir)")

            let second = try await c.up()
            #expect(second.stdout.contains("already running"), "second cluster/up said: \(second.stdout)")
            #expect(c.pidFiles() == before, "pid files changed")
            #expect(c.processesNamingDir() == namingDir, "processes changed")
            for (name, pid) in before { #expect(LocalCluster.isRunning(pid), "\(name) still runs") }
        }
    }
}
}
