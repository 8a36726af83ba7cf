import Foundation
import Testing

extension ClusterTests {
/// `switchman preflight` against moto through the realism layer, which answers DryRun as
/// AWS does (moto ignores it and would apply the write).
@Suite struct PreflightTests {
    @Test func preflightDryRunsEveryRouteWriteAndReportsWhatIAMDenies() async throws {
        try await withCluster { scope in
            let world = try await scope.motoWorld()
            let proxy = try await RealismProxy.start(in: scope.directory, upstream: "127.0.0.1:\(world.moto.port)")
            scope.onTeardown { await proxy.stop() }
            try proxy.set(["dryrun": true, "aws_errors": true])
            let address = try await world.cli.object(["ec2", "allocate-address", "--domain", "vpc"])
            let allocation = try address.string("AllocationId")
            let first = try #require(world.vpnInstances.first?.tag)
            let (path, env) = try await Self.preflightConfig(scope, world, proxy, dns: true) { t in
                if t.name == first { t.eip = allocation }
            }
            let before = try await world.routeTargets(destination: world.remoteCIDR)

            let allowed = try await SwitchmanBinary.run(["preflight", "--config", path], environment: env)
            #expect(allowed.status == 0, "preflight: \(allowed.stdout)\(allowed.stderr)")
            #expect(allowed.stdout.contains("ReplaceRoute allowed (DryRun)"), "\(allowed.stdout)")
            #expect(allowed.stdout.contains("ModifyNetworkInterfaceAttribute allowed (DryRun)"), "\(allowed.stdout)")
            #expect(allowed.stdout.contains("credentials") && allowed.stdout.contains("environment"), "names the credentials source")
            #expect(allowed.stdout.contains("hostedZone"))
            #expect(allowed.stdout.contains("AssociateAddress to \(try world.instance(first).eniID) allowed (DryRun)"), "\(allowed.stdout)")
            #expect(allowed.stdout.contains("instance ok, system ok"), "\(allowed.stdout)")

            try proxy.set(["dryrun": true, "aws_errors": true, "deny": ["ReplaceRoute", "CreateRoute", "ModifyNetworkInterfaceAttribute", "AssociateAddress"],
                           "instance_status": [try world.instance(first).instanceID: ["system": "impaired"]]])
            let denied = try await SwitchmanBinary.run(["preflight", "--config", path, "--json"], environment: env)
            #expect(denied.status == 1, "preflight with writes denied: \(denied.stdout)\(denied.stderr)")
            let checks = try #require(try JSONSerialization.jsonObject(with: Data(denied.stdout.utf8)) as? [[String: Any]])
            let writes = checks.filter { $0["check"] as? String == "routeWrite" }
            #expect(!writes.isEmpty && writes.allSatisfy { $0["ok"] as? Bool == false && ($0["detail"] as? String ?? "").contains("UnauthorizedOperation") },
                    "\(writes)")
            #expect(checks.filter { $0["check"] as? String == "instance" }.allSatisfy { $0["ok"] as? Bool == true })
            let checkWrites = checks.filter { $0["check"] as? String == "sourceDestCheck" }
            #expect(checkWrites.count == world.vpnInstances.count && checkWrites.allSatisfy { $0["ok"] as? Bool == false }, "\(checkWrites)")
            let eip = checks.filter { $0["check"] as? String == "elasticIP" }
            #expect(eip.count == 1 && eip.first?["ok"] as? Bool == false, "\(eip)")
            let statuses = checks.filter { $0["check"] as? String == "instanceStatus" }
            #expect(statuses.filter { $0["ok"] as? Bool == false }.map { $0["detail"] as? String } == ["instance ok, system impaired"], "\(statuses)")
            // Nor was the address moved.
            let read = try await world.cli.object(["ec2", "describe-addresses", "--allocation-ids", allocation])
            #expect((read["Addresses"]?.array.first?["NetworkInterfaceId"]?.string ?? "").isEmpty, "the dry runs associated nothing")

            // Nothing was written: awscli reads moto itself.
            #expect(try await world.routeTargets(destination: world.remoteCIDR) == before)
            let requests = proxy.requests()
            #expect(requests.filter { ($0["action"] as? String).map(RealismProxy.routeWrites.contains) == true }.count == writes.count * 2)
        }
    }

