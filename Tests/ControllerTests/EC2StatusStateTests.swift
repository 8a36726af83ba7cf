import Testing
@testable import Controller

/// Issue #16 items 2 and 4: what the state keeps of EC2's status checks, scheduled events and
/// a tunnel's Elastic IP, and what the planner and the scheduled-event drains make of it.
@Suite struct EC2StatusStateTests {
    static let i1 = InstanceIdentity(instanceId: "i-1", eniId: "eni-1", privateIP: "10.0.0.1")
    static let i2 = InstanceIdentity(instanceId: "i-2", eniId: "eni-2", privateIP: "10.0.0.2")

    static func status(_ instance: String, impaired: Bool, events: [ScheduledEvent] = []) -> InstanceStatusReport {
        InstanceStatusReport(instanceId: instance, impaired: impaired,
                             summary: impaired ? "instance impaired, system ok" : "instance ok, system ok", events: events)
    }

    /// A tunnel that is up, forwards, and is the only candidate of one route.
    static func upTunnel() -> Harness {
        var h = Harness()
        h.apply(.instanceIdentity(tunnel: "t1", i1))
        h.apply(.sourceDestCheck(tunnel: "t1", eniId: "eni-1", enabled: false))
        h.all(1...3, up: true)
        return h
    }

    static let route = RouteConfig(routeTable: "rtb-1", destination: IPv4CIDR(address: 0x0A09_0000, prefixLength: 16), candidates: ["t1"], region: nil)

