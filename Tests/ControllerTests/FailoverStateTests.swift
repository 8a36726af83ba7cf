import SwitchmanTestSupport
import Testing
@testable import Controller

/// Drives a `FailoverState` with stamps chosen by the test: no clock is read anywhere.
struct Harness {
    var state: FailoverState
    var now: UInt64 = 1_000_000
    var log: [(ControllerCommand, Stamp)] = []

    init(fall: UInt32 = 3, rise: UInt32 = 3, ttl: UInt64 = 10_000, holdDown: UInt64 = 60_000, auto: Bool = true, minimumObservers: UInt32 = 2, eventCapacity: Int = 1000) {
        state = FailoverState(
            policy: HealthPolicy(fall: fall, rise: rise, observationTTLMillis: ttl, failbackHoldDownMillis: holdDown, autoFailback: auto, minimumObservers: minimumObservers),
            eventCapacity: eventCapacity)
    }

    @discardableResult
    mutating func apply(_ c: ControllerCommand) -> [Directive] {
        log.append((c, Stamp(millis: now)))
        return state.apply(c, stamp: Stamp(millis: now))
    }

    mutating func advance(_ ms: UInt64) { now += ms }

    @discardableResult
    mutating func up(_ replica: ReplicaID, _ tunnel: String = "t1", run: UInt32 = 3) -> [Directive] {
        apply(.observe(replica: replica, tunnel: tunnel, healthyRun: run, unhealthyRun: 0, rttMillis: 12))
    }

    @discardableResult
    mutating func down(_ replica: ReplicaID, _ tunnel: String = "t1", run: UInt32 = 3) -> [Directive] {
        apply(.observe(replica: replica, tunnel: tunnel, healthyRun: 0, unhealthyRun: run, rttMillis: nil))
    }

    func verdict(_ tunnel: String = "t1") -> TunnelVerdict { state.verdict(of: tunnel) }

    /// Every replica reports the same thing at the current stamp.
    mutating func all(_ replicas: ClosedRange<ReplicaID>, up: Bool, tunnel: String = "t1") {
        for r in replicas { if up { self.up(r, tunnel) } else { self.down(r, tunnel) } }
    }
}

@Suite struct FailoverStateTests {
    /// Issue #16: what the state knows of each tunnel's interface check, and from where.
    @Test func theSourceDestCheckIsKnownOffFromAReadOrACommittedWriteAndForgottenOnReplacement() {
        var h = Harness()
        h.apply(.instanceIdentity(tunnel: "t1", InstanceIdentity(instanceId: "i-1", eniId: "eni-1", privateIP: "10.0.0.1")))
        #expect(h.state.tunnels["t1"]?.forwards == false)
        let token = FencingToken(term: 2, index: 7)
        h.apply(.intent(token, .disableSourceDestCheck(tunnel: "t1", instanceId: "i-1", eniId: "eni-1")))
        #expect(h.state.tunnels["t1"]?.forwards == false, "an intent is not an outcome")
        let directives = h.apply(.outcome(token, success: true, detail: "", requestId: "r"))
        #expect(h.state.tunnels["t1"]?.forwards == true && directives.contains(.replan))
        h.apply(.instanceIdentity(tunnel: "t1", InstanceIdentity(instanceId: "i-2", eniId: "eni-2", privateIP: "10.0.0.2")))
        #expect(h.state.tunnels["t1"]?.forwards == false)
        let failed = FencingToken(term: 2, index: 9)
        h.apply(.intent(failed, .disableSourceDestCheck(tunnel: "t1", instanceId: "i-2", eniId: "eni-2")))
        h.apply(.outcome(failed, success: false, detail: "UnauthorizedOperation", requestId: "r2"))
        #expect(h.state.tunnels["t1"]?.forwards == false)
        h.apply(.sourceDestCheck(tunnel: "t1", eniId: "eni-2", enabled: false))
        #expect(h.state.tunnels["t1"]?.forwards == true)
        // The same interface kept across a restart of the instance keeps what is known.
        h.apply(.instanceIdentity(tunnel: "t1", InstanceIdentity(instanceId: "i-2", eniId: "eni-2", privateIP: "10.0.0.3")))
        #expect(h.state.tunnels["t1"]?.forwards == true)
        let events = h.state.events.events.filter { if case .sourceDestCheck = $0.kind { return true } else { return false } }
        #expect(events.count == 2)
    }

