import Raft

/// A deterministic multi-node Raft simulation: virtual time, a seeded network that loses,
/// duplicates, delays and reorders messages, partitions, crashes that lose unpersisted
/// writes, slow disks, power cuts in the middle of a chosen write, membership changes,
/// leadership transfers, snapshots, client writes and linearizable reads. Everything random
/// comes from one seed, so a failing run replays exactly. The safety checkers run after
/// every event; the speech audit runs as each message leaves.
public final class Simulator {
    public let config: SimulationConfig
    public private(set) var stats = SimulationStats()
    /// The latest lease end (real time) any leader held per term, kept when that leader
    /// crashes or steps down: a write it sent before then may still be in flight. A term
    /// whose leader forfeited its lease (TimeoutNow) is removed.
    private var leaseEnds: [UInt64: (node: UInt64, until: Double)] = [:]
    /// Where a lease would have ended had its leader not forfeited it for a transfer.
    private var forfeitedLeaseEnds: [UInt64: (node: UInt64, until: Double)] = [:]

    private var rng: SplitMix64
    private var now: UInt64 = 0
    private var queue = EventQueue()
    private var nodes: [NodeID: SimNode] = [:]
    private var bootstrap: Membership
    private var nextFreshID: NodeID
    private var trace: [String] = []

    // Network faults.
    private var blocked: Set<Link> = []
    private var clientsIdleUntil: UInt64 = 0
    /// Links cut by `cutLink`, each until its time: they outlive the partitions drawn meanwhile.
    private var cutLinks: [Link: UInt64] = [:]
    private var lossPercent: UInt64 = 0
    private var dupPercent: UInt64 = 0
    private var maxDelay: UInt64 = 15
    private var healing = false

    // What the checkers know.
    private var leaderOfTerm: [UInt64: NodeID] = [:]
    private var committedTerm: [UInt64: UInt64] = [:]
    private var maxCommitted: UInt64 = 0
    private var entryIdentity: [IndexTerm: EntryIdentity] = [:]
    private var appliedHash: [UInt64: UInt64] = [:]
    private var writes: [UInt64: Write] = [:]
    private var nextWriteID: UInt64 = 1
    private var acks: [(time: UInt64, maxIndex: UInt64)] = []
    private var readsDone: [(time: UInt64, maxIndex: UInt64)] = []
    private var nextReadID: UInt64 = 1
    private var compactEvery: UInt64
    private var fileEdited = false
    private var membershipProposals: [UInt64: (term: UInt64, proposer: NodeID, change: MembershipChange)] = [:]

    public init(config: SimulationConfig) {
        self.config = config
        self.rng = SplitMix64(seed: config.seed)
        let ids = (1...UInt64(config.nodes)).map { NodeID($0) }
        self.bootstrap = Membership(voters: Set(ids))
        self.nextFreshID = NodeID(config.nodes + 1)
        self.compactEvery = 0
        self.compactEvery = 8 + rand(40)
        for id in ids { startNode(id, bootstrap: bootstrap, fresh: true) }
    }

    // MARK: - Running

    /// Runs the whole scenario; throws the first invariant violation.
    public func run() throws(SimulationFailure) -> SimulationStats {
        schedule(at: 1, .chaos)
        schedule(at: 1, .client)
        let end = config.chaosMillis + config.healMillis
        while let ev = queue.pop() {
            if ev.time > end { break }
            now = ev.time
            if !healing && now >= config.chaosMillis { heal() }
            stats.events += 1
            try handle(ev.kind)
            try checkInvariants()
        }
        now = end
        try checkConvergence()
        return stats
    }

    private func handle(_ kind: EventKind) throws(SimulationFailure) {
        switch kind {
        case .tick(let id, let inc):
            guard let n = nodes[id], n.incarnation == inc, let core = n.core else { return }
            n.tickTimes[core.ticks + 1] = now
            n.tickTimes[core.ticks &- UInt64(4 * config.electionTicks)] = nil
            try step(n, .tick)
            scheduleNextTick(n)
        case .deliver(let bytes, let to):
            let m: Message
            do { m = try RaftCodec.decodeMessage(bytes) } catch {
                throw failure("codec could not decode a message it encoded: \(error)")
            }
            guard let n = nodes[to], n.core != nil, !isBlocked(Link(from: m.from, to: m.to)) else {
                stats.messagesDropped += 1
                try reportSnapshot(m, delivered: false)
                return
            }
            try step(n, .receive(m))
            try reportSnapshot(m, delivered: true)
        case .diskDone(let id, let inc):
            guard let n = nodes[id], n.incarnation == inc, n.core != nil else { return }
            try completeWrite(n)
        case .acknowledge(let id, let inc, let mark):
            guard let n = nodes[id], n.incarnation == inc, n.core != nil else { return }
            if n.writesDone > mark.sequenceOnDisk { stats.lateAcknowledgements += 1 }
            try step(n, .persisted(mark.mark))
        case .powerCut(let id, let inc, let write):
            guard let n = nodes[id], n.incarnation == inc, n.core != nil else { return }
            n.powerCut?.scheduled = false
            // The disk may have won the race; then the cut waits for a later write.
            if n.writesDone < write { cutPower(n) }
        case .restart(let id):
            guard let n = nodes[id], n.core == nil, !n.refused else { return }
            try restart(n)
        case .operatorRemove(let id):
            try operatorRemove(id)
        case .chaos:
            guard !healing else { return }
            try chaos()
            let every = config.chaosEveryMillis
            schedule(at: now + every.lowerBound + rand(every.upperBound - every.lowerBound + 1), .chaos)
        case .client:
            // Clients stop a while before the end so the final convergence check sees a
            // quiet cluster rather than entries still in flight.
            guard now + 1_000 < config.chaosMillis + config.healMillis else { return }
            if now >= clientsIdleUntil { try client() }
            schedule(at: now + 2 + rand(8), .client)
        case .snapshotLost(let from, let to):
            guard let n = nodes[from], n.core != nil else { return }
            try step(n, .snapshotReported(node: to, success: false))
        case .healNetwork:
            guard !healing else { return }
            lossPercent = 0
            dupPercent = 0
            maxDelay = 15
        }
    }

    // MARK: - Nodes

    /// One tick per interval of the node's own clock (`tickMillis / rate` of real time).
    private func scheduleNextTick(_ n: SimNode) {
        guard config.driftingClocks else {
            schedule(at: now + config.tickMillis, .tick(n.id, n.incarnation))
            return
        }
        n.nextTickAt = max(n.nextTickAt, Double(now)) + Double(config.tickMillis) / n.clockRate
        schedule(at: UInt64(n.nextTickAt.rounded(.up)), .tick(n.id, n.incarnation))
    }

