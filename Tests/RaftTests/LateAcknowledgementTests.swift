import Raft
import Testing

/// Storage writes run beside the core and their acknowledgements arrive late. The race that
/// etcd-io/raft's asynchronous storage writes guard against: a follower's index is written,
/// rewritten by a second leader and written back with the first term by a third, and the
/// first write's acknowledgement arrives when only the second is on disk. A core that
/// checked the term at the acknowledged index would take the third write as durable.
@Suite struct LateAcknowledgementTests {
    private struct Follower {
        var core: RaftCore
        var writes: [PersistRequest] = []
        var disk = PersistentState()
        var applied: [Entry] = []

        init(mutations: Set<TestingMutation>) throws {
            core = try RaftCore(
                config: RaftConfig(id: 3, randomSeed: 7, testingMutations: mutations),
                bootstrap: Membership(voters: [1, 2, 3]))
        }

        mutating func append(from leader: NodeID, term: UInt64, after prev: (index: UInt64, term: UInt64), _ entries: [Entry], commit: UInt64 = 0) {
            take(core.step(.receive(Message(
                type: .append, from: leader, to: 3, term: term, logTerm: prev.term, index: prev.index,
                entries: entries, commit: commit))).effects)
        }

        /// The disk finishes the next write; the core is not told.
        mutating func diskFinishesNextWrite() {
            let w = writes.removeFirst()
            if let t = w.truncateFrom { disk.entries.removeAll { $0.index >= t } }
            disk.entries += w.entries
        }

        mutating func acknowledge(_ mark: WriteMark) {
            take(core.step(.persisted(mark)).effects)
        }

        private mutating func take(_ effects: [RaftEffect]) {
            for e in effects {
                if case .persist(let req) = e { writes.append(req) }
                if case .apply(let es) = e { applied += es }
            }
        }

        /// Every entry the core takes as durable is on the disk with its term.
        var claimHolds: Bool {
            guard core.persistedIndex > 0 else { return true }
            return (1...core.persistedIndex).allSatisfy { i in
                disk.entries.first { $0.index == i }?.term == core.term(at: i)
            }
        }
    }

    @Test(arguments: [false, true])
    func aLateAcknowledgementVouchesOnlyForTheLogBelowARewrite(mutated: Bool) throws {
        var f = try Follower(mutations: mutated ? [.trustLateAcknowledgementByTerm] : [])
        f.append(from: 1, term: 2, after: (0, 0), [Entry(term: 2, index: 1), Entry(term: 2, index: 2)])
        f.append(from: 2, term: 3, after: (1, 2), [Entry(term: 3, index: 2)])
        // Leader 1 came back in term 4 with entry 2 of term 2, and says it is committed.
        f.append(from: 1, term: 4, after: (1, 2), [Entry(term: 2, index: 2)], commit: 2)
        #expect(f.writes.count == 3)
        #expect(f.core.term(at: 2) == 2)
        let marks = f.writes.map(\.mark)

        // The first two writes are on disk (entry 2 of term 3), the third is not.
        f.diskFinishesNextWrite()
        f.diskFinishesNextWrite()
        f.acknowledge(marks[0])
        if mutated {
            // The hole: entry 2 is taken as durable and applied, though the disk has term 3.
            #expect(f.core.persistedIndex == 2)
            #expect(!f.claimHolds)
            #expect(f.applied.map(\.index) == [1, 2])
            return
        }
        #expect(f.core.persistedIndex == 1)
        #expect(f.claimHolds)
        #expect(f.applied.map(\.index) == [1])
        f.acknowledge(marks[1])
        #expect(f.core.persistedIndex == 1)
        #expect(f.claimHolds)

        f.diskFinishesNextWrite()
        f.acknowledge(marks[2])
        #expect(f.core.persistedIndex == 2)
        #expect(f.claimHolds)
        #expect(f.applied.map(\.index) == [1, 2])
        #expect(f.applied.last?.term == 2)
    }

    /// A snapshot replaces the log while an older write is on its way: that write's
    /// acknowledgement vouches for nothing past the snapshot, though the new log again
    /// reaches the old write's last index.
    @Test func anAcknowledgementFromBeforeASnapshotInstallClaimsNoNewEntry() throws {
        var f = try Follower(mutations: [])
        f.append(from: 1, term: 2, after: (0, 0), (1...8).map { Entry(term: 2, index: $0) })
        let snapshot = Snapshot(
            metadata: SnapshotMetadata(index: 5, term: 3, membership: Membership(voters: [1, 2, 3])), data: [1])
        _ = f.core.step(.receive(Message(type: .snapshot, from: 2, to: 3, term: 3, snapshot: snapshot)))
        f.append(from: 2, term: 3, after: (5, 3), (6...8).map { Entry(term: 3, index: $0) })
        #expect(f.core.lastIndex == 8)
        let first = try #require(f.writes.first?.mark)
        #expect(first.index == 8)
        f.acknowledge(first)
        #expect(f.core.persistedIndex == 5)
    }
}
