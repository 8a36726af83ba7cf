/// One replica's latest report about one tunnel.
public struct Observation: Sendable, Hashable {
    public var healthyRun: UInt32
    public var unhealthyRun: UInt32
    public var rttMillis: UInt32?
    /// The stamp of the entry that carried it.
    public var at: Stamp

    public init(healthyRun: UInt32, unhealthyRun: UInt32, rttMillis: UInt32?, at: Stamp) {
        self.healthyRun = healthyRun
        self.unhealthyRun = unhealthyRun
        self.rttMillis = rttMillis
        self.at = at
    }
}

public struct Drain: Sendable, Hashable {
    public var reason: String
    public var by: String
    public var since: Stamp
}

public struct TunnelState: Sendable, Hashable {
    public var verdict: TunnelVerdict = .unknown
    public var verdictSince: Stamp?
    /// The last time a majority of fresh observations said down. The failback hold-down
    /// counts from here, so a tunnel that keeps flapping keeps restarting its hold-down.
    public var lastDownEvidence: Stamp?
    /// Since when a majority of fresh observations has said up without a break. A failback
    /// also needs this streak to be a hold-down long: a tunnel that blips down for less than
    /// `fall` probes never leaves down evidence, but it does break the streak.
    public var upEvidenceSince: Stamp?
    /// Too few fresh observations to decide: the verdict is the last one decided.
    public var stale: Bool = false
    public var failbackApproved: Bool = false
    public var observations: [ReplicaID: Observation] = [:]
    public var drain: Drain?
    public var identity: InstanceIdentity?
    /// The interface of `identity` whose source/destination check is known to be off (read
    /// so by the leader, or turned off by a write whose outcome committed). Routes go only to
    /// such an interface; a new identity starts without it.
    public var forwardingENI: String?
    /// EC2's status checks and scheduled events of the current identity's instance, as last
    /// read; a report about another instance is never kept.
    public var ec2Status: InstanceStatusReport?
    /// Where the tunnel's Elastic IP (if it names one) is associated, as last read or written.
    public var elasticIP: ElasticIPReport?

    /// EC2's status checks of the current instance say impaired.
    public var impaired: Bool { ec2Status.map { $0.impaired && $0.instanceId == identity?.instanceId } ?? false }

    /// Whether routes may point at the current identity's interface as far as EC2's
    /// source/destination check goes.
    public var forwards: Bool { identity.map { $0.eniId == forwardingENI } ?? false }

    public init() {}
}

public struct PendingIntent: Sendable, Hashable {
    public var token: FencingToken
    public var write: ActuationWrite
    public var at: Stamp
}

public enum EventKind: Sendable, Hashable {
    case tunnelDown(tunnel: String, saysDown: UInt32, fresh: UInt32)
    case tunnelUp(tunnel: String, saysUp: UInt32, fresh: UInt32, failback: Bool)
    case observationsStale(tunnel: String, fresh: UInt32)
    case observationsFresh(tunnel: String, fresh: UInt32)
    case drained(tunnel: String, reason: String, by: String)
    case undrained(tunnel: String, by: String)
    case failbackApproved(tunnel: String, by: String)
    case instanceDiscovered(tunnel: String, InstanceIdentity)
    case instanceReplaced(tunnel: String, old: InstanceIdentity, new: InstanceIdentity)
    /// The source/destination check of a tunnel's interface changed as far as the state knows
    /// (read by the leader, or turned off by a write).
    case sourceDestCheck(tunnel: String, eniId: String, enabled: Bool)
    /// EC2's status checks of the tunnel's instance changed between impaired and not.
    case instanceStatus(tunnel: String, instanceId: String, impaired: Bool, summary: String)
    /// EC2 scheduled an event for the tunnel's instance (listed once, when first read).
    case scheduledEvent(tunnel: String, instanceId: String, ScheduledEvent)
    /// The tunnel's Elastic IP is associated elsewhere than the state knew (nil: nowhere).
    case elasticIP(tunnel: String, allocationId: String, publicIP: String, eniId: String?)
    case intent(FencingToken, ActuationWrite)
    case outcome(FencingToken, success: Bool, detail: String, requestId: String)
    case outcomeWithoutIntent(FencingToken, success: Bool)
    case intentAbandoned(FencingToken)
    case policyChanged(HealthPolicy)
    case routeNotWritten(RouteKey, reason: String)
}