    @Test func anImpairedInstanceIsNotACandidateUntilItsChecksPass() {
        var h = Self.upTunnel()
        #expect(Planner.plan(state: h.state, routes: [Self.route]).first?.target?.tunnel == "t1")
        let d = h.apply(.instanceStatus(tunnel: "t1", Self.status("i-1", impaired: true)))
        #expect(d.contains(.replan))
        #expect(h.state.tunnels["t1"]?.impaired == true)
        let plan = Planner.plan(state: h.state, routes: [Self.route]).first
        #expect(plan?.target == nil, "an impaired instance keeps no route: \(String(describing: plan))")
        if case .noTarget(let skipped)? = plan?.reason {
            #expect(skipped.first?.why == .impaired("instance impaired, system ok"))
        } else if case .keptCurrent(let skipped)? = plan?.reason {
            #expect(skipped.first?.why == .impaired("instance impaired, system ok"))
        }
        #expect(h.state.events.events.contains {
            $0.kind == .instanceStatus(tunnel: "t1", instanceId: "i-1", impaired: true, summary: "instance impaired, system ok")
        })
        h.apply(.instanceStatus(tunnel: "t1", Self.status("i-1", impaired: false)))
        #expect(Planner.plan(state: h.state, routes: [Self.route]).first?.target?.tunnel == "t1")
    }

    @Test func aStatusAboutAnotherInstanceIsIgnoredAndAReplacementForgetsTheOldOne() {
        var h = Self.upTunnel()
        h.apply(.instanceStatus(tunnel: "t1", Self.status("i-9", impaired: true)))
        #expect(h.state.tunnels["t1"]?.ec2Status == nil)
        h.apply(.instanceStatus(tunnel: "t1", Self.status("i-1", impaired: true)))
        h.apply(.instanceIdentity(tunnel: "t1", Self.i2))
        #expect(h.state.tunnels["t1"]?.ec2Status == nil)
        #expect(h.state.tunnels["t1"]?.impaired == false)
    }

    @Test func eachScheduledEventIsLoggedOnce() {
        var h = Self.upTunnel()
        let reboot = ScheduledEvent(id: "instance-event-1", code: "system-reboot", detail: "scheduled reboot",
                                    notBefore: Stamp(millis: 2_000_000), notAfter: Stamp(millis: 2_600_000))
        h.apply(.instanceStatus(tunnel: "t1", Self.status("i-1", impaired: false, events: [reboot])))
        h.advance(1000)
        h.apply(.instanceStatus(tunnel: "t1", InstanceStatusReport(instanceId: "i-1", impaired: false, summary: "instance ok, system initializing",
                                                                    events: [reboot])))
        let logged = h.state.events.events.filter { if case .scheduledEvent = $0.kind { return true } else { return false } }
        #expect(logged.count == 1)
        #expect(AdminView.event(logged[0]).text.contains("system-reboot from 1970-01-01T00:33:20Z until 1970-01-01T00:43:20Z"))
    }

    @Test func aScheduledEventDrainsAheadOfItAndLiftsAfterButNeverLiftsAnOperatorsDrain() {
        var h = Self.upTunnel()
        let start = h.now + 3_600_000
        let event = ScheduledEvent(id: "instance-event-2", code: "system-maintenance", detail: "",
                                   notBefore: Stamp(millis: start), notAfter: Stamp(millis: start + 1_800_000))
        h.apply(.instanceStatus(tunnel: "t1", Self.status("i-1", impaired: false, events: [event])))
        let lead: UInt64 = 600_000
        #expect(ScheduledDrains.commands(state: h.state, tunnels: ["t1"], leadMillis: lead).isEmpty, "an hour ahead: not yet")
        h.advance(3_600_000 - lead)
        h.apply(.tick)
        let drain = ScheduledDrains.commands(state: h.state, tunnels: ["t1"], leadMillis: lead)
        guard case .drain("t1", let reason, ScheduledDrains.by)? = drain.first else {
            Issue.record("expected a drain, got \(drain)")
            return
        }
        #expect(reason.contains("system-maintenance"))
        for c in drain { h.apply(c) }
        #expect(ScheduledDrains.commands(state: h.state, tunnels: ["t1"], leadMillis: lead).isEmpty, "drained once")
        #expect(Planner.plan(state: h.state, routes: [Self.route]).first?.target == nil)
        // Past notAfter the drain lifts itself.
        h.advance(lead + 1_800_000)
        h.apply(.tick)
        let lift = ScheduledDrains.commands(state: h.state, tunnels: ["t1"], leadMillis: lead)
        #expect(lift == [.undrain(tunnel: "t1", by: ScheduledDrains.by)])
        for c in lift { h.apply(c) }
        #expect(h.state.tunnels["t1"]?.drain == nil)
        // An operator's drain during an event is theirs to lift.
        let retirement = ScheduledEvent(id: "instance-event-3", code: "instance-retirement", detail: "", notBefore: Stamp(millis: h.now), notAfter: nil)
        h.apply(.drain(tunnel: "t1", reason: "patching", by: "alice"))
        h.apply(.instanceStatus(tunnel: "t1", Self.status("i-1", impaired: false, events: [retirement])))
        h.apply(.instanceStatus(tunnel: "t1", Self.status("i-1", impaired: false)))
        #expect(ScheduledDrains.commands(state: h.state, tunnels: ["t1"], leadMillis: lead).isEmpty)
        // A retirement has no end: the drain holds until EC2 stops listing it or the instance
        // is replaced.
        h.apply(.undrain(tunnel: "t1", by: "alice"))
        h.apply(.instanceStatus(tunnel: "t1", Self.status("i-1", impaired: false, events: [retirement])))
        for c in ScheduledDrains.commands(state: h.state, tunnels: ["t1"], leadMillis: lead) { h.apply(c) }
        h.advance(86_400_000)
        h.apply(.tick)
        #expect(ScheduledDrains.commands(state: h.state, tunnels: ["t1"], leadMillis: lead).isEmpty)
        h.apply(.instanceIdentity(tunnel: "t1", Self.i2))
        #expect(ScheduledDrains.commands(state: h.state, tunnels: ["t1"], leadMillis: lead) == [.undrain(tunnel: "t1", by: ScheduledDrains.by)])
    }

    @Test func anElasticIPFollowsReadsAndCommittedAssociations() {
        var h = Self.upTunnel()
        h.apply(.elasticIP(tunnel: "t1", ElasticIPReport(allocationId: "eipalloc-1", publicIP: "203.0.113.5", eniId: "eni-1")))
        h.apply(.instanceIdentity(tunnel: "t1", Self.i2))
        let write = ActuationWrite.associateAddress(tunnel: "t1", allocationId: "eipalloc-1", instanceId: "i-2", eniId: "eni-2", privateIP: "10.0.0.2")
        h.apply(.intent(FencingToken(term: 1, index: 0), write))
        guard let token = h.state.pending.keys.first else { Issue.record("no pending intent"); return }
        #expect(h.state.tunnels["t1"]?.elasticIP?.eniId == "eni-1", "an intent is not an association")
        h.apply(.outcome(token, success: true, detail: "ok", requestId: "r-1"))
        #expect(h.state.tunnels["t1"]?.elasticIP == ElasticIPReport(allocationId: "eipalloc-1", publicIP: "203.0.113.5", eniId: "eni-2"))
        h.apply(.elasticIP(tunnel: "t1", ElasticIPReport(allocationId: "eipalloc-1", publicIP: "203.0.113.5", eniId: nil)))
        #expect(h.state.events.events.last?.kind == .elasticIP(tunnel: "t1", allocationId: "eipalloc-1", publicIP: "203.0.113.5", eniId: nil))
    }
}
