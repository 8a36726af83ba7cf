import Raft

/// What one simulation run may do to the cluster.
public struct FaultProfile: Sendable, Hashable {
    public var messageLoss = true
    public var duplication = true
    public var partitions = true
    public var crashes = true
    public var membershipChanges = true
    public var leadershipTransfers = true
    public var snapshots = true

    public init() {}

    public static let all = FaultProfile()
    public static let none: FaultProfile = {
        var p = FaultProfile()
        p.messageLoss = false
        p.duplication = false
        p.partitions = false
        p.crashes = false
        p.membershipChanges = false
        p.leadershipTransfers = false
        p.snapshots = false
        return p
    }()
}

public struct SimulationConfig: Sendable {
    public var seed: UInt64
    public var nodes: Int
    /// Virtual milliseconds of faults, followed by `healMillis` with all faults healed.
    public var chaosMillis: UInt64
    public var healMillis: UInt64
    public var faults: FaultProfile
    public var mutations: Set<TestingMutation>
    public var electionTicks: Int = 10
    public var tickMillis: UInt64 = 10
    /// Time between two fault actions (uniform in this range).
    public var chaosEveryMillis: ClosedRange<UInt64> = 50...300
    /// Byte limit for one append; 1 sends one entry per message.
    public var maxMessageBytes = 256

    public init(
        seed: UInt64, nodes: Int = 3, chaosMillis: UInt64 = 4_000, healMillis: UInt64 = 4_000,
        faults: FaultProfile = .all, mutations: Set<TestingMutation> = []
    ) {
        self.seed = seed
        self.nodes = nodes
        self.chaosMillis = chaosMillis
        self.healMillis = healMillis
        self.faults = faults
        self.mutations = mutations
    }
}

/// Counts of what happened in a run, so it is visible that every fault kind was exercised.
public struct SimulationStats: Sendable, Hashable, CustomStringConvertible {
    public var events = 0
    public var invariantChecks = 0
    public var elections = 0
    public var messagesSent = 0
    public var messagesDropped = 0
    public var messagesDuplicated = 0
    public var partitions = 0
    public var asymmetricPartitions = 0
    public var crashes = 0
    public var lostUnpersistedWrites = 0
    public var compactions = 0
    public var snapshotsInstalled = 0
    public var membershipChanges = 0
    public var leaderRemovals = 0
    public var transfers = 0
    public var writesAcked = 0
    public var readsServed = 0
    public var readsFailed = 0

    public init() {}

    public mutating func add(_ o: SimulationStats) {
        events += o.events
        invariantChecks += o.invariantChecks
        elections += o.elections
        messagesSent += o.messagesSent
        messagesDropped += o.messagesDropped
        messagesDuplicated += o.messagesDuplicated
        partitions += o.partitions
        asymmetricPartitions += o.asymmetricPartitions
        crashes += o.crashes
        lostUnpersistedWrites += o.lostUnpersistedWrites
        compactions += o.compactions
        snapshotsInstalled += o.snapshotsInstalled
        membershipChanges += o.membershipChanges
        leaderRemovals += o.leaderRemovals
        transfers += o.transfers
        writesAcked += o.writesAcked
        readsServed += o.readsServed
        readsFailed += o.readsFailed
    }

    public var description: String {
        "events=\(events) checks=\(invariantChecks) elections=\(elections) msgs=\(messagesSent) "
            + "dropped=\(messagesDropped) duplicated=\(messagesDuplicated) partitions=\(partitions) "
            + "asymmetric=\(asymmetricPartitions) crashes=\(crashes) lostWrites=\(lostUnpersistedWrites) "
            + "compactions=\(compactions) snapshotsInstalled=\(snapshotsInstalled) "
            + "membershipChanges=\(membershipChanges) leaderRemovals=\(leaderRemovals) transfers=\(transfers) "
            + "writesAcked=\(writesAcked) reads=\(readsServed) readsFailed=\(readsFailed)"
    }
}

public struct SimulationFailure: Error, Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var nodes: Int
    public var atMillis: UInt64
    public var violation: String
    public var trace: [String]

    public var description: String {
        """
        Raft simulation invariant violated (seed \(seed), \(nodes) nodes, t=\(atMillis) ms): \(violation)
        replay: SWITCHMAN_SIM_SEED=\(seed) SWITCHMAN_SIM_NODES=\(nodes) swift test --filter SimulationTests/replay
        last events:
        \(trace.suffix(50).joined(separator: "\n"))
        """
    }
}
