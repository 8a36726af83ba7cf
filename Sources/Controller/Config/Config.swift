import Foundation

/// The controller's configuration, as read from YAML by `ConfigLoader`. The schema, its
/// defaults and every validation are described in docs/CONFIG.md.
import Actuators

public struct SwitchmanConfig: Sendable, Equatable {
    public var cluster: ClusterConfig
    public var tls: TLSConfig
    /// Where the replica keeps its Raft log; `{id}` is replaced by the member id.
    public var dataDir: String
    public var aws: AWSConfig
    public var tunnels: [TunnelConfig]
    /// Every managed route, with `routeSets` already expanded, in file order.
    public var routes: [RouteConfig]
    public var health: HealthConfig
    public var timing: TimingConfig
    public var reconcile: ReconcileConfig = .defaults

    public func tunnel(named name: String) -> TunnelConfig? {
        tunnels.first { $0.name == name }
    }

    public func dataDir(for member: UInt64) -> String {
        dataDir.replacingOccurrences(of: "{id}", with: String(member))
    }
}

public struct ClusterConfig: Sendable, Equatable {
    public var name: String
    public var members: [MemberConfig]
}

public struct MemberConfig: Sendable, Equatable {
    public var id: UInt64
    /// Raft traffic between replicas (mTLS).
    public var peer: HostPort
    /// The admin API and the CLI.
    public var admin: HostPort
    public var zone: String
}

public struct TLSConfig: Sendable, Equatable {
    public var ca: String
    public var cert: String
    public var key: String
    /// The sentinel's certificate and key as written in the file (`{tunnel}` not yet
    /// replaced); `nil` means the default beside `ca`. See `sentinelPaths(for:)`.
    public var sentinelCert: String? = nil
    public var sentinelKey: String? = nil

    /// The files of one member: `{id}` in a path becomes the member id, so one file serves
    /// every replica.
    public func paths(for member: UInt64) -> (ca: String, cert: String, key: String) {
        let id = String(member)
        return (
            ca.replacingOccurrences(of: "{id}", with: id),
            cert.replacingOccurrences(of: "{id}", with: id),
            key.replacingOccurrences(of: "{id}", with: id)
        )
    }

    /// The files a sentinel needs: `{tunnel}` in a path becomes the tunnel name. Unset
    /// sentinel paths default to `sentinel-{tunnel}.pem` and `sentinel-{tunnel}-key.pem` in
    /// the directory of `ca`, which is where `switchman certs sentinel` writes them.
    public func sentinelPaths(for tunnel: String) -> (ca: String, cert: String, key: String) {
        let directory: String
        if let slash = ca.lastIndex(of: "/") {
            directory = String(ca[...slash])
        } else {
            directory = ""
        }
        let cert = sentinelCert ?? directory + "sentinel-{tunnel}.pem"
        let key = sentinelKey ?? directory + "sentinel-{tunnel}-key.pem"
        return (
            ca,
            cert.replacingOccurrences(of: "{tunnel}", with: tunnel),
            key.replacingOccurrences(of: "{tunnel}", with: tunnel)
        )
    }
}

public struct AWSConfig: Sendable, Equatable {
    /// The default region of tunnels and routes that name none.
    public var region: String
    /// An endpoint override for every service and Region (moto in tests).
    public var endpoint: String?
    public var profile: String?
    /// Overrides per service and per Region (a VPC interface endpoint in production); they
    /// win over `endpoint`.
    public var endpoints: EndpointOverrides = EndpointOverrides()
    /// FIPS endpoints for EC2 and Route 53.
    public var fips: Bool = false
    /// How long EC2 reads may still show a route as it was before our write (AWS is
    /// eventually consistent): within it a read that disagrees with what we just wrote is
    /// not answered with another write.
    public var consistencyWindow: Duration = .seconds(5)
    /// The leader turns off the source/destination check of every VPN instance's interface
    /// before a route may point at it (EC2 drops forwarded traffic while it is on). Off: an
    /// instance with the check on is not a qualified candidate, and the operator fixes it.
    public var enforceSourceDestCheck: Bool = true
    /// EC2's scheduled retirements, reboots and maintenance of a tunnel's instance drain the
    /// tunnel from `scheduledEventDrainLead` before the event starts until it is over (its
    /// `notAfter`, or EC2 no longer listing it). Off: the events are only recorded.
    public var autoDrainOnScheduledEvent: Bool = false
    public var scheduledEventDrainLead: Duration = .seconds(600)

