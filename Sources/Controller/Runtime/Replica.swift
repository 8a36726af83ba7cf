import Actuators
import Foundation
import Logging
import Metrics
import NIOCore
import Raft
import RaftRuntime
import ServiceLifecycle

/// Timing of a replica's loops, derived from the config.
public struct ReplicaTiming: Sendable {
    /// How often the replica polls every sentinel.
    public var probeInterval: Duration
    public var probeTimeout: Duration
    /// An observation is re-sent this often even when nothing changed, well inside the TTL.
    public var observationRefresh: Duration
    /// How often the leader stamps time and passes over its writes when no commit woke it.
    public var reconcileInterval: Duration
    /// How often the leader reads every managed route table back to repair drift.
    public var driftCheckInterval: Duration
    /// How often the leader looks up every tunnel's instance by tag.
    public var discoveryInterval: Duration
    /// How often the leader reads its Route 53 records back when no instance changed (a
    /// change is acted on at once). Route 53 allows 5 calls a second per account, shared with
    /// every other tool there: reading 40 records every discovery pass took all of it.
    public var dnsReadBackInterval: Duration
    /// The longest one AWS write may take (`timing.writeDeadline`, at most the lease); the
    /// lock-delay follows from it.
    public var apiTimeout: Duration
    /// The longest a whole read may take (every page of the route tables, of a zone, of the
    /// instance lookup). Reads need no lease; bounding them by one call's time made a read of
    /// 500 tables (five pages) at 150 ms per call fail every pass, so no route ever moved
    /// (bench/scale --latency-ms 150).
    public var readTimeout: Duration
    /// A new leader's wait before its first write (DESIGN rule 3), after an election and
    /// after a leadership transfer.
    public var lockDelay: Duration
    public var lockDelayAfterTransfer: Duration

    public init(config: SwitchmanConfig) {
        let health = config.health
        probeInterval = health.probeInterval
        probeTimeout = health.probeTimeout
        observationRefresh = max(health.observationTTL / 3, health.probeInterval)
        reconcileInterval = health.probeInterval
        driftCheckInterval = config.reconcile.driftCheckInterval
        discoveryInterval = max(health.probeInterval * 5, .seconds(2))
        dnsReadBackInterval = max(discoveryInterval, .seconds(30))
        let lease = config.timing.lease
        apiTimeout = config.timing.effectiveWriteDeadline
        readTimeout = max(lease * 10, .seconds(10))
        lockDelay = config.timing.lockDelay
        lockDelayAfterTransfer = config.timing.lockDelayAfterTransfer
    }
}

extension Duration {
    var timeAmount: TimeAmount {
        let (s, a) = components
        return .nanoseconds(s * 1_000_000_000 + a / 1_000_000_000)
    }
}