public struct Event: Sendable, Hashable {
    public var seq: UInt64
    public var at: Stamp
    public var kind: EventKind
}

/// The last `capacity` events, oldest first. Sequence numbers keep counting past evictions
/// so a client that polls can tell when it missed some.
public struct EventLog: Sendable, Hashable {
    public private(set) var capacity: Int
    public private(set) var events: [Event] = []
    public private(set) var nextSeq: UInt64 = 1

    public init(capacity: Int = 1000) { self.capacity = max(1, capacity) }

    init(capacity: Int, events: [Event], nextSeq: UInt64) {
        self.capacity = max(1, capacity)
        self.events = Array(events.suffix(self.capacity))
        self.nextSeq = nextSeq
    }

    mutating func append(_ kind: EventKind, at: Stamp) {
        events.append(Event(seq: nextSeq, at: at, kind: kind))
        nextSeq &+= 1
        if events.count > capacity { events.removeFirst(events.count - capacity) }
    }
}

/// The replicated failover state: applied from committed entries in log order on every
/// replica, it must reach the same result everywhere. Hence no clock (time is the entry
/// stamp), no randomness, no I/O, and deterministic iteration (sorted keys) wherever order
/// shows in the output. The rules are explained in docs/CONTROLLER.md.
public struct FailoverState: Sendable, Hashable {
    public internal(set) var policy: HealthPolicy
    /// The latest stamp applied. Time never runs backwards inside the state even if a new
    /// leader's wall clock is behind the old one's.
    public internal(set) var now: Stamp = Stamp(millis: 0)
    public internal(set) var tunnels: [String: TunnelState] = [:]
    public internal(set) var pending: [FencingToken: PendingIntent] = [:]
    /// The last target each route was successfully written to: what the planner keeps when
    /// no candidate qualifies (never blackhole).
    public internal(set) var routeTargets: [RouteKey: RouteTarget] = [:]
    public internal(set) var events: EventLog

    /// Intents whose outcome never arrived (a leader died mid-write) are dropped past this.
    public static let maxPendingIntents = 10_000

    public init(policy: HealthPolicy = .default, eventCapacity: Int = 1000) {
        self.policy = policy
        self.events = EventLog(capacity: eventCapacity)
    }

    public func tunnel(_ name: String) -> TunnelState? { tunnels[name] }

    public func verdict(of tunnel: String) -> TunnelVerdict { tunnels[tunnel]?.verdict ?? .unknown }