    public init(region: String, endpoint: String? = nil, profile: String? = nil) {
        self.region = region
        self.endpoint = endpoint
        self.profile = profile
    }

    /// Where EC2 calls for `region` go, nil for AWS's public endpoint.
    public func ec2Endpoint(region: String) -> String? { endpoints.ec2ByRegion[region] ?? endpoints.ec2 ?? endpoint }
    public var route53Endpoint: String? { endpoints.route53 ?? endpoint }
}

public struct TunnelConfig: Sendable, Equatable {
    public var name: String
    public var region: String?
    /// The VPN instance is found by tag, not by id, so a replacement instance is found too.
    public var instance: InstanceSelector
    public var sentinel: HostPort
    public var dns: DNSRecordConfig?
    /// What the sentinel on the VPN instance probes through its own tunnel.
    public var probes: [ProbeTarget] = []
    /// Whether a probe round needs every target (`all`) or one (`any`) to answer.
    public var require: ProbeRequirement = .all
    /// The allocation id of the Elastic IP the far side's IPsec peer address is: the leader
    /// keeps it associated with the current instance's interface.
    public var eip: String?

    public init(
        name: String, region: String? = nil, instance: InstanceSelector, sentinel: HostPort, dns: DNSRecordConfig? = nil,
        probes: [ProbeTarget] = [], require: ProbeRequirement = .all, eip: String? = nil
    ) {
        self.eip = eip
        self.name = name
        self.region = region
        self.instance = instance
        self.sentinel = sentinel
        self.dns = dns
        self.probes = probes
        self.require = require
    }
}

/// One far-side target a sentinel probes through its tunnel.
public enum ProbeTarget: Sendable, Hashable, CustomStringConvertible {
    /// ICMP echo to an IPv4 address or DNS name.
    case icmp(host: String)
    /// A TCP connect (closed at once).
    case tcp(HostPort)
    /// An HTTP(S) GET; any 2xx or 3xx answer counts.
    case http(url: String)

    /// `icmp`, `tcp` or `http`: the key the target was written with.
    public var kind: String {
        switch self {
        case .icmp: return "icmp"
        case .tcp: return "tcp"
        case .http: return "http"
        }
    }

    /// The target as written in the config file (without its kind).
    public var target: String {
        switch self {
        case .icmp(let host): return host
        case .tcp(let hostPort): return hostPort.description
        case .http(let url): return url
        }
    }

    public var description: String { "\(kind) \(target)" }
}

public enum ProbeRequirement: String, Sendable, Hashable {
    /// Healthy only when every target answered.
    case all
    /// Healthy when at least one target answered.
    case any
}

public struct InstanceSelector: Sendable, Equatable {
    public var tagKey: String
    public var tagValue: String
    /// Which of the instance's interfaces routes point at: the primary (0) unless the VPN
    /// instance forwards on another one.
    public var deviceIndex: Int = 0
    /// Instead of a device index: the interface carrying this tag (for instances whose
    /// interfaces are attached in no fixed order).
    public var interfaceTag: InterfaceTag? = nil
}

public struct InterfaceTag: Sendable, Equatable {
    public var key: String
    public var value: String
    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}

public struct DNSRecordConfig: Sendable, Equatable {
    public var zoneId: String
    public var name: String
    public var ttl: Int
    /// Which address the record publishes: the instance's private address, or the public
    /// address of the tunnel's Elastic IP.
    public var address: DNSAddress = .private

    public init(zoneId: String, name: String, ttl: Int, address: DNSAddress = .private) {
        self.zoneId = zoneId
        self.name = name
        self.ttl = ttl
        self.address = address
    }
}

public enum DNSAddress: String, Sendable, Equatable {
    case `private`
    case `public`
}

