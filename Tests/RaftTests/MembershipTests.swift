import Raft
import RaftTestKit
import Testing

@Suite struct MembershipTests {
    @Test func addLearnerThenPromoteItToVoter() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        c.add(4, bootstrap: Membership())
        let r = c.step(1, .proposeMembership(.addLearner(4)))
        guard case .accepted = r.outcome else {
            Issue.record("addLearner rejected: \(r.outcome)")
            return
        }
        c.settle()
        #expect(c.core(4).membership.learners == [4])
        #expect(c.core(4).lastIndex == c.core(1).lastIndex, "learner receives the log")
        // A learner never campaigns.
        c.tick(4, times: 5 * c.electionTicks)
        #expect(c.core(4).role == .follower)
        #expect(c.core(1).role == .leader)
        let p = c.step(1, .proposeMembership(.addVoter(4)))
        guard case .accepted = p.outcome else {
            Issue.record("promotion rejected: \(p.outcome)")
            return
        }
        c.settle()
        for id: NodeID in [1, 2, 3, 4] {
            #expect(c.core(id).membership == Membership(voters: [1, 2, 3, 4]))
        }
    }

    @Test func oneChangeAtATime() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        c.cut = [[1, 2], [1, 3]]  // the first change cannot commit
        _ = c.step(1, .proposeMembership(.addLearner(4)))
        let second = c.step(1, .proposeMembership(.addLearner(5)))
        #expect(second.outcome == .rejected(.membershipChangePending))
    }

    @Test func aNewLeaderMustCommitInItsTermBeforeAChange() {
        let c = TestCluster(voters: [1, 2, 3])
        c.tick(1, times: 2 * c.electionTicks)
        // Deliver only the votes, so the no-op is not yet committed.
        while let m = c.inbox.first, m.type != .append {
            c.inbox.removeFirst()
            c.step(m.to, .receive(m))
        }
        #expect(c.core(1).role == .leader)
        #expect(c.step(1, .proposeMembership(.addLearner(4))).outcome == .rejected(.noCommitInTerm))
    }

    @Test func invalidChangesAreRejectedWithAReason() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        #expect(c.step(1, .proposeMembership(.addVoter(2))).outcome == .rejected(.invalidMembershipChange("node 2 is already a voter")))
        #expect(c.step(1, .proposeMembership(.remove(9))).outcome == .rejected(.invalidMembershipChange("node 9 is not a member")))
        #expect(c.step(2, .proposeMembership(.remove(3))).outcome == .rejected(.notLeader(leader: 1)))
    }

    @Test func removeAFollower() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        _ = c.step(1, .proposeMembership(.remove(3)))
        c.settle()
        #expect(c.core(1).membership.voters == [1, 2])
        #expect(c.core(2).membership.voters == [1, 2])
        // Two voters: both are needed to commit now.
        c.crash(3)
        c.step(1, .propose([[5]]))
        c.settle()
        #expect(c.applied[2]?.last?.data == [5])
    }

    @Test func removeTheLeaderItStepsDownAndTheOthersElect() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        let r = c.step(1, .proposeMembership(.remove(1)))
        guard case .accepted(_, let index, _) = r.outcome else {
            Issue.record("rejected: \(r.outcome)")
            return
        }
        c.stabilize()
        c.tick(1)
        c.stabilize()
        #expect(c.core(1).role == .follower, "stepped down once its removal committed")
        c.settle(rounds: 4 * c.electionTicks)
        let newLeader = c.leader
        #expect(newLeader == 2 || newLeader == 3)
        #expect((c.core(newLeader ?? 2).commitIndex) >= index)
        // The removed node never campaigns again.
        let term = c.core(1).term
        c.tick(1, times: 10 * c.electionTicks)
        #expect(c.core(1).role == .follower && c.core(1).term == term)
    }

    @Test func aTruncatedChangeRollsTheMembershipBack() {
        // The membership in force is the newest in the log, so losing an uncommitted change
        // must restore the previous one.
        let three = Membership(voters: [1, 2, 3])
        let c = TestCluster(voters: [1, 2, 3])
        var withLearner = three
        withLearner.learners = [4]
        let change = Entry(term: 1, index: 2, kind: .membership, data: RaftCodec.encode(withLearner))
        c.step(2, .receive(Message(type: .append, from: 1, to: 2, term: 1, entries: [Entry(term: 1, index: 1), change], commit: 1)))
        #expect(c.core(2).membership == withLearner)
        let r = c.step(2, .receive(Message(type: .append, from: 3, to: 2, term: 2, logTerm: 1, index: 1, entries: [Entry(term: 2, index: 2)], commit: 1)))
        #expect(c.core(2).membership == three)
        #expect(r.effects.contains(.membershipChanged(three)))
        #expect(r.effects.contains { if case .persist(let p) = $0 { return p.truncateFrom == 2 }; return false })
    }

    @Test func aCommittedEntryIsNeverTruncated() {
        let c = TestCluster(voters: [1, 2, 3])
        c.step(2, .receive(Message(type: .append, from: 1, to: 2, term: 1, entries: [Entry(term: 1, index: 1, data: [1])], commit: 1)))
        #expect(c.core(2).commitIndex == 1)
        // A (buggy or forged) leader tries to replace the committed entry: refused.
        c.step(2, .receive(Message(type: .append, from: 3, to: 2, term: 2, logTerm: 0, index: 0, entries: [Entry(term: 2, index: 1, data: [9])], commit: 0)))
        #expect(c.core(2).entry(at: 1)?.data == [1])
    }
}

