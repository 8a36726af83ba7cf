/// Settings of one node's core. Time is counted in ticks; the shell decides how long a tick is.
public struct RaftConfig: Sendable, Hashable {
    public var id: NodeID
    /// T: a follower campaigns after a random timeout in [T, 2T) ticks without a leader;
    /// a leader that has not heard from a quorum for T ticks steps down (check-quorum);
    /// a node that heard from a leader less than T ticks ago grants no vote (stickiness).
    public var electionTicks: Int
    public var heartbeatTicks: Int
    /// Appends in flight to one follower in pipelined (replicate) state.
    public var maxInflightMessages: Int
    /// Byte limit for the entries of one append (at least one entry is always sent).
    public var maxMessageBytes: Int
    /// Seed for the election-timeout randomization.
    public var randomSeed: UInt64
    /// Deliberate rule violations, for showing that the simulation's checkers can fail.
    /// Never set outside tests.
    public var testingMutations: Set<TestingMutation>
    /// A node restored with a term grants no vote for `electionTicks + 1` ticks after it is
    /// created (the lease rule, docs/RAFT.md). Off only for a unit test that builds a node
    /// from a prepared log to stand for one that has been running all along.
    public var quietAfterRestart: Bool

    public init(
        id: NodeID, electionTicks: Int = 10, heartbeatTicks: Int = 1, maxInflightMessages: Int = 64,
        maxMessageBytes: Int = 1 << 20, randomSeed: UInt64, testingMutations: Set<TestingMutation> = [],
        quietAfterRestart: Bool = true
    ) {
        self.quietAfterRestart = quietAfterRestart
        self.id = id
        self.electionTicks = max(electionTicks, 2)
        self.heartbeatTicks = max(1, min(heartbeatTicks, electionTicks - 1))
        self.maxInflightMessages = max(maxInflightMessages, 1)
        self.maxMessageBytes = max(maxMessageBytes, 1)
        self.randomSeed = randomSeed
        self.testingMutations = testingMutations
    }
}

public enum TestingMutation: Sendable, Hashable, CaseIterable {
    /// Commit an entry from an earlier term as soon as a majority stores it (Figure 8 bug).
    case commitPreviousTermEntriesByCounting
    /// Grant votes without the election restriction (candidate's log may be behind).
    case grantVotesWithoutLogCheck
    /// A restarted voter grants votes at once, though a leader it acknowledged before the
    /// restart may still hold its lease.
    case grantVotesRightAfterRestart
    /// A leader keeps its lease (and renews it) after sending TimeoutNow.
    case keepLeaseOnTransfer
    /// A leader elected by a transfer does not say so (`electedByTransfer` stays false).
    case hideTransferElection
    /// A late acknowledgement is trusted when the log still has an entry of the write's last
    /// term at the write's last index, though that index may have been rewritten since by
    /// another write still in flight (the ABA of asynchronous storage writes).
    case trustLateAcknowledgementByTerm

    // Each of these sends one message that depends on durable state before that state is
    // durable (DESIGN.md rule 1), one site each, so the simulation can show it notices.

    /// A candidate asks for votes before its own term and vote are written.
    case requestVoteBeforeDurable
    /// A vote (or pre-vote) grant leaves before the vote it carries is written.
    case grantVoteBeforeDurable
    /// An append acknowledgement leaves before the entries it acknowledges are written.
    case acknowledgeAppendBeforeDurable
    /// The answer to an append below the commit index claims the log through the commit
    /// index before that part of the log is written.
    case acknowledgeCommittedBeforeDurable
    /// The same, for a snapshot at or below the commit index.
    case acknowledgeCommittedSnapshotBeforeDurable
    /// A snapshot whose last entry the log already holds is acknowledged before that entry is written.
    case acknowledgeMatchingSnapshotBeforeDurable
    /// An installed snapshot is acknowledged before it is written.
    case acknowledgeInstalledSnapshotBeforeDurable
}

/// What survived on disk, handed back to the core on restart.
public struct PersistentState: Sendable, Hashable {
    public var hardState: HardState
    public var snapshot: Snapshot?
    public var entries: [Entry]

    public init(hardState: HardState = HardState(), snapshot: Snapshot? = nil, entries: [Entry] = []) {
        self.hardState = hardState
        self.snapshot = snapshot
        self.entries = entries
    }
}

public enum RaftStateError: Error, Sendable, Hashable, CustomStringConvertible {
    case entriesNotContiguous(expected: UInt64, found: UInt64)
    case termsDecrease(at: UInt64)
    case commitBeyondLog(commit: UInt64, last: UInt64)
    case badMembershipEntry(index: UInt64, CodecError)

    public var description: String {
        switch self {
        case .entriesNotContiguous(let e, let f): return "persisted log is not contiguous: expected index \(e), found \(f)"
        case .termsDecrease(let i): return "persisted log terms decrease at index \(i)"
        case .commitBeyondLog(let c, let l): return "persisted commit index \(c) is beyond the last entry \(l)"
        case .badMembershipEntry(let i, let e): return "membership entry \(i) does not decode: \(e)"
        }
    }
}

/// A read request waiting for a quorum heartbeat round (leader side).
private struct PendingRead {
    var requestID: UInt64
    var from: NodeID
    var index: UInt64
    var round: UInt64
}

/// The pure Raft state machine. Feed it `RaftInput`s through `step`; carry out the returned
/// effects in order. It does no I/O, reads no clock, and draws randomness only from a
/// generator seeded through `RaftConfig.randomSeed`.
public struct RaftCore: Sendable {
    public let config: RaftConfig
    public var id: NodeID { config.id }

