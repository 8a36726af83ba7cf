/// Why a candidate tunnel was passed over.
public enum SkipReason: Sendable, Hashable, CustomStringConvertible {
    case down
    /// Never agreed up (cold start): routing to it would be a guess.
    case unknown
    case drained(reason: String)
    /// No VPN instance found for it yet: there is nothing to point the route at.
    case noInstance
    /// Its interface's source/destination check is on, or not yet known to be off: EC2
    /// would drop every packet the instance forwards.
    case sourceDestCheckOn
    /// EC2's status checks of its instance say impaired.
    case impaired(String)

    public var description: String {
        switch self {
        case .down: return "down"
        case .unknown: return "health not yet agreed"
        case .drained(let reason): return "drained (\(reason))"
        case .noInstance: return "no instance known"
        case .sourceDestCheckOn: return "source/destination check not known to be off"
        case .impaired(let summary): return "EC2 status checks impaired (\(summary))"
        }
    }
}

public struct SkippedCandidate: Sendable, Hashable {
    public var tunnel: String
    public var why: SkipReason
}

public enum PlanReason: Sendable, Hashable {
    /// The first candidate qualifies.
    case preferred
    /// An earlier candidate did not qualify; the skipped ones say why.
    case failover(skipped: [SkippedCandidate])
    /// No candidate qualifies: keep pointing where the route points now.
    case keptCurrent(skipped: [SkippedCandidate])
    /// No candidate qualifies and the current target is unknown: leave the route alone.
    case noTarget(skipped: [SkippedCandidate])
    /// No candidate qualifies and the route points at something that is not a tunnel (a
    /// transit gateway, VGW, NAT gateway or peering connection an operator chose as a last
    /// resort): it is theirs, leave it.
    case leftAlone(skipped: [SkippedCandidate], pointsAt: String)
}

public enum RouteAlert: Sendable, Hashable {
    case noQualifiedCandidate
}

public struct PlannedRoute: Sendable, Hashable {
    public var key: RouteKey
    public var region: String?
    /// `nil` only with `.noTarget`: the reconciler must not touch such a route.
    public var target: RouteTarget?
    public var reason: PlanReason
    public var alert: RouteAlert?
}

/// The desired target of every managed route, from the replicated state alone (DESIGN rule 5).
/// Pure: the same state and routes give the same plan on every replica, so any replica can
/// show what the leader is about to do.
public enum Planner {
    /// - Parameter current: targets read back from the real route tables, when the caller has
    ///   them; otherwise the last successful write recorded in the state stands in.
    ///   `foreign`: routes read back pointing at a gateway rather than an instance or
    ///   interface, with what they point at.
    public static func plan(state: FailoverState, routes: [RouteConfig], current: [RouteKey: RouteTarget] = [:],
                            foreign: [RouteKey: String] = [:]) -> [PlannedRoute] {
        routes.map { plan(route: $0, state: state, current: current, foreign: foreign) }
    }

    public static func plan(route: RouteConfig, state: FailoverState, current: [RouteKey: RouteTarget] = [:],
                            foreign: [RouteKey: String] = [:]) -> PlannedRoute {
        let key = RouteKey(routeTable: route.routeTable, destination: route.destination)
        var skipped: [SkippedCandidate] = []
        for name in route.candidates {
            let tunnel = state.tunnels[name]
            if let why = disqualification(tunnel) {
                skipped.append(SkippedCandidate(tunnel: name, why: why))
                continue
            }
            guard let identity = tunnel?.identity else { continue }
            let target = RouteTarget(tunnel: name, instanceId: identity.instanceId, eniId: identity.eniId)
            return PlannedRoute(
                key: key, region: route.region, target: target,
                reason: skipped.isEmpty ? .preferred : .failover(skipped: skipped), alert: nil)
        }
        if let pointsAt = foreign[key] {
            return PlannedRoute(key: key, region: route.region, target: nil,
                                reason: .leftAlone(skipped: skipped, pointsAt: pointsAt), alert: .noQualifiedCandidate)
        }
        // Never blackhole: a route that points at a dead tunnel may still work (the probes may
        // be what is broken); a deleted or re-pointed-at-nothing route certainly does not.
        if let kept = current[key] ?? state.routeTargets[key] {
            return PlannedRoute(key: key, region: route.region, target: kept, reason: .keptCurrent(skipped: skipped), alert: .noQualifiedCandidate)
        }
        return PlannedRoute(key: key, region: route.region, target: nil, reason: .noTarget(skipped: skipped), alert: .noQualifiedCandidate)
    }

    static func disqualification(_ tunnel: TunnelState?) -> SkipReason? {
        guard let tunnel else { return .unknown }
        switch tunnel.verdict {
        case .down: return .down
        case .unknown: return .unknown
        case .up: break
        }
        if let drain = tunnel.drain { return .drained(reason: drain.reason) }
        if tunnel.identity == nil { return .noInstance }
        if tunnel.impaired, let status = tunnel.ec2Status { return .impaired(status.summary) }
        if !tunnel.forwards { return .sourceDestCheckOn }
        return nil
    }
}
