import Foundation
@testable import Controller

/// A valid config small enough that tests can mutate one line and predict every message.
let baseYAML = """
    cluster:
      name: test
      members:
        - {id: 1, peer: "10.0.0.1:7100", admin: "10.0.0.1:7200", zone: a}
        - {id: 2, peer: "10.0.0.2:7100", admin: "10.0.0.2:7200", zone: b}
        - {id: 3, peer: "10.0.0.3:7100", admin: "10.0.0.3:7200", zone: c}
    tls: {ca: ca.pem, cert: "node-{id}.pem", key: "node-{id}-key.pem"}
    dataDir: "/var/lib/switchman/{id}"
    aws:
      region: us-east-1
    tunnels:
      - name: vpn1
        instance: {tagKey: t, tagValue: vpn1}
        sentinel: "vpn1.internal:7300"
        probes: [{icmp: 10.1.0.10}]
      - name: vpn2
        instance: {tagKey: t, tagValue: vpn2}
        sentinel: "vpn2.internal:7300"
        probes: [{icmp: 10.1.0.10}]
    routes:
      - routeTable: rtb-01
        destination: 10.1.0.0/16
        candidates: [vpn1, vpn2]
      - routeTable: rtb-02
        destination: 10.1.0.0/16
        candidates: [vpn2, vpn1]
    health:
      probeInterval: 1s
      probeTimeout: 500ms
      fall: 3
      rise: 3
      failbackHoldDown: 30s
      autoFailback: true
    timing:
      heartbeat: 100ms
      electionTimeout: 1s
      maxClockDrift: 0.05

    """

/// The 1-based line of the first line containing `needle` (the nth occurrence if asked).
func line(of needle: String, in yaml: String, occurrence: Int = 1) -> Int {
    var seen = 0
    for (i, l) in yaml.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where l.contains(needle) {
        seen += 1
        if seen == occurrence { return i + 1 }
    }
    return -1
}

func replacing(_ old: String, with new: String, in yaml: String = baseYAML) -> String {
    guard let range = yaml.range(of: old) else { return "MUTATION NOT FOUND: \(old)" }
    return yaml.replacingCharacters(in: range, with: new)
}

func messages(_ yaml: String) -> [String] {
    ConfigLoader.load(yaml: yaml, file: "t.yaml").diagnostics.map(\.description)
}

func errorMessages(_ yaml: String) -> [String] {
    ConfigLoader.load(yaml: yaml, file: "t.yaml").errors.map(\.description)
}

var repoRoot: URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// The seed case: 20 VPCs, each with two AZs, a VPN instance per AZ (40 tunnels) and a route
/// table per AZ holding routes to the 19 other VPCs and 6 on-premises ranges (1,000 routes).
func generatedTwentyVPCConfig() -> String {
    let regions = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"]
    var y = """
        cluster:
          name: twenty
          members:
            - {id: 1, peer: "10.200.0.1:7100", admin: "10.200.0.1:7200", zone: us-east-1a}
            - {id: 2, peer: "10.200.0.2:7100", admin: "10.200.0.2:7200", zone: us-east-1b}
            - {id: 3, peer: "10.200.0.3:7100", admin: "10.200.0.3:7200", zone: us-east-1c}
        tls: {ca: ca.pem, cert: "n{id}.pem", key: "n{id}.key"}
        dataDir: "/var/lib/switchman/{id}"
        aws: {region: us-east-1}
        tunnels:

        """
    for v in 0..<20 {
        for az in ["a", "b"] {
            y += """
                  - name: vpc\(v)-\(az)
                    region: \(regions[v % 4])
                    instance: {tagKey: switchman/tunnel, tagValue: vpc\(v)-\(az)}
                    sentinel: "vpn-\(az).vpc\(v).internal:7300"
                    dns: {zoneId: Z\(v)ABC, name: vpn-\(az).vpc\(v).internal, ttl: 30}
                    probes: [{icmp: 10.\((v + 1) % 20).0.10}, {tcp: "10.\((v + 1) % 20).0.10:443"}]

                """
        }
    }
    y += "routeSets:\n"
    for v in 0..<20 {
        let destinations = (0..<20).filter { $0 != v }.map { "10.\($0).0.0/16" } + (0..<6).map { "192.168.\($0).0/24" }
        for az in ["a", "b"] {
            let other = az == "a" ? "b" : "a"
            y += """
                  - name: vpc\(v)-\(az)
                    region: \(regions[v % 4])
                    routeTables: [rtb-\(String(v, radix: 16))0\(az == "a" ? "a" : "b")]
                    destinations: [\(destinations.joined(separator: ", "))]
                    candidates: [vpc\(v)-\(az), vpc\(v)-\(other)]

                """
        }
    }
    return y
}