    private func startNode(_ id: NodeID, bootstrap: Membership, fresh: Bool) {
        let n = SimNode(id: id, bootstrap: bootstrap)
        // A joiner replays the log from the founders' configuration.
        n.appliedMembership = self.bootstrap
        if config.driftingClocks {
            let spread = config.maxClockDrift / 4
            n.clockRate = 1 - spread + 2 * spread * Double(rng.next() % 1_000_001) / 1_000_000
        }
        nodes[id] = n
        do {
            n.core = try RaftCore(config: coreConfig(id), bootstrap: bootstrap)
        } catch {
            n.core = nil
        }
        schedule(at: now + 1 + rand(config.tickMillis), .tick(id, n.incarnation))
    }

    private func coreConfig(_ id: NodeID) -> RaftConfig {
        RaftConfig(
            id: id, electionTicks: config.electionTicks, heartbeatTicks: 1, maxInflightMessages: 8,
            maxMessageBytes: config.maxMessageBytes, randomSeed: rng.next(), testingMutations: config.mutations)
    }

    private func crash(_ n: SimNode) {
        guard n.core != nil else { return }
        stats.crashes += 1
        stats.lostUnpersistedWrites += n.writeQueue.count
        n.core = nil
        n.lease = nil
        n.tickTimes = [:]
        n.writeQueue = []
        n.diskBusy = false
        n.stallNextWrite = 0
        n.pendingReads = [:]
        n.readsWaitingApply = []
        n.incarnation += 1
        n.writesDone = n.writesIssued
        n.powerCut = nil
        n.cutAtEndOfStep = false
        note("crash \(n.id)")
    }

    /// The power fails before the write the cut was aimed at reaches the disk. The node is
    /// back almost at once, so vote requests and appends already in flight to it, sent in
    /// the term it just spoke in, still arrive: that is what turns a promise it forgot into
    /// a second vote or a lost acknowledgement.
    private func cutPower(_ n: SimNode) {
        stats.powerCuts += 1
        if n.powerCut?.target == .voteWrites { stats.powerCutsOnVotes += 1 }
        note("power cut \(n.id) with \(n.writeQueue.count) writes in flight")
        crash(n)
        schedule(at: now + 1 + rand(20), .restart(n.id))
    }

    private func restart(_ n: SimNode) throws(SimulationFailure) {
        let core: RaftCore
        do {
            core = try RaftCore(
                config: coreConfig(n.id), bootstrap: config.membershipFromTheFile ? n.file : n.bootstrap, restoring: n.durable,
                applied: n.durable.snapshot?.metadata.index ?? 0)
        } catch {
            throw failure("node \(n.id) could not restart from its durable state: \(error)")
        }
        n.core = core
        n.queuedHardState = n.durable.hardState
        n.app = AppState()
        n.appliedMembership = bootstrap
        if let s = n.durable.snapshot { try installApp(n, s) }
        n.lastSeenCommit = core.commitIndex
        n.claimChecked = core.persistedIndex
        note("restart \(n.id) term=\(core.term) last=\(core.lastIndex) commit=\(core.commitIndex)")
        if config.supervisedRestarts && !healing {
            // The restarted node dials its peers at once; each peer's own connection to it
            // comes back after that peer's reconnect backoff, which differs from peer to peer.
            let timeout = UInt64(config.electionTicks) * config.tickMillis
            for p in nodes.keys.sorted() where p != n.id {
                cutLinks[Link(from: p, to: n.id)] = now + rand(timeout + 1)
            }
        }
        schedule(at: now + 1 + rand(config.tickMillis), .tick(n.id, n.incarnation))
    }

    // MARK: - Driving a core

    private func step(_ n: SimNode, _ input: RaftInput) throws(SimulationFailure) {
        guard var core = n.core else { return }
        let result = core.step(input)
        n.core = core
        try carryOut(n, result.effects)
        if case .propose(let batch) = input, case .accepted(let term, let first, _) = result.outcome {
            for (k, data) in batch.enumerated() {
                let wid = decodeWriteID(data)
                writes[wid] = Write(node: n.id, term: term, index: first + UInt64(k), invokedAt: now)
            }
        }
    }

    private func carryOut(_ n: SimNode, _ effects: [RaftEffect]) throws(SimulationFailure) {
        for effect in effects {
            guard let core = n.core else { return }
            switch effect {
            case .persist(let req):
                try checkLogMatching(n, req.entries)
                n.writesIssued += 1
                let changesTermOrVote = req.hardState.map { $0.term != n.queuedHardState.term || $0.vote != n.queuedHardState.vote } ?? false
                if let hs = req.hardState { n.queuedHardState = hs }
                n.writeQueue.append(PendingWrite(request: req, seq: n.writesIssued))
                if !n.diskBusy {
                    n.diskBusy = true
                    schedule(at: now + diskDelay(n), .diskDone(n.id, n.incarnation))
                }
                aimPowerCut(n, changesTermOrVote: changesTermOrVote)
            case .send(let m, let afterPersist):
                let promise = config.auditSpeech ? Promise(of: m, core: core) : nil
                if afterPersist, !n.writeQueue.isEmpty {
                    n.writeQueue[n.writeQueue.count - 1].held.append(HeldMessage(message: m, promise: promise))
                } else {
                    try audit(n, m, promise)
                    try transmit(m)
                }
            case .apply(let entries):
                for e in entries { try applyEntry(n, e) }
            case .installSnapshot(let s):
                stats.snapshotsInstalled += 1
                try installApp(n, s)
            case .readReady(let rs):
                guard let read = n.pendingReads.removeValue(forKey: rs.requestID) else { break }
                n.readsWaitingApply.append((read, rs.index))
            case .readFailed(let rid, _):
                if n.pendingReads.removeValue(forKey: rid) != nil { stats.readsFailed += 1 }
            case .roleChanged(let role, let term, _):
                if role != .leader { n.lease = nil }
                if role == .leader {
                    stats.elections += 1
                    note("leader \(n.id) term=\(term) last=\(core.lastIndex) commit=\(core.commitIndex)")
                    try checkLeaderCompleteness(n, core)
                    try checkNoLeaseOverlaps(newLeader: n, term: term)
                    try checkTransferIsKnown(newLeader: n, core, term: term)
                }
            case .quorumAcknowledged(let tick, let term):
                // What RaftNode does: the lease runs from the round's tick for the minimum
                // election timeout less the drift bound, measured by this node's clock.
                guard let sent = n.tickTimes[tick], term == core.term else { break }
                let length = Double(config.electionTicks) * Double(config.tickMillis) * (1 - config.maxClockDrift) / n.clockRate
                let until = Double(sent) + length
                if n.lease.map({ $0.term != term || until > $0.until }) ?? true { n.lease = (term, until) }
                if leaseEnds[term].map({ until > $0.until }) ?? true { leaseEnds[term] = (n.id, until) }
            case .leaseForfeited(let term):
                if let end = leaseEnds[term], end.node == n.id {
                    forfeitedLeaseEnds[term] = end
                    leaseEnds[term] = nil
                }
                n.lease = nil
            case .membershipChanged(let m):
                note("membership@\(n.id) voters=\(m.voters.sorted()) learners=\(m.learners.sorted())")
            }
        }
        if n.cutAtEndOfStep {
            // Everything this step sent has left; nothing it wrote has reached the disk.
            n.cutAtEndOfStep = false
            cutPower(n)
            return
        }
        try serveWaitingReads(n)
        try maybeCompact(n)
    }