    public private(set) var term: UInt64 = 0
    public private(set) var vote: NodeID = 0
    public private(set) var leader: NodeID = 0
    public private(set) var role: RaftRole = .follower
    public private(set) var membership: Membership
    /// Ticks seen since this core was created: the leader's lease clock.
    public private(set) var ticks: UInt64 = 0

    private var log: RaftLog
    private var membershipIndex: UInt64 = 0
    /// Membership as of the snapshot point (or the bootstrap membership).
    private var snapshotMembership: Membership
    private var snapshot: Snapshot?
    private var rng: SplitMix64

    private var electionElapsed = 0
    private var heartbeatElapsed = 0
    private var randomizedElectionTimeout = 0
    private var votes: [NodeID: Bool] = [:]
    private var progress: [NodeID: Progress] = [:]
    private var leadTransferee: NodeID = 0
    private var transferElapsed = 0
    /// Set when this leader sent TimeoutNow in its term; cleared by the next term.
    private var leaseForfeited = false
    private var transferCampaign = false
    /// A voter that restarts with a term (it voted or followed before) may have acknowledged
    /// a leader whose lease still runs: it grants no vote until a whole election timeout has
    /// passed since it started, as if it had just heard from that leader.
    private var quietAfterStart = false

    private var heartbeatRound: UInt64 = 0
    private var roundSentTick: [UInt64: UInt64] = [:]
    private var quorumRound: UInt64 = 0
    private var readsAwaitingCommit: [PendingRead] = []
    private var pendingReads: [PendingRead] = []
    private var readRoundNeeded = false

    private var effects: [RaftEffect] = []
    private var pendingPersist = PersistRequest()
    private var durableHardState: HardState
    private var nextWriteSequence: UInt64 = 1
    private var lastAcknowledgedWrite: UInt64 = 0
    /// Log positions rewritten (truncated, or replaced by a snapshot) after some write was
    /// asked for: `sequence` is the first write that carries the rewrite, `from` its lowest
    /// index. An acknowledgement of an earlier write vouches only for the log below `from`.
    private var rewrites: [(sequence: UInt64, from: UInt64)] = []
    private var reportedRole: (RaftRole, UInt64, NodeID) = (.follower, 0, 0)

    // MARK: - Introspection (for the shell, tests and the simulation's checkers)

    public var commitIndex: UInt64 { log.committed }
    public var lastIndex: UInt64 { log.lastIndex }
    public var lastTerm: UInt64 { log.lastTerm }
    public var firstIndex: UInt64 { log.firstIndex }
    public var snapshotIndex: UInt64 { log.snapshotIndex }
    public var persistedIndex: UInt64 { log.persisted }
    public var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    public var leadershipTransferTarget: NodeID { leadTransferee }
    /// This leader won a campaign a TimeoutNow started, whose voters ignored their leases: an
    /// older leader's calls fenced before it handed over may still be running.
    public private(set) var electedByTransfer = false
    public func term(at index: UInt64) -> UInt64? { log.term(at: index) }
    public func entry(at index: UInt64) -> Entry? { log.entry(at: index) }
    public var latestSnapshot: Snapshot? { snapshot }

    /// Leader only: each follower's match index.
    public var matchIndexes: [NodeID: UInt64] { progress.mapValues(\.match) }

    // MARK: - Creation

    /// - Parameters:
    ///   - bootstrap: the initial membership, identical on every founding member; a node that
    ///     joins later passes an empty one and learns the cluster from its leader.
    ///   - restoring: what the node's storage holds (empty on first start).
    ///   - applied: the index the application's restored state already reflects (at least
    ///     the snapshot's index).
    public init(
        config: RaftConfig, bootstrap: Membership, restoring state: PersistentState = PersistentState(),
        applied: UInt64 = 0
    ) throws(RaftStateError) {
        self.config = config
        self.rng = SplitMix64(seed: config.randomSeed)
        let snapIndex = state.snapshot?.metadata.index ?? 0
        let snapTerm = state.snapshot?.metadata.term ?? 0
        var expected = snapIndex + 1
        var lastTerm = snapTerm
        for e in state.entries {
            guard e.index == expected else { throw .entriesNotContiguous(expected: expected, found: e.index) }
            guard e.term >= lastTerm else { throw .termsDecrease(at: e.index) }
            expected += 1
            lastTerm = e.term
        }
        let last = snapIndex + UInt64(state.entries.count)
        guard state.hardState.commit <= last else { throw .commitBeyondLog(commit: state.hardState.commit, last: last) }
        log = RaftLog(
            snapshotIndex: snapIndex, snapshotTerm: snapTerm, entries: state.entries,
            committed: max(state.hardState.commit, snapIndex))
        log.applyEmitted = min(max(applied, snapIndex), log.committed)
        snapshot = state.snapshot
        snapshotMembership = state.snapshot?.metadata.membership ?? bootstrap
        membership = snapshotMembership
        membershipIndex = snapIndex
        term = state.hardState.term
        vote = state.hardState.vote
        durableHardState = state.hardState
        if let (m, i) = try Self.latestMembership(in: state.entries) {
            membership = m
            membershipIndex = i
        }
        resetRandomizedElectionTimeout()
        reportedRole = (role, term, leader)
        quietAfterStart = term > 0 && config.quietAfterRestart && !config.testingMutations.contains(.grantVotesRightAfterRestart)
    }

