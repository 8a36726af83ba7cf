import Foundation

public struct CheckResult: Sendable, Codable, Equatable {
    public var name: String
    public var ok: Bool
    public var detail: String

    public init(name: String, ok: Bool, detail: String) {
        self.name = name
        self.ok = ok
        self.detail = detail
    }
}

/// A write the no-stale-write checker rejected, for the message and the timeline.
public struct StaleWrite: Sendable {
    public var call: ProxyCall
    public var reason: String
}

/// The checkers over one run (chaos/CHECKERS.md states each rule exactly).
public enum Checkers {
    public static let names = [
        "one-leader-per-term", "no-stale-write", "committed-entries-survive", "state-machines-agree", "route-linearizable",
        "convergence", "no-flapping", "no-write-loop", "no-route-to-checked-eni",
        "no-route-to-unvouched-instance",
    ]

    /// Tolerance between clocks of two processes reading the same CLOCK_MONOTONIC: a leader's
    /// log line and the proxy's arrival stamp are taken at different moments of one event chain.
    public static let realTimeSlackNs: Int64 = 5_000_000

    public static func run(_ h: RunHistory) -> Verdict {
        let stale = noStaleWrite(h)
        let checkers = [
            oneLeaderPerTerm(h), stale.result, committedEntriesSurvive(h), stateMachinesAgree(h), routeLinearizable(h),
            convergence(h), noFlapping(h), noWriteLoop(h), noRouteToCheckedInterface(h), noRouteToUnvouchedInstance(h),
        ]
        let blocked = h.replicas.values.reduce(0) { $0 + $1.filter { $0.msg == "stale write blocked" }.count }
        let arrived = stale.stale.count
        let stats = RunStats(
            faults: h.faults.filter { $0.event == "start" }.count,
            writes: h.proxy.filter(\.isWrite).count,
            staleAttempted: blocked + arrived, staleBlocked: blocked, staleArrived: arrived,
            elections: Set(leaderEvents(h, includeFakedClock: true).map(\.term)).count,
            convergenceMs: convergenceMs(h.meta),
            truncatedLines: h.truncatedLines.values.reduce(0, +))
        return Verdict(scenario: h.meta.scenario, seed: h.meta.seed, checkers: checkers, stats: stats)
    }

    // MARK: one-leader-per-term

    struct LeaderEvent {
        var replica: Int
        var term: Int64
        var monoNs: Int64
    }

    static func leaderEvents(_ h: RunHistory, includeFakedClock: Bool) -> [LeaderEvent] {
        var out: [LeaderEvent] = []
        for (id, lines) in h.replicas where includeFakedClock || !h.meta.fakedClock.contains(id) {
            for l in lines where l.msg == "role changed" && l.meta["role"] == "leader" {
                guard let term = l.int("term") else { continue }
                out.append(LeaderEvent(replica: id, term: term, monoNs: l.monoNs))
            }
        }
        return out.sorted { ($0.monoNs, $0.replica) < ($1.monoNs, $1.replica) }
    }

    public static func oneLeaderPerTerm(_ h: RunHistory) -> CheckResult {
        var leaders: [Int64: Set<Int>] = [:]
        for e in leaderEvents(h, includeFakedClock: true) { leaders[e.term, default: []].insert(e.replica) }
        let split = leaders.filter { $0.value.count > 1 }.sorted { $0.key < $1.key }
        if let first = split.first {
            let who = first.value.sorted().map(String.init).joined(separator: " and ")
            return CheckResult(
                name: "one-leader-per-term", ok: false,
                detail: "term \(first.key) had leaders \(who)" + (split.count > 1 ? " (and \(split.count - 1) more split terms)" : ""))
        }
        let count = leaders.values.reduce(0) { $0 + $1.count }
        return CheckResult(name: "one-leader-per-term", ok: true, detail: "\(leaders.count) terms, \(count) leaders")
    }

    // MARK: no-stale-write