    private func diskDelay(_ n: SimNode) -> UInt64 {
        if n.stallNextWrite > 0 {
            defer { n.stallNextWrite = 0 }
            return n.stallNextWrite
        }
        return now < n.slowDiskUntil ? rand(n.slowDiskMillis + 1) : rand(4)
    }

    /// An armed node loses power at a random moment while its next write of the chosen kind
    /// is in flight, possibly right after the step that issued it. A cut that comes only at
    /// random times almost never lands between a vote and its write (11 of 9,300 crashes in
    /// 3,000 seeds did), so the cut is aimed at a kind of write instead.
    private func aimPowerCut(_ n: SimNode, changesTermOrVote: Bool) {
        guard var cut = n.powerCut, !cut.scheduled, !healing else { return }
        guard now < cut.until else {
            n.powerCut = nil
            return
        }
        guard cut.target == .anyWrite || changesTermOrVote else { return }
        let delay = rand(now < n.slowDiskUntil ? n.slowDiskMillis + 1 : 4)
        if delay == 0 {
            n.cutAtEndOfStep = true
        } else {
            cut.scheduled = true
            schedule(at: now + delay, .powerCut(n.id, n.incarnation, n.writesIssued))
        }
        n.powerCut = cut
    }

    private func completeWrite(_ n: SimNode) throws(SimulationFailure) {
        guard !n.writeQueue.isEmpty else {
            n.diskBusy = false
            return
        }
        let w = n.writeQueue.removeFirst()
        let req = w.request
        if let s = req.snapshot { n.durable.snapshot = s }
        if let c = req.compactThrough { n.durable.entries.removeAll { $0.index <= c } }
        if let t = req.truncateFrom { n.durable.entries.removeAll { $0.index >= t } }
        if let first = req.entries.first {
            let expected = (n.durable.entries.last?.index ?? n.durable.snapshot?.metadata.index ?? 0) + 1
            guard first.index == expected else {
                throw failure("node \(n.id) asked to persist entry \(first.index) after \(expected - 1): a hole in the log")
            }
            n.durable.entries.append(contentsOf: req.entries)
        }
        if let hs = req.hardState { n.durable.hardState = hs }
        n.writesDone = w.seq
        for h in w.held {
            try audit(n, h.message, h.promise)
            try transmit(h.message)
        }
        // As in RaftNode, the news reaches the core a moment later, when the next write may
        // already be done: that is where a stale acknowledgement could vouch for a rewrite.
        // In order, as from RaftNode's one writer.
        // A busy shell (slow disk, long step) tells the core later still.
        let delay = now < n.slowDiskUntil ? rand(n.slowDiskMillis + 1) : rand(3) * rand(3)
        n.lastAcknowledgementAt = max(n.lastAcknowledgementAt, now + delay)
        schedule(at: n.lastAcknowledgementAt, .acknowledge(n.id, n.incarnation, Acknowledgement(mark: req.mark, sequenceOnDisk: w.seq)))
        if n.writeQueue.isEmpty {
            n.diskBusy = false
        } else {
            schedule(at: now + diskDelay(n), .diskDone(n.id, n.incarnation))
        }
    }

    /// Like a streaming transport, the sender learns whether a snapshot arrived.
    private func reportSnapshot(_ m: Message, delivered: Bool) throws(SimulationFailure) {
        guard m.type == .snapshot, let sender = nodes[m.from], sender.core != nil else { return }
        try step(sender, .snapshotReported(node: m.to, success: delivered))
    }

    private func isBlocked(_ link: Link) -> Bool {
        blocked.contains(link) || (cutLinks[link].map { now < $0 } ?? false)
    }

    private func transmit(_ m: Message) throws(SimulationFailure) {
        stats.messagesSent += 1
        if isBlocked(Link(from: m.from, to: m.to)) || (lossPercent > 0 && rand(100) < lossPercent) {
            stats.messagesDropped += 1
            if m.type == .snapshot {
                schedule(at: now + 1 + rand(maxDelay), .snapshotLost(m.from, m.to))
            }
            return
        }
        let bytes = RaftCodec.encode(m)
        schedule(at: now + 1 + rand(maxDelay), .deliver(bytes, m.to))
        if dupPercent > 0 && rand(100) < dupPercent {
            stats.messagesDuplicated += 1
            schedule(at: now + 1 + rand(maxDelay * 2), .deliver(bytes, m.to))
        }
    }

    // MARK: - The application (a hash chain over applied entries)

    private func applyEntry(_ n: SimNode, _ e: Entry) throws(SimulationFailure) {
        guard e.index == n.app.index + 1 else {
            throw failure("node \(n.id) applied entry \(e.index) right after \(n.app.index)")
        }
        n.app.index = e.index
        n.app.hash = mix(n.app.hash, e.index, e.term, hashBytes(e.data))
        stats.invariantChecks += 1
        if let h = appliedHash[e.index] {
            guard h == n.app.hash else {
                throw failure("state machine safety: node \(n.id) applied a different history at index \(e.index)")
            }
        } else {
            appliedHash[e.index] = n.app.hash
        }
        if let t = committedTerm[e.index], t != e.term {
            throw failure("node \(n.id) applied entry \(e.index) of term \(e.term), committed was term \(t)")
        }
        committedTerm[e.index] = e.term
        maxCommitted = max(maxCommitted, e.index)
        if e.kind == .normal, e.data.count == 8 {
            let wid = decodeWriteID(e.data)
            if var w = writes[wid], w.node == n.id, w.index == e.index, w.term == e.term, w.ackedAt == nil {
                w.ackedAt = now
                writes[wid] = w
                stats.writesAcked += 1
                acks.append((now, max(acks.last?.maxIndex ?? 0, e.index)))
            }
        }
        if e.kind == .membership { try checkMembershipStep(n, e) }
        if e.kind == .membership, let p = membershipProposals.removeValue(forKey: e.index), p.term == e.term {
            stats.membershipChanges += 1
            if p.change == .remove(p.proposer) { stats.leaderRemovals += 1 }
        }
    }

