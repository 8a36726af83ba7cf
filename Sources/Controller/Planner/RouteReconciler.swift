import Actuators

/// The leader's route pass without its I/O (issue #17 item 6): from the routes read back and
/// the plan, which routes to write and what to say about the others. Pure: the read, the
/// recent writes, the backoff and the instant are passed in.
enum RouteReconciler {
    /// What the leader does about one planned route besides writing it.
    enum Note: Sendable, Equatable {
        /// It points at a gateway an operator chose and no candidate qualifies.
        case leftAlone(RouteKey, reason: String)
        /// It names the desired interface but reads blackhole: writing it again cannot help.
        case blackhole(RouteKey, reason: String)
        /// It is as planned: any earlier "not written" reason is over.
        case inSync(RouteKey)
        /// The read still shows the target before our own recent write (EC2's read lag).
        case readBehindWrite(RouteKey)
    }

    struct Decision: Sendable {
        var writes: [(route: PlannedRoute, exists: Bool)] = []
        var notes: [Note] = []
    }

    /// What each read route points at, named by tunnel where its interface or instance is a
    /// tunnel's current one; routes pointed at a gateway are someone else's choice.
    static func targets(_ actual: [RouteKey: EC2Route], tunnels: [String: TunnelState]) -> (current: [RouteKey: RouteTarget], foreign: [RouteKey: String]) {
        var byENI: [String: RouteTarget] = [:]
        var byInstance: [String: RouteTarget] = [:]
        for (name, t) in tunnels.sorted(by: { $0.key < $1.key }) {
            guard let identity = t.identity else { continue }
            let target = RouteTarget(tunnel: name, instanceId: identity.instanceId, eniId: identity.eniId)
            byENI[identity.eniId] = target
            byInstance[identity.instanceId] = target
        }
        var current: [RouteKey: RouteTarget] = [:]
        var foreign: [RouteKey: String] = [:]
        for (key, route) in actual {
            if let gateway = route.gatewayTarget { foreign[key] = gateway }
            if let target = route.networkInterfaceId.flatMap({ byENI[$0] }) ?? route.instanceId.flatMap({ byInstance[$0] }) {
                current[key] = target
            }
        }
        return (current, foreign)
    }

    /// `plan` against `actual` (the static route per key) for the tables in `tablesRead`.
    /// A route is written when its planned target differs from the read one, unless this
    /// leader wrote that very target within `consistencyWindow` before `now`, or its last
    /// write failed and `retryAt` is still ahead.
    static func decide(
        plan: [PlannedRoute], actual: [RouteKey: EC2Route], tablesRead: Set<String>,
        recentWrites: [RouteKey: (eni: String, at: ContinuousClock.Instant)], retryAt: [RouteKey: ContinuousClock.Instant],
        consistencyWindow: Duration, now: ContinuousClock.Instant
    ) -> Decision {
        var d = Decision()
        for p in plan where tablesRead.contains(p.key.routeTable) {
            guard let target = p.target else {
                if case .leftAlone(_, let pointsAt) = p.reason {
                    d.notes.append(.leftAlone(p.key, reason: "points at \(pointsAt), not a tunnel, and no candidate qualifies: left alone"))
                }
                continue
            }
            let read = actual[p.key]
            if let read, read.networkInterfaceId == target.eniId {
                if read.state == "blackhole" {
                    d.notes.append(.blackhole(p.key, reason: "its target \(target.eniId) (\(target.tunnel), \(target.instanceId)) is a blackhole: the interface or its instance is gone or stopped"))
                } else {
                    d.notes.append(.inSync(p.key))
                }
                continue
            }
            if let recent = recentWrites[p.key], recent.eni == target.eniId, now - recent.at < consistencyWindow {
                d.notes.append(.readBehindWrite(p.key))
                continue
            }
            if let next = retryAt[p.key], now < next { continue }
            d.writes.append((p, exists: read != nil))
        }
        return d
    }
}
