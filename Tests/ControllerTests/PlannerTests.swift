import Testing
@testable import Controller

func cidr(_ s: String) -> IPv4CIDR {
    (try? IPv4CIDR.parse(s).get()) ?? IPv4CIDR(address: 0, prefixLength: 0)
}

func identity(_ tunnel: String) -> InstanceIdentity {
    InstanceIdentity(instanceId: "i-\(tunnel)", eniId: "eni-\(tunnel)", privateIP: "10.0.0.1")
}

/// A state where the named tunnels are agreed up (or down) and have instances, whose
/// source/destination checks are known off unless named in `checkOn`.
func state(up: [String], down: [String] = [], withIdentity: Bool = true, checkOn: Set<String> = []) -> FailoverState {
    var s = FailoverState(policy: HealthPolicy(fall: 1, rise: 1, observationTTLMillis: 10_000, failbackHoldDownMillis: 0, autoFailback: true, minimumObservers: 1))
    let stamp = Stamp(millis: 1000)
    for t in up {
        s.apply(.observe(replica: 1, tunnel: t, healthyRun: 1, unhealthyRun: 0, rttMillis: nil), stamp: stamp)
        if withIdentity { s.apply(.instanceIdentity(tunnel: t, identity(t)), stamp: stamp) }
    }
    for t in down {
        s.apply(.observe(replica: 1, tunnel: t, healthyRun: 0, unhealthyRun: 1, rttMillis: nil), stamp: stamp)
        if withIdentity { s.apply(.instanceIdentity(tunnel: t, identity(t)), stamp: stamp) }
    }
    for t in up + down where withIdentity && !checkOn.contains(t) {
        s.apply(.sourceDestCheck(tunnel: t, eniId: "eni-\(t)", enabled: false), stamp: stamp)
    }
    return s
}

func target(_ tunnel: String) -> RouteTarget {
    RouteTarget(tunnel: tunnel, instanceId: "i-\(tunnel)", eniId: "eni-\(tunnel)")
}

@Suite struct PlannerTests {
    let route = RouteConfig(routeTable: "rtb-1", destination: cidr("10.1.0.0/16"), candidates: ["a", "b", "c"], region: nil)

    @Test func firstUpCandidateInPreferenceOrder() {
        var p = Planner.plan(route: route, state: state(up: ["a", "b", "c"]))
        #expect(p.target == target("a") && p.reason == .preferred && p.alert == nil)
        p = Planner.plan(route: route, state: state(up: ["b", "c"], down: ["a"]))
        #expect(p.target == target("b"))
        #expect(p.reason == .failover(skipped: [SkippedCandidate(tunnel: "a", why: .down)]))
        p = Planner.plan(route: route, state: state(up: ["c"], down: ["a"]))
        #expect(p.target == target("c"))
        #expect(p.reason == .failover(skipped: [SkippedCandidate(tunnel: "a", why: .down), SkippedCandidate(tunnel: "b", why: .unknown)]))
    }

    @Test func drainedPrimaryIsSkipped() {
        var s = state(up: ["a", "b"])
        s.apply(.drain(tunnel: "a", reason: "patching", by: "ops"), stamp: Stamp(millis: 2000))
        let p = Planner.plan(route: route, state: s)
        #expect(p.target == target("b"))
        #expect(p.reason == .failover(skipped: [SkippedCandidate(tunnel: "a", why: .drained(reason: "patching"))]))
        s.apply(.undrain(tunnel: "a", by: "ops"), stamp: Stamp(millis: 3000))
        #expect(Planner.plan(route: route, state: s).target == target("a"))
    }

    @Test func unknownInstanceIsSkipped() {
        var s = state(up: ["a"], withIdentity: false)
        s.apply(.observe(replica: 1, tunnel: "b", healthyRun: 1, unhealthyRun: 0, rttMillis: nil), stamp: Stamp(millis: 1000))
        s.apply(.instanceIdentity(tunnel: "b", identity("b")), stamp: Stamp(millis: 1000))
        s.apply(.sourceDestCheck(tunnel: "b", eniId: "eni-b", enabled: false), stamp: Stamp(millis: 1000))
        let p = Planner.plan(route: route, state: s)
        #expect(p.target == target("b"))
        #expect(p.reason == .failover(skipped: [SkippedCandidate(tunnel: "a", why: .noInstance)]))
    }

    /// Issue #16: EC2 drops what an instance forwards while its interface's check is on.
    @Test func aCandidateWhoseSourceDestCheckIsNotKnownOffIsSkipped() {
        let p = Planner.plan(route: route, state: state(up: ["a", "b"], checkOn: ["a"]))
        #expect(p.target == target("b"))
        #expect(p.reason == .failover(skipped: [SkippedCandidate(tunnel: "a", why: .sourceDestCheckOn)]))
        // A replacement starts without it, whatever its predecessor had.
        var s = state(up: ["a", "b"])
        s.apply(.instanceIdentity(tunnel: "a", InstanceIdentity(instanceId: "i-a2", eniId: "eni-a2", privateIP: "10.0.0.2")), stamp: Stamp(millis: 2000))
        s.apply(.observe(replica: 1, tunnel: "a", healthyRun: 1, unhealthyRun: 0, rttMillis: nil, instanceId: "i-a2"), stamp: Stamp(millis: 2000))
        #expect(s.verdict(of: "a") == .up)
        #expect(Planner.plan(route: route, state: s).target == target("b"))
        s.apply(.sourceDestCheck(tunnel: "a", eniId: "eni-a", enabled: false), stamp: Stamp(millis: 3000))
        #expect(Planner.plan(route: route, state: s).target == target("b"), "a read about the old interface says nothing of the new one")
        s.apply(.sourceDestCheck(tunnel: "a", eniId: "eni-a2", enabled: false), stamp: Stamp(millis: 4000))
        #expect(Planner.plan(route: route, state: s).target == RouteTarget(tunnel: "a", instanceId: "i-a2", eniId: "eni-a2"))
        s.apply(.sourceDestCheck(tunnel: "a", eniId: "eni-a2", enabled: true), stamp: Stamp(millis: 5000))
        #expect(Planner.plan(route: route, state: s).target == target("b"), "turned back on by hand")
    }