/// One controller replica: the Raft node's application. Every replica polls the sentinels and
/// proposes what it sees; the leader alone stamps time, discovers instances, and — holding
/// its lease, after its lock-delay, intent before act — makes the AWS writes the planner asks
/// for (docs/CONTROLLER.md, DESIGN rules 3-7).
public actor ControllerReplica: Service {
    public nonisolated let id: ReplicaID
    public nonisolated let config: SwitchmanConfig
    public nonisolated let node: RaftNode
    public nonisolated let machine: ControllerStateMachine
    public nonisolated let timing: ReplicaTiming
    private let checker: any TunnelChecker
    private let actuators: ReplicaActuators
    private let wallClock: @Sendable () -> UInt64
    private let logger: Logger

    /// The term this replica last saw itself lead, and since when (monotonic).
    private var ledTerm: UInt64 = 0
    private var ledSince: ContinuousClock.Instant = .now
    /// The lock-delay of that term: longer when it began with a leadership transfer.
    private var lockDelay: Duration = .zero
    /// Whether this term's lock-delay is over.
    private var lockDelayOver: Bool { ContinuousClock.now - ledSince >= lockDelay }
    /// The managed routes as last read (and as this leader wrote them since), the tables that
    /// read covered, and when the next read is due: reads run on the drift-check clock and
    /// after writes, never on every pass (issue #17 item 3).
    private var routeView: (actual: [RouteKey: EC2Route], tablesRead: Set<String>)? = nil
    private var routeReadDue: ContinuousClock.Instant = .now
    /// Routes whose last write failed, and when to try again.
    private var backoff: [RouteKey: Backoff] = [:]
    /// The last write that succeeded per route: EC2 reads lag writes, so within the
    /// consistency window a read that still shows the old target is not answered with
    /// another write (at most one duplicate per window when the lag is longer).
    private var recentWrites: [RouteKey: (eni: String, at: ContinuousClock.Instant)] = [:]
    /// Interfaces whose source/destination check this leader turned off, and when: within
    /// the consistency window a read that still shows the check on is not believed.
    private var recentCheckWrites: [String: ContinuousClock.Instant] = [:]
    /// Interfaces whose check-off write AWS refused, and when to try again.
    private var checkBackoff: [String: Backoff] = [:]
    /// Elastic IPs this leader associated, and when: within the consistency window a read
    /// that still shows the old association is not believed.
    private var recentAddressWrites: [String: ContinuousClock.Instant] = [:]
    /// Elastic IPs whose association AWS refused, and when to try again.
    private var addressBackoff: [String: Backoff] = [:]
    /// Allocation ids DescribeAddresses did not list, so each is logged once as an error.
    private var missingAddresses: Set<String> = []
    /// Why a route was last recorded as not written, so each reason enters the log once.
    private var notWrittenReported: [RouteKey: String] = [:]
    /// A blackhole on a route's desired target is evidence that the instance behind it is
    /// gone: the next leader pass looks the instances up again instead of waiting.
    private var rediscoverRequested = false
    /// DNS records whose last write Route 53 refused (a client error: a denied name, a bad
    /// zone), and when to try again: 5 calls a second per account is too little to spend on
    /// an answer that will not change.
    private var dnsBackoff: [String: (attempts: Int, next: ContinuousClock.Instant)] = [:]
    /// Zones whose last multi-record batch Route 53 refused: written a record per batch until
    /// the zone is in sync again, so one refused record cannot hold back the others.
    private var dnsOneByOne: Set<String> = []
    /// Route writes in flight per Region at most; EC2's token buckets bound the rate.
    static let maxConcurrentWritesPerRegion = 16

    private let writes = Counter(label: "switchman_aws_writes_total")
    private let writeFailures = Counter(label: "switchman_aws_write_failures_total")
    private let noLease = Counter(label: "switchman_writes_skipped_without_lease_total")

    public init(
        id: ReplicaID, config: SwitchmanConfig, node: RaftNode, machine: ControllerStateMachine,
        checker: any TunnelChecker, actuators: ReplicaActuators, logger: Logger,
        wallClock: @escaping @Sendable () -> UInt64 = { UInt64(max(0, Date().timeIntervalSince1970 * 1000)) }
    ) {
        self.id = id
        self.config = config
        self.node = node
        self.machine = machine
        self.checker = checker
        self.actuators = actuators
        self.logger = logger
        self.wallClock = wallClock
        self.timing = ReplicaTiming(config: config)
    }

    // MARK: Service

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.probeLoop() }
                group.addTask { await self.leaderLoop() }
                group.addTask { await self.dnsLoop() }
                group.addTask { await self.metricsLoop() }
                await group.waitForAll()
            }
        }
    }

    /// Gauges an operator graphs: who leads, how far the log is, the lease, each tunnel's
    /// verdict and where each route points (by this replica's copy of the state).
    private func metricsLoop() async {
        var shownTargets: [RouteKey: String] = [:]
        while !Task.isCancelled {
            let s = await node.status
            Gauge(label: "switchman_leader").record(Int64(s.leader))
            Gauge(label: "switchman_is_leader").record(s.role == .leader ? 1 : 0)
            Gauge(label: "switchman_commit_index").record(Int64(clamping: s.commitIndex))
            Gauge(label: "switchman_applied_index").record(Int64(clamping: machine.appliedIndex))
            let lease = s.leaseExpiry.map { max(.zero, $0 - ContinuousClock.now) } ?? .zero
            Gauge(label: "switchman_lease_remaining_seconds").record(Double(lease.milliseconds) / 1000)
            let state = machine.state
            for tunnel in config.tunnels {
                let verdict = state.verdict(of: tunnel.name)
                Gauge(label: "switchman_tunnel_up", dimensions: [("tunnel", tunnel.name)])
                    .record(verdict == .up ? 1 : (verdict == .down ? -1 : 0))
                Gauge(label: "switchman_tunnel_drained", dimensions: [("tunnel", tunnel.name)])
                    .record(state.tunnels[tunnel.name]?.drain != nil ? 1 : 0)
            }
            for (key, target) in state.routeTargets {
                let dims = [("route_table", key.routeTable), ("destination", key.destination.description)]
                if let old = shownTargets[key], old != target.tunnel {
                    Gauge(label: "switchman_route_target", dimensions: dims + [("tunnel", old)]).record(0)
                }
                Gauge(label: "switchman_route_target", dimensions: dims + [("tunnel", target.tunnel)]).record(1)
                shownTargets[key] = target.tunnel
            }
            try? await Task.sleep(for: timing.probeInterval)
        }
    }

    // MARK: Proposals

    private nonisolated func entry(_ command: ControllerCommand, stamp: Stamp? = nil) -> ControllerEntry {
        ControllerEntry(stamp: stamp, origin: id, requestID: UInt64.random(in: 1...UInt64.max), command: command)
    }

    /// The leader's time for its stamps (DESIGN rule 6): its wall clock when it began to lead,
    /// never behind the last stamp in the state, advanced from there by the monotonic clock.
    /// A wall clock that steps while it leads (NTP, a resumed VM) moves no hold-down or TTL,
    /// and a new leader whose clock is behind carries on from the last stamp instead of
    /// freezing the state's time until its clock catches up.
    private var stampBase: (millis: UInt64, at: ContinuousClock.Instant)? = nil

    private func leaderNow() -> Stamp {
        let base = stampBase ?? {
            let b = (millis: max(wallClock(), machine.state.now.millis), at: ContinuousClock.now)
            stampBase = b
            return b
        }()
        let elapsed = ContinuousClock.now - base.at
        return Stamp(millis: base.millis &+ UInt64(max(0, elapsed.milliseconds)))
    }

    /// Proposes on this replica as leader, stamped with its clock; returns once applied here.
    @discardableResult
    func proposeAsLeader(_ command: ControllerCommand) async throws -> LogPosition {
        try await node.propose(entry(command, stamp: leaderNow()).encoded())
    }

    /// Submits a command from any replica (an operator's drain, say) and waits until it is
    /// applied here. A follower forwards it to the leader; if it does not show up within
    /// `timeout` it is sent again (commands are idempotent), until `deadline`.
    public nonisolated func submit(_ command: ControllerCommand, timeout: Duration = .seconds(2), attempts: Int = 3) async throws -> LogPosition {
        var lastError: (any Error)? = nil
        for _ in 0..<max(1, attempts) {
            let e = entry(command)
            do {
                switch try await node.submit(e.encoded()) {
                case .committed(let position):
                    return position
                case .forwarded:
                    if let p = await machine.waitApplied(requestID: e.requestID, timeout: timeout) { return p }
                    lastError = RaftNodeError.timeout
                }
            } catch {
                lastError = error
                try await Task.sleep(for: timing.probeInterval)
            }
        }
        throw lastError ?? RaftNodeError.timeout
    }

    // MARK: Probing (every replica)

    private func probeLoop() async {
        var tracker = ObservationTracker(
            replica: id, fall: UInt32(clamping: config.health.fall), rise: UInt32(clamping: config.health.rise),
            refresh: timing.observationRefresh)
        var unidentifiedSentinels: Set<String> = []
        // Rounds in a row in which no observation reached a leader: a replica cut off from
        // the others says so in its log (first time, then every 10 rounds).
        var unsubmitted = 0
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let checks = await withTaskGroup(of: (String, TunnelCheck).self) { group in
                for tunnel in config.tunnels {
                    group.addTask { (tunnel.name, await self.checker.check(tunnel, timeout: self.timing.probeTimeout)) }
                }
                var all: [String: TunnelCheck] = [:]
                for await (name, check) in group { all[name] = check }
                return all
            }
            var failedSubmissions = 0
            var lastError = ""
            let term = await node.status.term
            let state = machine.state
            for tunnel in config.tunnels {
                guard let answer = checks[tunnel.name] else { continue }
                let round = tracker.record(tunnel.name, answer, instance: state.tunnels[tunnel.name]?.identity?.instanceId,
                                           term: term, now: .now)
                if round.unidentified, unidentifiedSentinels.insert(tunnel.name).inserted {
                    logger.warning("the sentinel does not say which instance it runs on: its verdict cannot be told from a replaced instance's", metadata: [
                        "tunnel": "\(tunnel.name)", "fix": "upgrade the sentinel, or run it with --instance-id / SWITCHMAN_INSTANCE_ID",
                    ])
                }
                if round.firstFailure {
                    logger.info("tunnel check failed", metadata: ["tunnel": "\(tunnel.name)", "detail": "\(round.check.detail)"])
                }
                guard let command = round.observation else { continue }
                do {
                    _ = try await node.submit(entry(command).encoded())
                    tracker.submitted(tunnel.name, opinion: round.opinion, term: term, at: .now)
                } catch {
                    // No leader right now; the next round tries again.
                    failedSubmissions += 1
                    lastError = "\(error)"
                }
            }
            if failedSubmissions > 0 {
                unsubmitted += 1
                if unsubmitted == 1 || unsubmitted % 10 == 0 {
                    logger.warning("observations are not reaching a leader", metadata: ["rounds": "\(unsubmitted)", "error": "\(lastError)"])
                }
            } else if unsubmitted > 0 {
                logger.notice("observations reach a leader again", metadata: ["after": "\(unsubmitted) rounds"])
                unsubmitted = 0
            }
            let next = started + timing.probeInterval
            if next > ContinuousClock.now { try? await Task.sleep(until: next) }
        }
    }

    // MARK: Leading

    private func leaderLoop() async {
        var lastDiscovery: ContinuousClock.Instant? = nil
        var lastHousekeeping: ContinuousClock.Instant? = nil
        var seenInstanceChanges: UInt64 = .max
        var seenPlan = machine.planChanges
        while !Task.isCancelled {
            // A committed change of plan wakes the leader at once; the timer paces the
            // housekeeping, and the end of the lock-delay is worth waking for too.
            var wait = timing.reconcileInterval
            let lockDelayLeft = lockDelay - (ContinuousClock.now - ledSince)
            if ledTerm != 0, lockDelayLeft > .zero { wait = min(wait, lockDelayLeft) }
            seenPlan = await machine.waitForPlanChange(after: seenPlan, timeout: wait)
            let status = await node.status
            guard status.role == .leader else { continue }
            if status.term != ledTerm {
                ledTerm = status.term
                ledSince = .now
                lockDelay = status.electedByTransfer ? timing.lockDelayAfterTransfer : timing.lockDelay
                stampBase = nil
                lastHousekeeping = nil
                routeView = nil
                backoff = [:]
                recentWrites = [:]
                notWrittenReported = [:]
                recentCheckWrites = [:]
                checkBackoff = [:]
                recentAddressWrites = [:]
                addressBackoff = [:]
                dnsBackoff = [:]
                dnsOneByOne = []
                logger.notice("leading; writes wait out the lock-delay", metadata: [
                    "term": "\(status.term)", "lockDelay": "\(lockDelay)", "afterTransfer": "\(status.electedByTransfer)",
                ])
            }
            if lastHousekeeping.map({ ContinuousClock.now - $0 >= timing.reconcileInterval }) ?? true {
                do {
                    try await proposeAsLeader(.tick)
                    // The quorum of observers follows the voters Raft has now, not the member
                    // list in this replica's file: after `member add|remove` a 2-voter cluster
                    // must not wait for 3 fresh observers (chaos/run --scenario membership).
                    let wanted = HealthPolicy(health: config.health, memberCount: max(1, status.membership.voters.count))
                    if machine.state.policy != wanted { try await proposeAsLeader(.setPolicy(wanted)) }
                    lastHousekeeping = .now
                } catch {
                    logger.debug("leader housekeeping failed", metadata: ["error": "\(error)"])
                    continue
                }
            }
            let changes = machine.instanceChanges
            if lastDiscovery.map({ ContinuousClock.now - $0 >= timing.discoveryInterval }) ?? true || changes != seenInstanceChanges
                || rediscoverRequested {
                lastDiscovery = .now
                rediscoverRequested = false
                await discoverInstances()
                seenInstanceChanges = machine.instanceChanges
            }
            await reconcileSourceDestChecks(term: status.term)
            await reconcileElasticIPs(term: status.term)
            if config.aws.autoDrainOnScheduledEvent { await reconcileScheduledDrains() }
            await reconcileRoutes(term: status.term)
        }
    }

    /// Route 53 in a loop of its own: its budget (5 calls a second) makes a pass over many
    /// records take seconds, and that must never hold up moving routes (bench/scale: with 40
    /// records in the reconcile loop, one tunnel's failover waited 9 s instead of 2.5 s).
    private func dnsLoop() async {
        guard actuators.dns != nil else { return }
        var next: ContinuousClock.Instant? = nil
        var nextTerm: UInt64 = 0
        var seen: UInt64 = .max
        while !Task.isCancelled {
            try? await Task.sleep(for: timing.reconcileInterval)
            let status = await node.status
            guard status.role == .leader, status.term == ledTerm else {
                next = nil
                continue
            }
            // Leading again in a newer term between two passes is a new leader too.
            if status.term != nextTerm { next = nil }
            let changes = machine.instanceChanges
            guard next.map({ ContinuousClock.now >= $0 }) ?? true || changes != seen else { continue }
            // A pass the lock-delay stopped does not count: a new leader checks as soon as it
            // may. One that left a record unread or unwritten comes back sooner.
            guard let inSync = await reconcileDNS(term: status.term) else { continue }
            next = .now + (inSync ? timing.dnsReadBackInterval : timing.discoveryInterval)
            nextTerm = status.term
            seen = changes
        }
    }

    /// Whether this replica may write now, and by when the call must be done.
    enum Fence {
        /// Inside the lease, and never past `apiTimeout`.
        case open(deadline: NIODeadline, leaseRemaining: Duration)
        case closed(reason: String)
    }

    /// The fence every write passes twice: before its intent is proposed and again, after the
    /// intent commits, right before the call (DESIGN rules 3 and 5).
    private func fence(term: UInt64) async -> Fence {
        guard ledTerm == term else { return .closed(reason: "term changed") }
        guard lockDelayOver else { return .closed(reason: "lock-delay") }
        guard let until = await node.leaseValidUntil else { return .closed(reason: "no lease") }
        guard await node.status.term == term else { return .closed(reason: "term changed") }
        let remaining = until - ContinuousClock.now
        let budget = min(remaining, timing.apiTimeout)
        guard budget > .milliseconds(10) else { return .closed(reason: "lease ended") }
        return .open(deadline: NIODeadline.now() + budget.timeAmount, leaseRemaining: remaining)
    }

    /// A write the fence stopped: counted, and logged for the chaos checkers (chaos/HISTORY.md).
    private func blocked(_ write: ActuationWrite, term: UInt64, reason: String) {
        noLease.increment()
        logger.info("stale write blocked", metadata: ["reason": "\(reason)", "term": "\(term)", "write": "\(write)"])
    }

    /// Reads (never writes) are allowed without the lease, but are bounded too.
    private var readDeadline: NIODeadline { NIODeadline.now() + timing.readTimeout.timeAmount }

    private func discoverInstances() async {
        let state = machine.state
        var known: [String: InstanceIdentity] = [:]
        for tunnel in config.tunnels { known[tunnel.name] = state.tunnels[tunnel.name]?.identity }
        let results = await actuators.instances.currentInstances(of: config.tunnels, known: known, deadline: readDeadline)
        for tunnel in config.tunnels {
            switch results[tunnel.name] {
            case .failure(let error):
                logger.warning("instance lookup failed", metadata: ["tunnel": "\(tunnel.name)", "error": "\(error)"])
            case .success(let found?) where found != known[tunnel.name]:
                do {
                    try await proposeAsLeader(.instanceIdentity(tunnel: tunnel.name, found))
                } catch {
                    logger.debug("instance identity not proposed", metadata: ["tunnel": "\(tunnel.name)", "error": "\(error)"])
                }
            default:
                continue
            }
        }
        await readSourceDestChecks()
        await readInstanceStatuses()
        await readElasticIPs()
    }

    /// One read per region for the tunnels `key` names something for (nil: leave it out):
    /// each tunnel with its key and the read's answers for that region. A region whose read
    /// failed is logged as `what` and left out.
    private func readByRegion<Answer: Sendable>(
        _ what: String, key: (TunnelConfig) -> String?,
        _ read: (any RouteActuator, [String]) async throws -> [String: Answer]
    ) async -> [(tunnel: String, key: String, answers: [String: Answer])] {
        var byRegion: [String: [(tunnel: String, key: String)]] = [:]
        for tunnel in config.tunnels {
            guard let k = key(tunnel) else { continue }
            byRegion[tunnel.region ?? config.aws.region, default: []].append((tunnel.name, k))
        }
        var out: [(tunnel: String, key: String, answers: [String: Answer])] = []
        for (region, items) in byRegion.sorted(by: { $0.key < $1.key }) {
            guard let ec2 = actuators.routes(region) else { continue }
            do {
                let answers = try await read(ec2, items.map(\.key))
                out += items.map { ($0.tunnel, $0.key, answers) }
            } catch {
                logger.warning("\(what) could not be read", metadata: ["region": "\(region)", "error": "\(error)"])
            }
        }
        return out
    }

    /// Each tunnel instance's EC2 status checks and scheduled events, into the log where the
    /// state's last report differs. One DescribeInstanceStatus per region and discovery.
    private func readInstanceStatuses() async {
        let state = machine.state
        let read = await readByRegion("EC2 instance status", key: { state.tunnels[$0.name]?.identity?.instanceId }) { ec2, ids in
            try await ec2.instanceStatuses(ids, deadline: self.readDeadline)
        }
        for item in read {
            guard let status = item.answers[item.key] else { continue }
            let report = Self.report(status)
            guard state.tunnels[item.tunnel]?.ec2Status != report else { continue }
            if report.impaired {
                logger.warning("EC2 status checks impaired: the tunnel is not a candidate", metadata: [
                    "tunnel": "\(item.tunnel)", "instance": "\(item.key)", "status": "\(report.summary)",
                ])
            }
            do {
                try await proposeAsLeader(.instanceStatus(tunnel: item.tunnel, report))
            } catch {
                logger.debug("instance status not recorded", metadata: ["tunnel": "\(item.tunnel)", "error": "\(error)"])
            }
        }
    }

    static func report(_ status: EC2InstanceStatus) -> InstanceStatusReport {
        func stamp(_ d: Date?) -> Stamp? {
            guard let d else { return nil }
            return Stamp(millis: UInt64(max(0, d.timeIntervalSince1970 * 1000)))
        }
        var events: [ScheduledEvent] = []
        for e in status.events where !e.isOver {
            let notBefore = stamp(e.notBefore)
            let id = e.id ?? "\(e.code)@\(notBefore?.millis ?? 0)"
            events.append(ScheduledEvent(id: id, code: e.code, detail: e.description, notBefore: notBefore, notAfter: stamp(e.notAfter)))
        }
        events.sort { a, b in
            let x = a.notBefore?.millis ?? 0, y = b.notBefore?.millis ?? 0
            return x != y ? x < y : a.id < b.id
        }
        return InstanceStatusReport(instanceId: status.instanceId, impaired: status.impaired, summary: status.summary, events: events)
    }

    /// Where each tunnel's Elastic IP is associated, into the log where the state thinks
    /// otherwise. One DescribeAddresses per region and discovery.
    private func readElasticIPs() async {
        let state = machine.state
        let read = await readByRegion("Elastic IPs", key: { $0.eip }) { ec2, ids in
            try await ec2.addresses(ids, deadline: self.readDeadline)
        }
        for item in read {
            guard let address = item.answers[item.key] else {
                if missingAddresses.insert(item.key).inserted {
                    logger.error("Elastic IP not found: the tunnel's address cannot follow its instance", metadata: [
                        "tunnel": "\(item.tunnel)", "allocation": "\(item.key)",
                    ])
                }
                continue
            }
            missingAddresses.remove(item.key)
            let report = ElasticIPReport(allocationId: address.allocationId, publicIP: address.publicIp, eniId: address.networkInterfaceId)
            let known = state.tunnels[item.tunnel]?.elasticIP
            guard known != report else { continue }
            if let at = recentAddressWrites[item.key], ContinuousClock.now - at < config.aws.consistencyWindow, known?.eniId != nil {
                // Our own association is not visible yet: answering the old one with another
                // write would repeat it.
                continue
            }
            do {
                try await proposeAsLeader(.elasticIP(tunnel: item.tunnel, report))
            } catch {
                logger.debug("Elastic IP not recorded", metadata: ["tunnel": "\(item.tunnel)", "error": "\(error)"])
            }
        }
    }

    /// Associates each tunnel's Elastic IP with its current instance's interface where it is
    /// elsewhere, each as a fenced write. Only once the address was read (so it exists), and
    /// regardless of health: the far side reaches a replacement only at this address, so its
    /// sentinel cannot see the tunnel up before it moves.
    private func reconcileElasticIPs(term: UInt64) async {
        guard lockDelayOver else { return }
        let state = machine.state
        for tunnel in config.tunnels {
            guard let allocation = tunnel.eip, let t = state.tunnels[tunnel.name], let identity = t.identity,
                  let known = t.elasticIP, known.allocationId == allocation, known.eniId != identity.eniId else { continue }
            if let b = addressBackoff[allocation], ContinuousClock.now < b.next { continue }
            guard let ec2 = actuators.routes(tunnel.region ?? config.aws.region) else { continue }
            if let holder = known.eniId {
                logger.notice("taking the tunnel's Elastic IP from another interface", metadata: [
                    "tunnel": "\(tunnel.name)", "eip": "\(known.publicIP)", "from": "\(holder)", "to": "\(identity.eniId)",
                ])
            }
            let write = ActuationWrite.associateAddress(
                tunnel: tunnel.name, allocationId: allocation, instanceId: identity.instanceId, eniId: identity.eniId, privateIP: identity.privateIP)
            let result = await actuate(write, term: term) { token, deadline in
                let requestID = try await ec2.associateAddress(allocation, networkInterfaceId: identity.eniId, privateIpAddress: identity.privateIP,
                                                               fencing: token, deadline: deadline)
                return "\(known.publicIP) on \(identity.eniId)\(requestID.map { " [request id \($0)]" } ?? "")"
            }
            if result == .written { recentAddressWrites[allocation] = .now }
            addressBackoff[allocation] = Self.backoff(after: result, addressBackoff[allocation])
        }
    }

    /// Drains a tunnel ahead of its instance's scheduled event and lifts that drain after it
    /// (aws.autoDrainOnScheduledEvent); never lifts an operator's drain.
    private func reconcileScheduledDrains() async {
        let lead = UInt64(clamping: config.aws.scheduledEventDrainLead.milliseconds)
        for command in ScheduledDrains.commands(state: machine.state, tunnels: config.tunnels.map(\.name), leadMillis: lead) {
            logger.notice("EC2 scheduled event", metadata: ["command": "\(command)"])
            do {
                try await proposeAsLeader(command)
            } catch {
                logger.debug("scheduled-event drain not proposed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// What EC2 says of each known interface's source/destination check, into the log where
    /// the state thinks otherwise. One DescribeNetworkInterfaces per region and discovery.
    private func readSourceDestChecks() async {
        let state = machine.state
        let read = await readByRegion("source/destination checks", key: { state.tunnels[$0.name]?.identity?.eniId }) { ec2, enis in
            try await ec2.sourceDestChecks(enis, deadline: self.readDeadline)
        }
        for item in read {
            let eni = item.key
            guard let enabled = item.answers[eni], enabled == state.tunnels[item.tunnel]?.forwards else { continue }
            if enabled, let at = recentCheckWrites[eni], ContinuousClock.now - at < config.aws.consistencyWindow {
                // Our own write is not visible yet: moving routes away on that read would be
                // a failover caused by EC2's read lag.
                continue
            }
            if enabled {
                logger.warning("source/destination check is on: no route may point at the interface", metadata: [
                    "tunnel": "\(item.tunnel)", "eni": "\(eni)",
                    "fix": "\(config.aws.enforceSourceDestCheck ? "the leader turns it off" : "aws ec2 modify-network-interface-attribute --network-interface-id \(eni) --no-source-dest-check")",
                ])
            }
            do {
                try await proposeAsLeader(.sourceDestCheck(tunnel: item.tunnel, eniId: eni, enabled: enabled))
            } catch {
                logger.debug("source/destination check not recorded", metadata: ["tunnel": "\(item.tunnel)", "error": "\(error)"])
            }
        }
    }

    /// Turns off the source/destination check of every known interface that is not yet known
    /// to forward, each as a fenced write (intent, call, outcome), before any route may point
    /// at it: done for every tunnel, not only the qualified ones, so a failover never waits
    /// for it.
    private func reconcileSourceDestChecks(term: UInt64) async {
        guard config.aws.enforceSourceDestCheck, lockDelayOver else { return }
        let state = machine.state
        for tunnel in config.tunnels {
            guard let t = state.tunnels[tunnel.name], let identity = t.identity, !t.forwards else { continue }
            if let b = checkBackoff[identity.eniId], ContinuousClock.now < b.next { continue }
            guard let ec2 = actuators.routes(tunnel.region ?? config.aws.region) else { continue }
            let eni = identity.eniId
            let result = await actuate(.disableSourceDestCheck(tunnel: tunnel.name, instanceId: identity.instanceId, eniId: eni), term: term) { token, deadline in
                let requestID = try await ec2.disableSourceDestCheck(eni, fencing: token, deadline: deadline)
                return "source/destination check off\(requestID.map { " [request id \($0)]" } ?? "")"
            }
            if result == .written { recentCheckWrites[eni] = .now }
            checkBackoff[eni] = Self.backoff(after: result, checkBackoff[eni])
        }
    }

    /// Whether every record is now as desired; nil when it could not run yet (no DNS, or the
    /// lock-delay is not over).
    private func reconcileDNS(term: UInt64) async -> Bool? {
        guard let dns = actuators.dns, lockDelayOver else { return nil }
        let state = machine.state
        var inSync = true
        var desiredByZone: [String: [DesiredRecord]] = [:]
        for tunnel in config.tunnels {
            guard let record = tunnel.dns, let t = state.tunnels[tunnel.name], let identity = t.identity else { continue }
            let address: String
            switch record.address {
            case .private:
                address = identity.privateIP
            case .public:
                // Known once the leader read the Elastic IP; until then nothing to publish.
                guard let eip = t.elasticIP?.publicIP else {
                    inSync = false
                    continue
                }
                address = eip
            }
            desiredByZone[record.zoneId, default: []].append(
                DesiredRecord(hostedZoneId: record.zoneId, name: record.name, ttl: record.ttl, values: [address]))
        }
        for (zone, records) in desiredByZone.sorted(by: { $0.key < $1.key }) {
            let current: [String: ResourceRecordSet]
            do {
                current = try await dns.readRecords(hostedZoneId: zone, names: records.map(\.name), type: "A", deadline: readDeadline)
            } catch {
                logger.warning("DNS read failed", metadata: ["zone": "\(zone)", "records": "\(records.count)", "error": "\(error)"])
                inSync = false
                continue
            }
            let stale = DNSBatchPlan.outOfDate(records, current: current)
            if stale.isEmpty {
                dnsOneByOne.remove(zone)
                continue
            }
            let now = ContinuousClock.now
            let due = stale.filter { dnsBackoff[canonicalRecordName($0.name)].map { now >= $0.next } ?? true }
            if due.count < stale.count { inSync = false }
            var batches = DNSBatchPlan.batches(due, oneByOne: dnsOneByOne.contains(zone))
            while !batches.isEmpty {
                let batch = batches.removeFirst()
                let write = ActuationWrite.dns(zoneId: zone, records: batch.map {
                    DNSRecordWrite(name: $0.name, address: $0.values.first ?? "", ttl: UInt32(clamping: $0.ttl))
                })
                let result = await actuate(write, term: term) { token, deadline in
                    "\(try await dns.writeRecords(batch, fencing: token, deadline: deadline))"
                }
                switch result {
                case .written:
                    for record in batch { dnsBackoff[canonicalRecordName(record.name)] = nil }
                case .refused where batch.count > 1:
                    // Nothing of a refused batch was applied; the same pass tries each alone.
                    dnsOneByOne.insert(zone)
                    logger.warning("Route 53 refused a batch; writing its records one by one", metadata: [
                        "zone": "\(zone)", "records": "\(batch.count)",
                    ])
                    batches.insert(contentsOf: DNSBatchPlan.batches(batch, oneByOne: true), at: 0)
                case .refused:
                    inSync = false
                    for record in batch {
                        let key = canonicalRecordName(record.name)
                        let attempts = (dnsBackoff[key]?.attempts ?? 0) + 1
                        dnsBackoff[key] = (attempts, .now + .seconds(min(300, 5 << min(attempts, 6))))
                        logger.warning("Route 53 refused the record; backing off", metadata: [
                            "record": "\(record.name)", "zone": "\(zone)", "attempts": "\(attempts)",
                        ])
                    }
                default:
                    inSync = false
                }
            }
        }
        return inSync
    }

    /// Reads every managed route table: the static route per managed key (propagated routes
    /// for the same prefix are never ours), and the tables that could be read at all. A
    /// Region that could not be read is read again on the next pass.
    private func readRoutes() async -> (actual: [RouteKey: EC2Route], tablesRead: Set<String>) {
        let byRegion = Dictionary(grouping: config.routes) { $0.region ?? config.aws.region }
        var actual: [RouteKey: EC2Route] = [:]
        var tablesRead = Set<String>()
        var complete = true
        for (region, routes) in byRegion {
            guard let ec2 = actuators.routes(region) else { continue }
            do {
                let tables = try await ec2.readRouteTables(Array(Set(routes.map(\.routeTable))).sorted(), deadline: readDeadline)
                for route in routes {
                    guard let table = tables[route.routeTable] else { continue }
                    tablesRead.insert(route.routeTable)
                    if let r = table.route(to: route.destination.description) {
                        actual[RouteKey(routeTable: route.routeTable, destination: route.destination)] = r
                    }
                }
                for id in Set(routes.map(\.routeTable)) where tables[id] == nil {
                    logger.error("managed route table not found", metadata: ["routeTable": "\(id)", "region": "\(region)"])
                }
            } catch {
                complete = false
                logger.warning("route tables could not be read", metadata: ["region": "\(region)", "error": "\(error)"])
            }
        }
        routeReadDue = .now + (complete ? timing.driftCheckInterval : timing.reconcileInterval)
        return (actual, tablesRead)
    }

    private func reconcileRoutes(term: UInt64) async {
        guard lockDelayOver else { return }
        let state = machine.state
        let view: (actual: [RouteKey: EC2Route], tablesRead: Set<String>)
        if let known = routeView, ContinuousClock.now < routeReadDue {
            view = known
        } else {
            view = await readRoutes()
            routeView = view
        }
        let (actual, tablesRead) = view
        let (current, foreign) = RouteReconciler.targets(actual, tunnels: state.tunnels)
        let plan = Planner.plan(state: state, routes: config.routes, current: current, foreign: foreign)
        let decision = RouteReconciler.decide(
            plan: plan, actual: actual, tablesRead: tablesRead, recentWrites: recentWrites, retryAt: backoff.mapValues(\.next),
            consistencyWindow: config.aws.consistencyWindow, now: .now)
        for note in decision.notes {
            switch note {
            case .leftAlone(let key, let reason):
                await reportNotWritten(key, reason)
            case .blackhole(let key, let reason):
                // Writing the same interface again cannot help and would only add an intent
                // and an outcome every pass: say so once and look the instances up again.
                if await reportNotWritten(key, reason) { rediscoverRequested = true }
            case .inSync(let key):
                notWrittenReported[key] = nil
            case .readBehindWrite:
                // Not confirmed yet: read again on the next pass, not at the next drift check.
                Counter(label: "switchman_route_reads_behind_write_total").increment()
                routeReadDue = min(routeReadDue, .now + timing.reconcileInterval)
            }
        }
        var todo: [String: [(PlannedRoute, exists: Bool)]] = [:]
        for w in decision.writes { todo[w.route.region ?? config.aws.region, default: []].append((w.route, exists: w.exists)) }
        guard !todo.isEmpty else { return }
        await withTaskGroup(of: Void.self) { regions in
            for (region, routes) in todo {
                guard let ec2 = actuators.routes(region) else { continue }
                regions.addTask {
                    await Self.bounded(routes, width: Self.maxConcurrentWritesPerRegion) { item in
                        await self.writeRoute(item.0, exists: item.exists, ec2: ec2, term: term, state: state)
                    }
                }
            }
        }
    }

    /// Runs `body` for every item, at most `width` at a time.
    static func bounded<T: Sendable>(_ items: [T], width: Int, _ body: @escaping @Sendable (T) async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            var pending = items[...]
            for _ in 0..<max(1, width) {
                guard let next = pending.popFirst() else { break }
                group.addTask { await body(next) }
            }
            while await group.next() != nil {
                guard let next = pending.popFirst() else { continue }
                group.addTask { await body(next) }
            }
        }
    }

    /// One route write, planned from the read this pass made (no second read per table).
    private func writeRoute(_ p: PlannedRoute, exists: Bool, ec2: any RouteActuator, term: UInt64, state: FailoverState) async {
        guard let target = p.target else { return }
        let desired = DesiredRoute(
            routeTableId: p.key.routeTable, destination: p.key.destination.description, target: .networkInterface(target.eniId))
        let result = await actuate(.route(p.key, target: target), term: term) { token, deadline in
            let outcome = await ec2.writeRoute(desired, exists: exists, fencing: token, deadline: deadline)
            if case .failed(let error) = outcome { throw error }
            return "\(outcome)"
        }
        noteResult(p.key, result)
        // Confirmed (or, for an ambiguous call, decided) by a read one pass later; until then
        // plans start from what was written.
        routeReadDue = min(routeReadDue, .now + timing.reconcileInterval)
        if result == .written {
            var written = EC2Route(destinationCidrBlock: p.key.destination.description, networkInterfaceId: target.eniId)
            written.state = "active"
            written.origin = "CreateRoute"
            routeView?.actual[p.key] = written
            recentWrites[p.key] = (target.eniId, .now)
            notWrittenReported[p.key] = nil
            if let detected = Self.detection(of: p, in: state) {
                let millis = wallClock() >= detected.millis ? wallClock() - detected.millis : 0
                Timer(label: "switchman_failover_detection_to_write_seconds").recordMilliseconds(millis)
            }
        }
    }

    /// Records, once per route and reason, that the leader chose not to write a route.
    /// Returns whether this was the first time for this reason.
    @discardableResult
    private func reportNotWritten(_ key: RouteKey, _ reason: String) async -> Bool {
        guard notWrittenReported[key] != reason else { return false }
        notWrittenReported[key] = reason
        logger.warning("route not written", metadata: ["route": "\(key)", "reason": "\(reason)"])
        do {
            try await proposeAsLeader(.routeNotWritten(key, reason: reason))
        } catch {
            notWrittenReported[key] = nil
            logger.debug("route-not-written record not committed", metadata: ["route": "\(key)", "error": "\(error)"])
        }
        return true
    }

    /// When the failure that moved this route was agreed: the latest "down" of a candidate
    /// the plan skipped. Nil for moves that are not failovers (failback, drift, replacement).
    static func detection(of plan: PlannedRoute, in state: FailoverState) -> Stamp? {
        guard case .failover(let skipped) = plan.reason else { return nil }
        let down = Set(skipped.filter { $0.why == .down }.map(\.tunnel))
        return state.events.events.last { e in
            if case .tunnelDown(let t, _, _) = e.kind { return down.contains(t) }
            return false
        }?.at
    }

    enum ActuationResult: Equatable {
        case written
        /// AWS answered with a client error (AccessDenied, a bad route table…): repeating at
        /// once would only fill the log, so the route waits 2, 4, … 30 s.
        case refused
        /// Not attempted, or no answer in time (no lease, leadership lost, deadline): tried
        /// again on the next pass.
        case notDone
        /// AWS does not know the target yet (a just-created interface or instance answers
        /// NotFound for a while): tried again shortly, without the permanent-error backoff.
        case notYetVisible
    }

    /// NotFound answers about an id that may only be new: EC2 is eventually consistent.
    static let eventuallyConsistentCodes: Set<String> = ["InvalidNetworkInterfaceID.NotFound", "InvalidInstanceID.NotFound"]

    typealias Backoff = (attempts: Int, next: ContinuousClock.Instant)

    /// When a write may be tried again after `result`, from the entry it had (nil: at once).
    static func backoff(after result: ActuationResult, _ current: Backoff?) -> Backoff? {
        switch result {
        case .written:
            return nil
        case .refused:
            let attempts = (current?.attempts ?? 0) + 1
            return (attempts, .now + .seconds(min(30, 1 << min(attempts, 5))))
        case .notDone:
            return current
        case .notYetVisible:
            return (current?.attempts ?? 0, .now + .seconds(1))
        }
    }

    private func noteResult(_ key: RouteKey, _ result: ActuationResult) {
        backoff[key] = Self.backoff(after: result, backoff[key])
    }

    /// Intent entry, then the write inside the lease, then the outcome entry (DESIGN rule 4).
    @discardableResult
    private func actuate(
        _ write: ActuationWrite, term: UInt64,
        _ perform: @Sendable (FencingToken, NIODeadline) async throws -> String
    ) async -> ActuationResult {
        if case .closed(let reason) = await fence(term: term) {
            blocked(write, term: term, reason: reason)
            return .notDone
        }
        let position: LogPosition
        do {
            position = try await proposeAsLeader(.intent(FencingToken(term: 0, index: 0), write))
        } catch {
            logger.debug("intent not committed", metadata: ["write": "\(write)", "error": "\(error)"])
            return .notDone
        }
        let token = FencingToken(term: position.term, index: position.index)
        var success = false
        var refused = false
        var notVisible = false
        var detail: String
        var requestID = ""
        let fenceNow: Fence = position.term != term ? .closed(reason: "intent in another term") : await fence(term: term)
        switch fenceNow {
        case .closed(let reason):
            blocked(write, term: term, reason: reason)
            detail = "not written: \(reason)"
        case .open(let deadline, let leaseRemaining):
            writes.increment()
            logger.info("AWS write starting", metadata: [
                "write": "\(write)", "token": "\(token)", "term": "\(token.term)", "index": "\(token.index)",
                "leaseRemainingMs": "\(leaseRemaining.milliseconds)",
            ])
            do {
                detail = try await perform(token, deadline)
                success = true
                logger.notice("AWS write made", metadata: ["write": "\(write)", "token": "\(token)", "result": "\(detail)"])
            } catch {
                writeFailures.increment()
                detail = "\(error)"
                if let aws = error as? AWSError {
                    requestID = aws.requestID ?? ""
                    // Throttling and 5xx pass: the next reconcile tries again at once (the
                    // token bucket paces it), so the routes converge as soon as AWS recovers.
                    notVisible = Self.eventuallyConsistentCodes.contains(aws.code)
                    refused = RetryPolicy.classify(aws) == .client && !notVisible
                }
                if case AWSClientError.deadlineExceeded(_, attempts: 0, _) = error {
                    // The lease ran out between the fence and the send (a paused process, a
                    // slow credential refresh): no request left, so nothing stale can land.
                    blocked(write, term: term, reason: "lease ended before sending")
                } else if Self.isAmbiguous(error) {
                    // A request left and no answer came in time: AWS may apply it, even later.
                    // The next read says which; the outcome entry says we do not know.
                    detail = "ambiguous, no answer in time (the next read decides): \(error)"
                    logger.warning("AWS write ambiguous", metadata: ["write": "\(write)", "token": "\(token)", "error": "\(error)"])
                } else {
                    logger.error("AWS write failed", metadata: ["write": "\(write)", "token": "\(token)", "error": "\(error)"])
                }
            }
        }
        do {
            try await proposeAsLeader(.outcome(token, success: success, detail: detail, requestId: requestID))
        } catch {
            // The intent stays pending until a newer term abandons it; the read-back will see
            // what actually happened.
            logger.debug("outcome not committed", metadata: ["token": "\(token)", "error": "\(error)"])
        }
        if success { return .written }
        return refused ? .refused : (notVisible ? .notYetVisible : .notDone)
    }

    /// Whether a failed write may still have been applied: it was sent and no answer came.
    static func isAmbiguous(_ error: any Error) -> Bool {
        switch error {
        case AWSClientError.deadlineExceeded(_, let attempts, _): return attempts > 0
        case AWSClientError.transport: return true
        default: return false
        }
    }
}
