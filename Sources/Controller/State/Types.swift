import Actuators
import Foundation

/// A point in time stamped by the leader on the entry it proposes (milliseconds since the
/// Unix epoch, from its wall clock). The replicated state machine reads no clock: every
/// replica applying the same entries sees the same stamps and so reaches the same verdicts
/// (DESIGN rule 6).
public struct Stamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var millis: UInt64

    public init(millis: UInt64) { self.millis = millis }

    public static func < (lhs: Stamp, rhs: Stamp) -> Bool { lhs.millis < rhs.millis }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later (a snapshot from
    /// outside could hold anything; arithmetic on it must not trap).
    public func millis(since earlier: Stamp) -> UInt64 {
        millis >= earlier.millis ? millis - earlier.millis : 0
    }

    public var description: String { "t=\(millis)ms" }
}

public typealias ReplicaID = UInt64

/// The (term, log index) of the intent entry that authorises one AWS write (DESIGN rule 4):
/// the Actuators' type, so the token the state machine records is the one that rides in the
/// write's User-Agent.
public typealias FencingToken = Actuators.FencingToken

/// The health rules, replicated rather than read from each replica's config file: replicas
/// whose files disagreed would otherwise compute different verdicts from the same log.
public struct HealthPolicy: Sendable, Hashable {
    public var fall: UInt32
    public var rise: UInt32
    public var observationTTLMillis: UInt64
    public var failbackHoldDownMillis: UInt64
    public var autoFailback: Bool
    /// Fewer fresh observers than this decide nothing (see docs/CONTROLLER.md).
    public var minimumObservers: UInt32

    public init(fall: UInt32, rise: UInt32, observationTTLMillis: UInt64, failbackHoldDownMillis: UInt64, autoFailback: Bool, minimumObservers: UInt32) {
        self.fall = max(1, fall)
        self.rise = max(1, rise)
        self.observationTTLMillis = observationTTLMillis
        self.failbackHoldDownMillis = failbackHoldDownMillis
        self.autoFailback = autoFailback
        self.minimumObservers = max(1, minimumObservers)
    }

    /// The policy of a config: the minimum number of observers is a majority of the members,
    /// the same count the Raft cluster needs to make progress at all.
    public init(health: HealthConfig, memberCount: Int) {
        self.init(
            fall: UInt32(clamping: health.fall), rise: UInt32(clamping: health.rise),
            observationTTLMillis: UInt64(clamping: health.observationTTL.milliseconds),
            failbackHoldDownMillis: UInt64(clamping: health.failbackHoldDown.milliseconds),
            autoFailback: health.autoFailback, minimumObservers: UInt32(clamping: memberCount / 2 + 1))
    }

    public static let `default` = HealthPolicy(health: .defaults, memberCount: 3)
}

/// The VPN instance currently behind a tunnel, as the leader found it by its EC2 tag.
public struct InstanceIdentity: Sendable, Hashable, CustomStringConvertible {
    public var instanceId: String
    public var eniId: String
    public var privateIP: String

    public init(instanceId: String, eniId: String, privateIP: String) {
        self.instanceId = instanceId
        self.eniId = eniId
        self.privateIP = privateIP
    }

    public var description: String { "\(instanceId)/\(eniId)/\(privateIP)" }
}

/// What the leader read of a tunnel instance's EC2 status checks and scheduled events.
public struct InstanceStatusReport: Sendable, Hashable {
    public var instanceId: String
    /// An instance, system or EBS status check says `impaired`.
    public var impaired: Bool
    /// The checks as EC2 named them ("instance impaired, system ok").
    public var summary: String
    /// Scheduled events, oldest `notBefore` first; those EC2 lists as completed or cancelled
    /// are left out.
    public var events: [ScheduledEvent]

    public init(instanceId: String, impaired: Bool, summary: String, events: [ScheduledEvent]) {
        self.instanceId = instanceId
        self.impaired = impaired
        self.summary = summary
        self.events = events
    }
}

/// An EC2 scheduled event (retirement, reboot, maintenance) of a tunnel's instance.
public struct ScheduledEvent: Sendable, Hashable, CustomStringConvertible {
    /// EC2's event id, or code and start when the answer has none.
    public var id: String
    public var code: String
    public var detail: String
    public var notBefore: Stamp?
    public var notAfter: Stamp?

    public init(id: String, code: String, detail: String, notBefore: Stamp?, notAfter: Stamp?) {
        self.id = id
        self.code = code
        self.detail = detail
        self.notBefore = notBefore
        self.notAfter = notAfter
    }

    public var description: String {
        "\(code)" + (notBefore.map { " from \(isoTime($0))" } ?? "") + (notAfter.map { " until \(isoTime($0))" } ?? "")
    }
}

/// A stamp as an ISO 8601 UTC time, for events an operator reads.
func isoTime(_ stamp: Stamp) -> String {
    Date(timeIntervalSince1970: Double(stamp.millis / 1000)).formatted(.iso8601)
}

/// Where a tunnel's Elastic IP is associated, as the leader read it (or wrote it).
public struct ElasticIPReport: Sendable, Hashable {
    public var allocationId: String
    public var publicIP: String
    /// The interface it is associated with now; nil when it is not associated.
    public var eniId: String?

