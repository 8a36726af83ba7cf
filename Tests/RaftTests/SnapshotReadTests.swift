import Raft
import RaftTestKit
import Testing

@Suite struct SnapshotTests {
    @Test func compactionDropsTheLogPrefixAndPersistsTheSnapshot() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        for k in 0..<10 { c.step(1, .propose([[UInt8(k)]])) }
        c.settle()
        let r = c.step(1, .compact(index: 8, data: [42]))
        #expect(c.core(1).snapshotIndex == 8)
        #expect(c.core(1).firstIndex == 9)
        #expect(c.core(1).entry(at: 8) == nil)
        #expect(c.core(1).term(at: 8) == 1)
        #expect(r.effects.contains { if case .persist(let p) = $0 { return p.snapshot?.metadata.index == 8 && p.compactThrough == 8 }; return false })
        #expect(c.durable[1]?.entries.first?.index == 9)
        #expect(c.core(1).latestSnapshot?.metadata.membership == Membership(voters: [1, 2, 3]))
    }

    @Test func compactionBeyondWhatWasAppliedIsIgnored() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.step(1, .propose([[1]]))
        // Not yet committed, so not applied: the snapshot cannot cover it.
        c.step(1, .compact(index: 2, data: []))
        #expect(c.core(1).snapshotIndex == 0)
    }

    @Test func aFollowerBehindTheCompactedLogCatchesUpBySnapshot() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        c.isolate(3)
        for k in 0..<20 { c.step(1, .propose([[UInt8(k)]])) }
        c.stabilize()
        c.tick(1)
        c.stabilize()
        c.compact(1, data: [7, 7])
        let snapIndex = c.core(1).snapshotIndex
        #expect(snapIndex >= 20)
        c.heal()
        c.settle(rounds: 10)
        #expect(c.installedSnapshots[3]?.last?.data == [7, 7])
        #expect(c.installedSnapshots[3]?.last?.metadata.index == snapIndex)
        #expect(c.core(3).commitIndex == c.core(1).commitIndex)
        #expect(c.core(3).snapshotIndex == snapIndex)
        // Entries after the snapshot still flow normally.
        c.step(1, .propose([[200]]))
        c.settle()
        #expect(c.applied[3]?.last?.data == [200])
        // And the follower restarts from its persisted snapshot.
        c.crash(3)
        c.restart(3)
        #expect(c.core(3).snapshotIndex == snapIndex)
        #expect(c.core(3).lastIndex == c.core(1).lastIndex)
    }

    @Test func aFailedSnapshotIsRetried() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        c.isolate(3)
        for k in 0..<5 { c.step(1, .propose([[UInt8(k)]])) }
        c.settle()
        c.compact(1)
        c.heal()
        c.filter = { $0.type != .snapshot }
        c.tick(1)
        c.stabilize()
        c.step(1, .snapshotReported(node: 3, success: false))
        c.filter = { _ in true }
        c.settle(rounds: 10)
        #expect(c.installedSnapshots[3]?.count == 1)
        #expect(c.core(3).commitIndex == c.core(1).commitIndex)
    }
}

@Suite struct ReadIndexTests {
    @Test func leaderReadWaitsForAQuorumRoundAndReturnsTheCommitIndex() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        for k in 0..<3 { c.step(1, .propose([[UInt8(k)]])) }
        c.settle()
        let r = c.step(1, .readIndex(requestID: 77))
        #expect(!r.effects.contains { if case .readReady = $0 { return true }; return false }, "not before a quorum answered")
        c.stabilize()
        #expect(c.reads[1] == [ReadState(requestID: 77, index: 4)])
    }

    @Test func followerReadIsForwardedToTheLeader() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        c.step(3, .readIndex(requestID: 5))
        c.stabilize()
        #expect(c.reads[3] == [ReadState(requestID: 5, index: c.core(1).commitIndex)])
    }

    @Test func anIsolatedLeaderServesNoReadAndFailsThemWhenItStepsDown() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        c.isolate(1)
        c.step(1, .readIndex(requestID: 9))
        c.stabilize()
        #expect(c.reads[1] == nil)
        c.tick(1, times: 2 * c.electionTicks + 1)
        #expect(c.core(1).role == .follower)
        #expect(c.failedReads[1] == [9])
    }

    @Test func aReadBeforeTheNewLeadersNoOpCommitsWaits() {
        let c = TestCluster(voters: [1, 2, 3])
        c.tick(1, times: 2 * c.electionTicks)
        while let m = c.inbox.first, m.type != .append {
            c.inbox.removeFirst()
            c.step(m.to, .receive(m))
        }
        #expect(c.core(1).role == .leader)
        c.step(1, .readIndex(requestID: 1))
        #expect(c.reads[1] == nil)
        c.stabilize()
        c.tick(1)
        c.stabilize()
        #expect(c.reads[1] == [ReadState(requestID: 1, index: 1)])
    }

    @Test func noLeaderMeansTheReadFailsAtOnce() {
        let c = TestCluster(voters: [1, 2, 3])
        let r = c.step(2, .readIndex(requestID: 3))
        #expect(r.effects.contains(.readFailed(requestID: 3, .noLeader)))
    }
}

@Suite struct LeaseTests {
    @Test func theLeaderReportsWhichHeartbeatTickAQuorumAcknowledged() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        for _ in 0..<5 {
            c.tick(1)
            c.stabilize()
        }
        let acks = c.leases[1] ?? []
        #expect(acks.count >= 4)
        #expect(acks == acks.sorted(), "acknowledged ticks only move forward")
        #expect(acks.last == c.core(1).ticks, "the last round was acknowledged the same tick it was sent")
    }

    @Test func anIsolatedLeaderStopsRenewingItsLease() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        for _ in 0..<3 {
            c.tick(1)
            c.stabilize()
        }
        let before = c.leases[1]?.last ?? 0
        c.isolate(1)
        for _ in 0..<5 {
            c.tick(1)
            c.stabilize()
        }
        #expect(c.leases[1]?.last == before)
    }

    @Test func oneFollowerIsEnoughForTheQuorumOfThree() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.isolate(3)
        c.tick(1)
        c.stabilize()
        #expect(c.leases[1]?.last == c.core(1).ticks)
    }
}
