/// A write's fencing token: the (term, index) of the intent it carries out.
public struct WriteToken: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var term: UInt64
    public var index: UInt64

    public init(term: UInt64, index: UInt64) {
        self.term = term
        self.index = index
    }

    public static func < (a: WriteToken, b: WriteToken) -> Bool { (a.term, a.index) < (b.term, b.index) }
    public var description: String { "term/\(term) index/\(index)" }
}

/// One operation on a register. Times are in whatever unit the caller uses (the chaos rig:
/// CLOCK_MONOTONIC nanoseconds); only their order matters.
public struct RegisterOp<Value: Hashable & Sendable>: Sendable {
    public enum Kind: Sendable, Hashable {
        case write(Value)
        case read(Value)
    }

    public var kind: Kind
    public var call: Int64
    /// nil when no answer ever came: the op may or may not have taken effect, at any time
    /// after `call`.
    public var ret: Int64?
    /// Writes only. Tokened writes must take effect in token order; equal tokens are retries
    /// of one intent and stay unordered; a write without a token is not constrained.
    public var token: WriteToken?
    /// Where the op came from, for counterexamples (e.g. "proxy seq 17").
    public var label: String

    public init(kind: Kind, call: Int64, ret: Int64?, token: WriteToken? = nil, label: String = "") {
        self.kind = kind
        self.call = call
        self.ret = ret
        self.token = token
        self.label = label
    }

    public static func write(_ v: Value, call: Int64, ret: Int64?, token: WriteToken? = nil, label: String = "") -> RegisterOp {
        RegisterOp(kind: .write(v), call: call, ret: ret, token: token, label: label)
    }

    public static func read(_ v: Value, call: Int64, ret: Int64, label: String = "") -> RegisterOp {
        RegisterOp(kind: .read(v), call: call, ret: ret, label: label)
    }

    public var isWrite: Bool { if case .write = kind { return true } else { return false } }
}

/// Why a history is not linearizable.
public struct LinearizabilityViolation<Value: Hashable & Sendable>: Sendable {
    /// The op the deepest search could not place: a read whose value nothing explains, or a
    /// write that token order or real time forbids.
    public var blocked: RegisterOp<Value>
    /// A longest order found for the ops before it, and the register's value after it
    /// (nil when the initial value was unknown and nothing fixed it yet).
    public var longestOrder: [RegisterOp<Value>]
    public var valueAfterOrder: Value?
    public var valueKnown: Bool
    /// A small sub-history that is still not linearizable (every op in it is needed, as far
    /// as the minimizer's budget went), ordered by call time.
    public var minimal: [RegisterOp<Value>]
}

public enum LinearizabilityOutcome<Value: Hashable & Sendable>: Sendable {
    case linearizable
    case violation(LinearizabilityViolation<Value>)
    /// The search ran out of its state budget.
    case inconclusive(String)

    public var isLinearizable: Bool { if case .linearizable = self { return true } else { return false } }
    public var violation: LinearizabilityViolation<Value>? { if case .violation(let v) = self { return v } else { return nil } }
}

/// Wing–Gong search with Lowe's memoization (as in Porcupine) for a read/write register:
/// repeatedly linearize some op whose call precedes every pending return, backtrack at a
/// return that cannot be reached, and never revisit a (set of linearized ops, value) pair.
public struct RegisterChecker<Value: Hashable & Sendable>: Sendable {
    public enum Initial: Sendable {
        /// The register's value before the history is not known: the first op to touch it
        /// may see anything (as if an implicit write of what the first read saw came first).
        case unknown
        case known(Value)
    }

    public var initial: Initial
    public var tokenOrder: Bool
    /// States the search may visit before it gives up (inconclusive).
    public var maxStates: Int
    /// Linearizability checks the counterexample minimizer may run.
    public var minimizeBudget: Int

    public init(initial: Initial = .unknown, tokenOrder: Bool = true, maxStates: Int = 2_000_000, minimizeBudget: Int = 400) {
        self.initial = initial
        self.tokenOrder = tokenOrder
        self.maxStates = maxStates
        self.minimizeBudget = minimizeBudget
    }

    public func check(_ ops: [RegisterOp<Value>]) -> LinearizabilityOutcome<Value> {
        switch search(ops, budget: maxStates) {
        case .ok: return .linearizable
        case .budget: return .inconclusive("gave up after \(maxStates) search states on \(ops.count) ops")
        case .fail(let order, let blocked, let state):
            let minimal = minimize(ops, blocked: blocked)
            var value: Value? = nil
            var known = false
            if case .known(let v) = state {
                value = v
                known = true
            }
            return .violation(
                LinearizabilityViolation(
                    blocked: ops[blocked], longestOrder: order.map { ops[$0] }, valueAfterOrder: value, valueKnown: known,
                    minimal: minimal.map { ops[$0] }.sorted { ($0.call, $0.ret ?? .max) < ($1.call, $1.ret ?? .max) }))
        }
    }