    @discardableResult
    public mutating func apply(_ command: ControllerCommand, stamp: Stamp) -> [Directive] {
        if stamp > now { now = stamp }
        var directives: [Directive] = []
        switch command {
        case .setPolicy(let newPolicy):
            guard newPolicy != policy else { break }
            policy = newPolicy
            events.append(.policyChanged(newPolicy), at: now)
            directives.append(.replan)
            for name in tunnels.keys.sorted() { evaluate(name, into: &directives) }

        case .observe(let replica, let name, let healthyRun, let unhealthyRun, let rtt, let instance):
            // Sent before the replica saw a replacement, or answered by the old instance's
            // sentinel: it vouches for another instance than the one routes would go to.
            let current = tunnels[name]?.identity?.instanceId
            let vouches = instance == nil || current == nil || instance == current
            tunnels[name, default: TunnelState()].observations[replica] = Observation(
                healthyRun: vouches ? healthyRun : 0, unhealthyRun: unhealthyRun, rttMillis: rtt, at: now)
            evaluate(name, into: &directives)

        case .tick:
            for name in tunnels.keys.sorted() { evaluate(name, into: &directives) }

        case .drain(let name, let reason, let by):
            let wasDrained = tunnels[name]?.drain != nil
            tunnels[name, default: TunnelState()].drain = Drain(reason: reason, by: by, since: now)
            events.append(.drained(tunnel: name, reason: reason, by: by), at: now)
            if !wasDrained { directives.append(.replan) }

        case .undrain(let name, let by):
            guard tunnels[name]?.drain != nil else { break }
            tunnels[name]?.drain = nil
            events.append(.undrained(tunnel: name, by: by), at: now)
            directives.append(.replan)

        case .routeNotWritten(let key, let reason):
            events.append(.routeNotWritten(key, reason: reason), at: now)

        case .approveFailback(let name, let by):
            tunnels[name, default: TunnelState()].failbackApproved = true
            events.append(.failbackApproved(tunnel: name, by: by), at: now)
            evaluate(name, into: &directives)

        case .instanceIdentity(let name, let identity):
            let old = tunnels[name]?.identity
            guard old != identity else { break }
            tunnels[name, default: TunnelState()].identity = identity
            if old?.eniId != identity.eniId { tunnels[name]?.forwardingENI = nil }
            if old?.instanceId != identity.instanceId { tunnels[name]?.ec2Status = nil }
            if let old, old.instanceId != identity.instanceId, var t = tunnels[name] {
                // A replacement earns its verdict from its own sentinel (issue #16): the old
                // instance's health says nothing about the new one.
                let was = t.verdict
                t.verdict = .unknown
                t.verdictSince = now
                t.observations = [:]
                t.upEvidenceSince = nil
                t.lastDownEvidence = nil
                t.failbackApproved = false
                t.stale = false
                tunnels[name] = t
                if was != .unknown { directives.append(.verdictChanged(tunnel: name, from: was, to: .unknown)) }
            }
            if let old {
                events.append(.instanceReplaced(tunnel: name, old: old, new: identity), at: now)
            } else {
                events.append(.instanceDiscovered(tunnel: name, identity), at: now)
            }
            directives.append(.instanceChanged(tunnel: name, old: old, new: identity))
            directives.append(.replan)

        case .sourceDestCheck(let name, let eni, let enabled):
            setSourceDestCheck(name, eni: eni, enabled: enabled, into: &directives)

        case .instanceStatus(let name, let report):
            guard let t = tunnels[name], t.identity?.instanceId == report.instanceId, t.ec2Status != report else { break }
            let known = Set(t.ec2Status?.events.map(\.id) ?? [])
            if t.impaired != report.impaired {
                events.append(.instanceStatus(tunnel: name, instanceId: report.instanceId, impaired: report.impaired, summary: report.summary), at: now)
                directives.append(.replan)
            }
            for event in report.events where !known.contains(event.id) {
                events.append(.scheduledEvent(tunnel: name, instanceId: report.instanceId, event), at: now)
            }
            tunnels[name]?.ec2Status = report

        case .elasticIP(let name, let report):
            setElasticIP(name, report)

        case .intent(let token, let write):
            guard pending[token] == nil else { break }
            // An intent of a newer term means its leader waited out every older lease
            // (lock-delay, DESIGN rule 3): an older term's write still pending can no longer
            // happen, and its outcome will never come.
            for stale in pending.keys.filter({ $0.term < token.term }).sorted() {
                pending[stale] = nil
                events.append(.intentAbandoned(stale), at: now)
            }
            pending[token] = PendingIntent(token: token, write: write, at: now)
            if pending.count > Self.maxPendingIntents, let oldest = pending.keys.min() {
                pending[oldest] = nil
                events.append(.intentAbandoned(oldest), at: now)
            }
            events.append(.intent(token, write), at: now)
            directives.append(.intentRecorded(token, write))

        case .outcome(let token, let success, let detail, let requestId):
            guard let intent = pending.removeValue(forKey: token) else {
                events.append(.outcomeWithoutIntent(token, success: success), at: now)
                break
            }
            events.append(.outcome(token, success: success, detail: detail, requestId: requestId), at: now)
            if success {
                switch intent.write {
                case .route(let key, let target):
                    routeTargets[key] = target
                case .disableSourceDestCheck(let name, _, let eni):
                    setSourceDestCheck(name, eni: eni, enabled: false, into: &directives)
                case .associateAddress(let name, let allocation, _, let eni, _):
                    if let known = tunnels[name]?.elasticIP, known.allocationId == allocation {
                        setElasticIP(name, ElasticIPReport(allocationId: allocation, publicIP: known.publicIP, eniId: eni))
                    }
                case .dns:
                    break
                }
            }
            directives.append(.outcomeRecorded(token, success: success))
        }
        return directives
    }