    private static func latestMembership(in entries: [Entry]) throws(RaftStateError) -> (Membership, UInt64)? {
        for e in entries.reversed() where e.kind == .membership {
            do {
                return (try RaftCodec.decodeMembershipEntry(e.data).0, e.index)
            } catch {
                throw .badMembershipEntry(index: e.index, error)
            }
        }
        return nil
    }

    // MARK: - The one entry point

    public mutating func step(_ input: RaftInput) -> StepResult {
        var outcome = StepOutcome.none
        switch input {
        case .tick:
            tick()
        case .receive(let m):
            receive(m)
        case .propose(let batch):
            outcome = propose(batch)
        case .forward(let batch):
            outcome = forward(batch)
        case .proposeMembership(let change, let context):
            outcome = proposeMembership(change, context: context)
        case .readIndex(let requestID):
            readIndex(requestID: requestID, from: id)
        case .transferLeadership(let target):
            outcome = transferLeadership(to: target)
        case .persisted(let mark):
            persisted(mark)
        case .applied(let index):
            _ = index  // The core hands out entries by commit; kept for symmetry with etcd's Advance.
        case .compact(let index, let data):
            compact(index: index, data: data)
        case .snapshotReported(let node, let success):
            snapshotReported(node: node, success: success)
        }
        finishStep()
        let out = effects
        effects = []
        return StepResult(effects: out, outcome: outcome)
    }

    // MARK: - Time

    private mutating func tick() {
        ticks += 1
        electionElapsed += 1
        if role == .leader {
            heartbeatElapsed += 1
            if leadTransferee != 0 {
                transferElapsed += 1
                if transferElapsed >= config.electionTicks { leadTransferee = 0 }
            }
            if electionElapsed >= config.electionTicks {
                electionElapsed = 0
                if !quorumRecentlyActive() {
                    becomeFollower(term: term, leader: 0)
                    return
                }
            }
            if heartbeatElapsed >= config.heartbeatTicks {
                heartbeatElapsed = 0
                broadcastHeartbeat()
            }
        } else if isPromotable && electionElapsed >= randomizedElectionTimeout {
            electionElapsed = 0
            campaign(preVote: true, transfer: false)
        }
        // A node that may not campaign (a learner, or a voter that has not yet learned it
        // was promoted) keeps counting, so once its leader has been silent for a whole
        // election timeout it stops treating that leader as live and grants votes again.
    }

    private var isPromotable: Bool { membership.voters.contains(id) }

    private mutating func resetRandomizedElectionTimeout() {
        randomizedElectionTimeout = config.electionTicks + Int(rng.next() % UInt64(config.electionTicks))
    }

    /// Check-quorum: did a quorum of voters talk to us in the last election timeout?
    private mutating func quorumRecentlyActive() -> Bool {
        var active = 0
        for v in membership.voters {
            if v == id { active += 1 } else if progress[v]?.recentActive == true { active += 1 }
        }
        for k in progress.keys where k != id { progress[k]?.recentActive = false }
        return active >= quorumSize
    }

    private var quorumSize: Int { membership.voters.count / 2 + 1 }

    // MARK: - Role transitions

    private mutating func becomeFollower(term newTerm: UInt64, leader newLeader: NodeID) {
        if role == .leader { failPendingReads() }
        if newTerm > term {
            term = newTerm
            vote = 0
        }
        role = .follower
        leader = newLeader
        electionElapsed = 0
        heartbeatElapsed = 0
        leadTransferee = 0
        votes = [:]
        progress = [:]
        resetRandomizedElectionTimeout()
    }

    private mutating func campaign(preVote: Bool, transfer: Bool) {
        if role == .leader { failPendingReads() }
        if !preVote { transferCampaign = transfer }
        progress = [:]
        leader = 0
        votes = [id: true]
        electionElapsed = 0
        resetRandomizedElectionTimeout()
        let voteTerm: UInt64
        if preVote {
            role = .preCandidate
            voteTerm = term + 1
        } else {
            role = .candidate
            term += 1
            vote = id
            voteTerm = term
        }
        if grantedVotes() >= quorumSize {
            if preVote { campaign(preVote: false, transfer: transfer) } else { becomeLeader() }
            return
        }
        for v in membership.voters.sorted() where v != id {
            send(
                Message(
                    type: preVote ? .preVote : .vote, from: id, to: v, term: voteTerm,
                    logTerm: log.lastTerm, index: log.lastIndex, context: transfer ? Self.transferContext : 0),
                afterPersist: !preVote && waitsForDisk(unless: .requestVoteBeforeDurable))
        }
    }

    /// Marks a vote request sent on a leader's request (TimeoutNow): voters skip stickiness.
    static let transferContext: UInt64 = 1

    /// Whether a leader this node acknowledged may still hold its lease, so no vote may be
    /// granted. The lease lasts a minimum election timeout (less the drift bound) from a round
    /// the leader sent no later than our last contact; refusing until `electionTicks + 1`
    /// ticks have passed since that contact (or since start) lasts at least `electionTicks`
    /// tick intervals, since the shell never ticks faster than one per interval.
    private var inLeaseOfAnotherLeader: Bool {
        if quietAfterStart && ticks <= UInt64(config.electionTicks) { return true }
        return leader != 0 && electionElapsed <= config.electionTicks
    }

    private func grantedVotes() -> Int { membership.voters.filter { votes[$0] == true }.count }
    private func rejectedVotes() -> Int { membership.voters.filter { votes[$0] == false }.count }