    private func installApp(_ n: SimNode, _ s: Snapshot) throws(SimulationFailure) {
        guard s.data.count == 16 else { throw failure("node \(n.id) got a snapshot of \(s.data.count) bytes") }
        var idx: UInt64 = 0
        var h: UInt64 = 0
        for k in 0..<8 { idx |= UInt64(s.data[k]) << (8 * UInt64(k)) }
        for k in 0..<8 { h |= UInt64(s.data[8 + k]) << (8 * UInt64(k)) }
        guard idx == s.metadata.index else { throw failure("snapshot data index \(idx) != metadata \(s.metadata.index)") }
        if let known = appliedHash[idx], known != h {
            throw failure("node \(n.id) installed a snapshot at \(idx) whose state differs from the applied history")
        }
        n.app = AppState(index: idx, hash: h)
        n.appliedMembership = s.metadata.membership
    }

    /// Membership changes are single-server (docs/RAFT.md): each applied configuration
    /// differs from the one applied before it in the role of at most one node.
    private func checkMembershipStep(_ n: SimNode, _ e: Entry) throws(SimulationFailure) {
        guard let (m, _) = try? RaftCodec.decodeMembershipEntry(e.data) else {
            throw failure("node \(n.id) applied a membership entry at \(e.index) it cannot decode")
        }
        stats.invariantChecks += 1
        let before = n.appliedMembership
        let changed = before.allMembers.union(m.allMembers).filter {
            before.voters.contains($0) != m.voters.contains($0) || before.learners.contains($0) != m.learners.contains($0)
        }
        // A joiner's own snapshot from before the entry that added it names no configuration.
        guard changed.count <= 1 || before.allMembers.isEmpty else {
            throw failure(
                "membership: node \(n.id) applied voters=\(m.voters.sorted()) learners=\(m.learners.sorted()) at \(e.index) "
                    + "right after voters=\(before.voters.sorted()) learners=\(before.learners.sorted()): \(changed.count) nodes changed at once")
        }
        n.appliedMembership = m
    }

    private func maybeCompact(_ n: SimNode) throws(SimulationFailure) {
        guard config.faults.snapshots, var core = n.core, n.app.index >= core.snapshotIndex + compactEvery else { return }
        var data: [UInt8] = []
        for k in 0..<8 { data.append(UInt8(truncatingIfNeeded: n.app.index >> (8 * UInt64(k)))) }
        for k in 0..<8 { data.append(UInt8(truncatingIfNeeded: n.app.hash >> (8 * UInt64(k)))) }
        let before = core.snapshotIndex
        let r = core.step(.compact(index: n.app.index, data: data))
        n.core = core
        if core.snapshotIndex > before { stats.compactions += 1 }
        try carryOut(n, r.effects)
    }

    // MARK: - Clients

    private func client() throws(SimulationFailure) {
        let running = runningNodes()
        guard !running.isEmpty else { return }
        let leader = newestLeader(running)
        let target: SimNode
        if let l = leader, rand(10) < 7 { target = l } else { target = running[Int(rand(UInt64(running.count)))] }
        if rand(3) == 0 {
            let rid = nextReadID
            nextReadID += 1
            target.pendingReads[rid] = PendingClientRead(id: rid, invokedAt: now)
            try step(target, .readIndex(requestID: rid))
        } else {
            let wid = nextWriteID
            nextWriteID += 1
            var data: [UInt8] = []
            for k in 0..<8 { data.append(UInt8(truncatingIfNeeded: wid >> (8 * UInt64(k)))) }
            if target.core?.role != .leader && rand(3) == 0 {
                // What the controller does with a verdict on a follower: pass it on to the
                // leader, without learning where it lands.
                stats.forwardedProposals += 1
                try step(target, .forward([data]))
            } else {
                try step(target, .propose([data]))
            }
        }
    }

    private func serveWaitingReads(_ n: SimNode) throws(SimulationFailure) {
        guard !n.readsWaitingApply.isEmpty else { return }
        var still: [(PendingClientRead, UInt64)] = []
        for (read, index) in n.readsWaitingApply {
            guard n.app.index >= index else {
                still.append((read, index))
                continue
            }
            try checkRead(n, read, observed: n.app.index)
        }
        n.readsWaitingApply = still
    }

    /// Linearizability of a read: it must see every write acknowledged before it was
    /// invoked, and everything that any read completed before its invocation saw.
    private func checkRead(_ n: SimNode, _ read: PendingClientRead, observed: UInt64) throws(SimulationFailure) {
        stats.readsServed += 1
        stats.invariantChecks += 1
        let mustSee = max(prefixMax(acks, before: read.invokedAt), prefixMax(readsDone, before: read.invokedAt))
        guard observed >= mustSee else {
            throw failure(
                "linearizability: read \(read.id) at node \(n.id) (invoked t=\(read.invokedAt)) saw index \(observed), but index \(mustSee) was acknowledged before it started"
            )
        }
        readsDone.append((now, max(readsDone.last?.maxIndex ?? 0, observed)))
    }