    public static func noStaleWrite(_ h: RunHistory) -> (result: CheckResult, stale: [StaleWrite]) {
        let writes = h.proxy.enumerated().filter { $0.element.isWrite }
            .sorted { ($0.element.monoNs, $0.offset) < ($1.element.monoNs, $1.offset) }.map(\.element)
        let time = relativeTime(h.meta)
        var stale: [StaleWrite] = []
        var unlogged: [String] = []

        // (a) terms never go back in arrival order.
        var highest: ProxyCall? = nil
        var staleReason: [Int: String] = [:]  // by position in `writes`
        for (i, w) in writes.enumerated() {
            guard let term = w.term else {
                staleReason[i] = "carries no term"
                continue
            }
            if let hi = highest, let hiTerm = hi.term, term < hiTerm {
                staleReason[i] = "term \(term) arrived at \(time(w.monoNs)) after a term-\(hiTerm) write (seq \(hi.seq))"
            } else if highest?.term.map({ term > $0 }) ?? true {
                highest = w
            }
        }

        // (c) real time: nothing from term t arrives after a (trusted-clock) leader of a
        // higher term announced itself.
        let elections = leaderEvents(h, includeFakedClock: false)
        var prefixMax: [(monoNs: Int64, term: Int64, replica: Int)] = []
        for e in elections {
            if let last = prefixMax.last, last.term >= e.term {
                prefixMax.append((e.monoNs, last.term, last.replica))
            } else {
                prefixMax.append((e.monoNs, e.term, e.replica))
            }
        }
        for (i, w) in writes.enumerated() where staleReason[i] == nil {
            guard let term = w.term else { continue }
            // The last election logged more than the slack before this arrival.
            var lo = 0
            var hi = prefixMax.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if prefixMax[mid].monoNs + realTimeSlackNs < w.monoNs { lo = mid + 1 } else { hi = mid }
            }
            guard lo > 0 else { continue }
            let newest = prefixMax[lo - 1]
            if newest.term > term {
                staleReason[i] =
                    "term \(term) arrived at \(time(w.monoNs)), after replica \(newest.replica) became leader of term \(newest.term) at \(time(newest.monoNs))"
            }
        }
        for (i, w) in writes.enumerated() {
            if let r = staleReason[i] { stale.append(StaleWrite(call: w, reason: r)) }
        }

        // (b) every write was announced by its replica with a live lease.
        var starts: [Int: [WriteToken: Double]] = [:]
        for (id, lines) in h.replicas {
            for l in lines where l.msg == "AWS write starting" {
                guard let token = logToken(l) else { continue }
                let lease = l.meta["leaseRemainingMs"].flatMap(Double.init) ?? -1
                starts[id, default: [:]][token] = max(starts[id]?[token] ?? -.infinity, lease)
            }
        }
        for w in writes {
            guard let node = w.node, let token = w.token else {
                unlogged.append("\(w.summary): no node/term/index in its User-Agent")
                continue
            }
            guard let lease = starts[node]?[token] else {
                unlogged.append("\(w.summary): replica \(node) logged no `AWS write starting` for \(token)")
                continue
            }
            if lease <= 0 { unlogged.append("\(w.summary): replica \(node) started it with leaseRemainingMs \(lease)") }
        }