    private mutating func becomeLeader() {
        role = .leader
        leader = id
        electedByTransfer = transferCampaign && !config.testingMutations.contains(.hideTransferElection)
        leaseForfeited = false
        electionElapsed = 0
        heartbeatElapsed = 0
        leadTransferee = 0
        votes = [:]
        progress = [:]
        roundSentTick = [:]
        for member in membership.allMembers {
            var p = Progress(next: log.lastIndex + 1)
            if member == id {
                p.match = log.persisted
                p.state = .replicate
            }
            progress[member] = p
        }
        if progress[id] == nil {
            // A leader being removed still tracks itself for commit bookkeeping.
            var p = Progress(next: log.lastIndex + 1)
            p.match = log.persisted
            progress[id] = p
        }
        appendAsLeader([Entry(term: term, index: 0)])
        broadcastAppend()
    }

    // MARK: - Messages

    private mutating func receive(_ m: Message) {
        guard m.to == id, m.from != 0, m.from != id else { return }
        if m.term > term {
            if m.type == .vote || m.type == .preVote {
                let force = m.context == Self.transferContext
                if !force && inLeaseOfAnotherLeader { return }
            }
            switch m.type {
            case .preVote:
                break
            case .preVoteResponse where !m.reject:
                break
            case .append, .heartbeat, .snapshot:
                becomeFollower(term: m.term, leader: m.from)
            default:
                becomeFollower(term: m.term, leader: 0)
            }
        } else if m.term < term {
            switch m.type {
            case .append, .heartbeat:
                // Tell a stale leader about the newer term so it steps down; with pre-vote
                // this is what keeps a rejoining old leader from being ignored forever.
                send(Message(type: .appendResponse, from: id, to: m.from, term: term), afterPersist: false)
            case .preVote:
                send(Message(type: .preVoteResponse, from: id, to: m.from, term: term, reject: true), afterPersist: false)
            default:
                break
            }
            return
        }

        switch m.type {
        case .vote, .preVote:
            handleVoteRequest(m)
            return
        default:
            break
        }

        switch role {
        case .leader:
            stepLeader(m)
        case .candidate, .preCandidate:
            stepCandidate(m)
        case .follower:
            stepFollower(m)
        }
    }

    private mutating func handleVoteRequest(_ m: Message) {
        let canVote =
            vote == m.from || (vote == 0 && leader == 0) || (m.type == .preVote && m.term > term)
        let logOK =
            config.testingMutations.contains(.grantVotesWithoutLogCheck)
            || log.isUpToDate(lastIndex: m.index, lastTerm: m.logTerm)
        let responseType: MessageType = m.type == .vote ? .voteResponse : .preVoteResponse
        if canVote && logOK {
            if m.type == .vote {
                electionElapsed = 0
                vote = m.from
            }
            send(Message(type: responseType, from: id, to: m.from, term: m.term), afterPersist: waitsForDisk(unless: .grantVoteBeforeDurable))
        } else {
            send(Message(type: responseType, from: id, to: m.from, term: term, reject: true), afterPersist: true)
        }
    }

    private mutating func stepCandidate(_ m: Message) {
        switch m.type {
        case .append, .heartbeat, .snapshot:
            becomeFollower(term: m.term, leader: m.from)
            stepFollower(m)
        case .voteResponse, .preVoteResponse:
            guard (m.type == .preVoteResponse) == (role == .preCandidate) else { return }
            votes[m.from] = !m.reject
            if grantedVotes() >= quorumSize {
                if role == .preCandidate { campaign(preVote: false, transfer: false) } else { becomeLeader() }
            } else if rejectedVotes() >= quorumSize {
                becomeFollower(term: term, leader: 0)
            }
        case .readIndex:
            send(Message(type: .readIndexResponse, from: id, to: m.from, term: term, reject: true, context: m.context), afterPersist: false)
        default:
            break
        }
    }

    private mutating func stepFollower(_ m: Message) {
        switch m.type {
        case .append:
            electionElapsed = 0
            leader = m.from
            handleAppend(m)
        case .heartbeat:
            electionElapsed = 0
            leader = m.from
            commit(to: min(m.commit, log.lastIndex))
            send(Message(type: .heartbeatResponse, from: id, to: m.from, term: term, context: m.context), afterPersist: false)
        case .snapshot:
            electionElapsed = 0
            leader = m.from
            handleSnapshot(m)
        case .timeoutNow:
            if isPromotable { campaign(preVote: false, transfer: true) }
        case .readIndex:
            send(Message(type: .readIndexResponse, from: id, to: m.from, term: term, reject: true, context: m.context), afterPersist: false)
        case .readIndexResponse:
            if m.reject {
                effects.append(.readFailed(requestID: m.context, leader == 0 ? .noLeader : .leadershipLost))
            } else {
                effects.append(.readReady(ReadState(requestID: m.context, index: m.index)))
            }
        default:
            break
        }
    }