    @Test func instanceReplacementMovesTheTarget() {
        var s = state(up: ["a"])
        let new = InstanceIdentity(instanceId: "i-new", eniId: "eni-new", privateIP: "10.0.0.7")
        s.apply(.instanceIdentity(tunnel: "a", new), stamp: Stamp(millis: 5000))
        #expect(Planner.plan(route: route, state: s).target == nil, "a replacement starts without a verdict")
        s.apply(.observe(replica: 1, tunnel: "a", healthyRun: 1, unhealthyRun: 0, rttMillis: nil, instanceId: "i-new"), stamp: Stamp(millis: 5000))
        s.apply(.sourceDestCheck(tunnel: "a", eniId: "eni-new", enabled: false), stamp: Stamp(millis: 5000))
        #expect(Planner.plan(route: route, state: s).target == RouteTarget(tunnel: "a", instanceId: "i-new", eniId: "eni-new"))
    }

    @Test func noCandidateUpKeepsTheCurrentTargetAndAlerts() {
        var s = state(up: ["a"], down: ["b", "c"])
        let key = RouteKey(routeTable: "rtb-1", destination: cidr("10.1.0.0/16"))
        let token = FencingToken(term: 1, index: 5)
        s.apply(.intent(token, .route(key, target: target("a"))), stamp: Stamp(millis: 2000))
        s.apply(.outcome(token, success: true, detail: "", requestId: "r"), stamp: Stamp(millis: 2100))
        s.apply(.observe(replica: 1, tunnel: "a", healthyRun: 0, unhealthyRun: 1, rttMillis: nil), stamp: Stamp(millis: 3000))
        let p = Planner.plan(route: route, state: s)
        #expect(p.target == target("a"), "never blackhole")
        #expect(p.alert == .noQualifiedCandidate)
        guard case .keptCurrent(let skipped) = p.reason else {
            Issue.record("expected keptCurrent, got \(p.reason)")
            return
        }
        #expect(skipped.map(\.why) == [.down, .down, .down])

        // A target read back from the real route table wins over the last recorded write.
        let observed = Planner.plan(route: route, state: s, current: [key: target("z")])
        #expect(observed.target == target("z") && observed.alert == .noQualifiedCandidate)
    }

    @Test func noCandidateAndNoKnownTargetLeavesTheRouteAlone() {
        let p = Planner.plan(route: route, state: FailoverState())
        #expect(p.target == nil)
        #expect(p.alert == .noQualifiedCandidate)
        #expect(p.reason == .noTarget(skipped: ["a", "b", "c"].map { SkippedCandidate(tunnel: $0, why: .unknown) }))
    }

    @Test func manyVPCs() throws {
        let config = try #require(ConfigLoader.load(yaml: generatedTwentyVPCConfig(), file: "twenty.yaml").config)
        let names = config.tunnels.map(\.name)
        // VPN instances in AZ a of VPCs 0–4 fail; everything else is healthy.
        let failed = (0..<5).map { "vpc\($0)-a" }
        var s = state(up: names.filter { !failed.contains($0) }, down: failed)
        var plan = Planner.plan(state: s, routes: config.routes)
        #expect(plan.count == 1000)
        #expect(plan.allSatisfy { $0.target != nil && $0.alert == nil })
        let moved = plan.filter { if case .failover = $0.reason { return true } else { return false } }
        // VPCs 0–4 each have 25 routes in the AZ-a table that preferred the failed instance.
        #expect(moved.count == 5 * 25)
        #expect(moved.allSatisfy { $0.target?.tunnel.hasSuffix("-b") == true })
        #expect(plan.filter { $0.target?.tunnel.hasSuffix("-a") == true }.count == 1000 / 2 - 125)

        // Both instances of VPC 7 down as well: its 50 routes keep their last targets (none
        // recorded here, so they are left alone) and alert.
        s.apply(.observe(replica: 1, tunnel: "vpc7-a", healthyRun: 0, unhealthyRun: 1, rttMillis: nil), stamp: Stamp(millis: 9000))
        s.apply(.observe(replica: 1, tunnel: "vpc7-b", healthyRun: 0, unhealthyRun: 1, rttMillis: nil), stamp: Stamp(millis: 9000))
        plan = Planner.plan(state: s, routes: config.routes)
        #expect(plan.filter { $0.alert != nil }.count == 50)
        #expect(plan.filter { $0.alert != nil }.allSatisfy { $0.target == nil && $0.key.routeTable.hasPrefix("rtb-70") })
    }
}
