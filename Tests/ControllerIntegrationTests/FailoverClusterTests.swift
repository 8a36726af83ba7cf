import Foundation
import Testing

/// A running cluster: moto with its world, one sentinel per tunnel probing a TCP listener
/// the test opens and closes (the far side of the tunnel), and three `switchman serve`.
struct RunningCluster {
    let scope: ClusterScope
    let world: MotoWorld
    let pki: ClusterPKI
    let config: ConfigWriter
    let configPath: String
    let targets: [String: TCPFlapper]
    let recording: URL
    /// The AWS realism layer, when the cluster runs through it.
    var realism: RealismProxy? = nil

    var tunnels: [String] { world.vpnInstances.map(\.tag) }

    /// `realism`: the replicas talk to moto through bench/proxy.py with these settings (made
    /// from the world, which exists by then); awscli still reads moto directly.
    /// `configure`: changes to the config before it is written (an Elastic IP, say).
    static func start(_ scope: ClusterScope, dns: Bool, realism: ((MotoWorld) -> [String: Any])? = nil,
                      configure: ((inout ConfigWriter, MotoWorld) async throws -> Void)? = nil) async throws -> RunningCluster {
        let recording = scope.directory.appendingPathComponent("moto-recording.jsonl")
        var spec = MotoWorld.Spec()
        spec.zones = ["us-east-1a", "us-east-1b"]
        let world = try await scope.motoWorld(spec, recordingTo: recording)
        var proxy: RealismProxy? = nil
        if let realism {
            let p = try await RealismProxy.start(in: scope.directory, upstream: "127.0.0.1:\(world.moto.port)")
            scope.onTeardown { await p.stop() }
            scope.attachLog("realism-proxy", scope.directory.appendingPathComponent("realism-proxy.log"))
            try p.set(realism(world))
            proxy = p
        }
        let tunnels = world.vpnInstances.map(\.tag)
        let pki = try await scope.pki(members: [1, 2, 3], sentinels: tunnels)
        var sentinels: [String: String] = [:]
        for t in tunnels { sentinels[t] = "127.0.0.1:\(try LoopbackPorts.unused())" }
        var config = try await ConfigWriter.loopback(
            world: world, pki: pki, dataRoot: scope.directory.appendingPathComponent("data"), sentinels: sentinels, dns: dns)
        var targets: [String: TCPFlapper] = [:]
        for i in config.tunnels.indices {
            let target = try await scope.tcpFlapper()
            targets[config.tunnels[i].name] = target
            config.tunnels[i].probes = [.tcp(target.address)]
        }
        // Generous timeouts: the test machine is shared with builds and moto; what the tests
        // check is where routes end up and who wrote them, never how fast.
        config.health = .init(
            probeInterval: "300ms", probeTimeout: "250ms", fall: 2, rise: 2, failbackHoldDown: "3s", autoFailback: true,
            observationTTL: "5s")
        config.timing = .init(heartbeat: "100ms", electionTimeout: "1500ms", maxClockDrift: 0.05)
        if let proxy { config.aws.endpoint = proxy.endpoint }
        if let configure { try await configure(&config, world) }
        let path = try scope.write(config)
        for t in tunnels { try scope.spawn("sentinel-\(t)", ["sentinel", "--config", path, "--tunnel", t]) }
        // moto takes any credentials; the replicas find these through the standard chain.
        var env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = "testing"
        env["AWS_SECRET_ACCESS_KEY"] = "testing"
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        for id in 1...3 {
            try scope.spawn("replica-\(id)", ["serve", "--config", path, "--id", "\(id)", "--log-level", "info", "--bootstrap"], environment: env)
        }
        return RunningCluster(scope: scope, world: world, pki: pki, config: config, configPath: path, targets: targets, recording: recording,
                              realism: proxy)
    }

    func replica(_ id: UInt64) throws -> SwitchmanProcess { try scope.process("replica-\(id)") }

    /// The route table of each zone, and the tunnel of that zone (first candidate).
    var zoneRoutes: [(table: String, own: String, other: String)] {
        config.routes.compactMap { r in
            guard r.candidates.count >= 2 else { return nil }
            return (r.routeTable, r.candidates[0], r.candidates[1])
        }
    }

    /// Polls awscli (the independent witness) until every table's route to the remote CIDR
    /// points at the expected ENI.
    func expectRoutes(_ expected: [String: String], _ what: String) async throws {
        var last: [String: String] = [:]
        let ok = try await eventually(timeout: 120, every: 0.5) {
            last = [:]
            for table in expected.keys.sorted() {
                last[table] = try await world.routeTarget(table: table, destination: world.remoteCIDR) ?? "none"
            }
            return last == expected
        }
        if !ok { throw HarnessError.unexpected("\(what): routes are \(last), expected \(expected)") }
    }