    private mutating func handleAppend(_ m: Message) {
        if m.index < log.committed {
            send(
                Message(type: .appendResponse, from: id, to: m.from, term: term, index: log.committed),
                afterPersist: waitsForDisk(unless: .acknowledgeCommittedBeforeDurable))
            return
        }
        guard log.matches(index: m.index, term: m.logTerm) else {
            var hint = min(m.index, log.lastIndex)
            hint = log.lastIndex(atOrBelow: hint, withTermAtMost: m.logTerm)
            send(
                Message(
                    type: .appendResponse, from: id, to: m.from, term: term, logTerm: log.term(at: hint) ?? 0,
                    index: m.index, reject: true, rejectHint: hint),
                afterPersist: true)
            return
        }
        let lastNew = m.index + UInt64(m.entries.count)
        var firstNew: Int? = nil
        for (k, e) in m.entries.enumerated() {
            guard let t = log.term(at: e.index) else {
                firstNew = k
                break
            }
            if t != e.term {
                // Never truncate a committed entry; a leader asking for that is not a Raft leader.
                guard e.index > log.committed else { return }
                truncateLog(from: e.index)
                firstNew = k
                break
            }
        }
        if let k = firstNew {
            appendToLog(Array(m.entries[k...]))
        }
        commit(to: min(m.commit, lastNew))
        send(
            Message(type: .appendResponse, from: id, to: m.from, term: term, index: lastNew),
            afterPersist: waitsForDisk(unless: .acknowledgeAppendBeforeDurable))
    }

    private mutating func handleSnapshot(_ m: Message) {
        guard let s = m.snapshot else { return }
        let meta = s.metadata
        if meta.index <= log.committed {
            send(
                Message(type: .appendResponse, from: id, to: m.from, term: term, index: log.committed),
                afterPersist: waitsForDisk(unless: .acknowledgeCommittedSnapshotBeforeDurable))
            return
        }
        if log.matches(index: meta.index, term: meta.term) {
            // Our log already has the snapshot's last entry: just learn that it is committed.
            commit(to: meta.index)
            send(
                Message(type: .appendResponse, from: id, to: m.from, term: term, index: meta.index),
                afterPersist: waitsForDisk(unless: .acknowledgeMatchingSnapshotBeforeDurable))
            return
        }
        log.restore(snapshotIndex: meta.index, snapshotTerm: meta.term)
        noteRewrite(from: meta.index + 1)
        snapshot = s
        snapshotMembership = meta.membership
        setMembership(meta.membership, index: meta.index)
        pendingPersist.entries.removeAll()
        pendingPersist.snapshot = s
        pendingPersist.compactThrough = meta.index
        pendingPersist.truncateFrom = meta.index + 1
        flushPersist(forceHardState: true)
        effects.append(.installSnapshot(s))
        send(
            Message(type: .appendResponse, from: id, to: m.from, term: term, index: meta.index),
            afterPersist: waitsForDisk(unless: .acknowledgeInstalledSnapshotBeforeDurable))
    }

    private mutating func stepLeader(_ m: Message) {
        switch m.type {
        case .forward:
            // Only application data travels this way: a membership entry smuggled in here
            // would bypass the one-change-at-a-time rule. A forward that arrives during a
            // transfer is dropped like a rejected proposal; the sender retries.
            let data = m.entries.filter { $0.kind == .normal }.map(\.data)
            _ = propose(data)
        case .heartbeatResponse:
            guard var pr = progress[m.from] else { return }
            pr.recentActive = true
            pr.probeSent = false
            if m.context > pr.ackedRound { pr.ackedRound = m.context }
            if pr.state == .replicate && pr.inflights.count >= config.maxInflightMessages {
                pr.inflights.removeFirst()
            }
            progress[m.from] = pr
            if pr.match < log.lastIndex { sendAppend(to: m.from) }
            advanceQuorumRound()
        case .appendResponse:
            handleAppendResponse(m)
        case .readIndex:
            readIndex(requestID: m.context, from: m.from)
        default:
            break
        }
    }

    private mutating func handleAppendResponse(_ m: Message) {
        guard var pr = progress[m.from] else { return }
        pr.recentActive = true
        if m.reject {
            var hint = m.rejectHint
            if m.logTerm > 0 { hint = log.lastIndex(atOrBelow: m.rejectHint, withTermAtMost: m.logTerm) }
            if pr.maybeDecrease(rejected: m.index, hint: hint) {
                if pr.state == .replicate { pr.becomeProbe() }
                progress[m.from] = pr
                sendAppend(to: m.from)
            } else {
                progress[m.from] = pr
            }
            return
        }
        let wasPaused = pr.isPaused(maxInflight: config.maxInflightMessages)
        guard pr.maybeUpdate(m.index) else {
            progress[m.from] = pr
            return
        }
        switch pr.state {
        case .probe:
            pr.becomeReplicate()
        case .snapshot:
            if pr.match + 1 >= log.firstIndex {
                pr.becomeProbe()
                pr.becomeReplicate()
            }
        case .replicate:
            pr.freeInflights(through: m.index)
        }
        progress[m.from] = pr
        if maybeCommit() {
            broadcastAppend()
        } else if wasPaused {
            sendAppend(to: m.from)
        }
        while sendAppend(to: m.from, sendIfEmpty: false) {}
        if m.from == leadTransferee && progress[m.from]?.match == log.lastIndex {
            sendTimeoutNow(to: m.from)
        }
    }

    // MARK: - Replication (leader)

    @discardableResult
    private mutating func sendAppend(to peer: NodeID, sendIfEmpty: Bool = true) -> Bool {
        guard var pr = progress[peer], peer != id else { return false }
        if pr.isPaused(maxInflight: config.maxInflightMessages) { return false }
        let prevIndex = pr.next - 1
        guard let prevTerm = log.term(at: prevIndex) else {
            return sendSnapshot(to: peer)
        }
        let entries = log.slice(from: pr.next, through: log.lastIndex, maxBytes: config.maxMessageBytes)
        if entries.isEmpty && !sendIfEmpty { return false }
        send(
            Message(
                type: .append, from: id, to: peer, term: term, logTerm: prevTerm, index: prevIndex,
                entries: entries, commit: log.committed),
            afterPersist: false)
        pr.sentEntries(lastIndex: entries.last?.index)
        progress[peer] = pr
        return true
    }