    /// P-compositionality: a history of independent registers is linearizable iff each
    /// register's sub-history is, so each key is searched on its own (exponentially cheaper).
    /// Returns every key's outcome.
    public func check<Key: Hashable>(byKey histories: [Key: [RegisterOp<Value>]]) -> [Key: LinearizabilityOutcome<Value>] {
        histories.mapValues { check($0) }
    }

    // MARK: - Search

    enum RegState: Hashable {
        case unknown
        case known(Value)
    }

    enum SearchResult {
        case ok
        case fail(order: [Int], blocked: Int, state: RegState)
        case budget
    }

    struct Bits: Hashable {
        var words: [UInt64]
        init(count: Int) { words = Array(repeating: 0, count: (count + 63) / 64) }
        mutating func set(_ i: Int) { words[i >> 6] |= 1 << UInt64(i & 63) }
        mutating func clear(_ i: Int) { words[i >> 6] &= ~(1 << UInt64(i & 63)) }
        func contains(_ i: Int) -> Bool { words[i >> 6] & (1 << UInt64(i & 63)) != 0 }
        func containsAll(_ other: Bits) -> Bool {
            for (a, b) in zip(words, other.words) where a & b != b { return false }
            return true
        }
    }

    struct CacheKey: Hashable {
        var bits: Bits
        var state: RegState
    }

    func search(_ ops: [RegisterOp<Value>], subset: [Int]? = nil, budget: Int) -> SearchResult {
        let members = subset ?? Array(ops.indices)
        let n = members.count
        if n == 0 { return .ok }
        // Entry 2k is op k's call, 2k+1 its return; entry 2n is the list head.
        var order = Array(0..<(2 * n))
        func time(_ e: Int) -> Int64 {
            let op = ops[members[e / 2]]
            return e % 2 == 0 ? op.call : (op.ret ?? .max)
        }
        // Calls before returns at equal times: ops that touch at an instant count as
        // concurrent, so clock granularity never manufactures a violation.
        order.sort { (time($0), $0 % 2, $0) < (time($1), $1 % 2, $1) }
        let head = 2 * n
        var next = Array(repeating: -1, count: 2 * n + 1)
        var prev = Array(repeating: -1, count: 2 * n + 1)
        var last = head
        for e in order {
            next[last] = e
            prev[e] = last
            last = e
        }

        // For token order: for each tokened write, the completed writes with a smaller token
        // (they took effect, so they must already have).
        var mustPrecede: [Bits?] = Array(repeating: nil, count: n)
        if tokenOrder {
            for k in 0..<n {
                guard let t = ops[members[k]].token, ops[members[k]].isWrite else { continue }
                var b = Bits(count: n)
                var any = false
                for j in 0..<n where j != k {
                    let o = ops[members[j]]
                    if o.isWrite, o.ret != nil, let u = o.token, u < t {
                        b.set(j)
                        any = true
                    }
                }
                if any { mustPrecede[k] = b }
            }
        }

        func lift(_ e: Int) {
            for x in [e, e + 1] {
                next[prev[x]] = next[x]
                if next[x] != -1 { prev[next[x]] = prev[x] }
            }
        }
        func unlift(_ e: Int) {
            for x in [e + 1, e] {
                next[prev[x]] = x
                if next[x] != -1 { prev[next[x]] = x }
            }
        }

        var state: RegState
        switch initial {
        case .unknown: state = .unknown
        case .known(let v): state = .known(v)
        }
        var linearized = Bits(count: n)
        var maxToken: WriteToken? = nil
        var cache = Set<CacheKey>()
        var stack: [(entry: Int, state: RegState, maxToken: WriteToken?)] = []
        var bestDepth = -1
        var bestOrder: [Int] = []
        var bestBlocked = 0
        var bestState = state
        var visited = 0

        var entry = next[head]
        while next[head] != -1 {
            if entry % 2 == 0 {
                let k = entry / 2
                let op = ops[members[k]]
                var newState: RegState? = nil
                switch op.kind {
                case .write(let v):
                    newState = .known(v)
                    if tokenOrder, let t = op.token {
                        if let m = maxToken, m > t { newState = nil }
                        if let need = mustPrecede[k], !linearized.containsAll(need) { newState = nil }
                    }
                case .read(let v):
                    switch state {
                    case .unknown: newState = .known(v)
                    case .known(let cur): newState = cur == v ? state : nil
                    }
                }
                if let newState {
                    var bits = linearized
                    bits.set(k)
                    if cache.insert(CacheKey(bits: bits, state: newState)).inserted {
                        visited += 1
                        if visited > budget { return .budget }
                        stack.append((entry, state, maxToken))
                        state = newState
                        linearized = bits
                        if op.isWrite, let t = op.token, maxToken.map({ t > $0 }) ?? true { maxToken = t }
                        lift(entry)
                        entry = next[head]
                        continue
                    }
                }
                entry = next[entry]
            } else {
                let k = entry / 2
                // Only ops that never answered have their returns at the end: everything that
                // did answer is linearized, and the rest may simply never have taken effect.
                if ops[members[k]].ret == nil { return .ok }
                if stack.count > bestDepth {
                    bestDepth = stack.count
                    bestOrder = stack.map { members[$0.entry / 2] }
                    bestBlocked = members[k]
                    bestState = state
                }
                guard let top = stack.popLast() else {
                    return .fail(order: bestOrder, blocked: bestBlocked, state: bestState)
                }
                state = top.state
                maxToken = top.maxToken
                linearized.clear(top.entry / 2)
                unlift(top.entry)
                entry = next[top.entry]
            }
        }
        return .ok
    }