    private func prefixMax(_ list: [(time: UInt64, maxIndex: UInt64)], before t: UInt64) -> UInt64 {
        var lo = 0
        var hi = list.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if list[mid].time < t { lo = mid + 1 } else { hi = mid }
        }
        return lo == 0 ? 0 : list[lo - 1].maxIndex
    }


    // MARK: - Faults

    private func chaos() throws(SimulationFailure) {
        let f = config.faults
        let running = runningNodes()
        let leader = newestLeader(running)
        if f.slowDisks || f.powerCuts, rand(6) == 0 { diskFault(running) }
        if config.fileEdits, !fileEdited, rand(4) == 0 { editFiles() }
        if config.lostDisks, stats.lostDisks < 1, rand(10) == 0 { loseDisk(running) }
        if config.idleStretches, now >= clientsIdleUntil, rand(6) == 0 {
            clientsIdleUntil = now + 300 + rand(1_200)
            stats.idleStretches += 1
            note("clients idle until \(clientsIdleUntil)")
        }
        if config.linkCuts, rand(6) == 0 { cutLink() }
        if config.rolledBackDisks, stats.rolledBackDisks < 1, rand(8) == 0 { rollBackDisk(running) }
        switch rand(12) {
        case 0...1 where f.partitions:
            let ids = nodes.keys.sorted()
            var side: Set<NodeID> = []
            for id in ids where rand(2) == 0 { side.insert(id) }
            blocked = []
            for a in ids {
                for b in ids where side.contains(a) != side.contains(b) { blocked.insert(Link(from: a, to: b)) }
            }
            stats.partitions += 1
            note("partition \(side.sorted()) | rest")
        case 2 where f.partitions:
            if let l = leader {
                blocked = []
                for b in nodes.keys where b != l.id {
                    blocked.insert(Link(from: l.id, to: b))
                    blocked.insert(Link(from: b, to: l.id))
                }
                stats.partitions += 1
                note("isolate leader \(l.id)")
                armVoteCut(amongFollowersOf: l, running)
            }
        case 3 where f.partitions:
            let ids = nodes.keys.sorted()
            let x = ids[Int(rand(UInt64(ids.count)))]
            blocked = []
            let outbound = rand(2) == 0
            for b in ids where b != x {
                blocked.insert(outbound ? Link(from: x, to: b) : Link(from: b, to: x))
            }
            stats.asymmetricPartitions += 1
            note("asymmetric: \(x) \(outbound ? "cannot send" : "cannot hear")")
        case 4...5:
            blocked = []
            note("heal partitions")
        case 6 where f.messageLoss || f.duplication:
            lossPercent = f.messageLoss ? rand(30) : 0
            dupPercent = f.duplication ? rand(10) : 0
            maxDelay = 5 + rand(60)
            note("network loss=\(lossPercent)% dup=\(dupPercent)% delay<=\(maxDelay)")
            schedule(at: now + 200 + rand(800), .healNetwork)
        case 7 where f.crashes:
            let down = running.count
            guard down > 0 else { break }
            let victim: SimNode
            if let l = leader, rand(2) == 0 { victim = l } else { victim = running[Int(rand(UInt64(down)))] }
            crash(victim)
            if victim === leader { armVoteCut(amongFollowersOf: victim, running) }
            let quick = config.supervisedRestarts && rand(2) == 0
            schedule(at: now + (quick ? 1 + rand(30) : 20 + rand(500)), .restart(victim.id))
        case 8 where f.crashes && rand(4) == 0:
            for n in running where rand(2) == 0 {
                crash(n)
                schedule(at: now + 20 + rand(300), .restart(n.id))
            }
        case 9...10 where f.membershipChanges:
            if let l = leader { try changeMembership(l) }
        case 11 where f.leadershipTransfers:
            if let l = leader, let core = l.core {
                let others = core.membership.voters.filter { $0 != l.id }.sorted()
                if !others.isEmpty {
                    let target = others[Int(rand(UInt64(others.count)))]
                    stats.transfers += 1
                    note("transfer \(l.id) -> \(target)")
                    try step(l, .transferLeadership(to: target))
                }
            }
        default:
            break
        }
    }

    private func cutLink() {
        let ids = nodes.keys.sorted()
        guard ids.count > 2 else { return }
        let a = ids[Int(rand(UInt64(ids.count)))]
        let rest = ids.filter { $0 != a }
        let b = rest[Int(rand(UInt64(rest.count)))]
        let until = now + 200 + rand(1_000)
        cutLinks[Link(from: a, to: b)] = until
        cutLinks[Link(from: b, to: a)] = until
        stats.linkCuts += 1
        note("cut link \(a) <-> \(b) until \(until)")
    }

    /// Drawn beside the other faults rather than instead of one, so adding them did not
    /// thin out the partitions and crashes the older checks depend on.
    private func diskFault(_ running: [SimNode]) {
        guard !running.isEmpty else { return }
        let n = running[Int(rand(UInt64(running.count)))]
        if config.faults.slowDisks && (!config.faults.powerCuts || rand(2) == 0) && rand(4) == 0 {
            // The leader's disk, most of the time: a leader that waited for it would fall silent.
            let leader = running.filter { $0.core?.role == .leader }.first
            let victim = leader.flatMap { rand(3) == 0 ? nil : $0 } ?? n
            let timeout = UInt64(config.electionTicks) * config.tickMillis
            victim.stallNextWrite = timeout * 3 / 2 + rand(timeout * 5 / 2)
            stats.diskStalls += 1
            note("disk stall \(victim.id): next write takes \(victim.stallNextWrite) ms")
        } else if config.faults.slowDisks && (!config.faults.powerCuts || rand(2) == 0) {
            n.slowDiskMillis = 5 + rand(96)
            n.slowDiskUntil = now + 200 + rand(1_300)
            stats.slowDisks += 1
            note("slow disk \(n.id) <=\(n.slowDiskMillis) ms")
        } else {
            // Term and vote writes are rare beside entry writes, so half the cuts wait for one.
            let target: PowerCut.Target = rand(2) == 0 ? .voteWrites : .anyWrite
            n.powerCut = PowerCut(target: target, until: now + 1_000)
            note("power cut armed on \(n.id) for \(target)")
        }
    }

    /// A leader just went away, so the next term and vote writes are the election's: aim a
    /// power cut at one of them on some follower, half the time.
    private func armVoteCut(amongFollowersOf leader: SimNode, _ running: [SimNode]) {
        guard config.faults.powerCuts, rand(2) == 0 else { return }
        let followers = running.filter { $0 !== leader }
        guard !followers.isEmpty else { return }
        let n = followers[Int(rand(UInt64(followers.count)))]
        n.powerCut = PowerCut(target: .voteWrites, until: now + 1_000)
        note("power cut armed on \(n.id) for the election")
    }

    /// The operator replaces founder `v` by `w` in the config files of the other founders and
    /// restarts them, then starts `w`. With the voters taken from the data directory this
    /// changes nothing (`w` waits, with `--join`, to be added); taken from the files, the
    /// restarted founders and `w` count quorums of {others, w} while `v` still counts its own.
    private func editFiles() {
        fileEdited = true
        let founders = bootstrap.voters.sorted()
        let v = founders[Int(rand(UInt64(founders.count)))]
        let w = nextFreshID
        nextFreshID += 1
        var edited = bootstrap.voters
        edited.remove(v)
        edited.insert(w)
        let file = Membership(voters: edited)
        stats.fileEdits += 1
        note("file edit: cluster.members \(file.voters.sorted()) on every founder but \(v); restart them; start \(w)")
        for id in founders where id != v {
            guard let n = nodes[id] else { continue }
            n.file = file
            crash(n)
            schedule(at: now + 1 + rand(20), .restart(id))
        }
        startNode(w, bootstrap: config.membershipFromTheFile ? file : Membership(), fresh: true)
        nodes[w]?.file = file
    }

    /// The first draw copies a voter's data directory (a volume snapshot); a later one, at
    /// least 300 ms on, restores the copy in place and starts the node on it: same identity,
    /// same incarnation, an older term, vote and log.
    private func rollBackDisk(_ running: [SimNode]) {
        if let n = nodes.values.sorted(by: { $0.id < $1.id }).first(where: { $0.backup != nil }) {
            guard let (takenAt, copy) = n.backup, now >= takenAt + 300 else { return }
            stats.rolledBackDisks += 1
            crash(n)
            n.durable = copy
            n.backup = nil
            note("disk of \(n.id) restored from its copy of t=\(takenAt): term=\(copy.hardState.term) last=\(copy.entries.last?.index ?? 0)")
            schedule(at: now + 1 + rand(50), .restart(n.id))
            return
        }
        let voters = running.filter { $0.core?.membership.voters.contains($0.id) ?? false }
        guard !voters.isEmpty else { return }
        let n = voters[Int(rand(UInt64(voters.count)))]
        n.backup = (now, n.durable)
        note("copy of \(n.id)'s disk taken")
    }

    /// A voter's disk is gone for good (a lost instance store, a wiped volume).
    private func loseDisk(_ running: [SimNode]) {
        let voters = running.filter { $0.core?.membership.voters.contains($0.id) ?? false }
        guard !voters.isEmpty else { return }
        let n = voters[Int(rand(UInt64(voters.count)))]
        stats.lostDisks += 1
        crash(n)
        n.durable = PersistentState()
        if config.rejoinWithLostDisk {
            note("disk lost on \(n.id): it comes back empty under its id")
            schedule(at: now + 1 + rand(50), .restart(n.id))
        } else {
            note("disk lost on \(n.id): refused at start and by its peers; the operator removes it")
            n.refused = true
            schedule(at: now + 1, .operatorRemove(n.id))
        }
    }

    /// The operator's half of the lost-disk procedure: `member remove` until it is done (the
    /// node can then come back as a learner under a new id, which the membership faults do).
    private func operatorRemove(_ id: NodeID) throws(SimulationFailure) {
        if let l = newestLeader(runningNodes()), let core = l.core {
            guard core.membership.contains(id) else {
                if core.commitIndex >= core.lastIndex {
                    note("operator: \(id) is out of the membership")
                    return
                }
                schedule(at: now + 50, .operatorRemove(id))
                return
            }
            try proposeMembership(.remove(id), at: l)
        }
        schedule(at: now + 50, .operatorRemove(id))
    }

    private func runningNodes() -> [SimNode] { nodes.values.filter { $0.core != nil }.sorted { $0.id < $1.id } }

    /// The leader of the newest term among `running`.
    private func newestLeader(_ running: [SimNode]) -> SimNode? {
        running.filter { $0.core?.role == .leader }.max { ($0.core?.term ?? 0) < ($1.core?.term ?? 0) }
    }

    /// Proposes `change` at `l`, remembering an accepted proposal for the run's counts.
    private func proposeMembership(_ change: MembershipChange, at l: SimNode) throws(SimulationFailure) {
        note("propose \(change) at \(l.id)")
        guard var c = l.core else { return }
        let r = c.step(.proposeMembership(change))
        l.core = c
        if case .accepted(let term, let index, _) = r.outcome {
            membershipProposals[index] = (term, l.id, change)
        }
        try carryOut(l, r.effects)
    }

    private func changeMembership(_ l: SimNode) throws(SimulationFailure) {
        guard let core = l.core else { return }
        let m = core.membership
        let maxVoters = max(config.nodes + 2, 5)
        let change: MembershipChange
        if let learner = m.learners.sorted().first, m.voters.count < maxVoters {
            change = .addVoter(learner)
        } else if m.voters.count > config.nodes || (m.voters.count > 3 && rand(2) == 0) {
            let voters = m.voters.sorted()
            change = .remove(voters[Int(rand(UInt64(voters.count)))])
        } else {
            let id = nextFreshID
            nextFreshID += 1
            startNode(id, bootstrap: Membership(), fresh: true)
            change = .addLearner(id)
        }
        try proposeMembership(change, at: l)
    }

    private func heal() {
        healing = true
        blocked = []
        cutLinks = [:]
        lossPercent = 0
        dupPercent = 0
        maxDelay = 15
        note("heal everything")
        for n in nodes.values.sorted(by: { $0.id < $1.id }) {
            n.slowDiskUntil = 0
            n.powerCut = nil
            if n.core == nil && !n.refused { schedule(at: now + 1, .restart(n.id)) }
        }
    }

    // MARK: - Checkers

    /// The lease's guarantee (docs/RAFT.md): while a leader's lease runs, no node leads in a
    /// newer term.
    private func checkNoLeaseOverlaps(newLeader: SimNode, term: UInt64) throws(SimulationFailure) {
        for (id, other) in nodes where id != newLeader.id {
            guard let lease = other.lease, lease.term < term, Double(now) < lease.until else { continue }
            throw failure("lease overlap: \(newLeader.id) leads term \(term) at \(now) ms while \(id)'s lease of term \(lease.term) runs until \(Int(lease.until)) ms")
        }
        // Also a lease whose holder has crashed or stepped down since: the controller's
        // lock-delay counts on no newer leader before it ends (docs/CONTROLLER.md).
        for (older, end) in leaseEnds.sorted(by: { $0.key < $1.key }) where older < term && Double(now) < end.until {
            throw failure("lease overlap: \(newLeader.id) leads term \(term) at \(now) ms while the lease \(end.node) held in term \(older) (it no longer leads) runs until \(Int(end.until)) ms")
        }
    }

    /// A leader elected while a forfeited lease would still run owes its term to a transfer,
    /// and must say so: the controller's lock-delay is longer then, to wait out calls the old
    /// leader fenced before it handed over (docs/CONTROLLER.md, "The lock-delay").
    private func checkTransferIsKnown(newLeader: SimNode, _ core: RaftCore, term: UInt64) throws(SimulationFailure) {
        for (older, end) in forfeitedLeaseEnds.sorted(by: { $0.key < $1.key }) where older < term && Double(now) < end.until {
            guard core.electedByTransfer else {
                throw failure("unannounced transfer: \(newLeader.id) leads term \(term) at \(now) ms, before the lease \(end.node) forfeited in term \(older) would have ended (\(Int(end.until)) ms), but does not say it was elected by transfer")
            }
        }
    }

    private func checkInvariants() throws(SimulationFailure) {
        for n in nodes.values {
            guard let core = n.core else { continue }
            stats.invariantChecks += 1
            if core.role == .leader {
                if let other = leaderOfTerm[core.term], other != n.id {
                    throw failure("election safety: nodes \(other) and \(n.id) both led term \(core.term)")
                }
                leaderOfTerm[core.term] = n.id
            }
            try checkDurableClaim(n, core)
            if core.commitIndex > n.lastSeenCommit {
                var i = max(n.lastSeenCommit + 1, core.firstIndex)
                while i <= core.commitIndex {
                    if let t = core.term(at: i) {
                        if let known = committedTerm[i], known != t {
                            throw failure("node \(n.id) committed index \(i) with term \(t), but term \(known) was committed there")
                        }
                        committedTerm[i] = t
                    }
                    i += 1
                }
                maxCommitted = max(maxCommitted, core.commitIndex)
                n.lastSeenCommit = core.commitIndex
            }
        }
    }

    /// What the core believes durable is on the disk: every entry up to its persisted index
    /// (past its snapshot) is on disk with the same term. A leader counts itself, and every
    /// node applies, on that belief. Checked as the index moves, not all over each event.
    private func checkDurableClaim(_ n: SimNode, _ core: RaftCore) throws(SimulationFailure) {
        let p = core.persistedIndex
        if p < n.claimChecked { n.claimChecked = p }
        guard p > n.claimChecked else { return }
        let from = max(n.claimChecked + 1, core.snapshotIndex + 1)
        n.claimChecked = p
        guard from <= p else { return }
        for i in from...p {
            stats.invariantChecks += 1
            switch durableTerm(n, at: i) {
            case .covered:
                continue
            case .term(let t) where t == core.term(at: i):
                continue
            case .term(let t):
                throw failure("durable claim: node \(n.id) takes entry \(i) of term \(core.term(at: i) ?? 0) as durable, but its disk holds term \(t) there")
            case .missing(let last):
                throw failure("durable claim: node \(n.id) takes entry \(i) as durable, but its disk ends at \(last)")
            }
        }
    }

    /// Durability before speech (DESIGN.md rule 1), checked the moment a message leaves: a
    /// vote request or grant needs the vote on disk, an append acknowledgement the entries
    /// it acknowledges. The other checkers see a broken promise only if a crash falls inside
    /// the gap and the forgotten state is then used, which a run may never arrange.
    private func audit(_ n: SimNode, _ m: Message, _ promise: Promise?) throws(SimulationFailure) {
        guard let promise else { return }
        stats.promisesAudited += 1
        stats.invariantChecks += 1
        switch promise {
        case .vote(let term, let candidate):
            let hs = n.durable.hardState
            guard hs.term > term || (hs.term == term && hs.vote == candidate) else {
                throw failure(
                    "durability before speech: node \(n.id) sent \(m.type) to \(m.to) for node \(candidate) in term \(term), "
                        + "but its disk holds term \(hs.term) vote \(hs.vote)")
            }
        case .log(let index, let term):
            let durable = durableTerm(n, at: index)
            switch durable {
            case .covered:
                break
            case .term(let t) where term == nil || term == t:
                break
            case .term(let t):
                throw failure(
                    "durability before speech: node \(n.id) acknowledged entry \(index) of term \(term ?? 0) to \(m.to), "
                        + "but its disk holds term \(t) there")
            case .missing(let last):
                throw failure(
                    "durability before speech: node \(n.id) acknowledged entry \(index) to \(m.to), but its disk ends at \(last)")
            }
        }
    }

    private func durableTerm(_ n: SimNode, at index: UInt64) -> DurableEntry {
        let snapshotIndex = n.durable.snapshot?.metadata.index ?? 0
        if index < snapshotIndex { return .covered }
        if index == snapshotIndex { return .term(n.durable.snapshot?.metadata.term ?? 0) }
        let entries = n.durable.entries
        let offset = index - snapshotIndex - 1
        if offset < UInt64(entries.count), entries[Int(offset)].index == index { return .term(entries[Int(offset)].term) }
        if let e = entries.first(where: { $0.index == index }) { return .term(e.term) }
        return .missing(lastIndex: entries.last?.index ?? snapshotIndex)
    }

    /// Log matching: an (index, term) pair names one entry, and the entry before it.
    private func checkLogMatching(_ n: SimNode, _ entries: [Entry]) throws(SimulationFailure) {
        guard let core = n.core else { return }
        for e in entries {
            stats.invariantChecks += 1
            let id = EntryIdentity(dataHash: hashBytes(e.data) ^ UInt64(e.kind.rawValue), previousTerm: core.term(at: e.index - 1))
            let key = IndexTerm(index: e.index, term: e.term)
            if let known = entryIdentity[key] {
                if known.dataHash != id.dataHash {
                    throw failure("log matching: two different entries at index \(e.index) term \(e.term) (node \(n.id))")
                }
                if let a = known.previousTerm, let b = id.previousTerm, a != b {
                    throw failure("log matching: entries at \(e.index)/\(e.term) follow different terms \(a) and \(b) (node \(n.id))")
                }
            } else {
                entryIdentity[key] = id
            }
        }
    }

    /// Leader completeness: a new leader's log holds every entry known to be committed.
    private func checkLeaderCompleteness(_ n: SimNode, _ core: RaftCore) throws(SimulationFailure) {
        guard maxCommitted > core.snapshotIndex else { return }
        for i in (core.snapshotIndex + 1)...maxCommitted {
            guard let t = committedTerm[i] else { continue }
            stats.invariantChecks += 1
            guard core.term(at: i) == t else {
                throw failure("leader completeness: new leader \(n.id) (term \(core.term)) lacks committed entry \(i) of term \(t)")
            }
        }
    }

    /// Once faults heal, the cluster must elect a leader, and every member must apply every
    /// committed entry, including every write that was acknowledged.
    private func checkConvergence() throws(SimulationFailure) {
        let running = nodes.values.filter { $0.core != nil }
        guard let leader = running.filter({ $0.core?.role == .leader }).max(by: { ($0.core?.term ?? 0) < ($1.core?.term ?? 0) }),
            let lc = leader.core
        else {
            throw failure("liveness: no leader \(config.healMillis) ms after all faults healed")
        }
        guard lc.term(at: lc.commitIndex) == lc.term else {
            throw failure("liveness: leader \(leader.id) has not committed an entry of its term \(lc.term)")
        }
        for member in lc.membership.allMembers.sorted() {
            guard let n = nodes[member], let c = n.core else {
                throw failure("liveness: member \(member) is not running after healing")
            }
            guard c.commitIndex >= lc.commitIndex, n.app.index >= lc.commitIndex else {
                throw failure(
                    "liveness: member \(member) applied \(n.app.index) (commit \(c.commitIndex)), leader \(leader.id) committed \(lc.commitIndex)"
                )
            }
        }
        for (wid, w) in writes where w.ackedAt != nil {
            stats.invariantChecks += 1
            guard w.index <= lc.commitIndex, committedTerm[w.index] == w.term else {
                throw failure("durability: acknowledged write \(wid) at \(w.index)/\(w.term) is not in the final log")
            }
        }
    }

    // MARK: - Utilities

    private func rand(_ n: UInt64) -> UInt64 { n == 0 ? 0 : rng.next() % n }

    private func schedule(at time: UInt64, _ kind: EventKind) {
        queue.push(Event(time: time, kind: kind))
    }

    private func note(_ s: String) {
        trace.append("t=\(now) \(s)")
        if trace.count > 400 { trace.removeFirst(200) }
    }

    private func failure(_ what: String) -> SimulationFailure {
        var lines = trace
        lines.append("nodes at failure:")
        for n in nodes.values.sorted(by: { $0.id < $1.id }) {
            guard let c = n.core else {
                lines.append("  \(n.id): down")
                continue
            }
            lines.append(
                "  \(n.id): \(c.role) term=\(c.term) vote=\(c.hardState.vote) leader=\(c.leader) last=\(c.lastIndex)/\(c.lastTerm) "
                    + "commit=\(c.commitIndex) applied=\(n.app.index) voters=\(c.membership.voters.sorted()) learners=\(c.membership.learners.sorted())")
        }
        return SimulationFailure(
            seed: config.seed, nodes: config.nodes, atMillis: now, violation: what, trace: lines,
            replayEnvironment: config.replayEnvironment)
    }
}