    private mutating func sendSnapshot(to peer: NodeID) -> Bool {
        guard var pr = progress[peer], let s = snapshot else { return false }
        pr.becomeSnapshot(s.metadata.index)
        progress[peer] = pr
        send(Message(type: .snapshot, from: id, to: peer, term: term, snapshot: s), afterPersist: false)
        return true
    }

    private mutating func broadcastAppend() {
        for peer in progress.keys.sorted() where peer != id { sendAppend(to: peer) }
    }

    private mutating func broadcastHeartbeat() {
        heartbeatRound += 1
        roundSentTick[heartbeatRound] = ticks
        for (peer, pr) in progress.sorted(by: { $0.key < $1.key }) where peer != id {
            send(
                Message(
                    type: .heartbeat, from: id, to: peer, term: term, commit: min(pr.match, log.committed),
                    context: heartbeatRound),
                afterPersist: false)
        }
        advanceQuorumRound()
    }

    /// Commit rule (§5.4.2, Figure 8): only an entry of the current term is committed by
    /// counting replicas; earlier entries are committed with it.
    private mutating func maybeCommit() -> Bool {
        let values = membership.voters.map { progress[$0]?.match ?? 0 }
        let candidate = quorumValue(values)
        guard candidate > log.committed, let t = log.term(at: candidate) else { return false }
        guard t == term || config.testingMutations.contains(.commitPreviousTermEntriesByCounting) else { return false }
        let hadCommittedInTerm = committedInCurrentTerm
        log.committed = candidate
        if !hadCommittedInTerm && committedInCurrentTerm { serveReadsAwaitingCommit() }
        if !membership.voters.contains(id) && membershipIndex <= log.committed {
            stepDownAfterRemoval()
            return false
        }
        return true
    }

    private var committedInCurrentTerm: Bool { log.term(at: log.committed) == term }

    /// The leader's removal committed: hand over to the most caught-up voter and stop leading.
    private mutating func stepDownAfterRemoval() {
        broadcastAppend()
        let matches = progress.mapValues(\.match)
        let match = { (n: NodeID) in matches[n] ?? 0 }
        if let best = membership.voters.max(by: { (match($0), $0) < (match($1), $1) }), match(best) == log.lastIndex
        {
            sendTimeoutNow(to: best)
        }
        becomeFollower(term: term, leader: 0)
    }

    // MARK: - Log mutation

    private mutating func appendAsLeader(_ new: [Entry]) {
        var stamped = new
        var next = log.lastIndex + 1
        for i in stamped.indices {
            stamped[i].term = term
            stamped[i].index = next
            next += 1
        }
        appendToLog(stamped)
        progress[id]?.next = log.lastIndex + 1
    }

    private mutating func appendToLog(_ new: [Entry]) {
        guard !new.isEmpty else { return }
        log.append(new)
        pendingPersist.entries.append(contentsOf: new)
        for e in new where e.kind == .membership {
            if let (m, _) = try? RaftCodec.decodeMembershipEntry(e.data) { setMembership(m, index: e.index) }
        }
    }

    private mutating func truncateLog(from index: UInt64) {
        log.truncate(from: index)
        noteRewrite(from: index)
        pendingPersist.entries.removeAll { $0.index >= index }
        pendingPersist.truncateFrom = min(pendingPersist.truncateFrom ?? index, index)
        if membershipIndex >= index {
            if let (m, i) = try? Self.latestMembership(in: log.entries) {
                setMembership(m, index: i)
            } else {
                setMembership(snapshotMembership, index: log.snapshotIndex)
            }
        }
    }

    private mutating func noteRewrite(from index: UInt64) {
        if let last = rewrites.last, last.sequence == nextWriteSequence {
            rewrites[rewrites.count - 1].from = min(last.from, index)
        } else {
            rewrites.append((nextWriteSequence, index))
        }
    }

    private mutating func setMembership(_ m: Membership, index: UInt64) {
        membershipIndex = index
        guard m != membership else { return }
        membership = m
        effects.append(.membershipChanged(m))
        guard role == .leader else { return }
        for member in m.allMembers where progress[member] == nil {
            var p = Progress(next: log.lastIndex)
            p.recentActive = true
            progress[member] = p
        }
        for peer in progress.keys where peer != id && !m.contains(peer) {
            progress[peer] = nil
            if leadTransferee == peer { leadTransferee = 0 }
        }
    }

    private mutating func commit(to index: UInt64) {
        if index > log.committed { log.committed = index }
    }

    // MARK: - Proposals

    private mutating func propose(_ batch: [[UInt8]]) -> StepOutcome {
        guard role == .leader else { return .rejected(.notLeader(leader: leader)) }
        guard leadTransferee == 0 else { return .rejected(.transferInProgress) }
        guard !batch.isEmpty else { return .none }
        let first = log.lastIndex + 1
        appendAsLeader(batch.map { Entry(term: term, index: 0, kind: .normal, data: $0) })
        broadcastAppend()
        return .accepted(term: term, firstIndex: first, lastIndex: log.lastIndex)
    }

