import Foundation
import Testing

extension ClusterTests {
/// The local cluster through the AWS realism layer (bench/proxy.py): the paths that broke on
/// AWS's behaviour and not on moto's. Routes are read back with awscli from moto itself; the
/// proxy's log counts what the replicas asked of "AWS".
@Suite struct RealismClusterTests {
    static let gateway = "vgw-0123456789abcdef0"

    /// VGW propagation lists a propagated route beside ours, blackholes, reads that lag writes
    /// by 3 s, shuffled interfaces, AWS's error codes, 40 ms ± 50 % per call: the steady state
    /// writes nothing, a blackhole on a desired target is not rewritten every pass, a failover
    /// writes each moved route once, and a route an operator sent to a gateway while no
    /// tunnel qualifies is left alone.
    @Test func noWriteLoopUnderPropagationBlackholesStaleReadsAndForeignTargets() async throws {
        try await withCluster { scope in
            let c = try await RunningCluster.start(scope, dns: false) { world in
                [
                    "seed": 7, "latency_ms": 40, "latency_jitter": 0.5, "aws_errors": true, "eni_order": "shuffle",
                    "blackhole": true, "consistency_lag_s": 3,
                    "propagation": ["gateway": Self.gateway, "cidrs": [world.remoteCIDR]],
                ]
            }
            let proxy = try #require(c.realism)
            let zones = c.zoneRoutes
            try #require(zones.count == 2, "the world has two zones")
            let a = zones[0], b = zones[1]
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(b.own)], "initial placement")

            // Steady state with a propagated route listed beside each static one, in shuffled
            // order: twelve reconcile passes, not one write.
            var mark = proxy.requests().count
            var since = try await proxy.awaitReads(after: mark, 12)
            #expect(RealismProxy.routeWrites(since).isEmpty, "writes at steady state with propagation: \(RealismProxy.routeWrites(since))")
            #expect(proxy.responses().contains { ($0["realism"] as? [String])?.contains("propagation") == true },
                    "the proxy listed propagated routes")

            // Zone b's VPN instance is stopped: its route reads blackhole while its tunnel
            // (probed on loopback here) still looks healthy. Rewriting it cannot help.
            let bInstance = try c.world.instance(b.own).instanceID
            try await c.world.cli.run(["ec2", "stop-instances", "--instance-ids", bInstance])
            mark = proxy.requests().count
            since = try await proxy.awaitReads(after: mark, 12)
            let blackholeWrites = RealismProxy.routeWrites(since, table: b.table)
            #expect(blackholeWrites.count <= 1, "writes to a blackhole route: \(blackholeWrites)")
            let leader = try await c.waitForLeader()
            let logged = try c.replica(leader.id).log.components(separatedBy: "is a blackhole").count - 1
            #expect(logged == 1, "the blackhole is recorded once (found \(logged))")
            try await c.world.cli.run(["ec2", "start-instances", "--instance-ids", bInstance])

            // Tunnel a fails; reads lag writes by 3 s: zone a's table moves with one write.
            mark = proxy.requests().count
            await c.targets[a.own]?.close()
            try await c.expectRoutes([a.table: try c.eni(b.own), b.table: try c.eni(b.own)], "failover away from \(a.own)")
            since = try await proxy.awaitReads(after: proxy.requests().count, 15)
            let all = proxy.requests()
            let failoverWrites = RealismProxy.routeWrites(all[mark...], table: a.table)
            #expect(failoverWrites.count == 1, "writes for one moved route with 3 s stale reads: \(failoverWrites.count)")

            // Tunnel b fails too: no candidate qualifies, the routes stay where they are.
            // An operator points zone a's table at a virtual private gateway as a last resort;
            // the leader leaves it there and says why.
            await c.targets[b.own]?.close()
            let vgw = try await c.world.cli.object(["ec2", "create-vpn-gateway", "--type", "ipsec.1"])
            let vgwID = try vgw.string("VpnGateway", "VpnGatewayId")
            try await c.world.cli.run(["ec2", "attach-vpn-gateway", "--vpn-gateway-id", vgwID, "--vpc-id", c.world.vpcID])
            let bothDown = try await eventually(timeout: 120, every: 0.5) {
                (try await c.curl(leader.id, "/v1/routes").body).contains("no candidate qualifies")
            }
            #expect(bothDown, "both tunnels agreed down")
            try await c.world.cli.run(["ec2", "replace-route", "--route-table-id", a.table, "--destination-cidr-block", c.world.remoteCIDR,
                                       "--gateway-id", vgwID])
            mark = proxy.requests().count
            since = try await proxy.awaitReads(after: mark, 12)
            #expect(RealismProxy.routeWrites(since, table: a.table).isEmpty, "writes over an operator's gateway route")
            let gatewayTarget = try await c.world.cli.object(["ec2", "describe-route-tables", "--route-table-ids", a.table])
            #expect("\(gatewayTarget.value)".contains(vgwID), "the route still points at \(vgwID)")
            let routes = try await c.curl(leader.id, "/v1/routes").body
            #expect(routes.contains("not a tunnel"), "switchman routes says why: \(routes)")
        }
    }
}
}
