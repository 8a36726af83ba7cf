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

    /// Issue #16 items 2 and 4 against moto through the realism layer (AWS's error shapes,
    /// shuffled interfaces, 30 ms ± 50 %; EC2 status checks and scheduled events, which moto
    /// does not model, from the layer's instance_status mode), read back with awscli: tunnel a's
    /// Elastic IP starts on zone b's instance and is taken to a's interface, its DNS record
    /// publishes the public address; an impaired instance loses its routes; a scheduled
    /// reboot drains its tunnel until EC2 lists it completed; a replacement gets the address.
    @Test func elasticIPStatusChecksAndScheduledEventsReadBackWithAWSCLI() async throws {
        try await withCluster { scope in
            let base: [String: Any] = ["seed": 5, "latency_ms": 30, "latency_jitter": 0.5, "aws_errors": true, "eni_order": "shuffle"]
            var eip = (allocation: "", ip: "")
            let c = try await RunningCluster.start(scope, dns: true, realism: { _ in base }) { config, world in
                let a = config.routes[0].candidates[0], b = config.routes[0].candidates[1]
                let address = try await world.cli.object(["ec2", "allocate-address", "--domain", "vpc"])
                eip = (try address.string("AllocationId"), try address.string("PublicIp"))
                // Held by another instance when the cluster starts.
                try await world.cli.run(["ec2", "associate-address", "--allocation-id", eip.allocation,
                                         "--instance-id", try world.instance(b).instanceID])
                let i = try #require(config.tunnels.firstIndex { $0.name == a })
                config.tunnels[i].eip = eip.allocation
                config.tunnels[i].dns?.address = "public"
                config.aws.autoDrainOnScheduledEvent = true
                config.aws.scheduledEventDrainLead = "1h"
            }
            let proxy = try #require(c.realism)
            let zones = c.zoneRoutes
            try #require(zones.count == 2, "the world has two zones")
            let a = zones[0], b = zones[1]
            func addressENI() async throws -> String? {
                let out = try await c.world.cli.object(["ec2", "describe-addresses", "--allocation-ids", eip.allocation])
                return out["Addresses"]?.array.first?["NetworkInterfaceId"]?.string
            }
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(b.own)], "initial placement")
            let taken = try await eventually(timeout: 120, every: 0.5) { try await addressENI() == (try c.eni(a.own)) }
            #expect(taken, "awscli reads the Elastic IP on \(a.own)'s interface")
            let published = try await c.world.awaitDNSRecord(name: c.world.dnsName(a.own), toBe: eip.ip, timeout: 120)
            #expect(published == eip.ip, "\(a.own)'s record publishes the Elastic IP, got \(published ?? "none")")

            // EC2 reports b's instance impaired while its tunnel still answers: b's table
            // moves to a until the checks pass again.
            let bInstance = try c.world.instance(b.own).instanceID
            var settings = base
            settings["instance_status"] = [bInstance: ["instance": "impaired"]]
            try proxy.set(settings)
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(a.own)], "away from the impaired \(b.own)")
            let leader = try await c.waitForLeader()
            let tunnels = try await c.curl(leader.id, "/v1/tunnels").body
            #expect(tunnels.contains("impaired"), "switchman tunnels shows the impairment: \(tunnels)")
            try proxy.set(base)
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(b.own)], "back once \(b.own)'s checks pass")

            // A reboot scheduled 30 minutes out, inside the hour's lead: b drains, then the
            // drain lifts once EC2 lists the event as completed.
            let f = ISO8601DateFormatter()
            let start = f.string(from: Date().addingTimeInterval(1800)), end = f.string(from: Date().addingTimeInterval(5400))
            let event: [String: Any] = ["code": "system-reboot", "description": "The instance is scheduled for a reboot",
                                        "notBefore": start, "notAfter": end]
            settings = base
            settings["instance_status"] = [bInstance: ["events": [event]]]
            try proxy.set(settings)
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(a.own)], "\(b.own) drained ahead of its reboot")
            let events = try await c.curl(leader.id, "/v1/events").body
            #expect(events.contains("system-reboot"), "the event is in the log: \(events.suffix(2000))")
            var done = event
            done["description"] = "[Completed] The instance is scheduled for a reboot"
            settings["instance_status"] = [bInstance: ["events": [done]]]
            try proxy.set(settings)
            try await c.expectRoutes([a.table: try c.eni(a.own), b.table: try c.eni(b.own)], "the drain lifted itself")

            // a's instance is replaced: the Elastic IP follows to the new interface; the record
            // stays the public address.
            try proxy.set(base)
            let old = try c.world.instance(a.own)
            try await c.world.terminate(old.instanceID)
            let replacement = try await c.world.runInstance(tag: a.own, zone: 0)
            try await c.expectRoutes([a.table: replacement.eniID, b.table: try c.eni(b.own)], "routes follow the replacement")
            let followed = try await eventually(timeout: 120, every: 0.5) { try await addressENI() == replacement.eniID }
            #expect(followed, "awscli reads the Elastic IP on the replacement's interface")
            #expect(try await c.world.dnsRecord(name: c.world.dnsName(a.own)) == eip.ip)
            let associations = proxy.requests().filter { ($0["action"] as? String) == "AssociateAddress" && $0["term"] != nil }
            #expect(associations.count >= 2, "the leader's fenced AssociateAddress calls: \(associations.count)")
        }
    }
}
}
