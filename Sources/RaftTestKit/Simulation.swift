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
    /// A node's writes take up to 5–100 ms for a while instead of 0–3 ms, so what it sends
    /// runs well ahead of what it has written; now and then one write stalls for 1.5 to 4
    /// election timeouts.
    public var slowDisks = true
    /// Power fails on a node while a chosen write is still on its way to disk, and the node
    /// is back within 20 ms, soon enough to hear what was already in flight to it.
    public var powerCuts = true

    public init() {}

    public static let all = FaultProfile()

    private static var names: [(String, WritableKeyPath<FaultProfile, Bool>)] { [
        ("messageLoss", \.messageLoss), ("duplication", \.duplication), ("partitions", \.partitions),
        ("crashes", \.crashes), ("membershipChanges", \.membershipChanges),
        ("leadershipTransfers", \.leadershipTransfers), ("snapshots", \.snapshots), ("slowDisks", \.slowDisks),
        ("powerCuts", \.powerCuts),
    ] }

    /// The faults switched off, by name (for a replay command).
    public var off: [String] { Self.names.filter { !self[keyPath: $0.1] }.map(\.0) }

    public mutating func turnOff(_ name: String) -> Bool {
        guard let k = Self.names.first(where: { $0.0 == name })?.1 else { return false }
        self[keyPath: k] = false
        return true
    }
    public static let none: FaultProfile = {
        var p = FaultProfile()
        p.messageLoss = false
        p.duplication = false
        p.partitions = false
        p.crashes = false
        p.membershipChanges = false
        p.leadershipTransfers = false
        p.snapshots = false
        p.slowDisks = false
        p.powerCuts = false
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
    /// Check, the moment each message leaves, that what it promises is already durable
    /// (DESIGN.md rule 1). Off only to see whether the other checkers notice a broken
    /// promise by its consequences.
    public var auditSpeech = true
    /// The lease's drift bound, as `timing.maxClockDrift`: leases are `electionTicks ×
    /// tickMillis × (1 − maxClockDrift)` of the leader's clock.
    public var maxClockDrift = 0.05
    /// When set, each node's clock runs at a rate drawn from 1 ± maxClockDrift/4, so two
    /// clocks differ by at most half the bound (the rest covers the millisecond rounding of
    /// tick times). Off by default: it changes every seed's schedule.
    public var driftingClocks = false
    /// Once in the run, the operator replaces a founder by editing `cluster.members` in the
    /// other founders' config files (dropping it, adding a new id) and restarting them, and
    /// starts the new node, instead of `member remove` and `member add`.
    public var fileEdits = false
    /// The shell takes the voters from the config file on every start, the bug of issue #15
    /// item 1, instead of from the founding record in the data directory (a new node then
    /// starts as a founder of its file rather than with `--join`).
    public var membershipFromTheFile = false
    /// Now and then a voter's disk is lost for good. The shell refuses an empty data
    /// directory without `--join`, and peers refuse the new incarnation until it is removed,
    /// so the node stays down and the operator removes it (docs/RAFT.md, a lost disk).
    public var lostDisks = false
    /// The old shell: a voter whose disk was lost comes back under its id with term 0, no
    /// vote and an empty log, and is counted as before (issue #15 item 2).
    public var rejoinWithLostDisk = false
    /// Now and then clients fall silent for 300 ms to 1.5 s. Switchman's own log is idle
    /// between health changes, and only in an idle cluster is a candidate that heard nothing
    /// for a while as up to date as a voter that did, so a vote it should not get is granted.
    public var idleStretches = false
    /// Now and then the link between two nodes fails both ways while every other link
    /// stays up (one pair of availability zones losing its path): a node can stop hearing
    /// the leader while a third node still hears both.
    public var linkCuts = false
    /// Half the crashed nodes are back within 1–30 ms, as a supervisor (systemd's
    /// `Restart=always`) brings a replica back well inside one election timeout: inside the
    /// lease of the leader it acknowledged last. What peers send to a restarted node is lost
    /// until each peer has reconnected, after up to one election timeout of backoff (50 ms
    /// doubling: a replica down for 300 ms is redialled up to 400 ms later, against 1 s).
    public var supervisedRestarts = false
    /// Once in the run, a voter is started on a copy of its data directory taken earlier in
    /// the run (a volume snapshot restored in place): same identity and incarnation, an older
    /// term, vote and log. The runtime does not detect this (docs/RAFT.md); the run shows
    /// what such a voter does, which is why the procedure for a restored disk is the one
    /// for a lost disk.
    public var rolledBackDisks = false

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

extension SimulationConfig {
    /// What a replay must set, beyond seed and cluster size, to rerun this configuration:
    /// environment assignments that `apply(environment:)` reads back.
    public var replayEnvironment: [String] {
        let base = SimulationConfig(seed: seed, nodes: nodes)
        var env: [String] = []
        if !mutations.isEmpty {
            env.append("SWITCHMAN_SIM_MUTATIONS=" + mutations.map { "\($0)" }.sorted().joined(separator: ","))
        }
        if chaosEveryMillis != base.chaosEveryMillis {
            env.append("SWITCHMAN_SIM_CHAOS_EVERY_MS=\(chaosEveryMillis.lowerBound)-\(chaosEveryMillis.upperBound)")
        }
        if maxMessageBytes != base.maxMessageBytes { env.append("SWITCHMAN_SIM_MAX_MESSAGE_BYTES=\(maxMessageBytes)") }
        if !auditSpeech { env.append("SWITCHMAN_SIM_AUDIT=0") }
        if driftingClocks { env.append("SWITCHMAN_SIM_DRIFT=1") }
        if fileEdits { env.append("SWITCHMAN_SIM_FILE_EDITS=1") }
        if membershipFromTheFile { env.append("SWITCHMAN_SIM_MEMBERSHIP_FROM_FILE=1") }
        if lostDisks { env.append("SWITCHMAN_SIM_LOST_DISKS=1") }
        if rejoinWithLostDisk { env.append("SWITCHMAN_SIM_REJOIN_WITH_LOST_DISK=1") }
        if idleStretches { env.append("SWITCHMAN_SIM_IDLE_STRETCHES=1") }
        if linkCuts { env.append("SWITCHMAN_SIM_LINK_CUTS=1") }
        if supervisedRestarts { env.append("SWITCHMAN_SIM_SUPERVISED_RESTARTS=1") }
        if rolledBackDisks { env.append("SWITCHMAN_SIM_ROLLED_BACK_DISKS=1") }
        if faults != .all { env.append("SWITCHMAN_SIM_FAULTS_OFF=" + faults.off.joined(separator: ",")) }
        return env
    }

    /// Applies the settings of `replayEnvironment`; returns a line for each value it could
    /// not read, so that a replay never silently runs some other configuration.
    public mutating func apply(environment env: [String: String]) -> [String] {
        var problems: [String] = []
        if let names = env["SWITCHMAN_SIM_MUTATIONS"], !names.isEmpty {
            for name in names.split(separator: ",") {
                if let m = TestingMutation.allCases.first(where: { "\($0)" == name }) {
                    mutations.insert(m)
                } else {
                    problems.append("SWITCHMAN_SIM_MUTATIONS: no mutation named \(name)")
                }
            }
        }
        if let range = env["SWITCHMAN_SIM_CHAOS_EVERY_MS"] {
            let parts = range.split(separator: "-").compactMap { UInt64($0) }
            if parts.count == 2, parts[0] <= parts[1] {
                chaosEveryMillis = parts[0]...parts[1]
            } else {
                problems.append("SWITCHMAN_SIM_CHAOS_EVERY_MS: expected LOW-HIGH, got \(range)")
            }
        }
        if let bytes = env["SWITCHMAN_SIM_MAX_MESSAGE_BYTES"] {
            if let b = Int(bytes), b > 0 { maxMessageBytes = b } else { problems.append("SWITCHMAN_SIM_MAX_MESSAGE_BYTES: \(bytes)") }
        }
        if let audit = env["SWITCHMAN_SIM_AUDIT"] {
            switch audit {
            case "0": auditSpeech = false
            case "1": auditSpeech = true
            default: problems.append("SWITCHMAN_SIM_AUDIT: expected 0 or 1, got \(audit)")
            }
        }
        if let drift = env["SWITCHMAN_SIM_DRIFT"] {
            switch drift {
            case "0": driftingClocks = false
            case "1": driftingClocks = true
            default: problems.append("SWITCHMAN_SIM_DRIFT: expected 0 or 1, got \(drift)")
            }
        }
        for (name, flag) in [("SWITCHMAN_SIM_FILE_EDITS", \SimulationConfig.fileEdits), ("SWITCHMAN_SIM_MEMBERSHIP_FROM_FILE", \.membershipFromTheFile),
            ("SWITCHMAN_SIM_LOST_DISKS", \.lostDisks), ("SWITCHMAN_SIM_REJOIN_WITH_LOST_DISK", \.rejoinWithLostDisk),
            ("SWITCHMAN_SIM_IDLE_STRETCHES", \.idleStretches), ("SWITCHMAN_SIM_LINK_CUTS", \.linkCuts),
            ("SWITCHMAN_SIM_SUPERVISED_RESTARTS", \.supervisedRestarts), ("SWITCHMAN_SIM_ROLLED_BACK_DISKS", \.rolledBackDisks),
        ] {
            guard let v = env[name] else { continue }
            switch v {
            case "0": self[keyPath: flag] = false
            case "1": self[keyPath: flag] = true
            default: problems.append("\(name): expected 0 or 1, got \(v)")
            }
        }
        if let off = env["SWITCHMAN_SIM_FAULTS_OFF"], !off.isEmpty {
            for name in off.split(separator: ",") {
                if !faults.turnOff(String(name)) { problems.append("SWITCHMAN_SIM_FAULTS_OFF: no fault named \(name)") }
            }
        }
        return problems
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
    public var powerCuts = 0
    /// Power cuts that struck a write recording a new term or vote.
    public var powerCutsOnVotes = 0
    public var slowDisks = 0
    /// Single writes that took longer than an election timeout.
    public var diskStalls = 0
    /// Durability acknowledgements that reached a core after a later write had finished.
    public var lateAcknowledgements = 0
    /// Messages whose promise the speech audit checked against durable state.
    public var promisesAudited = 0
    public var compactions = 0
    public var snapshotsInstalled = 0
    public var membershipChanges = 0
    public var leaderRemovals = 0
    public var transfers = 0
    public var writesAcked = 0
    /// Client writes a follower passed on to its leader (`forward`), not tracked to an ack.
    public var forwardedProposals = 0
    public var readsServed = 0
    public var readsFailed = 0
    public var fileEdits = 0
    public var lostDisks = 0
    public var idleStretches = 0
    public var linkCuts = 0
    public var rolledBackDisks = 0

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
        powerCuts += o.powerCuts
        powerCutsOnVotes += o.powerCutsOnVotes
        slowDisks += o.slowDisks
        diskStalls += o.diskStalls
        lateAcknowledgements += o.lateAcknowledgements
        promisesAudited += o.promisesAudited
        compactions += o.compactions
        snapshotsInstalled += o.snapshotsInstalled
        membershipChanges += o.membershipChanges
        leaderRemovals += o.leaderRemovals
        transfers += o.transfers
        writesAcked += o.writesAcked
        forwardedProposals += o.forwardedProposals
        readsServed += o.readsServed
        readsFailed += o.readsFailed
        fileEdits += o.fileEdits
        lostDisks += o.lostDisks
        idleStretches += o.idleStretches
        linkCuts += o.linkCuts
        rolledBackDisks += o.rolledBackDisks
    }

    public var description: String {
        "events=\(events) checks=\(invariantChecks) elections=\(elections) msgs=\(messagesSent) "
            + "dropped=\(messagesDropped) duplicated=\(messagesDuplicated) partitions=\(partitions) "
            + "asymmetric=\(asymmetricPartitions) crashes=\(crashes) lostWrites=\(lostUnpersistedWrites) "
            + "powerCuts=\(powerCuts) onVotes=\(powerCutsOnVotes) slowDisks=\(slowDisks) stalls=\(diskStalls) lateAcks=\(lateAcknowledgements) audited=\(promisesAudited) "
            + "compactions=\(compactions) snapshotsInstalled=\(snapshotsInstalled) "
            + "membershipChanges=\(membershipChanges) leaderRemovals=\(leaderRemovals) transfers=\(transfers) "
            + "writesAcked=\(writesAcked) forwarded=\(forwardedProposals) reads=\(readsServed) readsFailed=\(readsFailed) fileEdits=\(fileEdits) lostDisks=\(lostDisks) "
            + "idle=\(idleStretches) linkCuts=\(linkCuts) rolledBack=\(rolledBackDisks)"
    }
}

public struct SimulationFailure: Error, Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var nodes: Int
    public var atMillis: UInt64
    public var violation: String
    public var trace: [String]
    /// Settings beyond seed and size that the replay needs (`SimulationConfig.replayEnvironment`).
    public var replayEnvironment: [String] = []

    public var replayCommand: String {
        (["SWITCHMAN_SIM_SEED=\(seed)", "SWITCHMAN_SIM_NODES=\(nodes)"] + replayEnvironment).joined(separator: " ")
            + " swift test --filter SimulationTests/replay"
    }

    public var description: String {
        """
        Raft simulation invariant violated (seed \(seed), \(nodes) nodes, t=\(atMillis) ms): \(violation)
        replay: \(replayCommand)
        last events:
        \(trace.suffix(50).joined(separator: "\n"))
        """
    }
}