    public init(allocationId: String, publicIP: String, eniId: String?) {
        self.allocationId = allocationId
        self.publicIP = publicIP
        self.eniId = eniId
    }
}

/// Where a route points: the tunnel it was chosen for, and the instance and ENI behind it then.
public struct RouteTarget: Sendable, Hashable, CustomStringConvertible {
    public var tunnel: String
    public var instanceId: String
    public var eniId: String

    public init(tunnel: String, instanceId: String, eniId: String) {
        self.tunnel = tunnel
        self.instanceId = instanceId
        self.eniId = eniId
    }

    public var description: String { "\(tunnel) (\(instanceId), \(eniId))" }
}

public struct RouteKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var routeTable: String
    public var destination: IPv4CIDR

    public init(routeTable: String, destination: IPv4CIDR) {
        self.routeTable = routeTable
        self.destination = destination
    }

    public static func < (lhs: RouteKey, rhs: RouteKey) -> Bool {
        (lhs.routeTable, lhs.destination.address, lhs.destination.prefixLength) < (rhs.routeTable, rhs.destination.address, rhs.destination.prefixLength)
    }

    public var description: String { "\(routeTable) \(destination)" }
}

/// One AWS write, committed as an intent before it is made.
public enum ActuationWrite: Sendable, Hashable {
    case route(RouteKey, target: RouteTarget)
    /// One Route 53 ChangeBatch: every record of one zone that a pass found out of date.
    case dns(zoneId: String, records: [DNSRecordWrite])
    /// Turns off the source/destination check of the interface routes to `tunnel` name: a
    /// VPN instance forwards other hosts' traffic, which EC2 drops while the check is on.
    case disableSourceDestCheck(tunnel: String, instanceId: String, eniId: String)
    /// Associates the tunnel's Elastic IP with its current instance's interface, so the far
    /// side's IPsec peer address stays the same across a replacement.
    case associateAddress(tunnel: String, allocationId: String, instanceId: String, eniId: String, privateIP: String)
}

/// One A record upserted by a `.dns` write.
public struct DNSRecordWrite: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var address: String
    public var ttl: UInt32

    public init(name: String, address: String, ttl: UInt32) {
        self.name = name
        self.address = address
        self.ttl = ttl
    }

    public var description: String { "\(name) A \(address) (TTL \(ttl))" }
}

public enum ControllerCommand: Sendable, Hashable {
    /// The leader replicates the health policy of its config when the state's differs.
    case setPolicy(HealthPolicy)
    /// What one replica's probes see of one tunnel: its current run of consecutive healthy
    /// or unhealthy probes (one of the two is zero). Sent on change and as a periodic refresh.
    /// `instanceId`: the instance whose sentinel answered, when it said (issue #16); healthy
    /// runs from another instance than the tunnel's current one count as none.
    case observe(replica: ReplicaID, tunnel: String, healthyRun: UInt32, unhealthyRun: UInt32, rttMillis: UInt32?,
                 instanceId: String? = nil)
    /// Re-evaluates every tunnel at the entry's stamp, so staleness and hold-downs advance
    /// even when no observation arrives.
    case tick
    case drain(tunnel: String, reason: String, by: String)
    case undrain(tunnel: String, by: String)
    /// With automatic failback off, lets one failback happen once the tunnel qualifies.
    case approveFailback(tunnel: String, by: String)
    case instanceIdentity(tunnel: String, InstanceIdentity)
    /// What the leader read of the source/destination check of the tunnel's interface.
    case sourceDestCheck(tunnel: String, eniId: String, enabled: Bool)
    /// What the leader read of the tunnel's instance's EC2 status checks and scheduled events.
    case instanceStatus(tunnel: String, InstanceStatusReport)
    /// Where the leader read the tunnel's Elastic IP to be associated.
    case elasticIP(tunnel: String, ElasticIPReport)
    case intent(FencingToken, ActuationWrite)
    case outcome(FencingToken, success: Bool, detail: String, requestId: String)
    /// The leader looked at a managed route and chose not to write it (it points at a gateway
    /// an operator chose and no candidate qualifies; its target is a blackhole): recorded once
    /// per reason so `events` and `routes` say why nothing happened.
    case routeNotWritten(RouteKey, reason: String)
}

public enum TunnelVerdict: UInt8, Sendable, Hashable, CustomStringConvertible {
    /// Never decided: nothing routes to it until a majority says up.
    case unknown = 0
    case up = 1
    case down = 2

    public var description: String {
        switch self {
        case .unknown: return "unknown"
        case .up: return "up"
        case .down: return "down"
        }
    }
}

/// What changed when an entry was applied. Every replica gets the same list; the state
/// machine logs them and wakes the leader's pass on `replan` (issue #17 item 2).
public enum Directive: Sendable, Hashable {
    case verdictChanged(tunnel: String, from: TunnelVerdict, to: TunnelVerdict)
    /// Something the planner reads changed (verdict, drain, identity, policy).
    case replan
    case instanceChanged(tunnel: String, old: InstanceIdentity?, new: InstanceIdentity)
    /// The intent is committed. The leader that proposed it makes the write when its
    /// proposal returns applied, which is this same moment, if its lease still allows.
    case intentRecorded(FencingToken, ActuationWrite)
    case outcomeRecorded(FencingToken, success: Bool)
}
