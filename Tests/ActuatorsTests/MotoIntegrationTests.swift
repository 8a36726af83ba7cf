import Foundation
import Logging
import NIOCore
import Testing

@testable import Actuators

/// Against a real moto_server with SigV4 checking on; awscli is the independent witness.
@Suite(.timeLimit(.minutes(5)))
struct MotoIntegrationTests {
    let fencing = FencingToken(term: 7, index: 42)
    func deadline(_ s: Int64 = 60) -> NIODeadline { .now() + .seconds(s) }

    @Test func signatureCheckingIsOnAndAWrongSecretIsRefused() async throws {
        try await withMoto(signatureChecking: true) { moto in
            let good = Clients(endpoint: moto.endpoint, credentials: moto.credentials)
            _ = try await good.ec2.describeRouteTables(deadline: deadline())
            let bad = Clients(endpoint: moto.endpoint, credentials: AWSCredentials(accessKeyID: moto.accessKeyID, secretAccessKey: "wrong-secret"))
            do {
                _ = try await bad.ec2.describeRouteTables(deadline: deadline())
                Issue.record("a wrong secret was accepted")
            } catch let error as AWSError {
                #expect(error.httpStatus == 401 || error.httpStatus == 403)
                #expect(!error.code.isEmpty)
                #expect(error.attempt == 1, "an auth failure must not be retried")
            }
        }
    }

