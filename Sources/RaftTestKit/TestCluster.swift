import Raft

/// A hand-driven cluster for unit tests: storage is synchronous, messages wait in `inbox`
/// until delivered, and a test decides what gets through (etcd's `network` in spirit).
public final class TestCluster {
    public private(set) var cores: [NodeID: RaftCore] = [:]
    public private(set) var durable: [NodeID: PersistentState] = [:]
    public var inbox: [Message] = []
    /// Applied entries per node, in order.
    public private(set) var applied: [NodeID: [Entry]] = [:]
    public private(set) var installedSnapshots: [NodeID: [Snapshot]] = [:]
    public private(set) var reads: [NodeID: [ReadState]] = [:]
    public private(set) var failedReads: [NodeID: [UInt64]] = [:]
    public private(set) var leases: [NodeID: [UInt64]] = [:]
    /// `leaseForfeited` effects per node.
    public private(set) var forfeited: [NodeID: Int] = [:]
    /// Every effect each node produced, in order (for durability-ordering tests).
    public private(set) var effectLog: [NodeID: [RaftEffect]] = [:]
    /// Links that drop everything (from, to).
    public var cut: Set<[NodeID]> = []
    /// Messages for which this returns false are dropped on delivery.
    public var filter: (Message) -> Bool = { _ in true }
    /// Rewrites messages on delivery (after `filter`).
    public var rewrite: (Message) -> Message = { $0 }
    public let electionTicks: Int
    private let mutations: Set<TestingMutation>
    private var bootstraps: [NodeID: Membership] = [:]
    private var seedCounter: UInt64

    public init(
        voters: [NodeID], learners: [NodeID] = [], electionTicks: Int = 10, seed: UInt64 = 1,
        maxMessageBytes: Int = 1 << 20, maxInflight: Int = 64, mutations: Set<TestingMutation> = []
    ) {
        self.electionTicks = electionTicks
        self.mutations = mutations
        self.seedCounter = seed
        self.maxMessageBytes = maxMessageBytes
        self.maxInflight = maxInflight
        let m = Membership(voters: Set(voters), learners: Set(learners))
        for id in voters + learners {
            add(id, bootstrap: m)
        }
    }

    public let maxMessageBytes: Int
    public let maxInflight: Int

    public func config(_ id: NodeID, quietAfterRestart: Bool = true) -> RaftConfig {
        seedCounter &+= 0x9E37_79B9
        return RaftConfig(
            id: id, electionTicks: electionTicks, heartbeatTicks: 1, maxInflightMessages: maxInflight,
            maxMessageBytes: maxMessageBytes, randomSeed: seedCounter, testingMutations: mutations,
            quietAfterRestart: quietAfterRestart)
    }

    /// Adds a node; `state` lets a test start it from a prepared log.
    public func add(_ id: NodeID, bootstrap: Membership, state: PersistentState = PersistentState()) {
        bootstraps[id] = bootstrap
        durable[id] = state
        // A prepared log stands for a node that has been running all along, not one that just
        // restarted (`restart` is that).
        cores[id] = try? RaftCore(config: config(id, quietAfterRestart: false), bootstrap: bootstrap, restoring: state)
        applied[id] = []
    }

    public func core(_ id: NodeID) -> RaftCore {
        guard let c = cores[id] else { preconditionFailure("no node \(id) in the test cluster") }
        return c
    }

    /// Drops the node's memory (unpersisted state is lost; storage here is synchronous).
    public func crash(_ id: NodeID) {
        cores[id] = nil
        inbox.removeAll { $0.to == id || $0.from == id }
    }

    /// Crashes the node and empties its disk (a lost volume): a restart then starts from
    /// term 0, no vote and an empty log, as the old shell let it.
    public func loseDisk(_ id: NodeID) {
        crash(id)
        durable[id] = PersistentState()
    }

    /// Restarts from the node's disk; `bootstrap` replaces the membership it was founded with
    /// (what a shell that read the voters from a config file would pass).
    public func restart(_ id: NodeID, bootstrap: Membership? = nil) {
        let state = durable[id] ?? PersistentState()
        if let bootstrap { bootstraps[id] = bootstrap }
        cores[id] = try? RaftCore(
            config: config(id), bootstrap: bootstraps[id] ?? Membership(), restoring: state,
            applied: state.snapshot?.metadata.index ?? 0)
        applied[id] = []
    }

    @discardableResult
    public func step(_ id: NodeID, _ input: RaftInput) -> StepResult {
        guard var core = cores[id] else { return StepResult(effects: [], outcome: .none) }
        let r = core.step(input)
        cores[id] = core
        carryOut(id, r.effects)
        return r
    }

    public func tick(_ id: NodeID, times: Int = 1) {
        for _ in 0..<times { step(id, .tick) }
    }

    public func tickAll(times: Int = 1) {
        for _ in 0..<times {
            for id in cores.keys.sorted() { step(id, .tick) }
        }
    }

    /// Ticks `id` until it starts an election (pre-vote included), then delivers everything.
    public func elect(_ id: NodeID) {
        tick(id, times: 2 * electionTicks)
        stabilize()
    }

    public func isCut(_ m: Message) -> Bool { cut.contains([m.from, m.to]) }

    public func isolate(_ id: NodeID) {
        for other in cores.keys where other != id {
            cut.insert([id, other])
            cut.insert([other, id])
        }
    }

    public func heal() { cut = [] }

    /// Ticks every node and delivers everything, `rounds` times.
    public func settle(rounds: Int = 5) {
        for _ in 0..<rounds {
            tickAll()
            stabilize()
        }
    }

    /// Delivers queued messages (and whatever they cause) until nothing is left.
    public func stabilize(maxRounds: Int = 10_000) {
        var rounds = 0
        while !inbox.isEmpty && rounds < maxRounds {
            rounds += 1
            let m = inbox.removeFirst()
            if isCut(m) || !filter(m) { continue }
            step(m.to, .receive(rewrite(m)))
        }
    }

    public func compact(_ id: NodeID, data: [UInt8] = [1, 2, 3]) {
        let index = applied[id]?.last?.index ?? 0
        step(id, .compact(index: index, data: data))
    }

    public var leader: NodeID? {
        cores.values.filter { $0.role == .leader }.max { $0.term < $1.term }?.id
    }

    private func carryOut(_ id: NodeID, _ effects: [RaftEffect]) {
        effectLog[id, default: []].append(contentsOf: effects)
        var persistedUpTo: WriteMark? = nil
        for e in effects {
            switch e {
            case .persist(let req):
                var d = durable[id] ?? PersistentState()
                if let s = req.snapshot { d.snapshot = s }
                if let c = req.compactThrough { d.entries.removeAll { $0.index <= c } }
                if let t = req.truncateFrom { d.entries.removeAll { $0.index >= t } }
                d.entries.append(contentsOf: req.entries)
                if let hs = req.hardState { d.hardState = hs }
                durable[id] = d
                persistedUpTo = req.mark
            case .send(let m, _):
                inbox.append(m)
            case .apply(let entries):
                applied[id, default: []].append(contentsOf: entries)
            case .installSnapshot(let s):
                installedSnapshots[id, default: []].append(s)
                applied[id] = []
            case .readReady(let rs):
                reads[id, default: []].append(rs)
            case .readFailed(let rid, _):
                failedReads[id, default: []].append(rid)
            case .quorumAcknowledged(let tick, _):
                leases[id, default: []].append(tick)
            case .leaseForfeited:
                forfeited[id, default: 0] += 1
            case .roleChanged, .membershipChanged:
                break
            }
        }
        if let mark = persistedUpTo { step(id, .persisted(mark)) }
    }
}
