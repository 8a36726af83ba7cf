import Foundation

/// A switchman config (docs/CONFIG.md) as a value, written out as YAML. Optional fields are
/// emitted only when set, so the same writer works for config schemas with and without them
/// (per-tunnel `probes`/`require` and `tls.sentinelCert`/`sentinelKey` are newer than the rest).
/// Every string is double-quoted and escaped, so no value can change the YAML's structure.
struct ConfigWriter: Sendable {
    struct Member: Sendable, Hashable {
        var id: UInt64
        var peer: String
        var admin: String
        var zone: String

        /// The port of `peer` / `admin` (nil when the address has none), for readiness polls.
        var peerPort: Int? { Self.port(peer) }
        var adminPort: Int? { Self.port(admin) }

        private static func port(_ hostPort: String) -> Int? {
            hostPort.split(separator: ":").last.flatMap { Int($0) }
        }
    }

    struct TLS: Sendable, Hashable {
        var ca: String
        /// With `{id}`.
        var cert: String
        var key: String
        /// With `{tunnel}`; emitted only when set.
        var sentinelCert: String?
        var sentinelKey: String?
    }

    struct AWS: Sendable, Hashable {
        var region = "us-east-1"
        var endpoint: String?
        var profile: String?
        /// `autoDrainOnScheduledEvent` and `scheduledEventDrainLead`, emitted only when set.
        var autoDrainOnScheduledEvent: Bool? = nil
        var scheduledEventDrainLead: String? = nil
    }

    enum Probe: Sendable, Hashable {
        case icmp(String)
        /// host:port
        case tcp(String)
        case http(String)
    }

    enum Require: String, Sendable, Hashable {
        case all, any
    }

    struct DNS: Sendable, Hashable {
        var zoneId: String
        var name: String
        var ttl: Int?
        /// `private` or `public`, emitted only when set.
        var address: String? = nil
    }

    struct Tunnel: Sendable, Hashable {
        var name: String
        var tagKey = "switchman/tunnel"
        var tagValue: String
        /// host:port of the tunnel's sentinel.
        var sentinel: String
        var region: String?
        var dns: DNS?
        /// Emitted only when set (the sentinel-probes schema).
        var probes: [Probe]?
        var require: Require?
        /// `instance.interfaceTag` as (key, value), emitted only when set.
        var interfaceTag: [String]? = nil
        /// The Elastic IP allocation id, emitted only when set.
        var eip: String? = nil

        init(name: String, tagKey: String = "switchman/tunnel", tagValue: String? = nil, sentinel: String, region: String? = nil,
             dns: DNS? = nil, probes: [Probe]? = nil, require: Require? = nil) {
            self.name = name
            self.tagKey = tagKey
            self.tagValue = tagValue ?? name
            self.sentinel = sentinel
            self.region = region
            self.dns = dns
            self.probes = probes
            self.require = require
        }
    }

    struct Route: Sendable, Hashable {
        var routeTable: String
        var destination: String
        var candidates: [String]
        var region: String?
    }

    /// Fast values for tests; nil fields are left to the defaults.
    struct Health: Sendable, Hashable {
        var probeInterval: String? = "200ms"
        var probeTimeout: String? = "150ms"
        var fall: Int? = 2
        var rise: Int? = 2
        var failbackHoldDown: String? = "3s"
        var autoFailback: Bool?
        var observationTTL: String? = "3s"
    }

    struct Timing: Sendable, Hashable {
        var heartbeat: String? = "50ms"
        var electionTimeout: String? = "500ms"
        var maxClockDrift: Double? = 0.05
    }

    var clusterName = "switchman-it"
    var members: [Member]
    var tls: TLS
    /// With `{id}`.
    var dataDir: String
    var aws = AWS()
    var tunnels: [Tunnel] = []
    var routes: [Route] = []
    var health = Health()
    var timing = Timing()
    /// Short, so the drift tests and the read counts need not wait out the default 10 s.
    var driftCheckInterval: String? = "500ms"

