import ChaosCheck
import Foundation
import Testing

#if canImport(FoundationXML)
import FoundationXML
#endif

@Suite struct CheckerTests {
    @Test func theHealthyFixturePassesEveryChecker() throws {
        let verdict = Checkers.run(try Fixture().load())
        #expect(verdict.checkers.map(\.name) == Checkers.names)
        for c in verdict.checkers { #expect(c.ok, "\(c.name): \(c.detail)") }
        #expect(verdict.stats == RunStats(faults: 1, writes: 1, staleAttempted: 0, staleBlocked: 0, staleArrived: 0, elections: 1, convergenceMs: 1000, truncatedLines: 0))
        let json = try #require(try JSONSerialization.jsonObject(with: verdict.json()) as? [String: Any])
        #expect(json["ok"] as? Bool == true)
        #expect(json["scenario"] as? String == "unit")
        #expect((json["checkers"] as? [Any])?.count == Checkers.names.count)
    }

    @Test func noWriteLoopCatchesWritesAfterConvergenceAndRewritesInsideTheWindow() throws {
        #expect(try Fixture().check("no-write-loop").ok)
        // A write after the routes converged (a loop at steady state).
        var f = Fixture()
        f.log(1, ms(6900), "AWS write starting", ["term": "2", "index": "30", "leaseRemainingMs": "500", "write": "route"])
        f.write(seq: 9, at: ms(7000), done: ms(7010), node: 1, term: 2, index: 30, eni: "eni-a1")
        let after = try f.check("no-write-loop")
        #expect(!after.ok && after.detail.contains("after convergence"), "\(after.detail)")

        // The same term rewriting its own target 1 s after it landed: a stale read answered
        // with a write. A retry of the same intent (same token) is not a rewrite, nor is a
        // new leader's write, nor one after the window.
        var g = Fixture()
        g.log(1, ms(1900), "AWS write starting", ["term": "2", "index": "11", "leaseRemainingMs": "500", "write": "route"])
        g.write(seq: 5, at: ms(2010), done: ms(2020), node: 1, term: 2, index: 11, eni: "eni-a1")
        let inside = try g.check("no-write-loop")
        #expect(!inside.ok && inside.detail.contains("window 5000 ms"), "\(inside.detail)")
        var h = Fixture()
        h.write(seq: 5, at: ms(1500), done: ms(1510), node: 1, term: 2, index: 10, eni: "eni-a1")
        #expect(try h.check("no-write-loop").ok, "a retry of one intent")
        h.meta["consistencyWindowMs"] = 300
        h.write(seq: 6, at: ms(2000), done: ms(2010), node: 1, term: 2, index: 12, eni: "eni-a1")
        #expect(try h.check("no-write-loop").ok, "past a 300 ms window")
    }

    /// Issue #16: a route write to an interface whose source/destination check was never
    /// turned off (the replacement's), or turned on again, or whose check-off was refused.
    @Test func noRouteToCheckedInterface() throws {
        let ok = try Fixture().check("no-route-to-checked-eni")
        #expect(ok.ok && ok.detail.contains("1 route writes"), "\(ok.detail)")
        var f = Fixture()
        f.write(seq: 7, at: ms(3000), done: ms(3010), node: 1, term: 2, index: 20, eni: "eni-new")
        let never = try f.check("no-route-to-checked-eni")
        #expect(!never.ok && never.detail.contains("eni-new"), "\(never.detail)")
        var g = Fixture()
        g.checkOff(seq: 8, at: ms(2000), done: ms(2010), eni: "eni-new", status: 403)
        g.write(seq: 9, at: ms(3000), done: ms(3010), node: 1, term: 2, index: 20, eni: "eni-new")
        #expect(!(try g.check("no-route-to-checked-eni")).ok, "a refused check-off turned nothing off")
        var h = Fixture()
        h.checkOff(seq: 8, at: ms(2000), done: ms(2010), eni: "eni-a1", on: true)
        h.write(seq: 9, at: ms(3000), done: ms(3010), node: 1, term: 2, index: 20, eni: "eni-a1")
        #expect(!(try h.check("no-route-to-checked-eni")).ok, "turned on again before the write")
        var k = Fixture()
        k.checkOff(seq: 8, at: ms(2000), done: ms(2010), eni: "eni-new")
        k.write(seq: 9, at: ms(3000), done: ms(3010), node: 1, term: 2, index: 20, eni: "eni-new")
        #expect(try k.check("no-route-to-checked-eni").ok)
    }

    /// Issue #16: a route write to a replacement before its own sentinel could have said
    /// healthy `rise` times (rise 3, probe interval 500 ms: 1 s after it started).
    @Test func noRouteToUnvouchedInstance() throws {
        let none = try Fixture().check("no-route-to-unvouched-instance")
        #expect(none.ok && none.detail.contains("no sentinel starts recorded"), "\(none.detail)")
        var f = Fixture()
        f.note(at: 0, "sentinel", "a1 i-a1 eni-a1")
        f.note(at: 0, "sentinel", "a2 i-a2 eni-a2")
        let ok = try f.check("no-route-to-unvouched-instance")
        #expect(ok.ok && ok.detail.contains("1 route writes"), "\(ok.detail)")
        var early = f
        early.note(at: ms(2500), "sentinel", "a1 i-new eni-new")
        early.write(seq: 7, at: ms(3000), done: ms(3010), node: 1, term: 2, index: 20, eni: "eni-new")
        let r = try early.check("no-route-to-unvouched-instance")
        #expect(!r.ok && r.detail.contains("eni-new") && r.detail.contains("fewer than 3 rounds"), "\(r.detail)")
        var never = f
        never.write(seq: 7, at: ms(3000), done: ms(3010), node: 1, term: 2, index: 20, eni: "eni-new")
        #expect(!(try never.check("no-route-to-unvouched-instance")).ok, "the old sentinel still answering vouches for nothing")
        var late = f
        late.note(at: ms(1900), "sentinel", "a1 i-new eni-new")
        late.write(seq: 7, at: ms(3000), done: ms(3010), node: 1, term: 2, index: 20, eni: "eni-new")
        #expect(try late.check("no-route-to-unvouched-instance").ok)
    }

    @Test func oneLeaderPerTerm() throws {
        #expect(try Fixture().check("one-leader-per-term").detail == "1 terms, 1 leaders")
        var f = Fixture()
        f.log(2, ms(150), "role changed", ["role": "leader", "term": "2", "leader": "2"])
        let r = try f.check("one-leader-per-term")
        #expect(!r.ok)
        #expect(r.detail.contains("term 2 had leaders 1 and 2"), "\(r.detail)")
    }

    @Test func noStaleWritePassesAnOrderlyHandover() throws {
        var f = Fixture()
        // Replica 2 takes over in term 3 and writes; replica 1's blocked attempt is counted.
        f.log(1, ms(2900), "stale write blocked", ["reason": "lease ended", "term": "2", "write": "route"])
        f.log(2, ms(3000), "role changed", ["role": "leader", "term": "3", "leader": "2"])
        f.log(2, ms(3500), "AWS write starting", ["token": "term/3 index/20", "leaseRemainingMs": "500", "write": "route"])
        f.write(seq: 4, at: ms(3501), done: ms(3510), node: 2, term: 3, index: 20, eni: "eni-a2")
        let verdict = Checkers.run(try f.load())
        let r = try #require(verdict.checkers.first { $0.name == "no-stale-write" })
        #expect(r.ok, "\(r.detail)")
        #expect(verdict.stats.staleBlocked == 1 && verdict.stats.staleArrived == 0 && verdict.stats.staleAttempted == 1)
        #expect(verdict.stats.elections == 2)
    }

    @Test func noStaleWriteCatchesAnOldTermArrivingLate() throws {
        var f = Fixture()
        f.log(2, ms(3000), "role changed", ["role": "leader", "term": "3", "leader": "2"])
        // Replica 1 (term 2) started under its lease, but the request reached AWS after the new
        // leader was elected: (c). No term-3 write arrived, so (a) alone would not see it.
        f.log(1, ms(2990), "AWS write starting", ["term": "2", "index": "11", "leaseRemainingMs": "15", "write": "route"])
        f.write(seq: 4, at: ms(3100), done: ms(3110), node: 1, term: 2, index: 11, eni: "eni-a1")
        let verdict = Checkers.run(try f.load())
        let r = try #require(verdict.checkers.first { $0.name == "no-stale-write" })
        #expect(!r.ok)
        #expect(r.detail.contains("seq 4") && r.detail.contains("leader of term 3"), "\(r.detail)")
        #expect(verdict.stats.staleArrived == 1 && verdict.stats.staleAttempted == 1)

        // Within the 5 ms slack it is not stale.
        var g = Fixture()
        g.log(2, ms(3000), "role changed", ["role": "leader", "term": "3", "leader": "2"])
        g.log(1, ms(2990), "AWS write starting", ["term": "2", "index": "11", "leaseRemainingMs": "15", "write": "route"])
        g.write(seq: 4, at: ms(3004), done: ms(3010), node: 1, term: 2, index: 11, eni: "eni-a1")
        #expect(try g.check("no-stale-write").ok)

        // A leader on a faked clock does not count for (c).
        g.meta["fakedClock"] = [2]
        g.proxy.removeLast(2)
        g.write(seq: 4, at: ms(3100), done: ms(3110), node: 1, term: 2, index: 11, eni: "eni-a1")
        #expect(try g.check("no-stale-write").ok)
    }

    @Test func noStaleWriteCatchesTermsGoingBackAndUnannouncedWrites() throws {
        var f = Fixture()
        f.log(2, ms(3000), "AWS write starting", ["term": "3", "index": "20", "leaseRemainingMs": "500", "write": "route"])
        f.write(seq: 4, at: ms(3001), done: ms(3010), node: 2, term: 3, index: 20, eni: "eni-a2")
        f.log(1, ms(3100), "AWS write starting", ["term": "2", "index": "12", "leaseRemainingMs": "100", "write": "route"])
        f.write(seq: 5, at: ms(3101), done: ms(3110), node: 1, term: 2, index: 12, eni: "eni-a1")
        let r = try f.check("no-stale-write")
        #expect(!r.ok && r.detail.contains("after a term-3 write (seq 4)"), "\(r.detail)")

        var g = Fixture()
        g.write(seq: 4, at: ms(3001), done: ms(3010), node: 1, term: 2, index: 30, eni: "eni-a2")
        let u = try g.check("no-stale-write")
        #expect(!u.ok && u.detail.contains("no `AWS write starting`"), "\(u.detail)")

        var h = Fixture()
        h.log(1, ms(3000), "AWS write starting", ["term": "2", "index": "30", "leaseRemainingMs": "0", "write": "route"])
        h.write(seq: 4, at: ms(3001), done: ms(3010), node: 1, term: 2, index: 30, eni: "eni-a2")
        let l = try h.check("no-stale-write")
        #expect(!l.ok && l.detail.contains("leaseRemainingMs 0"), "\(l.detail)")
    }

    @Test func committedEntriesSurvive() throws {
        var ok = Fixture()
        // Replica 3 was behind and caught up through a snapshot.
        ok.applied(1, ms(4000), index: 4, term: 2)
        ok.applied(2, ms(4000), index: 4, term: 2)
        ok.log(3, ms(4100), "snapshot restored", ["index": "4", "term": "2"])
        #expect(try ok.check("committed-entries-survive").ok)

        var split = Fixture()
        split.applied(3, ms(4000), index: 2, term: 3, digest: "ff")
        let r = try split.check("committed-entries-survive")
        #expect(!r.ok && r.detail.contains("index 2") && r.detail.contains("replica 3"), "\(r.detail)")

        var lost = Fixture()
        lost.applied(1, ms(4000), index: 4, term: 2)
        lost.applied(2, ms(4000), index: 4, term: 2)
        let m = try lost.check("committed-entries-survive")
        #expect(!m.ok && m.detail.contains("replica 3 never applied index 4"), "\(m.detail)")

        var silent = Fixture()
        for id in 1...3 { silent.replicas[id]?.removeAll { ($0["msg"] as? String) == "entry applied" } }
        let q = try silent.check("committed-entries-survive")
        #expect(!q.ok && q.detail.contains("no replica logged"), "\(q.detail)")
    }

    /// The bug it was written for: replicas that built their first policy from their own
    /// files turned a tunnel up at different entries of the same log.
    @Test func stateMachinesAgree() throws {
        var ok = Fixture()
        for id in 1...3 {
            ok.applied(id, ms(4000), index: 5, term: 2)
            ok.log(id, ms(4001), "tunnel verdict changed", ["tunnel": "a1", "from": "unknown", "to": "up", "index": "5"])
        }
        // Replica 3 restored a snapshot past index 5: it never replayed it, so it is not compared.
        ok.log(3, ms(4100), "snapshot restored", ["index": "6", "term": "2"])
        #expect(try ok.check("state-machines-agree").ok)

        var diverged = Fixture()
        for id in 1...3 { diverged.applied(id, ms(4000), index: 5, term: 2) }
        for id in 1...2 {
            diverged.log(id, ms(4001), "tunnel verdict changed", ["tunnel": "a1", "from": "unknown", "to": "up", "index": "5"])
        }
        let r = try diverged.check("state-machines-agree")
        #expect(!r.ok && r.detail.contains("index 5") && r.detail.contains("replica 3 applied the same entry and did not"), "\(r.detail)")
    }

    @Test func routeLinearizable() throws {
        var ok = Fixture()
        // A throttled write never reached moto; an unanswered one may or may not have landed.
        ok.write(seq: 4, at: ms(2500), done: ms(2501), node: 1, term: 2, index: 11, eni: "eni-a2", status: 503)
        ok.proxy[ok.proxy.count - 2]["fault"] = "throttle"
        ok.write(seq: 5, at: ms(2600), done: nil, node: 1, term: 2, index: 12, eni: "eni-a2")
        ok.log(1, ms(2400), "AWS write starting", ["term": "2", "index": "11", "leaseRemainingMs": "600", "write": "route"])
        ok.log(1, ms(2590), "AWS write starting", ["term": "2", "index": "12", "leaseRemainingMs": "500", "write": "route"])
        ok.describe(seq: 6, at: ms(2700), done: ms(2710), eni: "eni-a1")
        ok.meta["finalRoutes"] = [["table": Fixture.table, "destination": Fixture.dest, "eni": "eni-a2"]]
        ok.meta["healthyAtEnd"] = ["a2"]
        let verdict = Checkers.run(try ok.load())
        for c in verdict.checkers { #expect(c.ok, "\(c.name): \(c.detail)") }

        var stale = Fixture()
        stale.describe(seq: 4, at: ms(3000), done: ms(3010), eni: "eni-a2")
        let r = try stale.check("route-linearizable")
        #expect(!r.ok)
        #expect(r.detail.contains("rtb-1 10.1.0.0/16") && r.detail.contains("read eni-a2"), "\(r.detail)")

        var deleted = Fixture()
        deleted.write(seq: 4, at: ms(3000), done: ms(3005), node: 1, term: 2, index: 11, eni: nil, action: "DeleteRoute")
        deleted.log(1, ms(2990), "AWS write starting", ["term": "2", "index": "11", "leaseRemainingMs": "600", "write": "route"])
        let d = try deleted.check("route-linearizable")
        #expect(!d.ok && d.detail.contains("finalRoutes"), "the final read saw eni-a1 after a delete: \(d.detail)")
    }

    @Test func convergence() throws {
        #expect(try Fixture().check("convergence").ok)

        var never = Fixture()
        never.meta["convergedMonoNs"] = NSNull()
        #expect(try never.check("convergence").detail.contains("never converged"))

        var slow = Fixture()
        slow.meta["convergedMonoNs"] = ms(9000)
        let s = try slow.check("convergence")
        #expect(!s.ok && s.detail.contains("4000 ms"), "\(s.detail)")

        var wrong = Fixture()
        wrong.meta["finalRoutes"] = [["table": Fixture.table, "destination": Fixture.dest, "eni": "eni-a2"]]
        let w = try wrong.check("convergence")
        #expect(!w.ok && w.detail.contains("expected a1"), "\(w.detail)")
    }

    @Test func noFlapping() throws {
        var ok = Fixture()
        ok.meta["flapping"] = [["tunnel": "a1", "fromMonoNs": 0, "toMonoNs": ms(10000)]]
        // A retry of the same intent is one decision.
        ok.write(seq: 4, at: ms(1100), done: ms(1110), node: 1, term: 2, index: 10, eni: "eni-a1")
        #expect(try ok.check("no-flapping").ok)

        var flap = ok
        flap.log(1, ms(1400), "AWS write starting", ["term": "2", "index": "11", "leaseRemainingMs": "600", "write": "route"])
        flap.write(seq: 5, at: ms(1500), done: ms(1510), node: 1, term: 2, index: 11, eni: "eni-a2")
        let r = try flap.check("no-flapping")
        #expect(!r.ok && r.detail.contains("500 ms apart"), "\(r.detail)")

        // Outside the window it is not flapping.
        var outside = flap
        outside.meta["flapping"] = [["tunnel": "a1", "fromMonoNs": ms(1200), "toMonoNs": ms(10000)]]
        #expect(try outside.check("no-flapping").ok)
    }

    @Test func theTimelineShowsLanesFaultsAndStaleWrites() throws {
        var f = Fixture()
        f.log(2, ms(3000), "role changed", ["role": "leader", "term": "3", "leader": "2"])
        f.log(1, ms(2990), "AWS write starting", ["term": "2", "index": "11", "leaseRemainingMs": "15", "write": "route"])
        f.write(seq: 4, at: ms(3100), done: ms(3110), node: 1, term: 2, index: 11, eni: "eni-a1")
        f.log(2, ms(3200), "tunnel verdict changed", ["tunnel": "a1", "from": "up", "to": "down", "index": "40"])
        f.log(3, ms(3205), "tunnel verdict changed", ["tunnel": "a1", "from": "up", "to": "down", "index": "40"])
        let h = try f.load()
        let svg = Timeline.svg(h, verdict: Checkers.run(h))
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        for needle in ["replica 1", "tunnel a1", "rtb-1 10.1.0.0/16", "partition {1} | {2,3}", "T2", "T3", "stale: seq 4", "seconds since start", "FAIL: no-stale-write"] {
            #expect(svg.contains(needle), "\(needle)")
        }
        // Well-formed enough for an XML parser.
        #expect(throws: Never.self) { _ = try XMLDocument(data: Data(svg.utf8)) }
    }
}