    func eni(_ tunnel: String) throws -> String { try world.instance(tunnel).eniID }

    /// The replica whose latest role change says it leads, with the highest term among those
    /// running.
    func leader() -> (id: UInt64, term: UInt64)? {
        var best: (UInt64, UInt64)? = nil
        for id in UInt64(1)...3 {
            guard let p = try? replica(id), p.isRunning, let last = RoleLog.changes(in: p.log).last else { continue }
            if last.role == "leader", best.map({ last.term > $0.1 }) ?? true { best = (id, last.term) }
        }
        return best
    }

    func waitForLeader(excluding: Set<UInt64> = [], newerThan term: UInt64 = 0) async throws -> (id: UInt64, term: UInt64) {
        let found = await eventuallyValue(timeout: 120) { () -> (id: UInt64, term: UInt64)? in
            guard let l = leader(), !excluding.contains(l.id), l.term > term else { return nil }
            return l
        }
        guard let found else { throw HarnessError.unexpected("no leader (excluding \(excluding), newer than term \(term))") }
        return found
    }

    func writes() -> [RecordedWrite] { WriteLog.writes(in: recording) }
}

/// "role changed" lines of a replica's log (the Raft node logs them): `... role=leader term=3 [RaftRuntime] role changed`.
enum RoleLog {
    struct Change: Equatable {
        var role: String
        var term: UInt64
    }

    /// The round counts of "observations are not reaching a leader" lines.
    static func unsubmittedRounds(in log: String) -> [Int] {
        log.split(separator: "\n").filter { $0.contains("observations are not reaching a leader") }.compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("rounds=") }.flatMap { Int($0.dropFirst(7)) }
        }
    }

    static func changes(in log: String) -> [Change] {
        log.split(separator: "\n").filter { $0.contains("] role changed") }.compactMap { line in
            var role: String? = nil
            var term: UInt64? = nil
            for token in line.split(separator: " ") {
                if token.hasPrefix("role=") { role = String(token.dropFirst(5)) }
                if token.hasPrefix("term=") { term = UInt64(token.dropFirst(5)) }
            }
            guard let role, let term else { return nil }
            return Change(role: role, term: term)
        }
    }
}

/// Every test that runs a whole cluster (moto, sentinels, three replicas) nests in here, so
/// they run one at a time: together they would only starve each other on a 2-core machine.
@Suite(.serialized) enum ClusterTests {}

extension ClusterTests {
@Suite struct FailoverClusterTests {
    /// A tunnel failure moves every affected route, failback waits for the hold-down, a route
    /// changed by hand is restored, and a replaced VPN instance gets its routes and DNS record.
    @Test func failoverFailbackDriftAndInstanceReplacement() async throws {
        try await withCluster { scope in
            let c = try await RunningCluster.start(scope, dns: true)
            let zones = c.zoneRoutes
            try #require(zones.count == 2, "the world has two zones")
            let a = zones[0], b = zones[1]

            // Health is agreed, instances found: each zone's table points at its own tunnel.
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(b.own)], "initial placement")
            for t in c.tunnels {
                let ip = try c.world.instance(t).privateIP
                let ok = try await eventually(timeout: 120, every: 0.5) { try await c.world.dnsRecord(name: c.world.dnsName(t)) == ip }
                #expect(ok, "DNS record of \(t) names \(ip)")
            }

            // The far side of tunnel a stops answering: both tables go through b.
            try #require(c.targets[a.own] != nil)
            await c.targets[a.own]?.close()
            let brokenAt = Date()
            try await c.expectRoutes([a.table: try c.eni(b.own), b.table: try c.eni(b.own)], "failover away from \(a.own)")
            // Measured, not asserted: how long the failover took here, and the leader's own
            // detection-to-write time from /metrics (docs/BENCHMARKS.md).
            if let leader = c.leader() {
                let metrics = (try? await c.curl(leader.id, "/metrics").body) ?? ""
                let lines = metrics.split(separator: "\n").filter { $0.hasPrefix("switchman_failover_detection_to_write_seconds_sum") || $0.hasPrefix("switchman_failover_detection_to_write_seconds_count") }
                print("failover: far side closed → both routes read back moved (awscli polling included): \(String(format: "%.1f", Date().timeIntervalSince(brokenAt))) s; leader \(leader.id): \(lines.joined(separator: ", "))")
            }