    private mutating func forward(_ batch: [[UInt8]]) -> StepOutcome {
        if role == .leader { return propose(batch) }
        guard leader != 0, leader != id else { return .rejected(.notLeader(leader: 0)) }
        guard !batch.isEmpty else { return .none }
        let entries = batch.map { Entry(term: 0, index: 0, kind: .normal, data: $0) }
        send(Message(type: .forward, from: id, to: leader, term: term, entries: entries), afterPersist: false)
        return .forwarded(to: leader)
    }

    private mutating func proposeMembership(_ change: MembershipChange, context: [UInt8]) -> StepOutcome {
        guard role == .leader else { return .rejected(.notLeader(leader: leader)) }
        guard leadTransferee == 0 else { return .rejected(.transferInProgress) }
        // Single-server changes are safe only one at a time, and only once the leader has
        // committed an entry of its own term (the dissertation's fix; docs/RAFT.md).
        guard committedInCurrentTerm else { return .rejected(.noCommitInTerm) }
        guard membershipIndex <= log.committed else { return .rejected(.membershipChangePending) }
        var next = membership
        switch change {
        case .addVoter(let n):
            guard n != 0 else { return .rejected(.invalidMembershipChange("node id 0 is reserved")) }
            guard !next.voters.contains(n) else { return .rejected(.invalidMembershipChange("node \(n) is already a voter")) }
            // A voter that is new, dead or far behind counts towards every quorum at once: in
            // a cluster of three, adding a dead fourth and then losing one original leaves no
            // quorum and no way back. Only a learner that holds everything committed may vote.
            guard next.learners.contains(n) else {
                return .rejected(.invalidMembershipChange(
                    "node \(n) is not a learner: add it as a learner first, and promote it once it has caught up"))
            }
            let match = progress[n]?.match ?? 0
            guard match >= log.committed else {
                return .rejected(.invalidMembershipChange(
                    "learner \(n) has not caught up (it holds up to index \(match), \(log.committed) are committed); promote it once it has"))
            }
            next.learners.remove(n)
            next.voters.insert(n)
        case .addLearner(let n):
            guard n != 0 else { return .rejected(.invalidMembershipChange("node id 0 is reserved")) }
            guard !next.learners.contains(n) else { return .rejected(.invalidMembershipChange("node \(n) is already a learner")) }
            next.voters.remove(n)
            next.learners.insert(n)
        case .remove(let n):
            guard next.contains(n) else { return .rejected(.invalidMembershipChange("node \(n) is not a member")) }
            next.voters.remove(n)
            next.learners.remove(n)
        }
        guard !next.voters.isEmpty else { return .rejected(.invalidMembershipChange("the cluster would have no voters")) }
        let index = log.lastIndex + 1
        appendAsLeader([Entry(term: term, index: 0, kind: .membership, data: RaftCodec.encodeMembershipEntry(next, context: context))])
        broadcastAppend()
        return .accepted(term: term, firstIndex: index, lastIndex: index)
    }

    /// The target campaigns at once and its voters ignore their leases, so from here on this
    /// leader's lease cannot be trusted in this term.
    private mutating func sendTimeoutNow(to target: NodeID) {
        if !leaseForfeited && !config.testingMutations.contains(.keepLeaseOnTransfer) {
            leaseForfeited = true
            effects.append(.leaseForfeited(term: term))
        }
        send(Message(type: .timeoutNow, from: id, to: target, term: term), afterPersist: false)
    }

    private mutating func transferLeadership(to target: NodeID) -> StepOutcome {
        guard role == .leader else { return .rejected(.notLeader(leader: leader)) }
        guard target != id else { return .none }
        guard membership.voters.contains(target) else {
            return .rejected(.invalidMembershipChange("node \(target) is not a voter"))
        }
        leadTransferee = target
        transferElapsed = 0
        if progress[target]?.match == log.lastIndex {
            sendTimeoutNow(to: target)
        } else {
            sendAppend(to: target)
        }
        return .none
    }

    // MARK: - Reads and the lease

    private mutating func readIndex(requestID: UInt64, from: NodeID) {
        guard role == .leader else {
            if from != id {
                send(Message(type: .readIndexResponse, from: id, to: from, term: term, reject: true, context: requestID), afterPersist: false)
            } else if leader == 0 {
                effects.append(.readFailed(requestID: requestID, .noLeader))
            } else {
                send(Message(type: .readIndex, from: id, to: leader, term: term, context: requestID), afterPersist: false)
            }
            return
        }
        let read = PendingRead(requestID: requestID, from: from, index: 0, round: 0)
        if committedInCurrentTerm {
            serveRead(read)
        } else {
            readsAwaitingCommit.append(read)
        }
    }

    private mutating func serveReadsAwaitingCommit() {
        let waiting = readsAwaitingCommit
        readsAwaitingCommit = []
        for r in waiting { serveRead(r) }
    }

    /// A read is safe at the current commit index once a quorum confirms, by answering a
    /// heartbeat round sent after the request arrived, that we are still the leader.
    private mutating func serveRead(_ r: PendingRead) {
        var read = r
        read.index = log.committed
        read.round = heartbeatRound + 1
        pendingReads.append(read)
        readRoundNeeded = true
    }

    private mutating func advanceQuorumRound() {
        guard role == .leader else { return }
        let values = membership.voters.map { $0 == id ? heartbeatRound : (progress[$0]?.ackedRound ?? 0) }
        let acked = quorumValue(values)
        guard acked > quorumRound else { return }
        quorumRound = acked
        if let sent = roundSentTick[acked], !leaseForfeited {
            effects.append(.quorumAcknowledged(sentAtTick: sent, term: term))
        }
        roundSentTick = roundSentTick.filter { $0.key > acked }
        var remaining: [PendingRead] = []
        for r in pendingReads {
            if r.round <= acked {
                deliverRead(r)
            } else {
                remaining.append(r)
            }
        }
        pendingReads = remaining
    }