@Suite struct TransferTests {
    @Test func transferToAnUpToDateFollower() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        c.step(1, .transferLeadership(to: 2))
        c.stabilize()
        #expect(c.core(2).role == .leader)
        #expect(c.core(2).term == 2)
        #expect(c.core(1).role == .follower && c.core(1).leader == 2)
    }

    @Test func transferToALaggingFollowerCatchesItUpFirst() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        c.cut = [[1, 3]]
        for k in 0..<10 { c.step(1, .propose([[UInt8(k)]])) }
        c.stabilize()
        c.heal()
        c.step(1, .transferLeadership(to: 3))
        #expect(c.step(1, .propose([[99]])).outcome == .rejected(.transferInProgress))
        c.stabilize()
        c.settle()
        #expect(c.core(3).role == .leader)
        #expect(c.core(3).lastIndex >= 12)
    }

    @Test func aTransferThatCannotCompleteIsAbandoned() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        c.isolate(3)
        c.step(1, .transferLeadership(to: 3))
        for _ in 0..<(c.electionTicks + 1) {
            c.tick(1)
            c.tick(2)
            c.stabilize()
        }
        #expect(c.core(1).role == .leader)
        #expect(c.core(1).leadershipTransferTarget == 0)
        guard case .accepted = c.step(1, .propose([[1]])).outcome else {
            Issue.record("proposals should be accepted again after the transfer timed out")
            return
        }
    }
}

/// Issue #15, item 4: only a caught-up learner becomes a voter.
@Suite struct VoterAdmissionTests {
    @Test func aNodeThatIsNotALearnerOrHasNotCaughtUpIsNotMadeAVoter() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.settle()
        guard case .rejected(.invalidMembershipChange(let why)) = c.step(1, .proposeMembership(.addVoter(4))).outcome else {
            Issue.record("a stranger was accepted as a voter")
            return
        }
        #expect(why.contains("not a learner"), "\(why)")
        // A learner that never answers (nothing runs there) is not caught up.
        guard case .accepted = c.step(1, .proposeMembership(.addLearner(4))).outcome else {
            Issue.record("addLearner rejected")
            return
        }
        c.settle()
        guard case .rejected(.invalidMembershipChange(let behind)) = c.step(1, .proposeMembership(.addVoter(4))).outcome else {
            Issue.record("a dead learner was promoted")
            return
        }
        #expect(behind.contains("has not caught up"), "\(behind)")
        #expect(c.core(1).membership.voters == [1, 2, 3])
        // Once it runs and has everything committed, it may vote.
        c.add(4, bootstrap: Membership())
        c.tick(1)
        c.settle()
        guard case .accepted = c.step(1, .proposeMembership(.addVoter(4))).outcome else {
            Issue.record("a caught-up learner was refused")
            return
        }
    }
}