    /// Issue #16 item 3: a replacement starts without a verdict, and only its own sentinel's
    /// healthy rounds count for it; observations still about the old instance do not.
    @Test func aReplacementEarnsItsVerdictFromItsOwnSentinel() {
        var h = Harness(fall: 3, rise: 3, minimumObservers: 2)
        h.apply(.instanceIdentity(tunnel: "t1", InstanceIdentity(instanceId: "i-1", eniId: "eni-1", privateIP: "10.0.0.1")))
        for r: ReplicaID in 1...3 { h.apply(.observe(replica: r, tunnel: "t1", healthyRun: 5, unhealthyRun: 0, rttMillis: 1, instanceId: "i-1")) }
        #expect(h.verdict() == .up)
        h.advance(100)
        let d = h.apply(.instanceIdentity(tunnel: "t1", InstanceIdentity(instanceId: "i-2", eniId: "eni-2", privateIP: "10.0.0.2")))
        #expect(h.verdict() == .unknown && d.contains(.verdictChanged(tunnel: "t1", from: .up, to: .unknown)))
        #expect(h.state.tunnels["t1"]?.observations.isEmpty == true)
        // In flight from before the replicas saw the replacement, or the old instance's
        // sentinel still answering: not evidence for i-2.
        for r: ReplicaID in 1...3 { h.apply(.observe(replica: r, tunnel: "t1", healthyRun: 9, unhealthyRun: 0, rttMillis: 1, instanceId: "i-1")) }
        #expect(h.verdict() == .unknown)
        h.apply(.observe(replica: 1, tunnel: "t1", healthyRun: 3, unhealthyRun: 0, rttMillis: 1, instanceId: "i-2"))
        #expect(h.verdict() == .unknown, "one of three")
        h.apply(.observe(replica: 2, tunnel: "t1", healthyRun: 3, unhealthyRun: 0, rttMillis: 1, instanceId: "i-2"))
        #expect(h.verdict() == .up)
        // The same instance rediscovered with another address keeps its verdict.
        h.apply(.instanceIdentity(tunnel: "t1", InstanceIdentity(instanceId: "i-2", eniId: "eni-2", privateIP: "10.0.0.3")))
        #expect(h.verdict() == .up)
    }

    @Test func startsUnknownAndGoesUpOnAMajority() {
        var h = Harness()
        #expect(h.verdict() == .unknown)
        h.up(1)
        #expect(h.verdict() == .unknown, "one fresh observer is below the minimum of 2")
        let d = h.up(2)
        #expect(h.verdict() == .up)
        #expect(d == [.verdictChanged(tunnel: "t1", from: .unknown, to: .up), .replan])
        #expect(h.state.events.events.last?.kind == .tunnelUp(tunnel: "t1", saysUp: 2, fresh: 2, failback: false))
    }

    @Test func oneOfThreeSayingDownDoesNotFailOver() {
        var h = Harness()
        h.all(1...3, up: true)
        h.advance(1000)
        #expect(h.down(1).isEmpty)
        h.advance(1000)
        h.up(2)
        h.up(3)
        #expect(h.verdict() == .up)
    }

    @Test func twoOfThreeSayingDownFailsOver() {
        var h = Harness()
        h.all(1...3, up: true)
        h.advance(1000)
        h.down(1)
        let d = h.down(2)
        #expect(d == [.verdictChanged(tunnel: "t1", from: .up, to: .down), .replan])
        #expect(h.verdict() == .down)
        #expect(h.state.events.events.last?.kind == .tunnelDown(tunnel: "t1", saysDown: 2, fresh: 3))
    }

    @Test func runsBelowFallOrRiseDecideNothing() {
        var h = Harness()
        h.all(1...3, up: true)
        h.down(1, run: 2)
        h.down(2, run: 2)
        #expect(h.verdict() == .up, "2 failed probes are below fall = 3")
        h.down(1, run: 3)
        h.down(2, run: 3)
        #expect(h.verdict() == .down)
        h.advance(120_000)
        h.up(1, run: 2)
        h.up(2, run: 2)
        h.up(3, run: 2)
        #expect(h.verdict() == .down, "2 good probes are below rise = 3")
        h.up(1, run: 3)
        h.up(2, run: 3)
        #expect(h.verdict() == .down, "rise is met, but the up streak has not lasted a hold-down yet")
        h.advance(60_000)
        h.up(1, run: 9)
        h.up(2, run: 9)
        #expect(h.verdict() == .up)
    }

