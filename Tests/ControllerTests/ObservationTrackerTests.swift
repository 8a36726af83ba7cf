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
