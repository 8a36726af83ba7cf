import Foundation
import Raft
import RaftRuntime

/// Builds the admin API's documents from one replica: its Raft status, its copy of the
/// replicated state, and its config. Reads are linearizable unless asked otherwise.
public struct AdminView: Sendable {
    public let replica: ControllerReplica

    public init(replica: ControllerReplica) {
        self.replica = replica
    }

    var config: SwitchmanConfig { replica.config }
    var node: RaftNode { replica.node }

    // MARK: Consistency

    /// Waits, unless `stale`, until this replica has applied everything committed before the
    /// call (ReadIndex through the leader). Returns the consistency the answer has.
    public func barrier(stale: Bool) async throws(AdminError) -> String {
        if stale { return "stale" }
        do {
            _ = try await node.readIndex()
            return "linearizable"
        } catch {
            throw Self.adminError(error)
        }
    }

    /// The admin error for a Raft error: who to ask instead, or that there is no quorum.
    public static func adminError(_ error: any Error) -> AdminError {
        switch error as? RaftNodeError {
        case .rejected(.notLeader(let leader))?:
            return leader == 0
                ? AdminError(code: "no_leader", message: "no leader is known; the cluster may have lost its quorum")
                : AdminError(code: "not_leader", message: "replica \(leader) leads; ask it", leader: leader)
        case .readFailed(let why)?:
            return AdminError(code: "no_quorum", message: "linearizable read failed (\(why)); retry, or pass stale=true for this replica's view")
        case .timeout?:
            return AdminError(code: "no_quorum", message: "no answer from a quorum in time; retry, or pass stale=true for this replica's view")
        case .stopped?:
            return AdminError(code: "internal", message: "this replica is shutting down")
        case .rejected(let why)?:
            return AdminError(code: "bad_request", message: "\(why)")
        default:
            return AdminError(code: "internal", message: "\(error)")
        }
    }

    // MARK: Documents

    public func status(stale: Bool) async throws(AdminError) -> AdminStatus {
        let consistency = try await barrier(stale: stale)
        let s = await node.status
        let state = replica.machine.state
        let lease = s.leaseExpiry.map { until -> UInt64 in
            let left = until - ContinuousClock.now
            return left > .zero ? UInt64(left.milliseconds) : 0
        }
        return AdminStatus(
            cluster: config.cluster.name, answeredBy: s.id, leader: s.leader, term: s.term, commitIndex: s.commitIndex,
            appliedIndex: replica.machine.appliedIndex, consistency: consistency, leaseRemainingMillis: lease,
            members: members(s), tunnels: tunnels(state), routes: routes(state))
    }

    public func membersDocument(stale: Bool) async throws(AdminError) -> AdminMembers {
        let consistency = try await barrier(stale: stale)
        let s = await node.status
        return AdminMembers(cluster: config.cluster.name, answeredBy: s.id, leader: s.leader, term: s.term, consistency: consistency, members: members(s))
    }

    public func tunnelsDocument(stale: Bool) async throws(AdminError) -> AdminTunnels {
        let consistency = try await barrier(stale: stale)
        let s = await node.status
        return AdminTunnels(
            cluster: config.cluster.name, answeredBy: s.id, leader: s.leader, term: s.term, consistency: consistency,
            tunnels: tunnels(replica.machine.state))
    }

    public func routesDocument(stale: Bool) async throws(AdminError) -> AdminRoutes {
        let consistency = try await barrier(stale: stale)
        let s = await node.status
        return AdminRoutes(
            cluster: config.cluster.name, answeredBy: s.id, leader: s.leader, term: s.term, consistency: consistency,
            routes: routes(replica.machine.state))
    }

    public func eventsDocument(stale: Bool, since: UInt64, limit: Int) async throws(AdminError) -> AdminEvents {
        let consistency = try await barrier(stale: stale)
        let log = replica.machine.state.events
        let events = log.events.filter { $0.seq > since }.prefix(max(0, limit)).map(Self.event)
        return AdminEvents(
            answeredBy: replica.id, consistency: consistency, firstAvailableSeq: log.events.first?.seq ?? log.nextSeq,
            events: Array(events))
    }

    // MARK: Parts