    /// Only about the interface of the tunnel's current identity: a read or a write about an
    /// interface it no longer has says nothing about the one it has now.
    mutating func setSourceDestCheck(_ name: String, eni: String, enabled: Bool, into directives: inout [Directive]) {
        guard let t = tunnels[name], t.identity?.eniId == eni else { return }
        let forwarding: String? = enabled ? nil : eni
        guard t.forwardingENI != forwarding else { return }
        tunnels[name]?.forwardingENI = forwarding
        events.append(.sourceDestCheck(tunnel: name, eniId: eni, enabled: enabled), at: now)
        directives.append(.replan)
    }

    mutating func setElasticIP(_ name: String, _ report: ElasticIPReport) {
        guard tunnels[name] != nil, tunnels[name]?.elasticIP != report else { return }
        tunnels[name]?.elasticIP = report
        events.append(.elasticIP(tunnel: name, allocationId: report.allocationId, publicIP: report.publicIP, eniId: report.eniId), at: now)
    }

    /// The verdict rules for one tunnel at `now` (docs/CONTROLLER.md).
    mutating func evaluate(_ name: String, into directives: inout [Directive]) {
        guard var t = tunnels[name] else { return }
        defer { tunnels[name] = t }
        let fresh = t.observations.values.filter { now.millis(since: $0.at) < policy.observationTTLMillis }
        let freshCount = UInt32(clamping: fresh.count)
        // Too few fresh observations is no evidence either way: the up streak neither grows
        // a verdict nor breaks (as the last down evidence is not moved by staleness either).
        guard freshCount >= policy.minimumObservers else {
            if !t.stale {
                t.stale = true
                events.append(.observationsStale(tunnel: name, fresh: freshCount), at: now)
            }
            return
        }
        if t.stale {
            t.stale = false
            events.append(.observationsFresh(tunnel: name, fresh: freshCount), at: now)
        }
        let saysDown = UInt32(clamping: fresh.filter { $0.unhealthyRun >= policy.fall }.count)
        let saysUp = UInt32(clamping: fresh.filter { $0.healthyRun >= policy.rise }.count)
        let old = t.verdict
        if UInt64(saysUp) * 2 > UInt64(freshCount) {
            if t.upEvidenceSince == nil { t.upEvidenceSince = now }
        } else {
            t.upEvidenceSince = nil
        }
        if UInt64(saysDown) * 2 > UInt64(freshCount) {
            t.lastDownEvidence = now
            guard old != .down else { return }
            t.verdict = .down
            t.verdictSince = now
            t.failbackApproved = false
            events.append(.tunnelDown(tunnel: name, saysDown: saysDown, fresh: freshCount), at: now)
        } else if UInt64(saysUp) * 2 > UInt64(freshCount) {
            switch old {
            case .up:
                return
            case .unknown:
                break
            case .down:
                let heldDown = t.lastDownEvidence.map { now.millis(since: $0) } ?? UInt64.max
                let heldUp = t.upEvidenceSince.map { now.millis(since: $0) } ?? 0
                guard heldDown >= policy.failbackHoldDownMillis, heldUp >= policy.failbackHoldDownMillis,
                      policy.autoFailback || t.failbackApproved else { return }
            }
            t.verdict = .up
            t.verdictSince = now
            t.failbackApproved = false
            events.append(.tunnelUp(tunnel: name, saysUp: saysUp, fresh: freshCount, failback: old == .down), at: now)
        } else {
            return
        }
        directives.append(.verdictChanged(tunnel: name, from: old, to: t.verdict))
        directives.append(.replan)
    }
}
