import Actuators
import Testing
@testable import Controller

/// The leader's route pass without I/O (issue #17 item 6): plan × read → writes and notes.
@Suite struct RouteReconcilerTests {
    static let key = RouteKey(routeTable: "rtb-1", destination: IPv4CIDR(address: 0x0A09_0000, prefixLength: 16))
    static let a = Controller.RouteTarget(tunnel: "a", instanceId: "i-a", eniId: "eni-a")
    static let t0 = ContinuousClock.now

    static func plan(_ target: Controller.RouteTarget?, _ reason: PlanReason = .preferred) -> [PlannedRoute] {
        [PlannedRoute(key: key, region: nil, target: target, reason: reason, alert: nil)]
    }

    static func route(eni: String?, state: String = "active", gateway: String? = nil) -> EC2Route {
        var r = EC2Route(destinationCidrBlock: "10.9.0.0/16", networkInterfaceId: eni)
        r.state = state
        r.gatewayId = gateway
        return r
    }

    static func decide(_ plan: [PlannedRoute], _ actual: [RouteKey: EC2Route], read: Set<String> = ["rtb-1"],
                       recent: [RouteKey: (eni: String, at: ContinuousClock.Instant)] = [:],
                       retryAt: [RouteKey: ContinuousClock.Instant] = [:], now: ContinuousClock.Instant = t0) -> RouteReconciler.Decision {
        RouteReconciler.decide(plan: plan, actual: actual, tablesRead: read, recentWrites: recent, retryAt: retryAt,
                               consistencyWindow: .seconds(5), now: now)
    }

    @Test func aRouteElsewhereIsWrittenAndOneInPlaceIsNot() {
        let moved = Self.decide(Self.plan(Self.a), [Self.key: Self.route(eni: "eni-b")])
        #expect(moved.writes.map(\.route.target) == [Self.a] && moved.writes.first?.exists == true)
        let missing = Self.decide(Self.plan(Self.a), [:])
        #expect(missing.writes.first?.exists == false, "no static route yet: created")
        let inPlace = Self.decide(Self.plan(Self.a), [Self.key: Self.route(eni: "eni-a")])
        #expect(inPlace.writes.isEmpty && inPlace.notes == [.inSync(Self.key)])
        let unread = Self.decide(Self.plan(Self.a), [:], read: [])
        #expect(unread.writes.isEmpty && unread.notes.isEmpty, "a table that could not be read is not judged")
    }

    @Test func aBlackholeOnTheDesiredTargetIsReportedNotRewritten() {
        let d = Self.decide(Self.plan(Self.a), [Self.key: Self.route(eni: "eni-a", state: "blackhole")])
        #expect(d.writes.isEmpty)
        guard case .blackhole(Self.key, let reason)? = d.notes.first else {
            Issue.record("expected a blackhole note, got \(d.notes)")
            return
        }
        #expect(reason.contains("eni-a") && reason.contains("blackhole"))
    }

    @Test func aReadBehindOurOwnWriteWaitsOutTheWindowAndAFailedWriteItsBackoff() {
        let stale = [Self.key: Self.route(eni: "eni-b")]
        let recent = [Self.key: (eni: "eni-a", at: Self.t0)]
        let within = Self.decide(Self.plan(Self.a), stale, recent: recent, now: Self.t0 + .seconds(2))
        #expect(within.writes.isEmpty && within.notes == [.readBehindWrite(Self.key)])
        let after = Self.decide(Self.plan(Self.a), stale, recent: recent, now: Self.t0 + .seconds(6))
        #expect(after.writes.count == 1, "past the window the read is believed: one more write")
        let backedOff = Self.decide(Self.plan(Self.a), stale, retryAt: [Self.key: Self.t0 + .seconds(4)], now: Self.t0 + .seconds(1))
        #expect(backedOff.writes.isEmpty && backedOff.notes.isEmpty)
    }

    @Test func aGatewayRouteLeftAloneIsSaidAndTargetsAreNamedByTunnel() {
        var tunnels: [String: TunnelState] = [:]
        var t = TunnelState()
        t.identity = InstanceIdentity(instanceId: "i-a", eniId: "eni-a", privateIP: "10.0.0.1")
        tunnels["a"] = t
        let byInstance = EC2Route(destinationCidrBlock: "10.9.0.0/16", instanceId: "i-a")
        let gateway = Self.route(eni: nil, gateway: "vgw-1")
        let other = RouteKey(routeTable: "rtb-2", destination: Self.key.destination)
        let (current, foreign) = RouteReconciler.targets([Self.key: byInstance, other: gateway], tunnels: tunnels)
        #expect(current == [Self.key: Self.a] && foreign == [other: "vgw-1"])
        let d = Self.decide(Self.plan(nil, .leftAlone(skipped: [], pointsAt: "vgw-1")), [Self.key: gateway])
        #expect(d.writes.isEmpty && d.notes == [.leftAlone(Self.key, reason: "points at vgw-1, not a tunnel, and no candidate qualifies: left alone")])
    }
}
