import Logging
import Metrics
import NIOPosix
import Raft
import ServiceLifecycle

/// What `RaftNode` needs from a transport. `PeerTransport` is the real one.
public protocol RaftMessageTransport: Sendable {
    var inbound: AsyncStream<InboundMessage> { get }
    /// `onWritten`, when the message was enqueued: later, whether it was written whole.
    @discardableResult func send(to peer: UInt64, _ payload: [UInt8], onWritten: (@Sendable (Bool) -> Void)?) -> SendResult
    func setPeers(_ addresses: [UInt64: PeerAddress])
    /// Members whose removal is committed: a later incarnation of one is a new member.
    func membersRemoved(_ ids: Set<UInt64>)
}

extension PeerTransport: RaftMessageTransport {}

extension RaftMessageTransport {
    public func membersRemoved(_ ids: Set<UInt64>) {}

    @discardableResult func send(to peer: UInt64, _ payload: [UInt8]) -> SendResult { send(to: peer, payload, onWritten: nil) }
}

/// The application's replicated state machine. `RaftNode` calls it from its own actor, one
/// call at a time, in log order.
public protocol RaftStateMachine: AnyObject, Sendable {
    /// A committed entry (including the leader's empty no-ops and membership entries).
    func apply(_ entry: Entry)
    /// The state after the last applied entry, for log compaction.
    func snapshot() -> [UInt8]
    /// Replaces the state with a snapshot (on restart, or one sent by the leader).
    func restore(from snapshot: Snapshot) throws
}

public struct RaftNodeConfiguration: Sendable {
    public var id: NodeID
    /// The founding membership (identical on every founding member); empty for a node that
    /// joins an existing cluster.
    public var bootstrap: Membership
    /// Peer addresses by member id; membership changes add to it.
    public var peers: [NodeID: PeerAddress]
    public var tickInterval: Duration = .milliseconds(100)
    public var electionTicks = 10
    public var heartbeatTicks = 1
    /// Fraction by which two replicas' clocks may run at different rates (DESIGN.md rule 3).
    public var maxClockDrift = 0.05
    public var maxInflightMessages = 64
    public var maxMessageBytes = 1 << 20
    /// Proposals folded into one log append (and one fsync).
    public var maxProposalBatch = 4096
    /// Take a snapshot and compact the log after this many applied entries.
    public var snapshotEvery: UInt64 = 10_000
    /// Proposals and reads not answered within this many ticks fail with `.timeout`.
    public var requestTimeoutTicks = 50

    public init(id: NodeID, bootstrap: Membership, peers: [NodeID: PeerAddress]) {
        self.id = id
        self.bootstrap = bootstrap
        self.peers = peers
    }

    /// The shortest time any replica waits before it may vote for someone else.
    public var minElectionTimeout: Duration { tickInterval * electionTicks }
}

public enum RaftNodeError: Error, Sendable, Equatable, CustomStringConvertible {
    case rejected(ProposalRejection)
    /// The entry was replaced by another leader's entry: it was not committed.
    case dropped
    /// No answer in time; the proposal may still commit.
    case timeout
    case readFailed(ReadIndexFailure)
    case storageFailed(String)
    case stopped

    public var description: String {
        switch self {
        case .rejected(let r): return "proposal rejected: \(r)"
        case .dropped: return "the entry was overwritten by a new leader and did not commit"
        case .timeout: return "no answer in time (the outcome is unknown)"
        case .readFailed(let f): return "read failed: \(f)"
        case .storageFailed(let why): return "storage failed, node stopped: \(why)"
        case .stopped: return "the node is stopped"
        }
    }
}

public enum SubmitResult: Sendable, Hashable {
    /// This node led: the data committed at this position.
    case committed(LogPosition)
    /// Passed to this leader; it may or may not commit.
    case forwarded(to: NodeID)
}

public struct LogPosition: Sendable, Hashable {
    public var term: UInt64
    public var index: UInt64

    public init(term: UInt64, index: UInt64) {
        self.term = term
        self.index = index
    }
}

