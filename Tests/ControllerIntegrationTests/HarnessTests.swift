#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

// Tests of the integration-test harness itself. The moto-backed ones fail (not skip) without
// moto_server, aws or the built switchman binary: CI installs and builds all three.

/// Moto startups are heavy on a 2-core machine; one at a time keeps the timing honest.
@Suite("Harness against moto", .serialized)
struct MotoHarnessTests {
    @Test func worldIsBuiltAndAWSCLIReadsItBack() async throws {
        try await withCluster { scope in
            let world = try await scope.motoWorld(MotoWorld.Spec(
                zones: ["us-east-1a", "us-east-1b", "us-east-1c"], tunnels: [("vpn-a", 0), ("vpn-b", 1)]))
            #expect(world.zones.count == 3)
            #expect(world.vpnInstances.map(\.tag) == ["vpn-a", "vpn-b"])
            #expect(!world.hostedZoneID.hasPrefix("/"))

            // Each zone's table is associated with the zone's subnet.
            for zone in world.zones {
                let out = try await world.cli.object(["ec2", "describe-route-tables", "--route-table-ids", zone.routeTableID])
                let associated = (out["RouteTables"]?.array.first?["Associations"]?.array ?? []).compactMap { $0["SubnetId"]?.string }
                #expect(associated == [zone.subnetID], "\(zone.name)")
            }
            // Instances carry the tag, a primary ENI and a private IP in their zone's subnet.
            for vpn in world.vpnInstances {
                #expect(try await world.instanceIDs(tag: vpn.tag) == [vpn.instanceID])
                #expect(vpn.eniID.hasPrefix("eni-"))
                #expect(vpn.privateIP.hasPrefix("10.0."))
                #expect(world.zones.first { $0.name == vpn.zone }?.subnetID == vpn.subnetID)
            }

            // The initial routes (created with awscli) read back with awscli: zone a → vpn-a,
            // zone b → vpn-b, zone c (no VPN instance of its own) → vpn-a.
            let a = try world.instance("vpn-a"), b = try world.instance("vpn-b")
            let expected = [a.instanceID, b.instanceID, a.instanceID]
            for (zone, instance) in zip(world.zones, expected) {
                #expect(try await world.routeTarget(table: zone.routeTableID, destination: world.remoteCIDR) == instance)
            }
            #expect(try await world.routeTarget(table: world.zones[0].routeTableID, destination: "192.168.0.0/16") == nil)
            let all = try await world.routeTargets(destination: world.remoteCIDR)
            #expect(all == Dictionary(uniqueKeysWithValues: zip(world.routeTables, expected)))

            // Drift by hand moves the route; awscli sees it.
            try await world.replaceRouteByHand(table: world.zones[0].routeTableID, destination: world.remoteCIDR, instance: b.instanceID)
            #expect(try await world.awaitRouteTarget(table: world.zones[0].routeTableID, destination: world.remoteCIDR,
                                                     toBe: b.instanceID, timeout: 30) == b.instanceID)

