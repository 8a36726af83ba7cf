import Raft
import RaftTestKit
import Testing

private func log(_ terms: [UInt64]) -> [Entry] {
    terms.enumerated().map { Entry(term: $0.element, index: UInt64($0.offset + 1), data: [UInt8($0.offset), UInt8($0.element)]) }
}

@Suite struct ReplicationTests {
    @Test func proposalsReachEveryNodeInOrder() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        for k in 0..<20 { c.step(1, .propose([[UInt8(k)]])) }
        c.stabilize()
        c.tick(1)
        c.stabilize()
        for id: NodeID in [1, 2, 3] {
            #expect(c.core(id).commitIndex == 21)
            #expect(c.applied[id]?.dropFirst().map(\.data) == (0..<20).map { [UInt8($0)] })
        }
    }

    @Test func followersRejectProposalsNamingTheLeader() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        let r = c.step(2, .propose([[1]]))
        #expect(r.outcome == .rejected(.notLeader(leader: 1)))
        #expect(r.outcome != .none)
        let fresh = TestCluster(voters: [1, 2, 3])
        #expect(fresh.step(2, .propose([[1]])).outcome == .rejected(.notLeader(leader: 0)))
    }

    @Test func followersForwardDataToTheLeader() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.stabilize()
        #expect(c.step(2, .forward([[7], [8]])).outcome == .forwarded(to: 1))
        c.stabilize()
        // On the leader a forward is a proposal.
        if case .accepted = c.step(1, .forward([[9]])).outcome {} else { Issue.record("leader did not accept its own forward") }
        c.stabilize()
        for id: NodeID in [1, 2, 3] {
            #expect(c.applied[id]?.filter { $0.kind == .normal && !$0.data.isEmpty }.map(\.data) == [[7], [8], [9]], "node \(id)")
        }
        // Nobody to forward to: refused, not swallowed.
        let fresh = TestCluster(voters: [1, 2, 3])
        #expect(fresh.step(2, .forward([[1]])).outcome == .rejected(.notLeader(leader: 0)))
    }

    @Test func aForwardedMembershipEntryIsNotAppended() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.stabilize()
        let before = c.core(1).lastIndex
        let sneaky = Entry(term: 0, index: 0, kind: .membership, data: [1])
        c.step(1, .receive(Message(type: .forward, from: 2, to: 1, term: c.core(1).term, entries: [sneaky])))
        #expect(c.core(1).lastIndex == before)
        #expect(c.core(1).membership.voters == [1, 2, 3])
    }

    /// Figure 7 of the Raft paper: whatever the follower's log, the leader's wins.
    @Test(arguments: [
        ("a", [1, 1, 1, 4, 4, 5, 5, 6, 6] as [UInt64]),
        ("b", [1, 1, 1, 4]),
        ("c", [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("e", [1, 1, 1, 4, 4, 4, 4]),
        ("f", [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ])
    func figure7LogRepair(name: String, follower: [UInt64]) {
        let leaderLog: [UInt64] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
        let m = Membership(voters: [1, 2, 3])
        let c = TestCluster(voters: [], maxMessageBytes: 64)
        c.add(1, bootstrap: m, state: PersistentState(hardState: HardState(term: 7), entries: log(leaderLog)))
        c.add(2, bootstrap: m, state: PersistentState(hardState: HardState(term: 7), entries: log(follower)))
        c.add(3, bootstrap: m, state: PersistentState(hardState: HardState(term: 7), entries: log(leaderLog)))
        c.elect(1)
        #expect(c.core(1).role == .leader, "case \(name)")
        c.tick(1)
        c.stabilize()
        let l = c.core(1)
        let f = c.core(2)
        #expect(f.lastIndex == l.lastIndex, "case \(name)")
        for i in 1...l.lastIndex {
            #expect(f.entry(at: i) == l.entry(at: i), "case \(name) index \(i)")
        }
        #expect(f.commitIndex == l.lastIndex)
    }

    /// Figure 8: an entry from an earlier term is not committed by counting replicas.
    @Test(arguments: [false, true])
    func figure8CommitRule(mutated: Bool) {
        let five: Set<NodeID> = [1, 2, 3, 4, 5]
        let m = Membership(voters: five)
        let c = TestCluster(voters: [], maxMessageBytes: 1, mutations: mutated ? [.commitPreviousTermEntriesByCounting] : [])
        let base = Entry(term: 1, index: 1, data: [1])
        // (a)-(c): S1 led term 2 and stored index 2 on S2; S5 led term 3 and stored its own index 2.
        c.add(1, bootstrap: m, state: PersistentState(hardState: HardState(term: 3, commit: 1), entries: [base, Entry(term: 2, index: 2, data: [2])]))
        c.add(2, bootstrap: m, state: PersistentState(hardState: HardState(term: 2, commit: 1), entries: [base, Entry(term: 2, index: 2, data: [2])]))
        c.add(3, bootstrap: m, state: PersistentState(hardState: HardState(term: 3, commit: 1), entries: [base]))
        c.add(4, bootstrap: m, state: PersistentState(hardState: HardState(term: 3, commit: 1), entries: [base]))
        c.add(5, bootstrap: m, state: PersistentState(hardState: HardState(term: 3, commit: 1), entries: [base, Entry(term: 3, index: 2, data: [3])]))
        // S1 leads term 4 and copies index 2 to S3, but its own term-4 entry reaches nobody.
        c.cut = [[1, 4], [1, 5]]
        c.rewrite = { msg in
            var m = msg
            m.entries.removeAll { $0.index >= 3 }
            return m
        }
        c.elect(1)
        #expect(c.core(1).role == .leader && c.core(1).term == 4)
        c.tick(1)
        c.stabilize()
        #expect(c.core(3).term(at: 2) == 2, "index 2 (term 2) is now on S1, S2, S3: a majority")
        if mutated {
            #expect(c.core(1).commitIndex == 2, "the broken rule commits it by counting")
        } else {
            #expect(c.core(1).commitIndex == 1, "Figure 8: not committed until a term-4 entry is")
        }
        // (d): S1 crashes; S5 is elected with S2, S3, S4 and overwrites index 2. (A forced
        // campaign, as on TimeoutNow, so the followers' memory of S1 does not delay it.)
        c.crash(1)
        c.heal()
        c.rewrite = { $0 }
        c.step(5, .receive(Message(type: .timeoutNow, from: 1, to: 5, term: 4)))
        c.stabilize()
        #expect(c.core(5).role == .leader, "S5's log (last term 3) beats every log holding the term-2 entry")
        c.tick(5)
        c.stabilize()
        let appliedBySOne = (c.applied[1] ?? []).first { $0.index == 2 }
        #expect(c.core(5).term(at: 2) == 3)
        if mutated {
            // The broken rule let S1 apply (term 2, index 2), and now a leader exists whose
            // log lacks that committed entry: leader completeness is gone.
            #expect(appliedBySOne?.term == 2)
        } else {
            #expect(appliedBySOne == nil)
            #expect(c.core(3).term(at: 2) == 3, "S5 safely replaced the uncommitted entry")
        }
    }

    @Test func conflictingTailIsRepairedInFewRoundTripsByTerm() {
        // A follower holding 100 conflicting entries of term 2 is repaired with a handful of
        // rejections, not one per entry.
        let m = Membership(voters: [1, 2, 3])
        let c = TestCluster(voters: [])
        let common = log([1])
        let leaderLog = common + (2...101).map { Entry(term: 3, index: $0) }
        let followerLog = common + (2...101).map { Entry(term: 2, index: $0) }
        c.add(1, bootstrap: m, state: PersistentState(hardState: HardState(term: 3), entries: leaderLog))
        c.add(2, bootstrap: m, state: PersistentState(hardState: HardState(term: 3), entries: followerLog))
        c.add(3, bootstrap: m, state: PersistentState(hardState: HardState(term: 3), entries: leaderLog))
        c.elect(1)
        c.tick(1)
        c.stabilize()
        let rejections = (c.effectLog[2] ?? []).filter { if case .send(let msg, _) = $0 { return msg.type == .appendResponse && msg.reject }; return false }
        #expect(rejections.count <= 3)
        #expect(c.core(2).entry(at: 101) == c.core(1).entry(at: 101))
    }

    @Test func appendsRespectTheByteLimitAndTheInflightBound() {
        let c = TestCluster(voters: [1, 2, 3], maxMessageBytes: 100, maxInflight: 4)
        c.elect(1)
        c.tick(1)
        c.stabilize()
        // Node 3 stops answering; the leader pipelines at most 4 appends to it.
        c.cut = [[3, 1]]
        for k in 0..<50 { c.step(1, .propose([[UInt8](repeating: UInt8(k), count: 60)])) }
        let toThree = c.inbox.filter { $0.to == 3 && $0.type == .append && !$0.entries.isEmpty }
        #expect(toThree.count <= 4)
        for msg in c.inbox where msg.type == .append {
            let bytes = msg.entries.reduce(0) { $0 + $1.byteSize }
            #expect(msg.entries.count <= 1 || bytes <= 100)
        }
        c.stabilize()
        #expect(c.core(1).commitIndex == 51, "committed with node 2 alone")
        c.heal()
        for _ in 0..<30 {
            c.tick(1)
            c.stabilize()
        }
        #expect(c.core(3).lastIndex == 51)
    }

    @Test func appendResponsesWaitForDurability() {
        let c = TestCluster(voters: [1, 2, 3])
        c.elect(1)
        c.step(1, .propose([[1]]))
        c.stabilize()
        let effects = c.effectLog[2] ?? []
        for (k, e) in effects.enumerated() {
            guard case .send(let msg, let after) = e, msg.type == .appendResponse, !msg.reject, msg.index >= 2 else { continue }
            #expect(after)
            let persisted = effects[..<k].contains { if case .persist(let p) = $0 { return p.entries.contains { $0.index == msg.index } }; return false }
            #expect(persisted, "entry \(msg.index) was handed to storage before the ack")
        }
    }

    @Test func aLeaderCountsItselfOnlyOnceItsOwnWriteIsDurable() {
        var core = try? RaftCore(config: RaftConfig(id: 1, randomSeed: 3), bootstrap: Membership(voters: [1]))
        var committedBeforePersist = false
        var lastWrite: WriteMark? = nil
        for _ in 0..<30 {
            guard let r = core?.step(.tick) else { break }
            for case .persist(let req) in r.effects { lastWrite = req.mark }
            if core?.role == .leader {
                committedBeforePersist = core?.commitIndex ?? 0 > 0
                break
            }
        }
        #expect(core?.role == .leader)
        #expect(!committedBeforePersist)
        #expect(lastWrite?.index == 1)
        if let lastWrite { _ = core?.step(.persisted(lastWrite)) }
        #expect(core?.commitIndex == 1)
    }
}