// MARK: - Supporting types

private struct Link: Hashable {
    var from: NodeID
    var to: NodeID
}

private struct IndexTerm: Hashable {
    var index: UInt64
    var term: UInt64
}

private struct EntryIdentity {
    var dataHash: UInt64
    var previousTerm: UInt64?
}

private struct Write {
    var node: NodeID
    var term: UInt64
    var index: UInt64
    var invokedAt: UInt64
    var ackedAt: UInt64?
}

private struct PendingClientRead {
    var id: UInt64
    var invokedAt: UInt64
}

private struct Acknowledgement {
    var mark: WriteMark
    /// The simulator's own number for the write, to tell a late acknowledgement.
    var sequenceOnDisk: UInt64
}

private struct PendingWrite {
    var request: PersistRequest
    var seq: UInt64
    var held: [HeldMessage] = []
}

private struct HeldMessage {
    var message: Message
    var promise: Promise?
}

/// What a message tells its receiver that the sender has made durable.
private enum Promise {
    /// The sender's vote in `term` is for `candidate` (a vote request: the candidate itself).
    case vote(term: UInt64, candidate: NodeID)
    /// The sender's log holds `index`, of `term` when the sender still knows it.
    case log(index: UInt64, term: UInt64?)

    init?(of m: Message, core: RaftCore) {
        switch m.type {
        case .vote:
            self = .vote(term: m.term, candidate: m.from)
        case .voteResponse where !m.reject:
            self = .vote(term: m.term, candidate: m.to)
        case .appendResponse where !m.reject && m.index > 0:
            self = .log(index: m.index, term: core.term(at: m.index))
        default:
            return nil
        }
    }
}