            // It answers again: after the hold-down, zone a's table comes back to it.
            try await c.targets[a.own]?.open()
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(b.own)], "failback to \(a.own)")
            let events = c.writes()
            #expect(events.contains { $0.action == "ReplaceRoute" && $0.node != nil })

            // Someone points zone a's table elsewhere by hand: the leader puts it back.
            try await c.world.replaceRouteByHand(table: a.table, destination: c.world.remoteCIDR, instance: try c.world.instance(b.own).instanceID)
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(b.own)], "drift repaired")

            // The VPN instance of tunnel a is replaced: same tag, new instance, ENI and address.
            let old = try c.world.instance(a.own)
            try await c.world.terminate(old.instanceID)
            let replacement = try await c.world.runInstance(tag: a.own, zone: 0)
            #expect(replacement.instanceID != old.instanceID)
            try await c.expectRoutes([a.table: replacement.eniID, b.table: try c.eni(b.own)], "routes follow the replacement")
            let dnsMoved = try await eventually(timeout: 120, every: 0.5) {
                try await c.world.dnsRecord(name: c.world.dnsName(a.own)) == replacement.privateIP
            }
            #expect(dnsMoved, "the DNS record of \(a.own) names the replacement's address \(replacement.privateIP)")

            // EC2 launched every instance with its source/destination check on; the leader
            // turned it off, fenced, before any route named the interface (issue #16).
            for eni in [try c.eni(a.own), try c.eni(b.own), replacement.eniID] {
                #expect(try await c.world.sourceDestCheck(eni: eni) == false, "awscli reads \(eni)'s source/destination check off")
            }
            let writes = c.writes()
            #expect(WriteLog.fencingViolation(writes) == nil, "fencing: \(WriteLog.fencingViolation(writes) ?? "")")
            #expect(WriteLog.routeToCheckedInterface(writes) == nil, "\(WriteLog.routeToCheckedInterface(writes) ?? "")")
            #expect(writes.contains { $0.action == "ModifyNetworkInterfaceAttribute" && $0.networkInterface == replacement.eniID && $0.term != nil })
        }
    }

    /// A leader killed in the middle of a failover: the others finish it. Then a leader cut
    /// off from both followers stops writing: it cannot even repair a hand-made change until
    /// the others are back, and the write log shows nothing from it meanwhile.
    @Test func leaderKilledMidFailoverAndCutOffLeaderStopsWriting() async throws {
        try await withCluster { scope in
            let c = try await RunningCluster.start(scope, dns: false)
            let zones = c.zoneRoutes
            try #require(zones.count == 2)
            let a = zones[0], b = zones[1]
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(b.own)], "initial placement")

            // Kill the leader right as tunnel a fails.
            let first = try await c.waitForLeader()
            await c.targets[a.own]?.close()
            await (try c.replica(first.id)).kill()
            try await c.expectRoutes([a.table: try c.eni(b.own), b.table: try c.eni(b.own)], "failover finished without the old leader")
            let second = try await c.waitForLeader(excluding: [first.id], newerThan: first.term)
            try (try c.replica(first.id)).start()

            // Cut the leader off: stop both other replicas.
            let others = [UInt64(1), 2, 3].filter { $0 != second.id }
            for id in others { (try c.replica(id)).pause() }
            let cut = try c.replica(second.id)
            // It notices: it stops leading (check-quorum) within an election timeout or so.
            let steppedDown = await eventually(timeout: 120) { RoleLog.changes(in: cut.log).last?.role != "leader" }
            #expect(steppedDown, "the cut-off leader stepped down")

            // Change a route by hand now; nobody may repair it while the majority is gone.
            try await c.world.replaceRouteByHand(table: b.table, destination: c.world.remoteCIDR, instance: try c.world.instance(a.own).instanceID)
            let handMade = try #require(c.writes().last { $0.node == nil }, "the recording has the hand-made change")
            // Let it run 20 of its own probe rounds past that point (it says so in its log):
            // many leases long, time enough to have written had it been allowed to.
            // The count is logged every 10 rounds, so +30 on the last one logged is 20 or more.
            let logged = RoleLog.unsubmittedRounds(in: cut.log).last ?? 0
            let waited = await eventually(timeout: 120) { (RoleLog.unsubmittedRounds(in: cut.log).last ?? 0) >= logged + 30 }
            #expect(waited, "the cut-off replica kept probing without a leader")
            let late = c.writes().filter { $0.sequence > handMade.sequence && $0.node == second.id }
            #expect(late.isEmpty, "writes from the cut-off replica after it lost its majority: \(late)")
            #expect(try await c.world.routeTarget(table: b.table, destination: c.world.remoteCIDR) == (try c.world.instance(a.own).instanceID))

            // The others come back: a leader (any) repairs the route.
            for id in others { (try c.replica(id)).resume() }
            try await c.expectRoutes([a.table: try c.eni(b.own), b.table: try c.eni(b.own)], "drift repaired after the partition healed")
            let writes = c.writes()
            #expect(WriteLog.fencingViolation(writes) == nil, "fencing: \(WriteLog.fencingViolation(writes) ?? "")")
        }
    }
}
}