    func members(_ s: RaftNodeStatus) -> [AdminMember] {
        let configured = Dictionary(uniqueKeysWithValues: config.cluster.members.map { ($0.id, $0) })
        let ids = Set(configured.keys).union(s.membership.voters).union(s.membership.learners).sorted()
        let window = config.timing.electionTimeout
        let now = ContinuousClock.now
        return ids.map { id in
            let role: String
            if id == s.id {
                role = s.membership.learners.contains(id) ? "learner" : "\(s.role)"
            } else if id == s.leader {
                role = "leader"
            } else if s.membership.learners.contains(id) {
                role = "learner"
            } else if s.membership.voters.contains(id) {
                role = "follower"
            } else {
                role = "not a member"
            }
            let heard = s.lastContact[id]
            let ago = heard.map { UInt64(max(0, (now - $0).milliseconds)) }
            let reachable = id == s.id || heard.map { now - $0 < window } == true
            let m = configured[id]
            return AdminMember(
                id: id, zone: m?.zone ?? "", role: role, reachable: reachable, peer: m?.peer.description ?? "",
                admin: m?.admin.description ?? "", matchIndex: s.matchIndexes[id], lastContactMillisAgo: id == s.id ? nil : ago)
        }
    }

    func tunnels(_ state: FailoverState) -> [AdminTunnel] {
        let names = config.tunnels.map(\.name) + state.tunnels.keys.sorted().filter { n in !config.tunnels.contains { $0.name == n } }
        return names.map { name in
            let t = state.tunnels[name] ?? TunnelState()
            let observations = t.observations.sorted { $0.key < $1.key }.map { replica, o in
                let age = state.now.millis(since: o.at)
                return AdminObservation(
                    replica: replica, healthyRun: o.healthyRun, unhealthyRun: o.unhealthyRun, rttMillis: o.rttMillis, ageMillis: age,
                    fresh: age < state.policy.observationTTLMillis)
            }
            return AdminTunnel(
                name: name, state: "\(t.verdict)", stale: t.stale, drained: t.drain != nil, drainReason: t.drain?.reason,
                drainedBy: t.drain?.by, since: t.verdictSince.map(Self.date),
                instance: t.identity.map {
                    let status = t.ec2Status?.instanceId == $0.instanceId ? t.ec2Status : nil
                    return AdminInstance(
                        instanceId: $0.instanceId, eniId: $0.eniId, privateIP: $0.privateIP, forwards: t.forwards,
                        ec2Status: status?.summary, impaired: status.map { _ in t.impaired },
                        scheduledEvents: status.map { $0.events.map(\.description) },
                        elasticIP: t.elasticIP?.publicIP, elasticIPHere: t.elasticIP.map { [eni = $0.eniId] in $0.eniId == eni })
                },
                observations: observations)
        }
    }

    func routes(_ state: FailoverState) -> [AdminRoute] {
        // The last intent and outcome per route, newest last.
        var lastIntent: [RouteKey: Event] = [:]
        var outcomes: [FencingToken: Event] = [:]
        // Why the leader last chose not to write a route, unless it wrote it since.
        var notWritten: [RouteKey: String] = [:]
        for e in state.events.events {
            switch e.kind {
            case .intent(_, .route(let key, _)):
                lastIntent[key] = e
                notWritten[key] = nil
            case .outcome(let token, _, _, _): outcomes[token] = e
            case .routeNotWritten(let key, let reason): notWritten[key] = reason
            default: break
            }
        }
        return Planner.plan(state: state, routes: config.routes).map { p in
            var write: AdminWrite? = nil
            if let intent = lastIntent[p.key], case .intent(let token, _) = intent.kind {
                write = AdminWrite(term: token.term, index: token.index, success: nil, detail: nil, requestId: nil, at: Self.date(intent.at))
                if let o = outcomes[token], case .outcome(_, let success, let detail, let requestId) = o.kind {
                    write?.success = success
                    write?.detail = detail
                    write?.requestId = requestId.isEmpty ? nil : requestId
                    write?.at = Self.date(o.at)
                }
            }
            return AdminRoute(
                routeTable: p.key.routeTable, destination: p.key.destination.description, region: p.region ?? config.aws.region,
                desired: p.target?.tunnel, desiredENI: p.target?.eniId, actual: state.routeTargets[p.key]?.tunnel,
                reason: notWritten[p.key].map { "not written: \($0)" } ?? Self.reason(p.reason),
                alert: p.alert.map { _ in "no qualified candidate" }, lastWrite: write)
        }
    }

    static func reason(_ r: PlanReason) -> String {
        func skipped(_ s: [SkippedCandidate]) -> String { s.map { "\($0.tunnel): \($0.why)" }.joined(separator: "; ") }
        switch r {
        case .preferred: return "preferred"
        case .failover(let s): return "failover (\(skipped(s)))"
        case .keptCurrent(let s): return "kept current target, no candidate qualifies (\(skipped(s)))"
        case .noTarget(let s): return "no target known, route left alone (\(skipped(s)))"
        case .leftAlone(let s, let pointsAt):
            return "points at \(pointsAt), not a tunnel: left alone while no candidate qualifies (\(skipped(s)))"
        }
    }

    static func date(_ stamp: Stamp) -> Date { Date(timeIntervalSince1970: Double(stamp.millis) / 1000) }