    /// Shrinks a failing history to a small failing subset: first drop the ops called after
    /// the blocked op returned (they cannot help place it), then delta debugging. Only reads,
    /// and writes whose value no remaining read observes, are ever dropped: dropping those
    /// cannot make a linearizable history fail (each read keeps its explaining write, and
    /// fewer writes only relax token order), so the subset fails for the original reason
    /// rather than for a write the minimizer took away.
    func minimize(_ ops: [RegisterOp<Value>], blocked: Int) -> [Int] {
        var checks = 0
        let perCheck = max(10_000, maxStates / 10)
        func fails(_ subset: [Int]) -> Bool {
            checks += 1
            if case .fail = search(ops, subset: subset, budget: perCheck) { return true }
            return false
        }
        /// `current` without those of `drop` that may safely go.
        func without(_ drop: ArraySlice<Int>, from current: [Int]) -> [Int] {
            let dropSet = Set(drop)
            var observed = Set<Value>()
            for i in current where !dropSet.contains(i) {
                if case .read(let v) = ops[i].kind { observed.insert(v) }
            }
            return current.filter { i in
                guard dropSet.contains(i) else { return true }
                if case .write(let v) = ops[i].kind { return observed.contains(v) }
                return false
            }
        }
        var current = Array(ops.indices)
        if let cut = ops[blocked].ret {
            let late = current.filter { ops[$0].call > cut }
            let prefix = without(late[...], from: current)
            if prefix.count < current.count, fails(prefix) { current = prefix }
        }
        var chunk = max(1, current.count / 2)
        while checks < minimizeBudget {
            var i = 0
            var removedAny = false
            while i < current.count, checks < minimizeBudget {
                let end = min(current.count, i + chunk)
                let candidate = without(current[i..<end], from: current)
                if candidate.count < current.count, !candidate.isEmpty, fails(candidate) {
                    current = candidate
                    removedAny = true
                } else {
                    i = end
                }
            }
            if chunk == 1 && !removedAny { break }
            chunk = max(1, chunk / 2)
        }
        return current
    }
}

extension RegisterOp {
    /// One line for a counterexample.
    public func describe(value: (Value) -> String, time: (Int64) -> String) -> String {
        var s: String
        switch kind {
        case .write(let v): s = "write \(value(v))"
        case .read(let v): s = "read \(value(v))"
        }
        if let token { s += " (\(token))" }
        s += " [\(time(call)) .. \(ret.map(time) ?? "no answer")]"
        if !label.isEmpty { s += " \(label)" }
        return s
    }
}

extension LinearizabilityViolation {
    /// A few lines: the op that cannot be placed, then the minimal failing set.
    public func explain(value: (Value) -> String, time: (Int64) -> String) -> String {
        var s = "cannot place \(blocked.describe(value: value, time: time))"
        if case .read = blocked.kind {
            s += " (register held \(valueKnown ? valueAfterOrder.map(value) ?? "?" : "anything") after the longest legal order of \(longestOrder.count) ops)"
        } else {
            s += " (after the longest legal order of \(longestOrder.count) ops)"
        }
        s += "; no legal order for these \(minimal.count) ops: "
        s += minimal.map { $0.describe(value: value, time: time) }.joined(separator: "; ")
        return s
    }
}