private enum DurableEntry {
    /// Inside the durable snapshot.
    case covered
    case term(UInt64)
    case missing(lastIndex: UInt64)
}

/// A power cut armed on a node, waiting for the next write of its kind.
private struct PowerCut {
    enum Target { case anyWrite, voteWrites }
    var target: Target
    var until: UInt64
    var scheduled = false
}

private struct AppState {
    var index: UInt64 = 0
    var hash: UInt64 = 0
}

private final class SimNode {
    let id: NodeID
    let bootstrap: Membership
    var incarnation = 0
    var core: RaftCore?
    var durable = PersistentState()
    var writeQueue: [PendingWrite] = []
    var diskBusy = false
    /// Sequence numbers of the last write queued and the last one finished (or lost).
    var writesIssued: UInt64 = 0
    var writesDone: UInt64 = 0
    /// The hard state of the last write queued, to tell a new term or vote from a commit.
    var queuedHardState = HardState()
    var slowDiskUntil: UInt64 = 0
    var slowDiskMillis: UInt64 = 0
    var stallNextWrite: UInt64 = 0
    /// Its disk was lost and the shell will not start it again under this id.
    var refused = false
    /// A copy of `durable` and when it was taken, for `rollBackDisk`.
    var backup: (UInt64, PersistentState)?
    var lastAcknowledgementAt: UInt64 = 0
    /// Up to where the durable-claim check has looked at the core's persisted index.
    var claimChecked: UInt64 = 0
    var powerCut: PowerCut?
    var cutAtEndOfStep = false
    var app = AppState()
    /// `cluster.members` in this node's config file.
    var file: Membership
    /// The configuration of the last membership entry (or snapshot) this node applied.
    var appliedMembership: Membership
    var lastSeenCommit: UInt64 = 0
    var pendingReads: [UInt64: PendingClientRead] = [:]
    var readsWaitingApply: [(PendingClientRead, UInt64)] = []
    /// The node's clock rate against real (simulated) time, and where its next tick falls.
    var clockRate = 1.0
    var nextTickAt = 0.0
    /// When each of the core's ticks happened, as the shell timestamps them for the lease.
    var tickTimes: [UInt64: UInt64] = [:]
    /// The lease this node holds as leader: its term and when it ends in real time.
    var lease: (term: UInt64, until: Double)?