    /// A config for the world through the realism layer (probes that never matter here), and
    /// an environment with moto's credentials and nothing of the developer's AWS setup.
    static func preflightConfig(_ scope: ClusterScope, _ world: MotoWorld, _ proxy: RealismProxy, dns: Bool,
                                _ adjust: (inout ConfigWriter.Tunnel) -> Void = { _ in }) async throws -> (String, [String: String]) {
        let pki = try await scope.pki(members: [1, 2, 3], sentinels: world.vpnInstances.map(\.tag))
        var sentinels: [String: String] = [:]
        for vpn in world.vpnInstances { sentinels[vpn.tag] = "127.0.0.1:\(try LoopbackPorts.unused())" }
        var config = try await ConfigWriter.loopback(world: world, pki: pki, dataRoot: scope.directory.appendingPathComponent("data"),
                                                     sentinels: sentinels, dns: dns)
        config.aws.endpoint = proxy.endpoint
        for i in config.tunnels.indices {
            config.tunnels[i].probes = [.tcp("127.0.0.1:9")]
            adjust(&config.tunnels[i])
        }
        var env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = "testing"
        env["AWS_SECRET_ACCESS_KEY"] = "testing"
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        env.removeValue(forKey: "AWS_PROFILE")
        return (try scope.write(config), env)
    }

    /// A VPN instance that forwards on a second interface, chosen by its tag: the same one
    /// however the realism layer orders the instance's interfaces, read back with awscli.
    @Test func theInterfaceCarryingTheTunnelsInterfaceTagIsChosenWhateverTheOrder() async throws {
        try await withCluster { scope in
            let world = try await scope.motoWorld()
            let vpn = try world.instance("vpn-a")
            let eni = try await world.cli.object(["ec2", "create-network-interface", "--subnet-id", vpn.subnetID,
                                                  "--tag-specifications", "ResourceType=network-interface,Tags=[{Key=switchman/forward,Value=yes}]"])
                .string("NetworkInterface", "NetworkInterfaceId")
            try await world.cli.run(["ec2", "attach-network-interface", "--network-interface-id", eni, "--instance-id", vpn.instanceID,
                                     "--device-index", "1"])
            let tagged = try await world.cli.object(["ec2", "describe-network-interfaces", "--filters",
                                                     "Name=attachment.instance-id,Values=\(vpn.instanceID)", "Name=tag:switchman/forward,Values=yes"])
            #expect(try tagged.string("NetworkInterfaces", "NetworkInterfaceId") == eni, "awscli sees the tagged interface attached")

            let proxy = try await RealismProxy.start(in: scope.directory, upstream: "127.0.0.1:\(world.moto.port)")
            scope.onTeardown { await proxy.stop() }
            try proxy.set(["dryrun": true, "aws_errors": true, "eni_order": "shuffle", "seed": 3])
            let (path, env) = try await Self.preflightConfig(scope, world, proxy, dns: false) { tunnel in
                if tunnel.name == "vpn-a" { tunnel.interfaceTag = ["switchman/forward", "yes"] }
            }
            // Each run sees the interfaces in another order.
            for _ in 0..<3 {
                let run = try await SwitchmanBinary.run(["preflight", "--config", path, "--json"], environment: env)
                #expect(run.status == 0, "preflight: \(run.stdout)\(run.stderr)")
                let checks = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [[String: Any]])
                let instance = checks.first { $0["check"] as? String == "instance" && ($0["subject"] as? String ?? "").hasPrefix("vpn-a") }
                let detail = instance?["detail"] as? String ?? ""
                let chosen = detail.contains(eni), primary = detail.contains(vpn.eniID)
                #expect(chosen && !primary, "vpn-a's interface: \(detail); tagged \(eni), primary \(vpn.eniID)")
            }
            #expect(proxy.responses().contains { ($0["realism"] as? [String])?.contains("eni_order") == true }, "the proxy shuffled interfaces")
        }
    }
}
}