public struct RouteConfig: Sendable, Equatable {
    public var routeTable: String
    public var destination: IPv4CIDR
    /// Tunnel names, most preferred first.
    public var candidates: [String]
    public var region: String?
}

public struct HealthConfig: Sendable, Equatable {
    public var probeInterval: Duration
    public var probeTimeout: Duration
    /// Consecutive failed probes before a replica says a tunnel is down.
    public var fall: Int
    /// Consecutive good probes before a replica says a tunnel is up.
    public var rise: Int
    public var failbackHoldDown: Duration
    public var autoFailback: Bool
    /// How long a replica's observation counts towards a verdict.
    public var observationTTL: Duration

    public static let defaults = HealthConfig(
        probeInterval: .seconds(1),
        probeTimeout: .milliseconds(500),
        fall: 3,
        rise: 5,
        failbackHoldDown: .seconds(60),
        autoFailback: true,
        observationTTL: .seconds(15)
    )
}

public struct ReconcileConfig: Sendable, Equatable {
    /// How often the leader reads every managed route table back to find and repair drift
    /// (a change made by hand or by another tool). Besides these reads the leader reads once
    /// after its own writes, to confirm them; a write is planned from the last read.
    public var driftCheckInterval: Duration

    public static let defaults = ReconcileConfig(driftCheckInterval: .seconds(10))
}

public struct TimingConfig: Sendable, Equatable {
    public var heartbeat: Duration
    public var electionTimeout: Duration
    /// The largest rate difference assumed between two replicas' monotonic clocks.
    public var maxClockDrift: Double
    /// The longest one AWS write may take, retries included; nil: the whole lease.
    public var writeDeadline: Duration? = nil

    public static let defaults = TimingConfig(heartbeat: .milliseconds(100), electionTimeout: .seconds(1), maxClockDrift: 0.05)
    /// For replicas whose zones are a millisecond or two apart, as a Region's are.
    public static let aggressive = TimingConfig(heartbeat: .milliseconds(50), electionTimeout: .milliseconds(500), maxClockDrift: 0.05)

    /// How long a leader may act after a quorum acknowledged a heartbeat (DESIGN rule 3).
    public var lease: Duration {
        let ms = Double(electionTimeout.milliseconds) * (1 - maxClockDrift)
        return .milliseconds(Int64(ms.rounded(.down)))
    }

    /// A write's deadline: never past the lease it was fenced in.
    public var effectiveWriteDeadline: Duration { min(writeDeadline ?? lease, lease) }

    /// A new leader's wait before its first write (docs/CONTROLLER.md, "The lock-delay"): the
    /// lease is sound (no vote before every older lease ended, by the voter's clock with the
    /// drift bound), so only an old leader's last call can still be on its way, and that ends
    /// by its deadline on the old leader's clock, which may run slow by `maxClockDrift`.
    public var lockDelay: Duration {
        let ms = Double(effectiveWriteDeadline.milliseconds) * (1 + maxClockDrift)
        return .milliseconds(Int64(ms.rounded(.up)))
    }

    /// After a leadership transfer the voters ignored the old lease, and a call the old leader
    /// fenced before handing over may run to its deadline after this leader began: one more
    /// write deadline.
    public var lockDelayAfterTransfer: Duration { lockDelay * 2 }
}

/// One problem found in a config file, pinned to a key path and a line.
public struct ConfigDiagnostic: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable {
        case error, warning
    }

    public var severity: Severity
    public var file: String
    /// 1-based; `nil` only when the problem has no place in the file (an unreadable file).
    public var line: Int?
    /// Like `tunnels[2].sentinel`; empty for the document as a whole.
    public var path: String
    public var message: String

    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if severity == .warning { s += "warning: " }
        if !path.isEmpty { s += "\(path): " }
        return s + message
    }
}

public struct ConfigLoadResult: Sendable {
    /// Set only when there are no errors (warnings allowed).
    public var config: SwitchmanConfig?
    public var diagnostics: [ConfigDiagnostic]

    public var errors: [ConfigDiagnostic] { diagnostics.filter { $0.severity == .error } }
    public var warnings: [ConfigDiagnostic] { diagnostics.filter { $0.severity == .warning } }
}