            // DNS: no record until one is written; then its value reads back.
            let name = world.dnsName("vpn-a")
            #expect(try await world.dnsRecord(name: name) == nil)
            try await world.upsertDNSRecord(name: name, value: a.privateIP, ttl: 30)
            #expect(try await world.awaitDNSRecord(zone: world.hostedZoneID, name: name, toBe: a.privateIP, timeout: 30) == a.privateIP)
            #expect(try await world.dnsRecord(name: name + ".") == a.privateIP)
        }
    }

    @Test func replacementInstanceHasANewIDAndTheSameTag() async throws {
        try await withCluster { scope in
            let world = try await scope.motoWorld()
            let old = try world.instance("vpn-a")
            try await world.terminate(old.instanceID)
            // Termination passes through shutting-down; poll, never assume how fast.
            let state = await eventuallyValue(timeout: 30) { () async -> String? in
                let s = try? await world.instanceState(old.instanceID)
                return s == "terminated" ? s : nil
            }
            #expect(state == "terminated")
            #expect(try await world.instanceIDs(tag: "vpn-a").isEmpty)

            let replacement = try await world.runInstance(tag: "vpn-a")
            #expect(replacement.instanceID != old.instanceID)
            #expect(replacement.eniID != old.eniID)
            #expect(replacement.privateIP != old.privateIP)
            #expect(replacement.zone == old.zone)
            #expect(replacement.subnetID == old.subnetID)
            // describe-instances filtered by the tag finds only the replacement alive, and
            // both with the terminated one included.
            #expect(try await world.instanceIDs(tag: "vpn-a") == [replacement.instanceID])
            #expect(Set(try await world.instanceIDs(tag: "vpn-a", states: [])) == [old.instanceID, replacement.instanceID])
            // The old route still names the dead instance (EC2 does not fix it; Switchman must).
            #expect(try await world.routeTarget(table: world.zones[0].routeTableID, destination: world.remoteCIDR) == old.instanceID)
        }
    }

    @Test func writtenConfigPassesSwitchmanConfigCheck() async throws {
        try await withCluster { scope in
            let world = try await scope.motoWorld()
            let pki = try await scope.pki(members: [1, 2, 3], sentinels: world.vpnInstances.map(\.tag))
            var sentinels: [String: String] = [:]
            for vpn in world.vpnInstances { sentinels[vpn.tag] = "127.0.0.1:\(try LoopbackPorts.unused())" }
            var config = try await ConfigWriter.loopback(world: world, pki: pki, dataRoot: scope.directory.appendingPathComponent("data"),
                                                         sentinels: sentinels, dns: true)
            // Quoting: a value with YAML syntax in it stays one string.
            config.clusterName = #"it: "quoted" # not a comment"#
            // Every key the writer knows, checked by the binary: probes of each kind, require.
            for i in config.tunnels.indices {
                config.tunnels[i].probes = [.icmp("172.16.0.10"), .tcp("172.16.0.10:443"), .http("http://172.16.0.10/health")]
                config.tunnels[i].require = .any
            }
            let path = try scope.write(config)
            let result = try await SwitchmanBinary.run(["config", "check", path])
            #expect(result.status == 0, "\(result.stdout)\(result.stderr)\n\(config.yaml())")
            #expect(result.stdout.contains("OK (3 members, 2 tunnels, 3 routes)"), "\(result.stdout)")

            // The ports and paths the config names are the ones the harness allocated.
            let yaml = config.yaml()
            for m in config.members {
                #expect(yaml.contains(#"peer: "\#(m.peer)""#))
                #expect(m.peer.hasPrefix("127.0.0.1:") && m.admin.hasPrefix("127.0.0.1:"))
            }
            #expect(Set(config.members.flatMap { [$0.peer, $0.admin] }).count == 6)
            #expect(config.members.allSatisfy { $0.adminPort != nil && $0.peerPort != nil })
            #expect(config.routes.map(\.candidates) == [["vpn-a", "vpn-b"], ["vpn-b", "vpn-a"], ["vpn-a", "vpn-b"]])
            #expect(yaml.contains(#"endpoint: "\#(world.endpoint)""#))
            #expect(yaml.contains(#"zoneId: "\#(world.hostedZoneID)""#))
        }
    }
}

@Suite("Harness without moto")
struct HarnessTests {
    @Test func clusterPKIWritesEveryFile() async throws {
        try await withCluster { scope in
            let pki = try await scope.pki(members: [1, 2, 3], sentinels: ["vpn-a", "vpn-b"])
            for file in pki.allFiles {
                #expect(FileManager.default.fileExists(atPath: file), "\(file)")
            }
            // CA pair + operator pair, a pair per member (3) and per sentinel (2).
            let expectedFiles = 14
            #expect(pki.allFiles.count == expectedFiles)
            #expect(pki.certTemplate.hasSuffix("/member-{id}.pem"))
            #expect(pki.keyTemplate.hasSuffix("/member-{id}-key.pem"))
            #expect(pki.sentinelCertTemplate?.contains("{tunnel}") == true)
            try pki.checkTemplates()
            let inspect = try await SwitchmanBinary.runChecked(["certs", "inspect", try pki.member(2).cert])
            #expect(inspect.stdout.contains("member 2"), "\(inspect.stdout)")
            let client = try await SwitchmanBinary.runChecked(["certs", "inspect", pki.operatorClient.cert])
            #expect(client.stdout.contains("operator"), "\(client.stdout)")
        }
    }