    static func event(_ e: Event) -> AdminEvent {
        let (kind, tunnel, text): (String, String?, String)
        switch e.kind {
        case .tunnelDown(let t, let down, let fresh): (kind, tunnel, text) = ("tunnelDown", t, "\(t) down: \(down) of \(fresh) fresh observers say down")
        case .tunnelUp(let t, let up, let fresh, let failback):
            (kind, tunnel, text) = ("tunnelUp", t, "\(t) up\(failback ? " (failback)" : ""): \(up) of \(fresh) fresh observers say up")
        case .observationsStale(let t, let fresh): (kind, tunnel, text) = ("observationsStale", t, "\(t): only \(fresh) fresh observers, verdict kept")
        case .observationsFresh(let t, let fresh): (kind, tunnel, text) = ("observationsFresh", t, "\(t): \(fresh) fresh observers again")
        case .drained(let t, let reason, let by): (kind, tunnel, text) = ("drained", t, "\(t) drained by \(by): \(reason)")
        case .undrained(let t, let by): (kind, tunnel, text) = ("undrained", t, "\(t) undrained by \(by)")
        case .failbackApproved(let t, let by): (kind, tunnel, text) = ("failbackApproved", t, "\(t): failback approved by \(by)")
        case .instanceDiscovered(let t, let i): (kind, tunnel, text) = ("instanceDiscovered", t, "\(t): instance \(i)")
        case .instanceReplaced(let t, let old, let new): (kind, tunnel, text) = ("instanceReplaced", t, "\(t): instance \(old) replaced by \(new)")
        case .sourceDestCheck(let t, let eni, let enabled):
            (kind, tunnel, text) = ("sourceDestCheck", t, "\(t): source/destination check of \(eni) is \(enabled ? "on: no route may point at it" : "off")")
        case .instanceStatus(let t, let instance, let impaired, let summary):
            (kind, tunnel, text) = ("instanceStatus", t, "\(t): EC2 status checks of \(instance) \(impaired ? "impaired: not a candidate" : "no longer impaired") (\(summary))")
        case .scheduledEvent(let t, let instance, let event):
            (kind, tunnel, text) = ("scheduledEvent", t, "\(t): EC2 scheduled \(event) for \(instance)\(event.detail.isEmpty ? "" : ": \(event.detail)")")
        case .elasticIP(let t, let allocation, let ip, let eni):
            (kind, tunnel, text) = ("elasticIP", t, "\(t): Elastic IP \(ip) (\(allocation)) is \(eni.map { "on \($0)" } ?? "not associated")")
        case .intent(let token, let write): (kind, tunnel, text) = ("intent", Self.tunnel(of: write), "intent \(token): \(Self.describe(write))")
        case .outcome(let token, let success, let detail, let requestId):
            (kind, tunnel, text) = ("outcome", nil, "outcome \(token): \(success ? "ok" : "failed") \(detail)\(requestId.isEmpty ? "" : " [request id \(requestId)]")")
        case .outcomeWithoutIntent(let token, let success): (kind, tunnel, text) = ("outcomeWithoutIntent", nil, "outcome \(token) (\(success ? "ok" : "failed")) without a pending intent")
        case .intentAbandoned(let token): (kind, tunnel, text) = ("intentAbandoned", nil, "intent \(token) abandoned by a newer term")
        case .routeNotWritten(let key, let reason):
            (kind, tunnel, text) = ("routeNotWritten", nil, "route \(key) not written: \(reason)")
        case .policyChanged(let p):
            (kind, tunnel, text) = ("policyChanged", nil, "policy: fall \(p.fall), rise \(p.rise), TTL \(p.observationTTLMillis) ms, hold-down \(p.failbackHoldDownMillis) ms, auto failback \(p.autoFailback)")
        }
        return AdminEvent(seq: e.seq, at: date(e.at), kind: kind, tunnel: tunnel, text: text)
    }

    static func tunnel(of write: ActuationWrite) -> String? {
        switch write {
        case .route(_, let target): return target.tunnel
        case .disableSourceDestCheck(let tunnel, _, _): return tunnel
        case .associateAddress(let tunnel, _, _, _, _): return tunnel
        case .dns: return nil
        }
    }

    static func describe(_ write: ActuationWrite) -> String {
        switch write {
        case .route(let key, let target): return "route \(key) → \(target)"
        case .dns(_, let records): return "DNS " + records.map(\.description).joined(separator: ", ")
        case .disableSourceDestCheck(let tunnel, let instance, let eni):
            return "source/destination check off on \(eni) (\(tunnel), \(instance))"
        case .associateAddress(let tunnel, let allocation, let instance, let eni, let ip):
            return "Elastic IP \(allocation) to \(eni) \(ip) (\(tunnel), \(instance))"
        }
    }
}
