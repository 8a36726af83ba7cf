import Logging
import Metrics
import NIOConcurrencyHelpers
import Raft
import RaftRuntime

/// The replicated failover state behind a `RaftNode`: decodes committed entries and applies
/// them to `FailoverState`, and lets the replica wait until one of its requests is applied.
///
/// Every replica applies the same entries in the same order, so every decision here must
/// depend on the entries alone: an undecodable entry is skipped (the same way everywhere),
/// and an intent's fencing token is the (term, index) of the entry that carries it.
public final class ControllerStateMachine: RaftStateMachine {
    private struct Waiter {
        var requestID: UInt64
        var continuation: CheckedContinuation<LogPosition?, Never>
    }

    private struct Inner {
        var state: FailoverState
        var appliedIndex: UInt64 = 0
        var appliedTerm: UInt64 = 0
        /// Request ids applied lately, for proposers that ask after the fact.
        var recent: [UInt64: LogPosition] = [:]
        var recentOrder: [UInt64] = []
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 1
        /// Bumped when an instance identity changes: the leader then re-checks DNS at once.
        var instanceChanges: UInt64 = 0
        /// Bumped by every entry whose directives say the plan may have changed.
        var planChanges: UInt64 = 0
        var planWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    static let recentCapacity = 16_384

    private let box: NIOLockedValueBox<Inner>
    private let logger: Logger
    private let failovers = Counter(label: "switchman_failovers_total")
    private let undecodable = Counter(label: "switchman_undecodable_entries_total")

    public init(policy: HealthPolicy, logger: Logger) {
        box = NIOLockedValueBox(Inner(state: FailoverState(policy: policy)))
        self.logger = logger
    }

    /// A copy of the state as of the last applied entry.
    public var state: FailoverState { box.withLockedValue { $0.state } }
    public var appliedIndex: UInt64 { box.withLockedValue { $0.appliedIndex } }
    public var instanceChanges: UInt64 { box.withLockedValue { $0.instanceChanges } }
    public var planChanges: UInt64 { box.withLockedValue { $0.planChanges } }

    // MARK: RaftStateMachine

    public func apply(_ entry: Entry) {
        // Every replica names every entry it applies, so the chaos checkers can show that the
        // committed log is the same everywhere (chaos/HISTORY.md). Debug level: it is per entry.
        if logger.logLevel <= .debug {
            logger.debug("entry applied", metadata: [
                "index": "\(entry.index)", "term": "\(entry.term)", "kind": "\(entry.kind)",
                "digest": "\(Self.digest(entry))",
            ])
        }
        guard entry.kind == .normal, !entry.data.isEmpty else {
            box.withLockedValue {
                $0.appliedIndex = entry.index
                $0.appliedTerm = entry.term
            }
            return
        }
        let decoded: ControllerEntry
        do {
            decoded = try ControllerEntry.decode(entry.data)
        } catch {
            undecodable.increment()
            logger.error("skipping an undecodable entry", metadata: ["index": "\(entry.index)", "error": "\(error)"])
            box.withLockedValue {
                $0.appliedIndex = entry.index
                $0.appliedTerm = entry.term
            }
            return
        }
        var command = decoded.command
        if case .intent(_, let write) = command {
            command = .intent(FencingToken(term: entry.term, index: entry.index), write)
        }
        let position = LogPosition(term: entry.term, index: entry.index)
        let (directives, resumed, woken) = box.withLockedValue { inner -> ([Directive], [CheckedContinuation<LogPosition?, Never>], [CheckedContinuation<Void, Never>]) in
            let directives = inner.state.apply(command, stamp: decoded.stamp ?? inner.state.now)
            inner.appliedIndex = entry.index
            inner.appliedTerm = entry.term
            if directives.contains(where: { if case .instanceChanged = $0 { return true } else { return false } }) {
                inner.instanceChanges &+= 1
            }
            var woken: [CheckedContinuation<Void, Never>] = []
            if directives.contains(.replan) { woken = Self.bumpPlan(&inner) }
            inner.recent[decoded.requestID] = position
            inner.recentOrder.append(decoded.requestID)
            if inner.recentOrder.count > Self.recentCapacity {
                let drop = inner.recentOrder.count - Self.recentCapacity
                for id in inner.recentOrder.prefix(drop) { inner.recent[id] = nil }
                inner.recentOrder.removeFirst(drop)
            }
            var resumed: [CheckedContinuation<LogPosition?, Never>] = []
            for (key, waiter) in inner.waiters where waiter.requestID == decoded.requestID {
                inner.waiters[key] = nil
                resumed.append(waiter.continuation)
            }
            return (directives, resumed, woken)
        }
        for c in resumed { c.resume(returning: position) }
        for c in woken { c.resume() }
        report(directives, at: position)
    }