    @Test func staleObservationsAreIgnored() {
        var h = Harness(ttl: 10_000, minimumObservers: 1)
        h.all(1...3, up: true)
        // Replicas 2 and 3 stop reporting; replica 1 alone says down 20s later. Their old
        // "up" reports no longer count, so replica 1 is a majority of the fresh ones.
        h.advance(20_000)
        h.down(1)
        #expect(h.verdict() == .down)
    }

    @Test func tooFewFreshObserversKeepTheLastVerdictAndMarkItStale() {
        var h = Harness(ttl: 10_000, minimumObservers: 2)
        h.all(1...3, up: true)
        h.advance(20_000)
        h.down(1)
        #expect(h.verdict() == .up)
        #expect(h.state.tunnel("t1")?.stale == true)
        #expect(h.state.events.events.last?.kind == .observationsStale(tunnel: "t1", fresh: 1))
        h.down(2)
        #expect(h.state.tunnel("t1")?.stale == false)
        #expect(h.verdict() == .down)
    }

    @Test func noFreshObservationsAtAllKeepTheVerdict() {
        var h = Harness()
        h.all(1...3, up: true)
        h.advance(3_600_000)
        #expect(h.apply(.tick).isEmpty)
        #expect(h.verdict() == .up)
        #expect(h.state.tunnel("t1")?.stale == true)
    }

    @Test func failbackWaitsForTheHoldDownByStamps() {
        var h = Harness(holdDown: 60_000)
        h.all(1...3, up: true)
        h.advance(1000)
        h.all(1...3, up: false)
        #expect(h.verdict() == .down)
        h.advance(5000)
        h.all(1...3, up: true)
        #expect(h.verdict() == .down)
        // While the reports arrive one by one, the first "up" still leaves two replicas
        // saying down: that moment is the last majority-down evidence.
        let wentDown = h.now
        #expect(h.state.tunnel("t1")?.lastDownEvidence == Stamp(millis: wentDown))
        h.now = wentDown + 59_999
        h.all(1...3, up: true)
        #expect(h.verdict() == .down)
        h.now = wentDown + 60_000
        h.up(1)
        #expect(h.verdict() == .up)
        #expect(h.state.events.events.last?.kind == .tunnelUp(tunnel: "t1", saysUp: 3, fresh: 3, failback: true))
    }

    @Test func tickAdvancesTheHoldDownWithoutNewObservations() {
        var h = Harness(ttl: 120_000, holdDown: 60_000)
        h.all(1...3, up: false)
        h.advance(1000)
        h.all(1...3, up: true)
        h.advance(59_000)
        h.apply(.tick)
        #expect(h.verdict() == .down)
        h.advance(1000)
        #expect(h.apply(.tick) == [.verdictChanged(tunnel: "t1", from: .down, to: .up), .replan])
    }

