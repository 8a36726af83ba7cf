import Raft
import RaftTestKit
import Testing

@Suite struct ElectionTests {
    @Test func aNodeThatTimesOutBecomesLeaderAndCommitsItsNoOp() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        #expect(c.core(1).role == .leader)
        #expect(c.core(1).term == 1)
        #expect(c.core(2).role == .follower && c.core(2).leader == 1)
        #expect(c.core(3).leader == 1)
        // The no-op of term 1 is committed and applied everywhere.
        for id: NodeID in [1, 2, 3] {
            c.tick(1)
            c.stabilize()
            #expect(c.core(id).commitIndex == 1)
            #expect(c.applied[id]?.map(\.index) == [1])
            #expect(c.applied[id]?.first?.data == [])
        }
    }

    @Test func electionTimeoutIsRandomizedWithinTTo2T() throws {
        // Over many seeds the first campaign happens at a tick in [T, 2T).
        var seen = Set<Int>()
        for seed in 1...200 as ClosedRange<UInt64> {
            var core = try RaftCore(config: RaftConfig(id: 1, electionTicks: 10, randomSeed: seed), bootstrap: Membership(voters: [1, 2, 3]))
            for t in 1...30 {
                let r = core.step(.tick)
                if r.effects.contains(where: { if case .send(let m, _) = $0 { return m.type == .preVote }; return false }) {
                    seen.insert(t)
                    break
                }
            }
        }
        #expect(seen.min() ?? 0 >= 10)
        #expect(seen.max() ?? 99 < 20)
        #expect(seen.count > 5)
    }

    @Test func preVoteKeepsAnIsolatedNodeFromInflatingTerms() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.isolate(3)
        for _ in 0..<20 {
            c.tick(3, times: 25)
            c.tick(1, times: 1)
            c.stabilize()
        }
        #expect(c.core(3).term == 1, "pre-vote failed, so the real term never moved")
        #expect(c.core(3).role == .preCandidate || c.core(3).role == .follower)
        c.heal()
        c.tickAll(times: 2)
        c.stabilize()
        #expect(c.core(1).role == .leader && c.core(1).term == 1, "rejoining did not disrupt the leader")
        #expect(c.core(3).leader == 1)
    }

    @Test func checkQuorumMakesAnIsolatedLeaderStepDown() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.isolate(1)
        c.tick(1, times: 2 * c.electionTicks + 1)
        #expect(c.core(1).role == .follower)
        #expect(c.core(1).leader == 0)
    }

    @Test func aFollowerThatHeardFromTheLeaderGrantsNoVote() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.tick(1)
        c.stabilize()
        // Node 3 asks for a vote at a higher term while node 2 still hears the leader.
        let request = Message(type: .vote, from: 3, to: 2, term: 5, logTerm: 1, index: 1)
        let r = c.step(2, .receive(request))
        #expect(c.core(2).term == 1, "the request was ignored, term unchanged")
        #expect(!r.effects.contains { if case .send(let m, _) = $0 { return m.type == .voteResponse && !m.reject }; return false })
        let pre = Message(type: .preVote, from: 3, to: 2, term: 2, logTerm: 1, index: 1)
        let r2 = c.step(2, .receive(pre))
        #expect(!r2.effects.contains { if case .send(let m, _) = $0 { return m.type == .preVoteResponse && !m.reject }; return false })
    }

    /// Found by simulation seed 109137: node 4 was promoted to voter in the others' logs but
    /// still a learner in its own, so it never campaigned — and it must still stop honouring
    /// a leader that went silent, or the others can never gather a quorum.
    @Test func aNodeThatMayNotCampaignStillGrantsVotesOnceItsLeaderIsSilent() throws {
        let m = Membership(voters: [1, 2, 3], learners: [4])
        var core = try RaftCore(config: RaftConfig(id: 4, electionTicks: 10, randomSeed: 7), bootstrap: m)
        _ = core.step(.receive(Message(type: .heartbeat, from: 2, to: 4, term: 1)))
        #expect(core.leader == 2)
        for _ in 0..<35 { _ = core.step(.tick) }
        let r = core.step(.receive(Message(type: .preVote, from: 3, to: 4, term: 2, logTerm: 1, index: 5)))
        let granted = r.effects.contains { if case .send(let msg, _) = $0 { return msg.type == .preVoteResponse && !msg.reject }; return false }
        #expect(granted)
    }

    @Test func aCandidateWithAShorterLogLosesTheElection() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.step(1, .propose([[7]]))
        c.cut = [[1, 3]]  // node 3 misses the entry
        c.stabilize()
        c.heal()
        c.crash(1)
        // Node 3 campaigns first but node 2 has a longer log and refuses.
        c.tick(3, times: 2 * c.electionTicks)
        c.stabilize()
        #expect(c.core(3).role != .leader)
        c.elect(2)
        #expect(c.core(2).role == .leader)
    }

    @Test func voteGrantsAreSentOnlyAfterThePersistedVote() {
        let c = TestCluster(voters: [1, 2, 3])
        c.tick(1, times: 2 * c.electionTicks)
        c.stabilize()
        let effects = c.effectLog[2] ?? []
        guard let grant = effects.firstIndex(where: { if case .send(let m, _) = $0 { return m.type == .voteResponse && !m.reject }; return false }) else {
            Issue.record("no vote granted")
            return
        }
        guard case .send(_, let afterPersist) = effects[grant] else { return }
        #expect(afterPersist)
        let persistBefore = effects[..<grant].contains {
            if case .persist(let p) = $0 { return p.hardState?.vote == 1 && p.hardState?.term == 1 }
            return false
        }
        #expect(persistBefore, "the vote is in a persist effect before the grant")
    }

    @Test func restartRestoresTermVoteAndLog() throws {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.step(1, .propose([[1], [2]]))
        c.stabilize()
        let before = c.core(2)
        c.crash(2)
        c.restart(2)
        let after = c.core(2)
        #expect(after.term == before.term)
        #expect(after.hardState.vote == before.hardState.vote)
        #expect(after.lastIndex == before.lastIndex)
        #expect(after.entry(at: 3)?.data == [2])
    }

    @Test func corruptPersistedStateIsRefusedNotTrusted() {
        let gap = PersistentState(entries: [Entry(term: 1, index: 1), Entry(term: 1, index: 3)])
        #expect(throws: RaftStateError.self) {
            _ = try RaftCore(config: RaftConfig(id: 1, randomSeed: 1), bootstrap: Membership(voters: [1]), restoring: gap)
        }
        let commitBeyond = PersistentState(hardState: HardState(term: 1, vote: 1, commit: 5), entries: [Entry(term: 1, index: 1)])
        #expect(throws: RaftStateError.self) {
            _ = try RaftCore(config: RaftConfig(id: 1, randomSeed: 1), bootstrap: Membership(voters: [1]), restoring: commitBeyond)
        }
        let decreasing = PersistentState(entries: [Entry(term: 2, index: 1), Entry(term: 1, index: 2)])
        #expect(throws: RaftStateError.self) {
            _ = try RaftCore(config: RaftConfig(id: 1, randomSeed: 1), bootstrap: Membership(voters: [1]), restoring: decreasing)
        }
    }

    @Test func singleNodeClusterElectsItselfAndCommits() {
        let c = TestCluster(voters: [1])
        c.elect(1)
        #expect(c.core(1).role == .leader)
        let r = c.step(1, .propose([[9]]))
        #expect(r.outcome == .accepted(term: 1, firstIndex: 2, lastIndex: 2))
        #expect(c.core(1).commitIndex == 2)
        #expect(c.applied[1]?.last?.data == [9])
    }
}