public struct RaftNodeStatus: Sendable {
    public var id: NodeID
    public var role: RaftRole
    public var term: UInt64
    public var leader: NodeID
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    public var lastIndex: UInt64
    public var snapshotIndex: UInt64
    public var membership: Membership
    public var matchIndexes: [NodeID: UInt64]
    /// Until when this leader holds its lease (monotonic clock); nil if it holds none.
    public var leaseExpiry: ContinuousClock.Instant?
    /// When a message from each peer last arrived here. A leader hears from every member; a
    /// follower mostly from its leader.
    public var lastContact: [NodeID: ContinuousClock.Instant] = [:]
    /// This node leads after a leadership transfer (a campaign whose voters ignored their
    /// leases), not after an election the old leader's lease had to run out for.
    public var electedByTransfer = false
}

public enum RaftNodeEvent: Sendable, Equatable {
    case roleChanged(role: RaftRole, term: UInt64, leader: NodeID)
    /// The leader's lease now runs until this instant (DESIGN.md rule 3).
    case leaseRenewed(until: ContinuousClock.Instant, term: UInt64)
    /// The lease ended early: this leader began a leadership transfer (it holds none again
    /// in this term).
    case leaseForfeited(term: UInt64)
    case membershipChanged(Membership)
}

/// The shell around `RaftCore`: feeds it ticks from a monotonic clock, messages from the
/// transport and requests from the application; carries out its effects in order — storage
/// writes are made durable before any message that depends on them is sent — and applies
/// committed entries to the state machine.
///
/// Storage writes run beside the loop, one batch at a time and in the order asked for: the
/// loop never waits for the disk, so a leader whose fsync stalls keeps sending heartbeats
/// (and counts its own log only once the write is durable).
public actor RaftNode: Service {
    public let configuration: RaftNodeConfiguration
    /// Role, leader and lease changes, for the application.
    public nonisolated let events: AsyncStream<RaftNodeEvent>

    private var core: RaftCore
    private let storage: any RaftStorage
    private let transport: any RaftMessageTransport
    private let stateMachine: any RaftStateMachine
    private var logger: Logger
    private let eventContinuation: AsyncStream<RaftNodeEvent>.Continuation

    private enum Input {
        case tick
        case message(InboundMessage)
        case propose([UInt8], CheckedContinuation<LogPosition, any Error>)
        case forward([UInt8], CheckedContinuation<NodeID, any Error>)
        case membership(MembershipChange, PeerAddress?, CheckedContinuation<LogPosition, any Error>)
        case read(CheckedContinuation<UInt64, any Error>)
        case transfer(NodeID, CheckedContinuation<Void, any Error>)
        case snapshotWritten(NodeID, Bool)
        case written(WriteMark, Duration)
        case writeFailed(String)
        case shutdown
    }

    private var pendingInputs: [Input] = []
    /// Writes asked for and not yet handed to the disk; the one on the disk now.
    private var writeQueue: [PersistRequest] = []
    private var writeInFlight: Task<Void, Never>?
    private var lastWriteAsked: UInt64 = 0
    private var lastWriteDurable: UInt64 = 0
    /// Messages that promise durable state, each waiting for the write it depends on.
    private var held: [(after: UInt64, message: Message)] = []
    /// When a message from each peer last arrived: operators ask "is it reachable?".
    private var lastHeard: [NodeID: ContinuousClock.Instant] = [:]
    private var wakeup: CheckedContinuation<Void, Never>?
    private var proposalWaiters: [UInt64: (term: UInt64, tick: UInt64, cont: CheckedContinuation<LogPosition, any Error>)] = [:]
    private var readWaiters: [UInt64: (tick: UInt64, cont: CheckedContinuation<UInt64, any Error>)] = [:]
    private var readsAwaitingApply: [(index: UInt64, cont: CheckedContinuation<UInt64, any Error>)] = []
    private var transferWaiters: [(target: NodeID, tick: UInt64, cont: CheckedContinuation<Void, any Error>)] = []
    private var nextReadID: UInt64 = 1
    private var appliedIndex: UInt64
    private var addresses: [NodeID: PeerAddress]
    private var lastMembership: Membership
    private var tickInstants: [UInt64: ContinuousClock.Instant] = [:]
    private var leaseExpiry: ContinuousClock.Instant?
    private var stopping = false
    private var stopDeadlineTick: UInt64?
    private var failure: RaftNodeError?

    private let fsyncTimer: Timer
    private let batchRecorder: Recorder
    private let appliedCounter: Counter
    private let leaderChanges: Counter
    private let snapshotsSent: Counter
    private let termGauge: Gauge
    private let commitGauge: Gauge

    /// Restores the node from `storage` (and the state machine from its snapshot).
    public init(
        configuration: RaftNodeConfiguration, storage: any RaftStorage, transport: any RaftMessageTransport,
        stateMachine: any RaftStateMachine, logger: Logger
    ) throws {
        self.configuration = configuration
        self.storage = storage
        self.transport = transport
        self.stateMachine = stateMachine
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.id)"
        self.logger = logger
        let restored = try storage.load()
        if let s = restored.snapshot { try stateMachine.restore(from: s) }
        var seed = SystemRandomNumberGenerator()
        let restoredCore = try RaftCore(
            config: RaftConfig(
                id: configuration.id, electionTicks: configuration.electionTicks,
                heartbeatTicks: configuration.heartbeatTicks, maxInflightMessages: configuration.maxInflightMessages,
                maxMessageBytes: configuration.maxMessageBytes, randomSeed: seed.next()),
            bootstrap: configuration.bootstrap, restoring: restored,
            applied: restored.snapshot?.metadata.index ?? 0)
        core = restoredCore
        appliedIndex = restored.snapshot?.metadata.index ?? 0
        addresses = configuration.peers
        lastMembership = restoredCore.membership
        (events, eventContinuation) = AsyncStream.makeStream(of: RaftNodeEvent.self, bufferingPolicy: .bufferingNewest(1024))
        let dims = [("node", "\(configuration.id)")]
        fsyncTimer = Timer(label: "switchman_raft_fsync_seconds", dimensions: dims)
        batchRecorder = Recorder(label: "switchman_raft_proposal_batch_size", dimensions: dims)
        appliedCounter = Counter(label: "switchman_raft_applied_entries_total", dimensions: dims)
        leaderChanges = Counter(label: "switchman_raft_leader_changes_total", dimensions: dims)
        snapshotsSent = Counter(label: "switchman_raft_snapshots_sent_total", dimensions: dims)
        termGauge = Gauge(label: "switchman_raft_term", dimensions: dims)
        commitGauge = Gauge(label: "switchman_raft_commit_index", dimensions: dims)
        transport.setPeers(configuration.peers.filter { $0.key != configuration.id })
        logger.info(
            "raft node restored",
            metadata: [
                "term": "\(restoredCore.term)", "lastIndex": "\(restoredCore.lastIndex)",
                "commit": "\(restoredCore.commitIndex)", "snapshot": "\(restoredCore.snapshotIndex)",
            ])
    }

    // MARK: - Public API

    /// Appends `data` to the replicated log; returns once it is committed and applied here.
    public func propose(_ data: [UInt8]) async throws -> LogPosition {
        try checkRunning()
        return try await withCheckedThrowingContinuation { cont in enqueue(.propose(data, cont)) }
    }

    /// Hands `data` to whoever leads: on the leader it is proposed and waited for like
    /// `propose`; a follower passes it to its leader and returns at once, without learning
    /// whether it will commit. The caller recognises its data when applied (it carries its
    /// own request id) and retries otherwise, so such data must be safe to apply twice.
    public func submit(_ data: [UInt8]) async throws -> SubmitResult {
        try checkRunning()
        if core.role == .leader { return .committed(try await propose(data)) }
        let to: NodeID = try await withCheckedThrowingContinuation { cont in enqueue(.forward(data, cont)) }
        return .forwarded(to: to)
    }

    /// A linearizable read point: once this returns, the state machine reflects every write
    /// committed before the call.
    public func readIndex() async throws -> UInt64 {
        try checkRunning()
        return try await withCheckedThrowingContinuation { cont in enqueue(.read(cont)) }
    }

    public func transferLeadership(to target: NodeID) async throws {
        try checkRunning()
        try await withCheckedThrowingContinuation { cont in enqueue(.transfer(target, cont)) }
    }

    /// Adds `id` as a voter (or promotes the learner `id`); returns once the change committed.
    @discardableResult
    public func addVoter(_ id: NodeID, address: PeerAddress?) async throws -> LogPosition {
        if let address { addresses[id] = address }
        return try await changeMembership(.addVoter(id), address: address)
    }

    @discardableResult
    public func addLearner(_ id: NodeID, address: PeerAddress?) async throws -> LogPosition {
        if let address { addresses[id] = address }
        return try await changeMembership(.addLearner(id), address: address)
    }

    @discardableResult
    public func removeMember(_ id: NodeID) async throws -> LogPosition {
        try await changeMembership(.remove(id), address: nil)
    }

    private func changeMembership(_ change: MembershipChange, address: PeerAddress?) async throws -> LogPosition {
        try checkRunning()
        return try await withCheckedThrowingContinuation { cont in enqueue(.membership(change, address, cont)) }
    }

    public var status: RaftNodeStatus {
        RaftNodeStatus(
            id: configuration.id, role: core.role, term: core.term, leader: core.leader,
            commitIndex: core.commitIndex, appliedIndex: appliedIndex, lastIndex: core.lastIndex,
            snapshotIndex: core.snapshotIndex, membership: core.membership, matchIndexes: core.matchIndexes,
            leaseExpiry: currentLease(), lastContact: lastHeard, electedByTransfer: core.role == .leader && core.electedByTransfer)
    }

    /// Whether this node is the leader and holds a lease right now.
    public var leaseValidUntil: ContinuousClock.Instant? { currentLease() }

    private func currentLease() -> ContinuousClock.Instant? {
        guard core.role == .leader, let until = leaseExpiry, ContinuousClock.now < until else { return nil }
        return until
    }

    private func checkRunning() throws {
        if let failure { throw failure }
        if stopping { throw RaftNodeError.stopped }
    }

    // MARK: - Service

    public func run() async throws {
        let interval = configuration.tickInterval
        let inbound = transport.inbound
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { [weak self] in
                    // One tick per interval, never faster: the lease and every follower's
                    // stickiness assume a tick is at least `tickInterval` long.
                    while !Task.isCancelled {
                        try await Task.sleep(for: interval)
                        guard let self else { return }
                        await self.enqueue(.tick)
                    }
                }
                group.addTask { [weak self] in
                    for await message in inbound {
                        guard let self else { return }
                        await self.enqueue(.message(message))
                    }
                }
                defer { group.cancelAll() }
                try await self.loop()
            }
        } onGracefulShutdown: {
            Task { await self.enqueue(.shutdown) }
        }
    }

    private func wake() {
        if let w = wakeup {
            wakeup = nil
            w.resume()
        }
    }

    private func enqueue(_ input: Input) {
        if let failure {
            fail(input, with: failure)
            return
        }
        pendingInputs.append(input)
        if let w = wakeup {
            wakeup = nil
            w.resume()
        }
    }

    private func loop() async throws {
        do {
            try await steps()
        } catch {
            await writeInFlight?.value
            throw error
        }
        // The store may be closed as soon as `run` returns.
        await writeInFlight?.value
    }

    private func steps() async throws {
        defer { finishAll(with: failure ?? .stopped) }
        while true {
            if pendingInputs.isEmpty {
                // Cancellation is a hard stop (no hand-over); graceful shutdown is `.shutdown`.
                await withTaskCancellationHandler {
                    await withCheckedContinuation { wakeup = $0 }
                } onCancel: {
                    Task { await self.wake() }
                }
            }
            if Task.isCancelled { return }
            let batch = pendingInputs
            pendingInputs = []
            var effects: [RaftEffect] = []
            var proposals: [([UInt8], CheckedContinuation<LogPosition, any Error>)] = []
            for input in batch {
                if let failure {
                    fail(input, with: failure)
                    continue
                }
                switch input {
                case .tick:
                    tickInstants[core.ticks + 1] = ContinuousClock.now
                    effects += core.step(.tick).effects
                    expireRequests()
                case .message(let inbound):
                    guard let m = decode(inbound) else { continue }
                    lastHeard[m.from] = ContinuousClock.now
                    effects += core.step(.receive(m)).effects
                case .propose(let data, let cont):
                    if stopping {
                        cont.resume(throwing: RaftNodeError.stopped)
                    } else {
                        proposals.append((data, cont))
                    }
                case .forward(let data, let cont):
                    let r = core.step(.forward([data]))
                    effects += r.effects
                    switch r.outcome {
                    case .rejected(let why): cont.resume(throwing: RaftNodeError.rejected(why))
                    case .forwarded(let to): cont.resume(returning: to)
                    // Became leader since `submit` looked: proposed here, commit not awaited.
                    case .accepted, .none: cont.resume(returning: configuration.id)
                    }
                case .membership(let change, let address, let cont):
                    let context = address.map { Array($0.description.utf8) } ?? []
                    let r = core.step(.proposeMembership(change, context: context))
                    effects += r.effects
                    register(r.outcome, [cont])
                case .read(let cont):
                    let id = nextReadID
                    nextReadID += 1
                    readWaiters[id] = (core.ticks, cont)
                    effects += core.step(.readIndex(requestID: id)).effects
                case .transfer(let target, let cont):
                    let r = core.step(.transferLeadership(to: target))
                    effects += r.effects
                    if case .rejected(let why) = r.outcome {
                        cont.resume(throwing: RaftNodeError.rejected(why))
                    } else {
                        transferWaiters.append((target, core.ticks, cont))
                    }
                case .snapshotWritten(let node, let written):
                    effects += core.step(.snapshotReported(node: node, success: written)).effects
                case .written(let mark, let took):
                    writeInFlight = nil
                    fsyncTimer.record(duration: took)
                    lastWriteDurable = mark.sequence
                    var still: [(after: UInt64, message: Message)] = []
                    for h in held {
                        if h.after <= lastWriteDurable { effects += send(h.message) } else { still.append(h) }
                    }
                    held = still
                    effects += core.step(.persisted(mark)).effects
                case .writeFailed(let why):
                    // Fail-stop (DESIGN.md rule 1): after a failed write the state on disk is
                    // unknown to us, so we neither retry it nor speak again.
                    writeInFlight = nil
                    failure = .storageFailed(why)
                    logger.critical("storage write failed; stopping this node", metadata: ["error": "\(why)"])
                case .shutdown:
                    effects += beginShutdown()
                }
            }
            if let failure {
                for (_, cont) in proposals { cont.resume(throwing: failure) }
                throw failure
            }
            var start = 0
            while start < proposals.count {
                let chunk = proposals[start..<min(start + configuration.maxProposalBatch, proposals.count)]
                start += chunk.count
                batchRecorder.record(chunk.count)
                let r = core.step(.propose(chunk.map(\.0)))
                effects += r.effects
                register(r.outcome, chunk.map(\.1))
            }
            execute(effects)
            startWrite()
            if let failure { throw failure }
            if stopping && (core.role != .leader || (stopDeadlineTick.map { core.ticks >= $0 } ?? true)) {
                logger.info("raft node stopped", metadata: ["term": "\(core.term)", "role": "\(core.role)"])
                return
            }
        }
    }

    private func decode(_ inbound: InboundMessage) -> Message? {
        do {
            let m = try RaftCodec.decodeMessage(inbound.payload)
            // The transport authenticated the sender; a message claiming another sender is refused.
            guard m.from == inbound.from, m.to == configuration.id else {
                logger.warning("dropping a message whose sender or recipient does not match its connection", metadata: ["peer": "\(inbound.from)"])
                return nil
            }
            return m
        } catch {
            logger.warning("dropping an undecodable message", metadata: ["peer": "\(inbound.from)", "error": "\(error)"])
            return nil
        }
    }

    private func register(_ outcome: StepOutcome, _ conts: [CheckedContinuation<LogPosition, any Error>]) {
        switch outcome {
        case .accepted(let term, let first, _):
            for (k, cont) in conts.enumerated() {
                proposalWaiters[first + UInt64(k)] = (term, core.ticks, cont)
            }
        case .rejected(let why):
            for cont in conts { cont.resume(throwing: RaftNodeError.rejected(why)) }
        case .none, .forwarded:
            for cont in conts { cont.resume(throwing: RaftNodeError.rejected(.notLeader(leader: core.leader))) }
        }
    }

    // MARK: - Effects

    /// Carries out effects in order. Storage writes join the write queue; a message marked
    /// `afterPersist` waits for the last write asked for before it, others go at once.
    private func execute(_ initial: [RaftEffect]) {
        var queue = initial
        while !queue.isEmpty {
            var next: [RaftEffect] = []
            for effect in queue {
                switch effect {
                case .persist(let req):
                    writeQueue.append(req)
                    lastWriteAsked = req.mark.sequence
                case .send(let m, let afterPersist):
                    if afterPersist && lastWriteAsked > lastWriteDurable {
                        held.append((lastWriteAsked, m))
                    } else {
                        next += send(m)
                    }
                case .apply(let entries):
                    next += apply(entries)
                case .installSnapshot(let s):
                    installSnapshot(s)
                case .readReady(let rs):
                    if let w = readWaiters.removeValue(forKey: rs.requestID) {
                        if appliedIndex >= rs.index {
                            w.cont.resume(returning: rs.index)
                        } else {
                            readsAwaitingApply.append((rs.index, w.cont))
                        }
                    }
                case .readFailed(let id, let why):
                    readWaiters.removeValue(forKey: id)?.cont.resume(throwing: RaftNodeError.readFailed(why))
                case .roleChanged(let role, let term, let leader):
                    roleChanged(role: role, term: term, leader: leader)
                case .quorumAcknowledged(let tick, let term):
                    renewLease(sentAtTick: tick, term: term)
                case .leaseForfeited(let term):
                    forfeitLease(term: term)
                case .membershipChanged(let m):
                    membershipChanged(m)
                }
            }
            queue = next
        }
        termGauge.record(core.term)
        commitGauge.record(core.commitIndex)
    }

    /// Hands everything queued to the disk as one batch (group commit), unless a batch is
    /// already on it: batches stay in order, and what queues meanwhile goes in the next one.
    private func startWrite() {
        guard writeInFlight == nil, failure == nil, !writeQueue.isEmpty else { return }
        let batch = writeQueue
        writeQueue = []
        let storage = self.storage
        writeInFlight = Task { [weak self] in
            let started = ContinuousClock.now
            let outcome: Input
            do {
                try await NIOThreadPool.singleton.runIfActive { try storage.persist(batch: batch) }
                outcome = .written(batch[batch.count - 1].mark, ContinuousClock.now - started)
            } catch {
                outcome = .writeFailed("\(error)")
            }
            await self?.enqueue(outcome)
        }
    }

    private func send(_ m: Message) -> [RaftEffect] {
        guard m.type == .snapshot else {
            transport.send(to: m.to, RaftCodec.encode(m))
            return []
        }
        // Reported when the transport has written the whole snapshot, not when it is queued:
        // reported at once, the leader probed on the next heartbeat, the follower (still
        // receiving) refused the append, and the snapshot went out again, every heartbeat of
        // a long transfer. Until the report the follower's progress stays paused.
        let to = m.to
        let result = transport.send(to: to, RaftCodec.encode(m)) { [weak self] written in
            Task { await self?.enqueue(.snapshotWritten(to, written)) }
        }
        guard result == .enqueued else { return core.step(.snapshotReported(node: to, success: false)).effects }
        snapshotsSent.increment()
        return []
    }

    private func apply(_ entries: [Entry]) -> [RaftEffect] {
        for e in entries {
            stateMachine.apply(e)
            if e.kind == .membership { membershipCommitted(e) }
            appliedIndex = e.index
            appliedCounter.increment()
            if let w = proposalWaiters.removeValue(forKey: e.index) {
                if w.term == e.term {
                    w.cont.resume(returning: LogPosition(term: e.term, index: e.index))
                } else {
                    w.cont.resume(throwing: RaftNodeError.dropped)
                }
            }
        }
        _ = core.step(.applied(appliedIndex))
        releaseReads()
        guard appliedIndex >= core.snapshotIndex + configuration.snapshotEvery else { return [] }
        let data = stateMachine.snapshot()
        logger.debug("compacting the log", metadata: ["index": "\(appliedIndex)"])
        return core.step(.compact(index: appliedIndex, data: data)).effects
    }

    private func installSnapshot(_ s: Snapshot) {
        do {
            try stateMachine.restore(from: s)
        } catch {
            // The leader sent a snapshot our state machine cannot read: stop rather than
            // continue with a state that does not match the log.
            failure = .storageFailed("cannot restore snapshot at \(s.metadata.index): \(error)")
            logger.critical("cannot restore a snapshot from the leader", metadata: ["error": "\(error)"])
            return
        }
        appliedIndex = s.metadata.index
        for (index, w) in proposalWaiters where index <= s.metadata.index {
            w.cont.resume(throwing: RaftNodeError.timeout)
            proposalWaiters[index] = nil
        }
        releaseReads()
    }

    private func releaseReads() {
        guard !readsAwaitingApply.isEmpty else { return }
        var still: [(index: UInt64, cont: CheckedContinuation<UInt64, any Error>)] = []
        for r in readsAwaitingApply {
            if appliedIndex >= r.index { r.cont.resume(returning: r.index) } else { still.append(r) }
        }
        readsAwaitingApply = still
    }

    private func roleChanged(role: RaftRole, term: UInt64, leader: NodeID) {
        if role != .leader { leaseExpiry = nil }
        if role == .leader { leaderChanges.increment() }
        logger.info("role changed", metadata: ["role": "\(role)", "term": "\(term)", "leader": "\(leader)"])
        eventContinuation.yield(.roleChanged(role: role, term: term, leader: leader))
        var remaining: [(target: NodeID, tick: UInt64, cont: CheckedContinuation<Void, any Error>)] = []
        for w in transferWaiters {
            if role != .leader || leader == w.target { w.cont.resume() } else { remaining.append(w) }
        }
        transferWaiters = remaining
    }

    /// Lease rule (DESIGN.md rule 3): valid until the send time of the quorum-acknowledged
    /// heartbeat round plus the minimum election timeout shrunk by the clock drift bound.
    private func renewLease(sentAtTick tick: UInt64, term: UInt64) {
        guard let sentAt = tickInstants[tick], term == core.term, core.role == .leader else { return }
        let length = configuration.minElectionTimeout * (1 - configuration.maxClockDrift)
        let until = sentAt + length
        if leaseExpiry.map({ until > $0 }) ?? true {
            leaseExpiry = until
            eventContinuation.yield(.leaseRenewed(until: until, term: term))
        }
        tickInstants = tickInstants.filter { $0.key >= tick }
    }

    /// A leadership transfer began: the lease ends now, not when it would have run out.
    private func forfeitLease(term: UInt64) {
        guard leaseExpiry != nil else { return }
        leaseExpiry = nil
        logger.notice("lease dropped: leadership transfer started", metadata: ["term": "\(term)"])
        eventContinuation.yield(.leaseForfeited(term: term))
    }

    private func expireRequests() {
        let now = core.ticks
        let limit = UInt64(configuration.requestTimeoutTicks)
        for (index, w) in proposalWaiters where now - w.tick > limit {
            proposalWaiters[index] = nil
            w.cont.resume(throwing: RaftNodeError.timeout)
        }
        for (id, w) in readWaiters where now - w.tick > limit {
            readWaiters[id] = nil
            w.cont.resume(throwing: RaftNodeError.timeout)
        }
        var remaining: [(target: NodeID, tick: UInt64, cont: CheckedContinuation<Void, any Error>)] = []
        for w in transferWaiters {
            if now - w.tick > UInt64(2 * configuration.electionTicks) {
                w.cont.resume(throwing: RaftNodeError.timeout)
            } else {
                remaining.append(w)
            }
        }
        transferWaiters = remaining
        if tickInstants.count > 4 * configuration.electionTicks + 16 {
            let keepFrom = now - UInt64(2 * configuration.electionTicks)
            tickInstants = tickInstants.filter { $0.key >= keepFrom }
        }
    }

    /// On SIGTERM a leader hands leadership to the most caught-up voter before it exits.
    private func beginShutdown() -> [RaftEffect] {
        guard !stopping else { return [] }
        stopping = true
        stopDeadlineTick = core.ticks + UInt64(configuration.electionTicks)
        guard core.role == .leader else { return [] }
        let matches = core.matchIndexes
        let target = core.membership.voters.filter { $0 != configuration.id }
            .max { (matches[$0] ?? 0, $0) < (matches[$1] ?? 0, $1) }
        guard let target else { return [] }
        logger.info("shutting down: handing leadership over", metadata: ["to": "\(target)"])
        return core.step(.transferLeadership(to: target)).effects
    }

    /// The transport talks to every address we know, not only to members: a node that is
    /// joining must answer the leader before it learns that it is a member, and a leader
    /// that removes itself must hear acknowledgements until the removal commits.
    private func membershipChanged(_ m: Membership) {
        transport.setPeers(addresses.filter { $0.key != configuration.id })
        eventContinuation.yield(.membershipChanged(m))
    }

    /// Every replica learns a new member's address from the committed entry that added it
    /// (the address rides in the entry's context); once a removal is committed nobody needs
    /// to talk to the removed member any more.
    private func membershipCommitted(_ entry: Entry) {
        guard let (m, context) = try? RaftCodec.decodeMembershipEntry(entry.data) else { return }
        let added = m.allMembers.subtracting(lastMembership.allMembers)
        let removed = lastMembership.allMembers.subtracting(m.allMembers)
        lastMembership = m
        if added.count == 1, let id = added.first, let text = String(validating: context, as: UTF8.self),
            let address = PeerAddress(text)
        {
            addresses[id] = address
        }
        for id in removed where id != configuration.id { addresses[id] = nil }
        transport.setPeers(addresses.filter { $0.key != configuration.id })
        if !removed.isEmpty { transport.membersRemoved(removed) }
    }

    private func fail(_ input: Input, with error: RaftNodeError) {
        switch input {
        case .propose(_, let c), .membership(_, _, let c): c.resume(throwing: error)
        case .read(let c): c.resume(throwing: error)
        case .forward(_, let c): c.resume(throwing: error)
        case .transfer(_, let c): c.resume(throwing: error)
        case .tick, .message, .snapshotWritten, .written, .writeFailed, .shutdown: break
        }
    }

    private func finishAll(with error: RaftNodeError) {
        stopping = true
        for input in pendingInputs { fail(input, with: error) }
        pendingInputs = []
        for (_, w) in proposalWaiters { w.cont.resume(throwing: error) }
        proposalWaiters = [:]
        for (_, w) in readWaiters { w.cont.resume(throwing: error) }
        readWaiters = [:]
        for r in readsAwaitingApply { r.cont.resume(throwing: error) }
        readsAwaitingApply = []
        for w in transferWaiters { w.cont.resume(throwing: error) }
        transferWaiters = []
        eventContinuation.finish()
    }
}