    /// Route 53 signing against moto's checker: a signed POST is accepted, a wrong secret is
    /// refused. The last part pins down moto's gap: its checker refuses every signed Route 53
    /// GET (ListResourceRecordSets, GetChange) from awscli too, so DNS tests run with checking off.
    @Test func route53SignedCallsAreAccepted() async throws {
        try await withMoto(signatureChecking: true) { moto in
            let zone = try await moto.awsDict(["route53", "create-hosted-zone", "--name", "signed.example.internal",
                                               "--caller-reference", UUID().uuidString])
            let zoneID = try #require((zone["HostedZone"] as? [String: Any])?["Id"] as? String)
            let c = Clients(endpoint: moto.endpoint, credentials: moto.credentials)
            let info = try await c.route53.changeResourceRecordSets(hostedZoneId: zoneID, changes: [
                RecordChange(.upsert, ResourceRecordSet(name: "a.signed.example.internal", type: "A", ttl: 60, values: ["10.9.9.9"])),
            ], fencing: fencing, deadline: deadline())
            #expect(!info.id.isEmpty)
            // The same batch with a wrong secret is refused.
            let bad = Clients(endpoint: moto.endpoint, credentials: AWSCredentials(accessKeyID: moto.accessKeyID, secretAccessKey: "wrong"))
            await #expect(throws: AWSError.self) {
                _ = try await bad.route53.changeResourceRecordSets(hostedZoneId: zoneID, changes: [
                    RecordChange(.upsert, ResourceRecordSet(name: "b.signed.example.internal", type: "A", ttl: 60, values: ["10.9.9.8"])),
                ], fencing: fencing, deadline: deadline())
            }
            await #expect(throws: MotoError.self) { try await moto.aws(["route53", "list-resource-record-sets", "--hosted-zone-id", zoneID]) }
            await #expect(throws: MotoError.self) {
                try await moto.aws(["route53", "list-resource-record-sets", "--hosted-zone-id", zoneID,
                                    "--start-record-name", "a.signed.example.internal", "--start-record-type", "A"])
            }
            await #expect(throws: MotoError.self) { try await moto.aws(["route53", "get-change", "--id", info.id]) }
        }
    }

    @Test func routesAreCreatedReplacedRestoredAndIdempotent() async throws {
        try await withMotoAndProxy(signatureChecking: true) { moto, proxy, server in
            let topo = try await Topology.build(moto)
            let c = Clients(endpoint: server.url, credentials: moto.credentials)
            let remote = "172.16.0.0/16"

            // Discovery reads: instances by tag, interfaces, tables.
            let vpns = try await c.ec2.describeInstances(filters: [.tag("switchman:role", "vpn")], deadline: deadline())
            #expect(Set(vpns.map(\.id)) == [topo.vpnA, topo.vpnB])
            let enis = try await c.ec2.describeNetworkInterfaces(ids: [topo.eni], deadline: deadline())
            #expect(enis.map(\.id) == [topo.eni])
            #expect(enis.first?.subnetId == topo.subnets[1])

            // First time: both routes are missing and get created.
            let desired = [
                DesiredRoute(routeTableId: topo.routeTables[0], destination: remote, target: .instance(topo.vpnA)),
                DesiredRoute(routeTableId: topo.routeTables[1], destination: remote, target: .networkInterface(topo.eni)),
            ]
            proxy.resetCounts()
            let first = try await c.routes.ensureRoutes(desired, fencing: fencing, deadline: deadline())
            #expect(first.values.allSatisfy { if case .created = $0 { true } else { false } }, "\(first)")
            #expect(proxy.count("CreateRoute") == 2)
            #expect(try await moto.routesSeenByCLI(topo.routeTables[0])[remote] == topo.vpnA)
            #expect(try await moto.routesSeenByCLI(topo.routeTables[1])[remote] == topo.eni)
            // Every write carried the fencing token and node id in its User-Agent.
            let writes = proxy.userAgents.current.filter { $0.hasPrefix("CreateRoute") }
            #expect(writes.count == 2)
            #expect(writes.allSatisfy { $0.hasSuffix("switchman/\(CallerIdentity.switchmanVersion) node/n1 term/7 index/42") })

            // Second time: nothing to do, one read, no write.
            proxy.resetCounts()
            let second = try await c.routes.ensureRoutes(desired, fencing: fencing, deadline: deadline())
            #expect(second.values.allSatisfy { if case .unchanged = $0 { true } else { false } })
            #expect(proxy.writeCount == 0)
            #expect(proxy.total == 1)

            // Failover: table 0 now goes through vpn B.
            let failover = DesiredRoute(routeTableId: topo.routeTables[0], destination: remote, target: .instance(topo.vpnB))
            let moved = try await c.routes.ensureRoute(failover, fencing: FencingToken(term: 8, index: 50), deadline: deadline())
            #expect("\(moved)" == "replaced")
            #expect(try await moto.routesSeenByCLI(topo.routeTables[0])[remote] == topo.vpnB)

            // Someone changes the route by hand: the next ensure puts it back.
            try await moto.aws(["ec2", "replace-route", "--route-table-id", topo.routeTables[0], "--destination-cidr-block", remote,
                          "--instance-id", topo.vpnA])
            #expect(try await moto.routesSeenByCLI(topo.routeTables[0])[remote] == topo.vpnA)
            let restored = try await c.routes.ensureRoute(failover, fencing: FencingToken(term: 8, index: 51), deadline: deadline())
            #expect("\(restored)" == "replaced")
            #expect(try await moto.routesSeenByCLI(topo.routeTables[0])[remote] == topo.vpnB)

            // Someone deletes it: the next ensure creates it.
            try await moto.aws(["ec2", "delete-route", "--route-table-id", topo.routeTables[0], "--destination-cidr-block", remote])
            #expect(try await moto.routesSeenByCLI(topo.routeTables[0])[remote] == nil)
            let recreated = try await c.routes.ensureRoute(failover, fencing: FencingToken(term: 8, index: 52), deadline: deadline())
            #expect("\(recreated)" == "created")
            #expect(try await moto.routesSeenByCLI(topo.routeTables[0])[remote] == topo.vpnB)

            // Reading actual routes for a set of tables (one missing table is simply absent).
            let actual = try await c.routes.readRouteTables(topo.routeTables + ["rtb-00000000000000000"], deadline: deadline())
            #expect(Set(actual.keys) == Set(topo.routeTables))
            #expect(actual[topo.routeTables[1]]?.route(to: remote)?.networkInterfaceId == topo.eni)
            let missing = try await c.routes.ensureRoute(
                DesiredRoute(routeTableId: "rtb-00000000000000000", destination: remote, target: .instance(topo.vpnA)),
                fencing: fencing, deadline: deadline())
            #expect(!missing.succeeded)

            // DeleteRoute and ReplaceRouteTableAssociation, checked with awscli.
            try await c.ec2.deleteRoute(routeTableId: topo.routeTables[1], destination: remote, fencing: fencing, deadline: deadline())
            #expect(try await moto.routesSeenByCLI(topo.routeTables[1])[remote] == nil)
            let newAssoc = try await c.ec2.replaceRouteTableAssociation(
                associationId: topo.associations[0], routeTableId: topo.routeTables[1], fencing: fencing, deadline: deadline())
            let assocOut = try await moto.awsDict(["ec2", "describe-route-tables", "--route-table-ids", topo.routeTables[1]])
            let assocs = ((assocOut["RouteTables"] as? [[String: Any]])?.first?["Associations"] as? [[String: Any]]) ?? []
            #expect(assocs.contains { ($0["SubnetId"] as? String) == topo.subnets[0] && ($0["RouteTableAssociationId"] as? String) == newAssoc })
        }
    }

    /// Signature checking is off here: moto 5.2.1 refuses every signed Route 53 GET, awscli's
    /// too (see `route53SignedCallsAreAccepted`), and ensuring a record reads first.
    @Test func dnsRecordIsUpsertedAndIdempotent() async throws {
        try await withMotoAndProxy(signatureChecking: false) { moto, proxy, server in
            let zone = try await moto.awsDict(["route53", "create-hosted-zone", "--name", "vpn.example.internal",
                                         "--caller-reference", UUID().uuidString])
            let zoneID = try #require((zone["HostedZone"] as? [String: Any])?["Id"] as? String)
            let c = Clients(endpoint: server.url, credentials: moto.credentials)
            let record = DesiredRecord(hostedZoneId: zoneID, name: "gw.vpn.example.internal", ttl: 60, values: ["10.0.1.10"])
            func cliValues() async throws -> [String] {
                let out = try await moto.awsDict(["route53", "list-resource-record-sets", "--hosted-zone-id", zoneID])
                let sets = out["ResourceRecordSets"] as? [[String: Any]] ?? []
                let rs = sets.first { ($0["Name"] as? String) == "gw.vpn.example.internal." && ($0["Type"] as? String) == "A" }
                return (rs?["ResourceRecords"] as? [[String: Any]] ?? []).compactMap { $0["Value"] as? String }
            }

            let first = try await c.dns.ensureRecord(record, fencing: fencing, deadline: deadline())
            guard case .upserted(_, let insync) = first else { Issue.record("expected an upsert, got \(first)"); return }
            #expect(insync)
            #expect(try await cliValues() == ["10.0.1.10"])

            proxy.resetCounts()
            #expect(try await c.dns.ensureRecord(record, fencing: fencing, deadline: deadline()) == .unchanged)
            #expect(proxy.writeCount == 0)

            // The VPN instance came back with a new address.
            var moved = record
            moved.values = ["10.0.2.20"]
            if case .upserted = try await c.dns.ensureRecord(moved, fencing: FencingToken(term: 8, index: 1), deadline: deadline()) {} else {
                Issue.record("expected an upsert")
            }
            #expect(try await cliValues() == ["10.0.2.20"])
            #expect(proxy.userAgents.current.contains { $0.hasPrefix("ChangeResourceRecordSets") && $0.hasSuffix("node/n1 term/8 index/1") })

            // Changed by hand: put back.
            let batch = #"{"Changes":[{"Action":"UPSERT","ResourceRecordSet":{"Name":"gw.vpn.example.internal","Type":"A","TTL":60,"ResourceRecords":[{"Value":"192.0.2.1"}]}}]}"#
            try await moto.aws(["route53", "change-resource-record-sets", "--hosted-zone-id", zoneID, "--change-batch", batch])
            #expect(try await cliValues() == ["192.0.2.1"])
            _ = try await c.dns.ensureRecord(moved, fencing: FencingToken(term: 8, index: 2), deadline: deadline())
            #expect(try await cliValues() == ["10.0.2.20"])

            // Several records of the zone in one call, read back with awscli; a batch that
            // mixes zones or is empty is refused before anything is sent.
            proxy.resetCounts()
            let pair = [DesiredRecord(hostedZoneId: zoneID, name: "gw.vpn.example.internal", ttl: 60, values: ["10.0.3.30"]),
                        DesiredRecord(hostedZoneId: zoneID, name: "gw2.vpn.example.internal", ttl: 60, values: ["10.0.3.31"])]
            _ = try await c.dns.writeRecords(pair, fencing: FencingToken(term: 8, index: 3), deadline: deadline())
            #expect(proxy.count("ChangeResourceRecordSets") == 1)
            #expect(try await cliValues() == ["10.0.3.30"])
            let listed = try await moto.awsDict(["route53", "list-resource-record-sets", "--hosted-zone-id", zoneID])
            let second = (listed["ResourceRecordSets"] as? [[String: Any]] ?? []).first { ($0["Name"] as? String) == "gw2.vpn.example.internal." }
            #expect((second?["ResourceRecords"] as? [[String: Any]])?.compactMap { $0["Value"] as? String } == ["10.0.3.31"])
            await #expect(throws: DNSBatchError.severalZones(["Z-OTHER", zoneID].sorted())) {
                _ = try await c.dns.writeRecords(pair + [DesiredRecord(hostedZoneId: "Z-OTHER", name: "x.example", values: ["10.0.0.1"])],
                                                 fencing: fencing, deadline: deadline())
            }
            await #expect(throws: DNSBatchError.empty) { _ = try await c.dns.writeRecords([], fencing: fencing, deadline: deadline()) }
            #expect(proxy.count("ChangeResourceRecordSets") == 1)
            _ = try await c.dns.ensureRecord(moved, fencing: FencingToken(term: 8, index: 4), deadline: deadline())

            // Raw client: CREATE + DELETE batch, GetChange, full listing.
            let info = try await c.route53.changeResourceRecordSets(hostedZoneId: zoneID, changes: [
                RecordChange(.create, ResourceRecordSet(name: "extra.vpn.example.internal", type: "TXT", ttl: 30, values: ["\"hello\""])),
            ], fencing: fencing, deadline: deadline())
            let synced = try await c.route53.waitForInsync(changeID: info.id, pollInterval: .milliseconds(50), deadline: deadline())
            #expect(synced.status == "INSYNC")
            let all = try await c.route53.listResourceRecordSets(hostedZoneId: zoneID, deadline: deadline())
            #expect(all.contains { $0.name == "extra.vpn.example.internal." && $0.type == "TXT" })
            _ = try await c.route53.changeResourceRecordSets(hostedZoneId: zoneID, changes: [
                RecordChange(.delete, ResourceRecordSet(name: "extra.vpn.example.internal", type: "TXT", ttl: 30, values: ["\"hello\""])),
            ], fencing: fencing, deadline: deadline())
            let after = try await c.route53.listResourceRecordSets(hostedZoneId: zoneID, deadline: deadline())
            #expect(!after.contains { $0.name == "extra.vpn.example.internal." })
        }
    }

    /// Reading the records we manage takes one ListResourceRecordSets for a small zone; in a
    /// zone too big to page through cheaply it reads the names it has not met one by one, and
    /// both ways agree with awscli on what exists.
    @Test func zoneRecordsAreReadInOnePageOrByNameWhenTheZoneIsBig() async throws {
        try await withMotoAndProxy(signatureChecking: false) { moto, proxy, server in
            let zone = try await moto.awsDict(["route53", "create-hosted-zone", "--name", "big.example.internal",
                                               "--caller-reference", UUID().uuidString])
            let zoneID = try #require((zone["HostedZone"] as? [String: Any])?["Id"] as? String)
            var changes: [String] = []
            for i in 0..<12 {
                changes.append(#"{"Action":"CREATE","ResourceRecordSet":{"Name":"gw\#(i).big.example.internal","Type":"A","TTL":60,"ResourceRecords":[{"Value":"10.0.0.\#(i + 1)"}]}}"#)
            }
            // Same name, other type: must not be taken for the A record.
            changes.append(#"{"Action":"CREATE","ResourceRecordSet":{"Name":"gw20.big.example.internal","Type":"TXT","TTL":60,"ResourceRecords":[{"Value":"\"x\""}]}}"#)
            try await moto.aws(["route53", "change-resource-record-sets", "--hosted-zone-id", zoneID,
                                "--change-batch", #"{"Changes":["# + changes.joined(separator: ",") + "]}"])
            // Mixed case and no final dot, as a config may spell them; gw20 has only a TXT, gw99 nothing.
            let names = ["GW1.big.example.internal", "gw5.big.example.internal.", "gw11.big.example.internal",
                         "gw20.big.example.internal", "gw99.big.example.internal"]
            let expected: [String: [String]] = ["gw1.big.example.internal.": ["10.0.0.2"], "gw5.big.example.internal.": ["10.0.0.6"],
                                                "gw11.big.example.internal.": ["10.0.0.12"]]

            let c = Clients(endpoint: server.url, credentials: moto.credentials)
            proxy.resetCounts()
            let onePage = try await c.dns.readRecords(hostedZoneId: zoneID, names: names, type: "A", deadline: deadline())
            #expect(onePage.mapValues(\.values) == expected)
            #expect(proxy.count("ListResourceRecordSets") == 1)

            // Pages of 3 records: the zone (12 A, 1 TXT, SOA, NS) is 5 pages, more than the 2
            // the listing may spend on 5 names.
            let small = AWSDNSActuator(route53: c.route53, pollInterval: .milliseconds(100), zonePageSize: 3)
            proxy.resetCounts()
            let paged = try await small.readRecords(hostedZoneId: zoneID, names: names, type: "A", deadline: deadline())
            #expect(paged.mapValues(\.values) == expected)
            let calls = proxy.count("ListResourceRecordSets")
            #expect(calls >= 3 && calls <= 2 + names.count, "\(calls) calls")
        }
    }
}