/// The lease holes of issue #15, item 3: each a way a new leader could be elected while the
/// old one's lease still ran.
@Suite struct LeaseHoleTests {
    func grants(_ r: StepResult, _ type: MessageType) -> Bool {
        r.effects.contains { if case .send(let m, _) = $0 { return m.type == type && !m.reject }; return false }
    }

    /// Votes forced by TimeoutNow ignore every lease, so the transferring leader gives its
    /// own up when it sends one, and renews none for the rest of its term.
    @Test func aLeaderThatStartsATransferHoldsNoLeaseForTheRestOfItsTerm() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        #expect(!(c.leases[1] ?? []).isEmpty, "a lease before the transfer")
        // Node 2 gets the TimeoutNow but nothing it sends arrives, so node 1 keeps leading
        // with node 3's acknowledgements: before the fix each round renewed its lease.
        c.cut = [[2, 1], [2, 3]]
        let r = c.step(1, .transferLeadership(to: 2))
        #expect(r.effects.contains(.leaseForfeited(term: 1)))
        let before = c.leases[1]?.count ?? 0
        for _ in 0..<5 {
            c.tick(1)
            c.stabilize()
        }
        #expect(c.core(1).role == .leader && c.core(1).term == 1)
        #expect(c.forfeited[1] == 1, "forfeited once")
        #expect(c.leases[1]?.count == before, "no lease renewed after TimeoutNow went out")
    }

    /// A voter that restarts may have acknowledged a leader whose lease still runs: for an
    /// election timeout after it starts it grants no (pre-)vote, as if it had just heard it.
    @Test func aRestartedVoterGrantsNoVoteForAnElectionTimeout() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        c.crash(2)
        c.restart(2)
        let pre = Message(type: .preVote, from: 3, to: 2, term: 2, logTerm: 1, index: c.core(1).lastIndex)
        #expect(!grants(c.step(2, .receive(pre)), .preVoteResponse))
        c.tick(2, times: c.electionTicks)
        #expect(!grants(c.step(2, .receive(pre)), .preVoteResponse), "still inside the timeout after \(c.electionTicks) ticks")
        c.tick(2)
        #expect(grants(c.step(2, .receive(pre)), .preVoteResponse), "granted once a whole timeout has passed")
    }

    /// The same two situations with each fix planted back out: the holes open, so the tests
    /// above can fail.
    @Test func withTheFixesPlantedOutBothHolesOpen() {
        let c = TestCluster(voters: [1, 2, 3], mutations: [.keepLeaseOnTransfer, .grantVotesRightAfterRestart])
        c.elect(1)
        c.settle()
        c.cut = [[2, 1], [2, 3]]
        let r = c.step(1, .transferLeadership(to: 2))
        #expect(!r.effects.contains(.leaseForfeited(term: 1)))
        let before = c.leases[1]?.count ?? 0
        for _ in 0..<5 {
            c.tick(1)
            c.stabilize()
        }
        #expect((c.leases[1]?.count ?? 0) > before, "the lease was renewed after TimeoutNow")

        let d = TestCluster(voters: [1, 2, 3], mutations: [.grantVotesRightAfterRestart])
        d.elect(1)
        d.settle()
        d.crash(2)
        d.restart(2)
        let pre = Message(type: .preVote, from: 3, to: 2, term: 2, logTerm: 1, index: d.core(1).lastIndex)
        #expect(grants(d.step(2, .receive(pre)), .preVoteResponse), "granted at once after the restart")
    }

    /// A fresh node (term 0) has acknowledged nobody: no wait, so a new cluster elects as fast as before.
    @Test func aFreshNodeGrantsAtOnce() throws {
        var core = try RaftCore(config: RaftConfig(id: 2, electionTicks: 10, randomSeed: 7), bootstrap: Membership(voters: [1, 2, 3]))
        let r = core.step(.receive(Message(type: .preVote, from: 3, to: 2, term: 1, logTerm: 0, index: 0)))
        #expect(grants(r, .preVoteResponse))
    }

    /// Refusal counted from the last contact lasts `electionTicks + 1` ticks: at least
    /// `electionTicks` whole intervals whatever the phase of the contact, never (T − 1).
    @Test func aVoterRefusesForAWholeElectionTimeoutAfterItsLastContact() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        c.isolate(1)
        let pre = Message(type: .preVote, from: 3, to: 2, term: 2, logTerm: 1, index: c.core(1).lastIndex)
        c.tick(2, times: c.electionTicks)
        #expect(c.core(2).role == .follower)
        #expect(!grants(c.step(2, .receive(pre)), .preVoteResponse), "after \(c.electionTicks) ticks: still refused")
        c.tick(2)
        // Node 2 may have started its own pre-vote by now; what matters is it no longer refuses.
        let r = c.step(2, .receive(pre))
        #expect(grants(r, .preVoteResponse) || c.core(2).role != .follower)
    }
}