    // MARK: - the loopback cluster

    /// `n` members on 127.0.0.1 with free peer and admin ports, zones taken round-robin from
    /// `zones`, data in `dataRoot/{id}`, certificates from `pki`, AWS at `endpoint`.
    static func loopback(members n: Int = 3, zones: [String] = ["us-east-1a", "us-east-1b", "us-east-1c"],
                         pki: ClusterPKI, dataRoot: URL, endpoint: String?) async throws -> ConfigWriter {
        guard n >= 1, !zones.isEmpty else { throw HarnessError.unexpected("ConfigWriter.loopback needs members and zones") }
        var members: [Member] = []
        for id in 1...UInt64(n) {
            let zone = zones[Int(id - 1) % zones.count]
            members.append(Member(id: id, peer: "127.0.0.1:\(try LoopbackPorts.unused())", admin: "127.0.0.1:\(try LoopbackPorts.unused())", zone: zone))
        }
        return ConfigWriter(
            members: members,
            tls: TLS(ca: pki.caCert, cert: pki.certTemplate, key: pki.keyTemplate,
                     sentinelCert: pki.sentinelCertTemplate, sentinelKey: pki.sentinelKeyTemplate),
            dataDir: dataRoot.appendingPathComponent("{id}").path,
            aws: AWS(region: "us-east-1", endpoint: endpoint))
    }

    /// A loopback cluster over `world`: one tunnel per VPN instance (sentinel at
    /// `sentinels[tunnel]`, a DNS record `<tunnel>.<hosted zone>` when `dns`), and one route
    /// per zone's table to the remote CIDR whose candidates are the zone's own tunnel first,
    /// then the others in world order.
    static func loopback(members n: Int = 3, world: MotoWorld, pki: ClusterPKI, dataRoot: URL,
                         sentinels: [String: String], dns: Bool = false) async throws -> ConfigWriter {
        var config = try await loopback(members: n, zones: world.zones.map(\.name), pki: pki, dataRoot: dataRoot, endpoint: world.endpoint)
        config.tunnels = try world.vpnInstances.map { vpn in
            guard let sentinel = sentinels[vpn.tag] else { throw HarnessError.unexpected("no sentinel address for \(vpn.tag)") }
            return Tunnel(name: vpn.tag, tagKey: world.tagKey, tagValue: vpn.tag, sentinel: sentinel,
                          dns: dns ? DNS(zoneId: world.hostedZoneID, name: world.dnsName(vpn.tag), ttl: 30) : nil)
        }
        let names = world.vpnInstances.map(\.tag)
        config.routes = world.zones.map { zone in
            let own = world.vpnInstances.filter { $0.zone == zone.name }.map(\.tag)
            return Route(routeTable: zone.routeTableID, destination: world.remoteCIDR, candidates: own + names.filter { !own.contains($0) })
        }
        return config
    }

    func member(_ id: UInt64) throws -> Member {
        guard let m = members.first(where: { $0.id == id }) else { throw HarnessError.unexpected("no member \(id) in the config") }
        return m
    }

    // MARK: - YAML

    func write(to url: URL) throws {
        try yaml().write(to: url, atomically: true, encoding: .utf8)
    }

