/// A replica's identity in the cluster. 0 means "none".
public typealias NodeID = UInt64

/// The kind of payload an entry carries.
public enum EntryKind: UInt8, Sendable, Hashable {
    /// Application data (an empty one is the leader's no-op).
    case normal = 0
    /// A membership change; `data` is the encoded resulting `Membership`.
    case membership = 1
}

/// One entry of the replicated log.
public struct Entry: Sendable, Hashable {
    public var term: UInt64
    public var index: UInt64
    public var kind: EntryKind
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, kind: EntryKind = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data
    }

    /// Rough wire size, used for the per-message byte limit.
    public var byteSize: Int { data.count + 24 }
}

/// The state that must be durable before a node speaks (DESIGN.md safety rule 1).
public struct HardState: Sendable, Hashable {
    public var term: UInt64
    public var vote: NodeID
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: NodeID = 0, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// The cluster configuration: who votes and who only follows.
///
/// Changes are single-server and strictly one at a time; see docs/RAFT.md for the safety
/// argument. The configuration in force on a node is the newest one in its log, committed or
/// not (the Raft dissertation's rule), so a log truncation can roll it back.
public struct Membership: Sendable, Hashable {
    public var voters: Set<NodeID>
    public var learners: Set<NodeID>

    public init(voters: Set<NodeID> = [], learners: Set<NodeID> = []) {
        self.voters = voters
        self.learners = learners.subtracting(voters)
    }

    public var allMembers: Set<NodeID> { voters.union(learners) }

    public func contains(_ id: NodeID) -> Bool { voters.contains(id) || learners.contains(id) }
}

/// A membership change request.
public enum MembershipChange: Sendable, Hashable {
    /// Add a new voter or promote an existing learner.
    case addVoter(NodeID)
    /// Add a new learner or demote a voter to learner.
    case addLearner(NodeID)
    /// Remove a voter or learner (the leader included).
    case remove(NodeID)

    public var node: NodeID {
        switch self {
        case .addVoter(let id), .addLearner(let id), .remove(let id): return id
        }
    }
}

public struct SnapshotMetadata: Sendable, Hashable {
    public var index: UInt64
    public var term: UInt64
    public var membership: Membership

    public init(index: UInt64, term: UInt64, membership: Membership) {
        self.index = index
        self.term = term
        self.membership = membership
    }
}

/// The application's state at `metadata.index`, handed to the core for log compaction and
/// sent to followers that fell behind the compacted log.
public struct Snapshot: Sendable, Hashable {
    public var metadata: SnapshotMetadata
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata, data: [UInt8]) {
        self.metadata = metadata
        self.data = data
    }
}

public enum MessageType: UInt8, Sendable, Hashable, CaseIterable {
    case append = 1
    case appendResponse = 2
    case vote = 3
    case voteResponse = 4
    case preVote = 5
    case preVoteResponse = 6
    case heartbeat = 7
    case heartbeatResponse = 8
    case snapshot = 9
    case timeoutNow = 10
    case readIndex = 11
    case readIndexResponse = 12
    /// Application data a follower passes to its leader (`RaftInput.forward`).
    case forward = 13
}

/// A Raft message between two nodes. Fields not used by a type stay zero/empty.
public struct Message: Sendable, Hashable {
    public var type: MessageType
    public var from: NodeID
    public var to: NodeID
    public var term: UInt64
    /// append: term of the entry before `entries`; vote: term of the candidate's last entry;
    /// appendResponse reject: term of the follower's entry at `rejectHint`.
    public var logTerm: UInt64
    /// append: index of the entry before `entries`; vote: the candidate's last index;
    /// appendResponse: the last index the follower now matches (or the rejected index).
    public var index: UInt64
    public var entries: [Entry]
    public var commit: UInt64
    public var reject: Bool
    public var rejectHint: UInt64
    /// heartbeat round (lease / read index) or read request id.
    public var context: UInt64
    public var snapshot: Snapshot?

    public init(
        type: MessageType, from: NodeID, to: NodeID, term: UInt64,
        logTerm: UInt64 = 0, index: UInt64 = 0, entries: [Entry] = [], commit: UInt64 = 0,
        reject: Bool = false, rejectHint: UInt64 = 0, context: UInt64 = 0, snapshot: Snapshot? = nil
    ) {
        self.type = type
        self.from = from
        self.to = to
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.reject = reject
        self.rejectHint = rejectHint
        self.context = context
        self.snapshot = snapshot
    }
}

public enum RaftRole: UInt8, Sendable, Hashable, CustomStringConvertible {
    case follower, preCandidate, candidate, leader

    public var description: String {
        switch self {
        case .follower: return "follower"
        case .preCandidate: return "pre-candidate"
        case .candidate: return "candidate"
        case .leader: return "leader"
        }
    }
}

/// What the storage must make durable, in one atomic write, in this order: replace the
/// snapshot, delete entries with index ≤ `compactThrough`, delete entries with index ≥
/// `truncateFrom`, write `entries`, write `hardState`.
public struct PersistRequest: Sendable, Hashable {
    public var snapshot: Snapshot?
    public var compactThrough: UInt64?
    public var truncateFrom: UInt64?
    public var entries: [Entry]
    public var hardState: HardState?
    /// Set by the core; the shell steps `.persisted(mark)` back once this write (and so every
    /// write before it) is durable. Stores ignore it.
    public var mark = WriteMark()