    public func snapshot() -> [UInt8] {
        box.withLockedValue { StateCodec.encode($0.state) }
    }

    /// FNV-1a (64-bit) of an entry's kind and bytes, in hex: a fingerprint, not a defence.
    static func digest(_ entry: Entry) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in Array("\(entry.kind)".utf8) + entry.data {
            h = (h ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    public func restore(from snapshot: Snapshot) throws {
        logger.notice("snapshot restored", metadata: ["index": "\(snapshot.metadata.index)", "term": "\(snapshot.metadata.term)"])
        let state = try StateCodec.decodeState(snapshot.data)
        let woken = box.withLockedValue { inner -> [CheckedContinuation<Void, Never>] in
            inner.state = state
            inner.appliedIndex = snapshot.metadata.index
            inner.appliedTerm = snapshot.metadata.term
            inner.instanceChanges &+= 1
            return Self.bumpPlan(&inner)
        }
        for c in woken { c.resume() }
    }

    private static func bumpPlan(_ inner: inout Inner) -> [CheckedContinuation<Void, Never>] {
        inner.planChanges &+= 1
        defer { inner.planWaiters = [:] }
        return Array(inner.planWaiters.values)
    }

    // MARK: Waiting for a change of plan

    /// Returns once an entry that may change the plan (a verdict, a drain, an instance, the
    /// policy: the `.replan` directive) was applied after `generation`, or after `timeout`;
    /// either way the current generation. The leader acts on commit with it, not at its next
    /// pass (issue #17 item 2).
    public func waitForPlanChange(after generation: UInt64, timeout: Duration) async -> UInt64 {
        guard timeout > .zero else { return planChanges }
        let key = box.withLockedValue { inner -> UInt64 in
            defer { inner.nextWaiter += 1 }
            return inner.nextWaiter
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [weak self] in
                try? await Task.sleep(for: timeout)
                self?.wake(key)
            }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let changed = box.withLockedValue { inner -> Bool in
                    if inner.planChanges != generation { return true }
                    inner.planWaiters[key] = c
                    return false
                }
                if changed { c.resume() }
            }
            group.cancelAll()
        }
        return planChanges
    }

    private func wake(_ key: UInt64) {
        box.withLockedValue { $0.planWaiters.removeValue(forKey: key) }?.resume()
    }

    // MARK: Waiting for one's own requests

    /// The position at which the entry with `requestID` was applied, once it is, or nil when
    /// `timeout` passes first (it may still be applied later: requests are idempotent).
    public func waitApplied(requestID: UInt64, timeout: Duration) async -> LogPosition? {
        if let p = box.withLockedValue({ $0.recent[requestID] }) { return p }
        let key = box.withLockedValue { inner -> UInt64 in
            defer { inner.nextWaiter += 1 }
            return inner.nextWaiter
        }
        return await withTaskGroup(of: Void.self) { group -> LogPosition? in
            group.addTask { [weak self] in
                try? await Task.sleep(for: timeout)
                self?.expire(key)
            }
            let result = await withCheckedContinuation { (c: CheckedContinuation<LogPosition?, Never>) in
                let already = box.withLockedValue { inner -> LogPosition? in
                    if let p = inner.recent[requestID] { return p }
                    inner.waiters[key] = Waiter(requestID: requestID, continuation: c)
                    return nil
                }
                if let already { c.resume(returning: already) }
            }
            group.cancelAll()
            return result
        }
    }

    private func expire(_ key: UInt64) {
        let waiter = box.withLockedValue { $0.waiters.removeValue(forKey: key) }
        waiter?.continuation.resume(returning: nil)
    }

    private func report(_ directives: [Directive], at position: LogPosition) {
        for d in directives {
            switch d {
            case .verdictChanged(let tunnel, let from, let to):
                if to == .down { failovers.increment() }
                logger.notice("tunnel verdict changed", metadata: [
                    "tunnel": "\(tunnel)", "from": "\(from)", "to": "\(to)", "index": "\(position.index)",
                ])
            case .instanceChanged(let tunnel, let old, let new):
                logger.notice("tunnel instance changed", metadata: [
                    "tunnel": "\(tunnel)", "old": "\(old.map { "\($0)" } ?? "none")", "new": "\(new)",
                ])
            case .intentRecorded(let token, let write):
                logger.debug("actuation intent recorded", metadata: ["token": "\(token)", "write": "\(write)"])
            case .outcomeRecorded(let token, let success):
                logger.debug("actuation outcome recorded", metadata: ["token": "\(token)", "success": "\(success)"])
            case .replan:
                break
            }
        }
    }
}
