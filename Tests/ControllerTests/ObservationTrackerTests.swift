import Logging
import NIOConcurrencyHelpers
import Raft
import Testing
@testable import Controller

/// The probe loop's pure part (issue #17 item 6): runs, opinions, and when a round is worth
/// an observation entry. Time is passed in, never read.
@Suite struct ObservationTrackerTests {
    static let t0 = ContinuousClock.now
    static func at(_ ms: Int64) -> ContinuousClock.Instant { t0 + .milliseconds(ms) }
    static let up = TunnelCheck(healthy: true, rttMillis: 3, instanceId: "i-1")
    static let down = TunnelCheck(healthy: false, detail: "timeout", instanceId: "i-1")

    @Test func anObservationGoesOutWhenTheOpinionChangesAndAsARefresh() {
        var t = ObservationTracker(replica: 2, fall: 2, rise: 3, refresh: .seconds(5))
        var r = t.record("a1", Self.up, instance: "i-1", term: 1, now: Self.at(0))
        #expect(r.observation == .observe(replica: 2, tunnel: "a1", healthyRun: 1, unhealthyRun: 0, rttMillis: 3, instanceId: "i-1"),
                "the first round always goes out")
        t.submitted("a1", opinion: r.opinion, term: 1, at: Self.at(0))
        r = t.record("a1", Self.up, instance: "i-1", term: 1, now: Self.at(500))
        #expect(r.observation == nil, "still no opinion, nothing new")
        r = t.record("a1", Self.up, instance: "i-1", term: 1, now: Self.at(1000))
        #expect(r.opinion == 1 && r.observation != nil, "rise reached: up")
        t.submitted("a1", opinion: r.opinion, term: 1, at: Self.at(1000))
        r = t.record("a1", Self.up, instance: "i-1", term: 1, now: Self.at(1500))
        #expect(r.observation == nil)
        r = t.record("a1", Self.up, instance: "i-1", term: 1, now: Self.at(6000))
        #expect(r.observation != nil, "the refresh is due")
        // Not submitted (no leader): the next round tries again.
        r = t.record("a1", Self.up, instance: "i-1", term: 1, now: Self.at(6500))
        #expect(r.observation != nil)
        t.submitted("a1", opinion: r.opinion, term: 1, at: Self.at(6500))
        r = t.record("a1", Self.up, instance: "i-1", term: 2, now: Self.at(7000))
        #expect(r.observation != nil, "a new term sends again: the last one may have died with its leader")
    }

    @Test func failuresCountFromTheFirstAndTheOpinionTurnsDownAtFall() {
        var t = ObservationTracker(replica: 1, fall: 2, rise: 3, refresh: .seconds(5))
        for i in 0..<3 {
            let r = t.record("a1", Self.up, instance: "i-1", term: 1, now: Self.at(Int64(i) * 500))
            t.submitted("a1", opinion: r.opinion, term: 1, at: Self.at(Int64(i) * 500))
        }
        var r = t.record("a1", Self.down, instance: "i-1", term: 1, now: Self.at(1500))
        #expect(r.firstFailure && r.opinion == 0 && r.observation != nil, "up → nothing yet is a change")
        t.submitted("a1", opinion: r.opinion, term: 1, at: Self.at(1500))
        r = t.record("a1", Self.down, instance: "i-1", term: 1, now: Self.at(2000))
        #expect(!r.firstFailure && r.opinion == -1)
        #expect(r.observation == .observe(replica: 1, tunnel: "a1", healthyRun: 0, unhealthyRun: 2, rttMillis: nil, instanceId: "i-1"))
    }

    @Test func aReplacementStartsFromNothingAndAnotherInstancesAnswerIsAFailure() {
        var t = ObservationTracker(replica: 1, fall: 2, rise: 2, refresh: .seconds(5))
        for i in 0..<3 { _ = t.record("a1", Self.up, instance: "i-1", term: 1, now: Self.at(Int64(i) * 500)) }
        #expect(t.runs["a1"]?.healthy == 3)
        // The tunnel's instance is now i-2; the old sentinel still answers for i-1.
        var r = t.record("a1", Self.up, instance: "i-2", term: 1, now: Self.at(1500))
        #expect(!r.check.healthy && r.check.detail.contains("runs on i-1, not on the tunnel's instance i-2"))
        #expect(t.runs["a1"]?.unhealthy == 1 && t.runs["a1"]?.healthy == 0, "counted from nothing, as a failure")
        r = t.record("a1", TunnelCheck(healthy: true, rttMillis: 2, instanceId: "i-2"), instance: "i-2", term: 1, now: Self.at(2000))
        #expect(r.check.healthy && t.runs["a1"]?.healthy == 1)
        // A sentinel that does not say where it runs is counted, and flagged.
        r = t.record("a1", TunnelCheck(healthy: true, rttMillis: 2), instance: "i-2", term: 1, now: Self.at(2500))
        #expect(r.unidentified && r.check.healthy && t.runs["a1"]?.healthy == 2)
    }
}

/// The leader acts on commit (issue #17 item 2): applying an entry that changes the plan wakes
/// whoever waits for a change at once, and one that changes nothing does not.
@Suite struct PlanChangeWakeTests {
    func apply(_ machine: ControllerStateMachine, _ command: ControllerCommand, index: UInt64) throws {
        let entry = ControllerEntry(stamp: Stamp(millis: 1_000 + index), origin: 1, requestID: index, command: command)
        machine.apply(Entry(term: 1, index: index, data: try entry.encoded()))
    }

    @Test func aCommittedVerdictWakesTheWaiterAndATickThatChangesNothingDoesNot() async throws {
        let policy = HealthPolicy(fall: 1, rise: 1, observationTTLMillis: 10_000, failbackHoldDownMillis: 0, autoFailback: true, minimumObservers: 1)
        let machine = ControllerStateMachine(policy: policy, logger: Logger(label: "test"))
        let start = machine.planChanges
        // Nothing pending: the wait ends by its (short) timeout with the same generation.
        try apply(machine, .tick, index: 1)
        #expect(await machine.waitForPlanChange(after: start, timeout: .milliseconds(50)) == start)

        // The waiter's own timeout is an hour: only the wake can end it within the poll.
        let seen = NIOLockedValueBox<UInt64?>(nil)
        let waiter = Task {
            let g = await machine.waitForPlanChange(after: start, timeout: .seconds(3600))
            seen.withLockedValue { $0 = g }
        }
        defer { waiter.cancel() }
        try apply(machine, .observe(replica: 1, tunnel: "vpn-a", healthyRun: 0, unhealthyRun: 1, rttMillis: nil, instanceId: nil), index: 2)
        try await poll("the down verdict wakes the waiter", timeout: .seconds(60)) { seen.withLockedValue { $0 } != nil }
        #expect(seen.withLockedValue { $0 } != start)
        #expect(machine.state.verdict(of: "vpn-a") == .down)
        // A change applied before the wait began ends it at once.
        let again = NIOLockedValueBox<UInt64?>(nil)
        let late = Task { again.withLockedValue { $0 = nil }; let g = await machine.waitForPlanChange(after: start, timeout: .seconds(3600)); again.withLockedValue { $0 = g } }
        defer { late.cancel() }
        try await poll("a change already applied ends the wait", timeout: .seconds(60)) { again.withLockedValue { $0 } != nil }
    }
}