    private mutating func deliverRead(_ r: PendingRead) {
        if r.from == id {
            effects.append(.readReady(ReadState(requestID: r.requestID, index: r.index)))
        } else {
            send(Message(type: .readIndexResponse, from: id, to: r.from, term: term, index: r.index, context: r.requestID), afterPersist: false)
        }
    }

    private mutating func failPendingReads() {
        for r in readsAwaitingCommit + pendingReads {
            if r.from == id {
                effects.append(.readFailed(requestID: r.requestID, .leadershipLost))
            } else {
                send(Message(type: .readIndexResponse, from: id, to: r.from, term: term, reject: true, context: r.requestID), afterPersist: false)
            }
        }
        readsAwaitingCommit = []
        pendingReads = []
        readRoundNeeded = false
    }

    // MARK: - Storage feedback

    private mutating func persisted(_ mark: WriteMark) {
        // The disk now holds the log as it was when this write was asked for; below the
        // lowest position rewritten since, that is still the log we hold. Matching the term
        // at the write's last index is not enough: the index may have been truncated and
        // written again with that same term by a write still in flight.
        // Acknowledgements come in the order of the writes; one that does not is stale.
        guard mark.sequence > lastAcknowledgedWrite, mark.sequence < nextWriteSequence else { return }
        lastAcknowledgedWrite = mark.sequence
        var durable = min(mark.index, log.lastIndex)
        if config.testingMutations.contains(.trustLateAcknowledgementByTerm) {
            if log.term(at: mark.index) != mark.term { durable = 0 }
        } else {
            for r in rewrites where r.sequence > mark.sequence { durable = min(durable, r.from - 1) }
        }
        rewrites.removeAll { $0.sequence <= mark.sequence }
        guard durable > log.persisted else { return }
        log.persisted = durable
        let index = durable
        guard role == .leader else { return }
        let selfMatch = progress[id]?.match ?? 0
        progress[id]?.match = max(selfMatch, index)
        if maybeCommit() { broadcastAppend() }
    }

    private mutating func compact(index: UInt64, data: [UInt8]) {
        guard index > log.snapshotIndex, index <= log.applyEmitted, let t = log.term(at: index) else { return }
        let m = membershipAt(index)
        let s = Snapshot(metadata: SnapshotMetadata(index: index, term: t, membership: m), data: data)
        log.compact(through: index, term: t)
        snapshot = s
        snapshotMembership = m
        pendingPersist.snapshot = s
        pendingPersist.compactThrough = index
        pendingPersist.entries.removeAll { $0.index <= index }
    }

    private func membershipAt(_ index: UInt64) -> Membership {
        var i = min(index, log.lastIndex)
        while i > log.snapshotIndex {
            if let e = log.entry(at: i), e.kind == .membership, let (m, _) = try? RaftCodec.decodeMembershipEntry(e.data) {
                return m
            }
            i -= 1
        }
        return snapshotMembership
    }

    private mutating func snapshotReported(node: NodeID, success: Bool) {
        guard role == .leader, var pr = progress[node], pr.state == .snapshot else { return }
        if !success { pr.pendingSnapshot = 0 }
        pr.becomeProbe()
        // Wait for the follower's answer (or the next heartbeat) before appending again.
        pr.probeSent = true
        progress[node] = pr
    }

    // MARK: - Effects

    /// A message that depends on durable state waits for the disk; only a test that breaks
    /// one site on purpose, to see the simulation notice, gets `false` here.
    private func waitsForDisk(unless mutation: TestingMutation) -> Bool {
        config.testingMutations.isEmpty || !config.testingMutations.contains(mutation)
    }

    private mutating func send(_ m: Message, afterPersist: Bool) {
        flushPersist(forceHardState: false)
        effects.append(.send(m, afterPersist: afterPersist))
    }

    private mutating func flushPersist(forceHardState: Bool) {
        let hs = hardState
        let termOrVoteChanged = hs.term != durableHardState.term || hs.vote != durableHardState.vote
        if termOrVoteChanged || forceHardState || (!pendingPersist.isEmpty && hs != durableHardState) {
            pendingPersist.hardState = hs
        }
        guard !pendingPersist.isEmpty else { return }
        if let written = pendingPersist.hardState { durableHardState = written }
        pendingPersist.mark = WriteMark(sequence: nextWriteSequence, index: log.lastIndex, term: log.lastTerm)
        nextWriteSequence += 1
        effects.append(.persist(pendingPersist))
        pendingPersist = PersistRequest()
    }

    private mutating func finishStep() {
        if role == .leader && readRoundNeeded {
            readRoundNeeded = false
            broadcastHeartbeat()
        }
        flushPersist(forceHardState: false)
        let applyThrough = min(log.committed, log.persisted)
        if applyThrough > log.applyEmitted {
            let entries = log.slice(from: log.applyEmitted + 1, through: applyThrough, maxBytes: Int.max)
            if let last = entries.last {
                effects.append(.apply(entries))
                log.applyEmitted = last.index
            }
        }
        if reportedRole != (role, term, leader) {
            reportedRole = (role, term, leader)
            effects.append(.roleChanged(role: role, term: term, leader: leader))
        }
    }
}
