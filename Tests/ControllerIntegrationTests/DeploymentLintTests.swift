import Foundation
import Testing

// The AWS deployment (cluster/aws, cluster/systemd) is not code the other tests run, so these
// tests keep it honest: the CloudFormation template must pass cfn-lint with no findings at
// all, and the systemd units must keep their hardening. Missing tools fail the tests (CI
// installs them), they never skip.

@Suite("Deployment files")
struct DeploymentLintTests {
    static let root = TestPaths.packageRoot()

    @Test func cloudFormationTemplatePassesCfnLint() async throws {
        let cfnLint = try Tools.require("cfn-lint", hint: "install with `pip install cfn-lint` (.ci/run does)")
        let template = Self.root.appendingPathComponent("cluster/aws/switchman.yaml").path
        let result = try await runProcess([cfnLint, template], timeout: 300)
        // cfn-lint exits non-zero for errors, warnings and informational findings alike; any
        // output at all is a finding.
        let output = (result.stdout + result.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(result.status == 0 && output.isEmpty, "cfn-lint \(template) exited \(result.status):\n\(output)")
    }

    @Test func templateKeepsItsSecurityProperties() throws {
        let text = try String(contentsOf: Self.root.appendingPathComponent("cluster/aws/switchman.yaml"), encoding: .utf8)
        for needle in ["HttpTokens: required", "HttpPutResponseHopLimit: 1", "Encrypted: true", "ec2:CreateRoute",
                       "ec2:ReplaceRoute", "route53:ChangeResourceRecordSetsActions: [UPSERT]",
                       "ec2:ModifyNetworkInterfaceAttribute", "ec2:Vpc: !Ref VpnVpcArns"] {
            #expect(text.contains(needle), "cluster/aws/switchman.yaml lost \(needle)")
        }
        // No wildcard actions, and "*" resources only for the Describe calls (which support no other).
        // (An ARN's region may be "*": "arn:…:ec2:*:…" is a resource, not an action.)
        let actionLines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.hasPrefix("- ec2:") || $0.hasPrefix("- route53:") || $0.hasPrefix("Action:") }
        #expect(!text.contains("Action: \"*\"") && !actionLines.contains { $0.hasSuffix(":*") || $0.hasSuffix("*\"") }, "\(actionLines)")
        let starResources = text.components(separatedBy: "Resource: \"*\"").count - 1
        #expect(starResources == 1, "only the Describe statement may use Resource \"*\", found \(starResources)")
    }

    /// Directives every unit must carry, with the value they must have ("" = present, any value).
    static let hardening: [(String, String)] = [
        ("User", "switchman"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"), ("MemoryDenyWriteExecute", "yes"), ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"), ("ProtectKernelTunables", "yes"), ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"), ("ProtectControlGroups", "yes"), ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"), ("TimeoutStopSec", ""),
    ]

    @Test func replicaUnitIsHardened() throws {
        let unit = try Self.parseUnit("cluster/systemd/switchman.service")
        Self.expectHardening(unit, file: "switchman.service")
        #expect(unit["CapabilityBoundingSet"] == [""], "the replica needs no capabilities")
        #expect(unit["AmbientCapabilities"] == [""])
        #expect(unit["StateDirectory"] == ["switchman"])
        #expect(unit["ReadWritePaths"] == ["/var/lib/switchman"])
        #expect(unit["EnvironmentFile"] == ["/etc/switchman/switchman.env"])
        #expect(unit["ExecStart"]?.first?.contains("serve --config /etc/switchman/switchman.yaml --id ${SWITCHMAN_ID}") == true)
        // Leadership hand-over on SIGTERM takes an election round or two: give it well over 10 s.
        let stop = Int(unit["TimeoutStopSec"]?.last ?? "") ?? 0
        #expect(stop >= 30, "TimeoutStopSec=\(stop) leaves too little time for the hand-over")
    }

    @Test func sentinelUnitIsHardenedAndMayOnlyPing() throws {
        let unit = try Self.parseUnit("cluster/systemd/switchman-sentinel@.service")
        Self.expectHardening(unit, file: "switchman-sentinel@.service")
        #expect(unit["CapabilityBoundingSet"] == ["CAP_NET_RAW"], "raw ICMP sockets only")
        #expect(unit["AmbientCapabilities"] == ["CAP_NET_RAW"])
        #expect(unit["ExecStart"]?.first?.contains("sentinel --config /etc/switchman/switchman.yaml --tunnel %i") == true)
    }

    @Test func systemdAcceptsTheUnits() async throws {
        let analyze = try Tools.require("systemd-analyze", hint: "install with `apt-get install systemd` (.ci/run does)")
        let dir = Self.root.appendingPathComponent("cluster/systemd")
        let temp = try TestPaths.makeTempDir("units")
        defer { try? FileManager.default.removeItem(at: temp) }
        // A template unit is verified through an instance of it.
        let sentinel = temp.appendingPathComponent("switchman-sentinel@a-vpn1.service")
        try FileManager.default.copyItem(at: dir.appendingPathComponent("switchman-sentinel@.service"), to: sentinel)
        let result = try await runProcess(
            [analyze, "verify", dir.appendingPathComponent("switchman.service").path, sentinel.path], timeout: 120)
        // The binary is not installed on the test machine; that one complaint is expected,
        // anything else is a finding.
        let findings = (result.stdout + result.stderr).split(separator: "\n").filter {
            !$0.contains("Command /usr/local/bin/switchman is not executable")
        }
        #expect(findings.isEmpty, "systemd-analyze verify:\n\(findings.joined(separator: "\n"))")
    }

    // MARK: - helpers

    static func expectHardening(_ unit: [String: [String]], file: String) {
        for (key, value) in hardening {
            let values = unit[key] ?? []
            #expect(!values.isEmpty, "\(file) lacks \(key)=")
            if !value.isEmpty, !values.isEmpty {
                #expect(values.contains(value), "\(file): \(key)=\(values) but must be \(value)")
            }
        }
    }

    /// `Key=Value` lines of a unit file, all sections together (keys are unique across the
    /// sections used here); comments and section headers skipped; repeated keys keep every value.
    static func parseUnit(_ path: String) throws -> [String: [String]] {
        let text = try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
        var out: [String: [String]] = [:]
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") || line.hasPrefix("[") { continue }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = String(line[..<eq]).trimmingCharacters(in: .whitespaces)
            let value = String(line[line.index(after: eq)...]).trimmingCharacters(in: .whitespaces)
            out[key, default: []].append(value)
        }
        return out
    }
}