    init(id: NodeID, bootstrap: Membership) {
        self.id = id
        self.bootstrap = bootstrap
        self.appliedMembership = bootstrap
        self.file = bootstrap
    }
}

private enum EventKind {
    case tick(NodeID, Int)
    case deliver([UInt8], NodeID)
    case diskDone(NodeID, Int)
    case acknowledge(NodeID, Int, Acknowledgement)
    case restart(NodeID)
    case operatorRemove(NodeID)
    case chaos
    case client
    case healNetwork
    case snapshotLost(NodeID, NodeID)
    case powerCut(NodeID, Int, UInt64)
}

private struct Event {
    var time: UInt64
    var seq: UInt64 = 0
    var kind: EventKind
}

/// A binary min-heap ordered by (time, insertion order), so equal times stay deterministic.
private struct EventQueue {
    private var heap: [Event] = []
    private var seq: UInt64 = 0

    mutating func push(_ e: Event) {
        var e = e
        seq += 1
        e.seq = seq
        heap.append(e)
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if less(heap[i], heap[p]) {
                heap.swapAt(i, p)
                i = p
            } else {
                break
            }
        }
    }

    mutating func pop() -> Event? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1
            let r = l + 1
            var m = i
            if l < heap.count && less(heap[l], heap[m]) { m = l }
            if r < heap.count && less(heap[r], heap[m]) { m = r }
            if m == i { break }
            heap.swapAt(i, m)
            i = m
        }
        return top
    }

    private func less(_ a: Event, _ b: Event) -> Bool {
        a.time < b.time || (a.time == b.time && a.seq < b.seq)
    }
}

private func mix(_ h: UInt64, _ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 {
    var x = h &* 0x100_0000_01B3 ^ a
    x = (x ^ (x >> 29)) &* 0xBF58_476D_1CE4_E5B9 ^ b
    x = (x ^ (x >> 32)) &* 0x94D0_49BB_1331_11EB ^ c
    return x ^ (x >> 31)
}

private func hashBytes(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return h
}

private func decodeWriteID(_ data: [UInt8]) -> UInt64 {
    var v: UInt64 = 0
    for (k, b) in data.prefix(8).enumerated() { v |= UInt64(b) << (8 * UInt64(k)) }
    return v
}