        let blocked = h.replicas.values.reduce(0) { $0 + $1.filter { $0.msg == "stale write blocked" }.count }
        var problems: [String] = stale.map { "\($0.call.summary): \($0.reason)" }
        problems += unlogged
        if problems.isEmpty {
            let terms = Set(writes.compactMap(\.term)).count
            return (
                CheckResult(
                    name: "no-stale-write", ok: true,
                    detail: "\(writes.count) writes in \(terms) terms, none stale, each started under a lease; \(blocked) blocked at the source"),
                stale
            )
        }
        return (
            CheckResult(name: "no-stale-write", ok: false, detail: "\(problems.count) problems: " + summarize(problems)),
            stale
        )
    }

    static func logToken(_ l: LogLine) -> WriteToken? {
        if let t = l.int("term"), let i = l.int("index"), t >= 0, i >= 0 { return WriteToken(term: UInt64(t), index: UInt64(i)) }
        // Fall back to the rendered token, `term/T index/I`.
        guard let token = l.meta["token"] else { return nil }
        var term: UInt64?
        var index: UInt64?
        for part in token.split(separator: " ") {
            let kv = part.split(separator: "/")
            guard kv.count == 2 else { continue }
            if kv[0] == "term" { term = UInt64(kv[1]) }
            if kv[0] == "index" { index = UInt64(kv[1]) }
        }
        guard let term, let index else { return nil }
        return WriteToken(term: term, index: index)
    }

    // MARK: committed-entries-survive

    public static func committedEntriesSurvive(_ h: RunHistory) -> CheckResult {
        struct Applied {
            var term: Int64
            var digest: String?
            var replica: Int
            var line: Int
        }
        var first: [Int64: Applied] = [:]
        var disagreements: [(index: Int64, text: String)] = []
        var appliedBy: [Int: Set<Int64>] = [:]
        var snapshotBy: [Int: Int64] = [:]
        // Indices that must be everywhere: those applied by the end of the run. The rig stops
        // the replicas one by one after it, and what the last ones commit meanwhile (the
        // stopping leader's hand-over) cannot reach the ones already stopped.
        var required: Set<Int64> = []
        for id in h.replicas.keys.sorted() {
            for l in h.replicas[id] ?? [] {
                if l.msg == "snapshot restored", let index = l.int("index") {
                    snapshotBy[id] = max(snapshotBy[id] ?? 0, index)
                }
                guard l.msg == "entry applied", let index = l.int("index"), let term = l.int("term") else { continue }
                let digest = l.meta["digest"]
                appliedBy[id, default: []].insert(index)
                if l.monoNs <= h.meta.endMonoNs { required.insert(index) }
                guard let seen = first[index] else {
                    first[index] = Applied(term: term, digest: digest, replica: id, line: l.line)
                    continue
                }
                let digestsDiffer = seen.digest != nil && digest != nil && seen.digest != digest
                if seen.term != term || digestsDiffer {
                    let d1 = seen.digest.map { " digest \($0)" } ?? ""
                    let d2 = digest.map { " digest \($0)" } ?? ""
                    let who = seen.replica == id ? "replica \(id) (after a restart)" : "replica \(id)"
                    disagreements.append(
                        (index,
                         "index \(index): replica \(seen.replica) applied term \(seen.term)\(d1) (line \(seen.line)), \(who) applied term \(term)\(d2) (line \(l.line))"))
                }
            }
        }
        if let worst = disagreements.min(by: { $0.index < $1.index }) {
            return CheckResult(
                name: "committed-entries-survive", ok: false,
                detail: worst.text + (disagreements.count > 1 ? " (\(disagreements.count) disagreements)" : ""))
        }
        let all = first.keys.sorted()
        // Every run commits at least each leader's no-op: silence means the logs lack the
        // line (debug level off?), and a vacuous pass would hide that.
        if all.isEmpty {
            return CheckResult(name: "committed-entries-survive", ok: false, detail: "no replica logged `entry applied` (is the log level debug?)")
        }
        var missing: [String] = []
        for m in h.meta.finalMembers.sorted() {
            let mine = appliedBy[m] ?? []
            let snap = snapshotBy[m] ?? 0
            let lacking = all.filter { required.contains($0) && !mine.contains($0) && $0 > snap }
            if let low = lacking.first {
                missing.append(
                    "replica \(m) never applied index \(low) (term \(first[low]?.term ?? 0), first applied by replica \(first[low]?.replica ?? 0))"
                        + (lacking.count > 1 ? " nor \(lacking.count - 1) more" : ""))
            }
        }
        if !missing.isEmpty {
            return CheckResult(name: "committed-entries-survive", ok: false, detail: summarize(missing))
        }
        return CheckResult(
            name: "committed-entries-survive", ok: true,
            detail: "\(all.count) indices (up to \(all.last ?? 0)) agree and reached all \(h.meta.finalMembers.count) final members")
    }

    // MARK: state-machines-agree

    /// The same entries must have the same effects everywhere (DESIGN rule 6): every tunnel
    /// verdict change a replica logged at an index, every other replica that applied that
    /// index (by replaying it, not through a snapshot) logged too. A replica that reads its
    /// own clock or file inside the state machine computes other verdicts from the same log.
    public static func stateMachinesAgree(_ h: RunHistory) -> CheckResult {
        struct Change: Hashable { var tunnel: String; var from: String; var to: String }
        var changes: [Int: [Int64: Set<Change>]] = [:]
        var applied: [Int: Set<Int64>] = [:]
        var snapshot: [Int: Int64] = [:]
        for (id, lines) in h.replicas {
            for l in lines {
                switch l.msg {
                case "entry applied":
                    if let index = l.int("index") { applied[id, default: []].insert(index) }
                case "snapshot restored":
                    if let index = l.int("index") { snapshot[id] = max(snapshot[id] ?? 0, index) }
                case "tunnel verdict changed":
                    guard let index = l.int("index"), let tunnel = l.meta["tunnel"], let from = l.meta["from"], let to = l.meta["to"] else { continue }
                    changes[id, default: [:]][index, default: []].insert(Change(tunnel: tunnel, from: from, to: to))
                default:
                    continue
                }
            }
        }
        var compared = 0
        var problems: [(index: Int64, text: String)] = []
        for (a, byIndex) in changes {
            for (index, mine) in byIndex {
                for b in h.replicas.keys where b != a {
                    guard applied[b]?.contains(index) == true, index > (snapshot[b] ?? 0) else { continue }
                    compared += 1
                    let theirs = changes[b]?[index] ?? []
                    for c in mine.subtracting(theirs) {
                        problems.append((index, "index \(index): replica \(a) turned \(c.tunnel) \(c.from) → \(c.to), replica \(b) applied the same entry and did not"))
                    }
                }
            }
        }
        if let first = problems.min(by: { $0.index < $1.index }) {
            return CheckResult(name: "state-machines-agree", ok: false,
                               detail: first.text + (problems.count > 1 ? " (\(problems.count) differences)" : ""))
        }
        let total = changes.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } }
        return CheckResult(name: "state-machines-agree", ok: true,
                           detail: "\(total) verdict changes logged, \(compared) cross-checks against replicas that applied the same index, all equal")
    }

    // MARK: route-linearizable

    /// The per-route register histories a run recorded at the proxy (see HISTORY.md).
    public static func routeOps(_ h: RunHistory) -> [RouteKey: [RegisterOp<String?>]] {
        let keys = h.routeKeys
        var ops: [RouteKey: [RegisterOp<String?>]] = [:]
        for k in keys { ops[k] = [] }
        for c in h.proxy where c.isRouteWrite {
            guard let key = c.routeKey else { continue }
            let ret: Int64?
            switch c.effect {
            case .notApplied: continue
            case .applied: ret = c.doneNs
            case .unknown: ret = nil
            }
            let value: String? = c.action == "DeleteRoute" ? nil : c.eni
            ops[key, default: []].append(.write(value, call: c.monoNs, ret: ret, token: c.token, label: "proxy seq \(c.seq) \(c.action) node \(c.node.map(String.init) ?? "?")"))
        }
        for c in h.proxy where c.isRouteRead && c.effect == .applied && !c.realism.contains("consistency") {
            guard let routes = c.routes, let done = c.doneNs else { continue }
            let tables = Set(routes.map(\.table))
            for key in keys where tables.contains(key.table) {
                let seen = routes.first { $0.table == key.table && $0.destination == key.destination && $0.isStatic }?.eni
                ops[key]?.append(.read(seen, call: c.monoNs, ret: done, label: "proxy seq \(c.seq) DescribeRouteTables"))
            }
        }
        for f in h.meta.finalRoutes {
            ops[f.key, default: []].append(.read(f.eni, call: h.meta.endMonoNs, ret: h.meta.endMonoNs, label: "finalRoutes"))
        }
        return ops
    }

    public static func routeLinearizable(_ h: RunHistory) -> CheckResult {
        let ops = routeOps(h)
        let checker = RegisterChecker<String?>(initial: .unknown, tokenOrder: true)
        let time = relativeTime(h.meta)
        var writes = 0
        var reads = 0
        for key in ops.keys.sorted() {
            let history = ops[key] ?? []
            writes += history.filter(\.isWrite).count
            reads += history.filter { !$0.isWrite }.count
            switch checker.check(history) {
            case .linearizable: continue
            case .inconclusive(let why):
                return CheckResult(name: "route-linearizable", ok: false, detail: "\(key): inconclusive, \(why)")
            case .violation(let v):
                return CheckResult(name: "route-linearizable", ok: false, detail: "\(key): " + v.explain(value: { $0 ?? "none" }, time: time))
            }
        }
        return CheckResult(
            name: "route-linearizable", ok: true, detail: "\(ops.count) routes, \(writes) writes and \(reads) reads linearizable in token order")
    }

    // MARK: convergence

    static func convergenceMs(_ m: RunMeta) -> Int64? {
        // Converged before the heal (nothing had to move) counts as zero.
        m.convergedMonoNs.map { max(0, $0 - m.healedMonoNs) / 1_000_000 }
    }

    public static func convergence(_ h: RunHistory) -> CheckResult {
        let m = h.meta
        guard let ms = convergenceMs(m) else {
            return CheckResult(name: "convergence", ok: false, detail: "the routes never converged (convergedMonoNs is null)")
        }
        var problems: [String] = []
        if ms > m.convergenceBoundMs { problems.append("converged \(ms) ms after the heal, bound \(m.convergenceBoundMs) ms") }
        let finals = Dictionary(m.finalRoutes.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        for spec in m.routes {
            guard let f = finals[spec.key] else {
                problems.append("\(spec.key) is missing from finalRoutes")
                continue
            }
            // No healthy candidate: any target is as good as another.
            guard let expected = spec.candidates.first(where: m.healthyAtEnd.contains) else { continue }
            let actual = f.eni.flatMap { m.enis[$0] }
            if actual != expected {
                problems.append("\(spec.key) points at \(f.eni ?? "nothing") (\(actual ?? "no known tunnel")), expected \(expected)")
            }
        }
        if problems.isEmpty {
            return CheckResult(
                name: "convergence", ok: true, detail: "\(m.finalRoutes.count) routes on their first healthy candidate \(ms) ms after the heal (bound \(m.convergenceBoundMs) ms)")
        }
        return CheckResult(name: "convergence", ok: false, detail: summarize(problems))
    }

    // MARK: no-flapping

    public static func noFlapping(_ h: RunHistory) -> CheckResult {
        let m = h.meta
        let holdNs = m.holdDownMs * 1_000_000
        let time = relativeTime(m)
        var problems: [String] = []
        var checked = 0
        for w in m.flapping {
            for spec in m.routes where spec.candidates.contains(w.tunnel) {
                checked += 1
                var seenTokens = Set<WriteToken>()
                var times: [(Int64, ProxyCall)] = []
                for c in h.proxy where c.isRouteWrite && c.routeKey == spec.key && c.effect == .applied {
                    guard c.monoNs >= w.fromMonoNs, c.monoNs <= w.toMonoNs else { continue }
                    // Retries of one intent are one decision, not a flap.
                    if let t = c.token, !seenTokens.insert(t).inserted { continue }
                    times.append((c.monoNs, c))
                }
                times.sort { $0.0 < $1.0 }
                for (a, b) in zip(times, times.dropFirst()) where b.0 - a.0 < holdNs {
                    problems.append(
                        "\(spec.key) while \(w.tunnel) flapped: writes at \(time(a.0)) (seq \(a.1.seq)) and \(time(b.0)) (seq \(b.1.seq)), \((b.0 - a.0) / 1_000_000) ms apart, hold-down \(m.holdDownMs) ms"
                    )
                }
            }
        }
        if problems.isEmpty {
            return CheckResult(
                name: "no-flapping", ok: true,
                detail: m.flapping.isEmpty ? "no flapping windows" : "\(checked) route(s) over \(m.flapping.count) flapping window(s): at most one write per hold-down")
        }
        return CheckResult(name: "no-flapping", ok: false, detail: summarize(problems))
    }

    // MARK: no-write-loop

    /// (a) once the routes converged, nothing more is written; (b) no term writes a route
    /// again to the target of its own last applied write inside the consistency window (a
    /// stale read must cost at most one duplicate per window, never a loop).
    public static func noWriteLoop(_ h: RunHistory) -> CheckResult {
        let m = h.meta
        let time = relativeTime(m)
        var problems: [String] = []
        let writes = h.proxy.filter(\.isRouteWrite).sorted { ($0.monoNs, $0.line) < ($1.monoNs, $1.line) }
        if let converged = m.convergedMonoNs {
            for w in writes where w.monoNs > converged && w.monoNs <= m.endMonoNs {
                problems.append("\(w.action) \(w.routeKey.map { "\($0)" } ?? "?") at \(time(w.monoNs)) (seq \(w.seq)) after convergence at \(time(converged))")
            }
        }
        let windowNs = m.consistencyWindowMs * 1_000_000
        var repeats = 0
        for (key, calls) in Dictionary(grouping: writes.filter { $0.routeKey != nil }, by: { $0.routeKey! }) {
            var last: ProxyCall? = nil
            for c in calls {
                defer { if c.effect == .applied { last = c } }
                guard let prev = last, let prevDone = prev.doneNs, c.effect != .notApplied else { continue }
                // Retries of one intent carry its token: one decision, not a rewrite.
                if let t = c.token, t == prev.token { continue }
                guard c.eni == prev.eni, c.term == prev.term, c.monoNs - prevDone < windowNs else { continue }
                repeats += 1
                problems.append("\(key): rewritten to \(c.eni ?? "?") at \(time(c.monoNs)) (seq \(c.seq)), \((c.monoNs - prevDone) / 1_000_000) ms after term \(c.term.map(String.init) ?? "?") wrote it (seq \(prev.seq)), window \(m.consistencyWindowMs) ms")
            }
        }
        if problems.isEmpty {
            return CheckResult(name: "no-write-loop", ok: true,
                               detail: "\(writes.count) route writes, none after convergence, no rewrite inside the \(m.consistencyWindowMs) ms window")
        }
        return CheckResult(name: "no-write-loop", ok: false, detail: summarize(problems))
    }

    // MARK: no-route-to-checked-eni

    /// Issue #16: EC2 drops what an instance forwards while its interface's source/destination
    /// check is on, and every instance the world launches has it on. A switchman route write
    /// may name an interface only after a ModifyNetworkInterfaceAttribute turning its check off
    /// was answered 2xx (and no later one turned it on again before the write arrived).
    public static func noRouteToCheckedInterface(_ h: RunHistory) -> CheckResult {
        let time = relativeTime(h.meta)
        var off: Set<String> = []
        var problems: [String] = []
        var checked = 0
        // Check changes take effect when answered; route writes are judged when they arrive.
        var changes: [(at: Int64, eni: String, off: Bool)] = []
        for c in h.proxy where c.action == "ModifyNetworkInterfaceAttribute" && c.effect == .applied {
            guard let eni = c.eni, let v = c.sourceDestCheck, let done = c.doneNs else { continue }
            changes.append((done, eni, v.lowercased() == "false"))
        }
        changes.sort { $0.at < $1.at }
        var next = 0
        let writes = h.proxy.filter { ($0.action == "ReplaceRoute" || $0.action == "CreateRoute") && $0.node != nil }
            .sorted { ($0.monoNs, $0.line) < ($1.monoNs, $1.line) }
        for w in writes {
            // The leader writes the route only after the outcome of its check-off committed,
            // long after the answer; the slack only covers the two processes' clock reads.
            while next < changes.count, changes[next].at <= w.monoNs + realTimeSlackNs {
                let ch = changes[next]
                if ch.off { off.insert(ch.eni) } else { off.remove(ch.eni) }
                next += 1
            }
            guard let eni = w.eni else { continue }
            checked += 1
            if !off.contains(eni) {
                problems.append("\(w.action) \(w.routeKey.map { "\($0)" } ?? "?") → \(eni) at \(time(w.monoNs)) (seq \(w.seq), term \(w.term.map(String.init) ?? "?")): its source/destination check was not turned off")
            }
        }
        if problems.isEmpty {
            return CheckResult(name: "no-route-to-checked-eni", ok: true,
                               detail: "\(checked) route writes, each to an interface whose check had been turned off (\(changes.count) check changes)")
        }
        return CheckResult(name: "no-route-to-checked-eni", ok: false, detail: summarize(problems))
    }

    // MARK: no-route-to-unvouched-instance

    /// Issue #16: a replacement earns its verdict from its own sentinel. The rig notes each
    /// sentinel start with the instance it answers for (`"event": "note", "fault": "sentinel"`,
    /// detail `TUNNEL INSTANCE ENI`); a switchman route write may name an interface only
    /// `(rise − 1) × probeInterval` after a sentinel began answering for its instance — the
    /// least time in which `rise` healthy rounds can be polled. The old instance's sentinel
    /// still answering, or the new one not started yet, vouches for nothing.
    public static func noRouteToUnvouchedInstance(_ h: RunHistory) -> CheckResult {
        let name = "no-route-to-unvouched-instance"
        let time = relativeTime(h.meta)
        var vouched: [String: Int64] = [:]
        for f in h.faults where f.event == "note" && f.fault == "sentinel" {
            let parts = (f.detail ?? "").split(separator: " ").map(String.init)
            guard parts.count == 3 else { continue }
            vouched[parts[2]] = min(vouched[parts[2]] ?? .max, f.monoNs)
        }
        guard !vouched.isEmpty, let rise = h.meta.rise, let interval = h.meta.probeIntervalMs else {
            return CheckResult(name: name, ok: true, detail: "no sentinel starts recorded (a history from before issue #16)")
        }
        let earliest = max(0, rise - 1) * interval * 1_000_000
        var problems: [String] = []
        var checked = 0
        let writes = h.proxy.filter { ($0.action == "ReplaceRoute" || $0.action == "CreateRoute") && $0.node != nil }
        for w in writes {
            guard let eni = w.eni else { continue }
            checked += 1
            guard let since = vouched[eni] else {
                problems.append("\(w.action) → \(eni) at \(time(w.monoNs)) (seq \(w.seq)): no sentinel ever answered for its instance")
                continue
            }
            if w.monoNs + realTimeSlackNs < since + earliest {
                problems.append("\(w.action) → \(eni) at \(time(w.monoNs)) (seq \(w.seq)): its sentinel began answering at \(time(since)), fewer than \(rise) rounds before")
            }
        }
        if problems.isEmpty {
            return CheckResult(name: name, ok: true,
                               detail: "\(checked) route writes, each after its instance's own sentinel could have said healthy \(rise) times (\(vouched.count) sentinel starts)")
        }
        return CheckResult(name: name, ok: false, detail: summarize(problems))
    }

    // MARK: helpers

    static func relativeTime(_ m: RunMeta) -> @Sendable (Int64) -> String {
        let start = m.startMonoNs
        return { t in String(format: "%.3fs", Double(t - start) / 1e9) }
    }

    static func summarize(_ problems: [String]) -> String {
        let shown = problems.prefix(3).joined(separator: "; ")
        return problems.count > 3 ? shown + "; … (\(problems.count - 3) more)" : shown
    }
}