    public init(
        snapshot: Snapshot? = nil, compactThrough: UInt64? = nil, truncateFrom: UInt64? = nil,
        entries: [Entry] = [], hardState: HardState? = nil
    ) {
        self.snapshot = snapshot
        self.compactThrough = compactThrough
        self.truncateFrom = truncateFrom
        self.entries = entries
        self.hardState = hardState
    }

    public var isEmpty: Bool {
        snapshot == nil && compactThrough == nil && truncateFrom == nil && entries.isEmpty && hardState == nil
    }
}

/// Names one write the core asked for: its place in the core's sequence of writes and the
/// end of the log (`index`, `term`) as that write leaves it on disk.
public struct WriteMark: Sendable, Hashable {
    public var sequence: UInt64
    public var index: UInt64
    public var term: UInt64

    public init(sequence: UInt64 = 0, index: UInt64 = 0, term: UInt64 = 0) {
        self.sequence = sequence
        self.index = index
        self.term = term
    }
}

/// A linearizable read point: once the application has applied `index`, a read of its state
/// reflects every write acknowledged before the read was requested.
public struct ReadState: Sendable, Hashable {
    public var requestID: UInt64
    public var index: UInt64

    public init(requestID: UInt64, index: UInt64) {
        self.requestID = requestID
        self.index = index
    }
}

/// Why a read request could not be served.
public enum ReadIndexFailure: Sendable, Hashable {
    case noLeader
    case notLeader(leader: NodeID)
    case leadershipLost
}

/// Effects, in the order the shell must carry them out.
public enum RaftEffect: Sendable, Hashable {
    /// Make this durable (fsync) before carrying out any later effect marked `afterPersist`.
    case persist(PersistRequest)
    /// Send a message. If `afterPersist`, every earlier `persist` effect must be durable first.
    case send(Message, afterPersist: Bool)
    /// Committed entries to apply to the state machine, in order.
    case apply([Entry])
    /// Replace the application's state with this snapshot (received from the leader).
    case installSnapshot(Snapshot)
    /// A read request is ready (or has failed).
    case readReady(ReadState)
    case readFailed(requestID: UInt64, ReadIndexFailure)
    /// Role, term or known leader changed.
    case roleChanged(role: RaftRole, term: UInt64, leader: NodeID)
    /// The leader learned that a quorum acknowledged a heartbeat round it sent at
    /// `sentAtTick` (counted by `RaftCore.ticks`). A shell that timestamps its ticks with a
    /// monotonic clock computes the lease from it (DESIGN.md safety rule 3).
    case quorumAcknowledged(sentAtTick: UInt64, term: UInt64)
    /// The leader sent TimeoutNow: the target may win an election at once, with votes that
    /// ignore every lease, so this leader holds none for the rest of `term` (no
    /// `quorumAcknowledged` follows in it). The shell drops its lease now.
    case leaseForfeited(term: UInt64)
    /// The membership in force changed (an entry was appended, truncated or a snapshot restored).
    case membershipChanged(Membership)
}

/// What the shell feeds into the core.
public enum RaftInput: Sendable, Hashable {
    case tick
    case receive(Message)
    /// Append application data (one entry per element: proposals batched into one write).
    case propose([[UInt8]])
    /// `context` is stored in the entry for the application (e.g. the new member's address).
    case proposeMembership(MembershipChange, context: [UInt8] = [])
    /// Like `propose` on a leader; a follower that knows its leader passes the data on
    /// without learning where (or whether) it lands. For data whose effect the application
    /// can recognise when applied (it carries its own request id), and that may be applied
    /// twice when retried.
    case forward([[UInt8]])
    case readIndex(requestID: UInt64)
    case transferLeadership(to: NodeID)
    /// Storage made durable the write carrying this mark and every write before it. Writes
    /// must become durable in the order the core asked for them; the acknowledgement may
    /// arrive late, after later writes.
    case persisted(WriteMark)
    /// The application applied entries up to and including this index.
    case applied(UInt64)
    /// The application took a snapshot of its state at an applied index (`data`); the core
    /// compacts its log through that index and keeps the snapshot for lagging followers.
    case compact(index: UInt64, data: [UInt8])
    /// The shell finished (or failed) streaming a snapshot to a follower.
    case snapshotReported(node: NodeID, success: Bool)
}

public enum ProposalRejection: Error, Sendable, Hashable, CustomStringConvertible {
    case notLeader(leader: NodeID)
    case transferInProgress
    case membershipChangePending
    case noCommitInTerm
    case invalidMembershipChange(String)
    case removed

    public var description: String {
        switch self {
        case .notLeader(let leader):
            return leader == 0 ? "not the leader, and no leader is known" : "not the leader; the leader is node \(leader)"
        case .transferInProgress: return "a leadership transfer is in progress"
        case .membershipChangePending: return "another membership change is not yet committed"
        case .noCommitInTerm: return "the new leader has not yet committed an entry in its term"
        case .invalidMembershipChange(let why): return "invalid membership change: \(why)"
        case .removed: return "this node is not a member of the cluster"
        }
    }
}

public enum StepOutcome: Sendable, Hashable {
    case none
    /// Proposals were appended at indexes `firstIndex ... lastIndex` in `term`.
    case accepted(term: UInt64, firstIndex: UInt64, lastIndex: UInt64)
    case rejected(ProposalRejection)
    /// `forward` on a follower: sent to this leader, fate unknown.
    case forwarded(to: NodeID)
}

/// The result of one `RaftCore.step`.
public struct StepResult: Sendable {
    public var effects: [RaftEffect]
    public var outcome: StepOutcome

    public init(effects: [RaftEffect], outcome: StepOutcome) {
        self.effects = effects
        self.outcome = outcome
    }
}