    @Test func switchmanProcessKillRestartTerminate() async throws {
        try await withCluster { scope in
            // `debug crash-writer` runs until stopped and prints a line per durable batch:
            // a stand-in for `serve` until that exists.
            let store = scope.directory.appendingPathComponent("store").path
            let writer = try scope.spawn("writer", ["debug", "crash-writer", "--dir", store])
            #expect(await writer.waitForLog(containing: "acked"), "\(scope.logTails())")
            #expect(writer.isRunning)

            await writer.kill()
            #expect(!writer.isRunning)
            #expect(writer.exitStatus == 128 + SIGKILL)
            #expect(writer.logTail(1).contains("killed with SIGKILL"))

            try await writer.restart()
            #expect(writer.isRunning)
            #expect(writer.startCount == 2)
            // The log keeps the first run above the second.
            #expect(await eventually(timeout: 60) { writer.log.components(separatedBy: "start #2").last?.contains("acked") == true },
                    "\(scope.logTails())")
            #expect(writer.log.contains("start #1"))

            let status = await writer.terminate(gracePeriod: 30)
            #expect(status != nil)
            #expect(!writer.isRunning)
            #expect(writer.logTail(5).contains("=== harness: writer"))
        }
    }

    @Test func withClusterKillsEverythingAndReportsLogsWhenTheBodyThrows() async throws {
        struct Boom: Error {}
        let leftover = Locked<SwitchmanProcess?>(nil)
        do {
            try await withCluster { scope in
                let store = scope.directory.appendingPathComponent("store").path
                let writer = try scope.spawn("doomed", ["debug", "crash-writer", "--dir", store])
                leftover.withLock { $0 = writer }
                _ = await writer.waitForLog(containing: "acked")
                throw Boom()
            }
            Issue.record("withCluster did not rethrow")
        } catch HarnessError.scopeFailed(let underlying, let logs) {
            #expect(underlying is Boom)
            #expect(logs.contains("--- doomed"), "\(logs)")
            #expect(logs.contains("acked"), "\(logs)")
        }
        let writer = try #require(leftover.withLock { $0 })
        #expect(!writer.isRunning)
        // A failed scope keeps its directory for inspection; this failure was on purpose.
        try? FileManager.default.removeItem(at: writer.logFile.deletingLastPathComponent().deletingLastPathComponent())
    }

    @Test func tcpFlapperOpensAndClosesOnTheSamePort() async throws {
        try await withCluster { scope in
            let flapper = try await scope.tcpFlapper()
            #expect(flapper.isOpen)
            #expect(await isListening(port: flapper.port))
            #expect(await eventually(timeout: 10) { flapper.acceptedConnections >= 1 })

            await flapper.close()
            #expect(!flapper.isOpen)
            // Nothing else may hold the port: children spawned meanwhile (the other tests run
            // in parallel) must not have inherited the listening socket.
            #expect(await isListening(port: flapper.port) == false)

            try await flapper.open()
            #expect(await isListening(port: flapper.port))
            #expect(flapper.address == "127.0.0.1:\(flapper.port)")

            // It answers HTTP, so an http:// probe sees the tunnel as healthy.
            let response = try await runProcess(["curl", "-s", "-m", "10", flapper.httpURL], timeout: 30)
            #expect(response.status == 0 && response.stdout == "ok\n", "\(response)")
        }
    }

    @Test func missingToolsFailWithAHint() throws {
        #expect(throws: HarnessError.self) { _ = try Tools.require("switchman-no-such-tool") }
        do {
            _ = try Tools.require("switchman-no-such-tool", hint: "install it")
        } catch {
            #expect(String(describing: error).contains("install it"))
        }
        // The binary the cluster tests use is there (`swift build --build-tests` builds it).
        let binary = try SwitchmanBinary.require()
        #expect(FileManager.default.isExecutableFile(atPath: binary))
    }
}

@Suite("ConfigWriter")
struct ConfigWriterTests {
    private func sample() -> ConfigWriter {
        var config = ConfigWriter(
            members: (1...3).map { ConfigWriter.Member(id: UInt64($0), peer: "127.0.0.1:\(7100 + $0)", admin: "127.0.0.1:\(7200 + $0)",
                                                       zone: "us-east-1\(["a", "b", "c"][$0 - 1])") },
            tls: .init(ca: "/pki/ca.pem", cert: "/pki/member-{id}.pem", key: "/pki/member-{id}-key.pem"),
            dataDir: "/data/{id}",
            aws: .init(region: "us-east-1", endpoint: "http://127.0.0.1:5000"))
        config.tunnels = [.init(name: "vpn-a", sentinel: "127.0.0.1:7300"), .init(name: "vpn-b", sentinel: "127.0.0.1:7301")]
        config.routes = [.init(routeTable: "rtb-0a1a", destination: "172.16.0.0/16", candidates: ["vpn-a", "vpn-b"])]
        return config
    }

    @Test func optionalFieldsAreEmittedOnlyWhenSet() {
        let plain = sample().yaml()
        for key in ["probes", "require", "sentinelCert", "sentinelKey", "dns", "profile", "autoFailback"] {
            #expect(!plain.contains(key), "\(key) in\n\(plain)")
        }
        var config = sample()
        config.tls.sentinelCert = "/pki/sentinel-{tunnel}.pem"
        config.tls.sentinelKey = "/pki/sentinel-{tunnel}-key.pem"
        config.tunnels[0].probes = [.icmp("172.16.0.10"), .tcp("172.16.0.10:443"), .http("http://172.16.0.10/health")]
        config.tunnels[0].require = .any
        let yaml = config.yaml()
        #expect(yaml.contains("""
              sentinelCert: "/pki/sentinel-{tunnel}.pem"
              sentinelKey: "/pki/sentinel-{tunnel}-key.pem"
            """))
        #expect(yaml.contains("""
                probes:
                  - icmp: "172.16.0.10"
                  - tcp: "172.16.0.10:443"
                  - http: "http://172.16.0.10/health"
                require: any
            """), "\(yaml)")
        // Only the tunnel that has probes gets them.
        #expect(yaml.components(separatedBy: "probes:").count == 2)
    }

    @Test func sampleWithFastTimingsPassesConfigCheck() async throws {
        try await withCluster { scope in
            var config = sample()
            for i in config.tunnels.indices { config.tunnels[i].probes = [.tcp("172.16.0.10:22")] }
            let path = try scope.write(config)
            let result = try await SwitchmanBinary.run(["config", "check", path])
            #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
            #expect(result.stdout.contains("OK (3 members, 2 tunnels, 1 routes)"), "\(result.stdout)")
        }
    }
}