public struct RunStats: Sendable, Equatable {
    public var faults: Int
    public var writes: Int
    public var staleAttempted: Int
    public var staleBlocked: Int
    public var staleArrived: Int
    public var elections: Int
    public var convergenceMs: Int64?
    public var truncatedLines: Int

    public init(
        faults: Int, writes: Int, staleAttempted: Int, staleBlocked: Int, staleArrived: Int, elections: Int, convergenceMs: Int64?,
        truncatedLines: Int
    ) {
        self.faults = faults
        self.writes = writes
        self.staleAttempted = staleAttempted
        self.staleBlocked = staleBlocked
        self.staleArrived = staleArrived
        self.elections = elections
        self.convergenceMs = convergenceMs
        self.truncatedLines = truncatedLines
    }
}

public struct Verdict: Sendable {
    public var scenario: String
    public var seed: Int64
    public var checkers: [CheckResult]
    public var stats: RunStats

    public var ok: Bool { checkers.allSatisfy(\.ok) }

    /// verdict.json (HISTORY.md). Built by hand so that a missing convergence is `null`.
    public func json() throws -> Data {
        let stats: [String: Any] = [
            "faults": self.stats.faults, "writes": self.stats.writes,
            "staleAttempted": self.stats.staleAttempted, "staleBlocked": self.stats.staleBlocked,
            "staleArrived": self.stats.staleArrived, "elections": self.stats.elections,
            "convergenceMs": self.stats.convergenceMs.map { $0 as Any } ?? NSNull(),
            "truncatedLines": self.stats.truncatedLines,
        ]
        let object: [String: Any] = [
            "scenario": scenario, "seed": seed, "ok": ok,
            "checkers": checkers.map { ["name": $0.name, "ok": $0.ok, "detail": $0.detail] as [String: Any] },
            "stats": stats,
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}