    @Test func flappingFasterThanTheHoldDownNeverFailsBack() {
        var h = Harness(holdDown: 60_000)
        h.all(1...3, up: true)
        var rng = SplitMix64(seed: 7)
        var wentDown = false
        // Five minutes of flapping: down and up phases of 2–20 s, well inside the hold-down.
        for phase in 0..<40 {
            h.advance(UInt64.random(in: 2000...20_000, using: &rng))
            h.all(1...3, up: phase % 2 == 1)
            if h.verdict() == .down { wentDown = true }
            if wentDown { #expect(h.verdict() == .down, "failed back during flapping at phase \(phase)") }
        }
        #expect(wentDown)
        // Then it stays healthy: refreshes every 5 s until the hold-down has passed.
        let lastDown = h.state.tunnel("t1")?.lastDownEvidence
        #expect(lastDown != nil)
        while h.verdict() == .down {
            h.advance(5000)
            h.all(1...3, up: true)
        }
        #expect(h.now - (lastDown?.millis ?? 0) >= 60_000)
        #expect(h.now - (lastDown?.millis ?? 0) < 65_000)
    }

    /// Found by chaos/run's flapping scenario: blips shorter than `fall` probes never leave
    /// majority-down evidence, so a hold-down counted from the last down verdict alone let
    /// a tunnel that kept blipping fail back and over again within one hold-down.
    @Test func blipsShorterThanFallRestartTheHoldDown() {
        var h = Harness(fall: 3, rise: 3, holdDown: 60_000)
        h.all(1...3, up: true)
        h.all(1...3, up: false)
        #expect(h.verdict() == .down)
        h.advance(300_000)  // long past the last down evidence
        h.all(1...3, up: true)
        h.advance(40_000)
        // One failed probe on every replica: a run of 1, short of fall, so no down evidence...
        for r in UInt64(1)...3 { h.down(r, run: 1) }
        #expect(h.verdict() == .down)
        // ...but it breaks the streak: healthy again, the hold-down starts over from here.
        h.advance(2000)
        h.all(1...3, up: true)
        let streak = h.now
        h.now = streak + 59_999
        h.all(1...3, up: true)
        #expect(h.verdict() == .down, "failed back 59.999 s into a streak, inside the hold-down")
        h.now = streak + 60_000
        h.up(1)
        #expect(h.verdict() == .up)
        #expect(h.state.tunnel("t1")?.upEvidenceSince == Stamp(millis: streak))
    }

    @Test func withoutAutoFailbackAnOperatorApproves() {
        var h = Harness(holdDown: 10_000, auto: false)
        h.all(1...3, up: true)
        h.all(1...3, up: false)
        h.advance(600_000)
        h.all(1...3, up: true)
        #expect(h.verdict() == .down)
        h.advance(10_000)
        h.all(1...3, up: true)
        #expect(h.verdict() == .down, "the hold-down passed but automatic failback is off")
        let d = h.apply(.approveFailback(tunnel: "t1", by: "alice"))
        #expect(h.verdict() == .up)
        #expect(d.contains(.verdictChanged(tunnel: "t1", from: .down, to: .up)))
        // The approval is used up: the next failure needs a new one.
        h.all(1...3, up: false)
        h.advance(600_000)
        h.all(1...3, up: true)
        h.advance(600_000)
        h.all(1...3, up: true)
        #expect(h.verdict() == .down)
    }

    @Test func approvalStillRespectsTheHoldDown() {
        var h = Harness(ttl: 120_000, holdDown: 60_000, auto: false)
        h.all(1...3, up: true)
        h.all(1...3, up: false)
        h.advance(1000)
        h.all(1...3, up: true)
        h.apply(.approveFailback(tunnel: "t1", by: "alice"))
        #expect(h.verdict() == .down)
        h.advance(60_000)
        h.apply(.tick)
        #expect(h.verdict() == .up)
    }

    @Test func majorityOfFiveReplicas() {
        var h = Harness(minimumObservers: 3)
        h.all(1...5, up: true)
        h.down(1)
        h.down(2)
        #expect(h.verdict() == .up, "2 of 5")
        h.down(3)
        #expect(h.verdict() == .down, "3 of 5")

        // Two replicas fall silent: 2 of the 3 fresh ones saying down is a majority.
        var g = Harness(ttl: 10_000, minimumObservers: 3)
        g.all(1...5, up: true)
        g.advance(11_000)
        g.up(1)
        g.down(2)
        g.down(3)
        #expect(g.verdict() == .down)
    }

    @Test func drainsAndUndrains() {
        var h = Harness()
        h.all(1...3, up: true)
        #expect(h.apply(.drain(tunnel: "t1", reason: "patching", by: "bob")) == [.replan])
        #expect(h.state.tunnel("t1")?.drain == Drain(reason: "patching", by: "bob", since: Stamp(millis: h.now)))
        #expect(h.verdict() == .up, "a drain does not change health")
        #expect(h.apply(.undrain(tunnel: "t1", by: "bob")) == [.replan])
        #expect(h.state.tunnel("t1")?.drain == nil)
        #expect(h.apply(.undrain(tunnel: "t1", by: "bob")).isEmpty)
        let kinds = h.state.events.events.suffix(2).map(\.kind)
        #expect(kinds == [.drained(tunnel: "t1", reason: "patching", by: "bob"), .undrained(tunnel: "t1", by: "bob")])
    }

    @Test func instanceReplacement() {
        var h = Harness()
        let a = InstanceIdentity(instanceId: "i-1", eniId: "eni-1", privateIP: "10.0.0.5")
        let b = InstanceIdentity(instanceId: "i-2", eniId: "eni-2", privateIP: "10.0.0.9")
        #expect(h.apply(.instanceIdentity(tunnel: "t1", a)) == [.instanceChanged(tunnel: "t1", old: nil, new: a), .replan])
        #expect(h.apply(.instanceIdentity(tunnel: "t1", a)).isEmpty)
        #expect(h.apply(.instanceIdentity(tunnel: "t1", b)) == [.instanceChanged(tunnel: "t1", old: a, new: b), .replan])
        #expect(h.state.tunnel("t1")?.identity == b)
        #expect(h.state.events.events.map(\.kind) == [.instanceDiscovered(tunnel: "t1", a), .instanceReplaced(tunnel: "t1", old: a, new: b)])
    }

    @Test func intentsAndOutcomes() throws {
        var h = Harness()
        let key = RouteKey(routeTable: "rtb-1", destination: try IPv4CIDR.parse("10.1.0.0/16").get())
        let target = RouteTarget(tunnel: "t1", instanceId: "i-1", eniId: "eni-1")
        let write = ActuationWrite.route(key, target: target)
        let t1 = FencingToken(term: 2, index: 10)
        #expect(h.apply(.intent(t1, write)) == [.intentRecorded(t1, write)])
        #expect(h.apply(.intent(t1, write)).isEmpty, "a repeated intent is not executed twice")
        #expect(h.state.pending[t1]?.write == write)
        #expect(h.apply(.outcome(t1, success: true, detail: "ok", requestId: "req-1")) == [.outcomeRecorded(t1, success: true)])
        #expect(h.state.pending.isEmpty)
        #expect(h.state.routeTargets[key] == target)
        #expect(h.apply(.outcome(t1, success: true, detail: "again", requestId: "req-2")).isEmpty)
        #expect(h.state.events.events.last?.kind == .outcomeWithoutIntent(t1, success: true))

        // A failed write leaves the last known target alone.
        let t2 = FencingToken(term: 2, index: 11)
        h.apply(.intent(t2, .route(key, target: RouteTarget(tunnel: "t2", instanceId: "i-2", eniId: "eni-2"))))
        h.apply(.outcome(t2, success: false, detail: "throttled", requestId: "req-3"))
        #expect(h.state.routeTargets[key] == target)

        // A newer term's intent abandons the older term's pending ones.
        let t3 = FencingToken(term: 2, index: 12)
        h.apply(.intent(t3, .dns(zoneId: "Z1", records: [DNSRecordWrite(name: "vpn.example", address: "10.0.0.9", ttl: 30)])))
        let t4 = FencingToken(term: 3, index: 20)
        h.apply(.intent(t4, write))
        #expect(Array(h.state.pending.keys) == [t4])
        #expect(h.state.events.events.suffix(2).map(\.kind) == [.intentAbandoned(t3), .intent(t4, write)])
    }

    @Test func eventHistoryIsBounded() {
        var h = Harness(eventCapacity: 10)
        for i in 0..<50 { h.apply(.drain(tunnel: "t\(i)", reason: "r", by: "x")) }
        #expect(h.state.events.events.count == 10)
        #expect(h.state.events.events.first?.seq == 41)
        #expect(h.state.events.events.last?.seq == 50)
        #expect(h.state.events.nextSeq == 51)
    }

    @Test func timeNeverRunsBackwards() {
        var h = Harness(holdDown: 60_000)
        h.all(1...3, up: false)
        let t = h.now
        h.now = t - 500_000  // a new leader with a slow wall clock
        h.all(1...3, up: true)
        #expect(h.state.now == Stamp(millis: t))
        #expect(h.verdict() == .down, "a stamp from the past cannot satisfy the hold-down")
    }

    @Test func policyIsReplicated() {
        var h = Harness(minimumObservers: 2)
        h.up(1)
        #expect(h.verdict() == .unknown)
        var p = h.state.policy
        p.minimumObservers = 1
        #expect(h.apply(.setPolicy(p)) == [.replan, .verdictChanged(tunnel: "t1", from: .unknown, to: .up), .replan])
        #expect(h.apply(.setPolicy(p)).isEmpty)
        #expect(HealthPolicy(health: .defaults, memberCount: 5).minimumObservers == 3)
    }
}