    func yaml() -> String {
        var out: [String] = ["# Written by the integration-test harness (ConfigWriter)."]
        out.append("cluster:")
        out.append("  name: \(q(clusterName))")
        out.append("  members:")
        for m in members {
            out.append("    - id: \(m.id)")
            out.append("      peer: \(q(m.peer))")
            out.append("      admin: \(q(m.admin))")
            out.append("      zone: \(q(m.zone))")
        }
        out.append("tls:")
        out.append("  ca: \(q(tls.ca))")
        out.append("  cert: \(q(tls.cert))")
        out.append("  key: \(q(tls.key))")
        if let v = tls.sentinelCert { out.append("  sentinelCert: \(q(v))") }
        if let v = tls.sentinelKey { out.append("  sentinelKey: \(q(v))") }
        out.append("dataDir: \(q(dataDir))")
        out.append("aws:")
        out.append("  region: \(q(aws.region))")
        if let v = aws.endpoint { out.append("  endpoint: \(q(v))") }
        if let v = aws.profile { out.append("  profile: \(q(v))") }
        if let v = aws.autoDrainOnScheduledEvent { out.append("  autoDrainOnScheduledEvent: \(v)") }
        if let v = aws.scheduledEventDrainLead { out.append("  scheduledEventDrainLead: \(q(v))") }
        out.append(tunnels.isEmpty ? "tunnels: []" : "tunnels:")
        for t in tunnels {
            out.append("  - name: \(q(t.name))")
            if let v = t.region { out.append("    region: \(q(v))") }
            let interfaceTag = t.interfaceTag.map { ", interfaceTag: {key: \(q($0.first ?? "")), value: \(q($0.last ?? ""))}" } ?? ""
            out.append("    instance: {tagKey: \(q(t.tagKey)), tagValue: \(q(t.tagValue))\(interfaceTag)}")
            out.append("    sentinel: \(q(t.sentinel))")
            if let d = t.dns {
                out.append("    dns: {zoneId: \(q(d.zoneId)), name: \(q(d.name))\(d.ttl.map { ", ttl: \($0)" } ?? "")\(d.address.map { ", address: \($0)" } ?? "")}")
            }
            if let v = t.eip { out.append("    eip: \(q(v))") }
            if let probes = t.probes {
                out.append(probes.isEmpty ? "    probes: []" : "    probes:")
                for p in probes {
                    switch p {
                    case .icmp(let host): out.append("      - icmp: \(q(host))")
                    case .tcp(let hostPort): out.append("      - tcp: \(q(hostPort))")
                    case .http(let url): out.append("      - http: \(q(url))")
                    }
                }
            }
            if let r = t.require { out.append("    require: \(r.rawValue)") }
        }
        if !routes.isEmpty {
            out.append("routes:")
            for r in routes {
                out.append("  - routeTable: \(q(r.routeTable))")
                out.append("    destination: \(q(r.destination))")
                out.append("    candidates: [\(r.candidates.map(q).joined(separator: ", "))]")
                if let v = r.region { out.append("    region: \(q(v))") }
            }
        }
        let healthLines = [
            health.probeInterval.map { "probeInterval: \(q($0))" }, health.probeTimeout.map { "probeTimeout: \(q($0))" },
            health.fall.map { "fall: \($0)" }, health.rise.map { "rise: \($0)" },
            health.failbackHoldDown.map { "failbackHoldDown: \(q($0))" }, health.autoFailback.map { "autoFailback: \($0)" },
            health.observationTTL.map { "observationTTL: \(q($0))" },
        ].compactMap { $0 }
        if !healthLines.isEmpty { out += ["health:"] + healthLines.map { "  " + $0 } }
        let timingLines = [
            timing.heartbeat.map { "heartbeat: \(q($0))" }, timing.electionTimeout.map { "electionTimeout: \(q($0))" },
            timing.maxClockDrift.map { "maxClockDrift: \($0)" },
        ].compactMap { $0 }
        if !timingLines.isEmpty { out += ["timing:"] + timingLines.map { "  " + $0 } }
        if let d = driftCheckInterval { out += ["reconcile:", "  driftCheckInterval: \(q(d))"] }
        return out.joined(separator: "\n") + "\n"
    }

    /// A YAML double-quoted scalar.
    private func q(_ s: String) -> String {
        var r = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": r += "\\\""
            case "\\": r += "\\\\"
            case "\n": r += "\\n"
            case "\t": r += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f {
                    r += String(format: "\\x%02X", scalar.value)
                } else {
                    r.unicodeScalars.append(scalar)
                }
            }
        }
        return r + "\""
    }
}
