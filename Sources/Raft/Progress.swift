/// The leader's view of one follower's log (etcd's Progress, simplified).
struct Progress {
    enum State: Equatable {
        /// One append at a time until the follower's position is known.
        case probe
        /// Optimistic pipelining: `next` runs ahead of `match`, bounded by `inflights`.
        case replicate
        /// A snapshot is on its way; no appends until it is reported.
        case snapshot
    }

    var match: UInt64 = 0
    var next: UInt64
    var state: State = .probe
    /// In probe state: an append is outstanding, wait for its answer or a heartbeat.
    var probeSent = false
    var pendingSnapshot: UInt64 = 0
    /// Heard from since the last check-quorum round.
    var recentActive = false
    /// Last index of each in-flight append, oldest first.
    var inflights: [UInt64] = []
    /// Highest heartbeat round this follower acknowledged in the current term.
    var ackedRound: UInt64 = 0

    init(next: UInt64) { self.next = next }

    func isPaused(maxInflight: Int) -> Bool {
        switch state {
        case .probe: return probeSent
        case .replicate: return inflights.count >= maxInflight
        case .snapshot: return true
        }
    }

    mutating func becomeProbe() {
        if state == .snapshot {
            next = max(match + 1, pendingSnapshot + 1)
            pendingSnapshot = 0
        } else {
            next = match + 1
        }
        state = .probe
        probeSent = false
        inflights.removeAll()
    }

    mutating func becomeReplicate() {
        state = .replicate
        next = match + 1
        probeSent = false
        inflights.removeAll()
    }

    mutating func becomeSnapshot(_ index: UInt64) {
        state = .snapshot
        pendingSnapshot = index
        probeSent = false
        inflights.removeAll()
    }

    /// A successful append response: returns whether `match` moved.
    mutating func maybeUpdate(_ index: UInt64) -> Bool {
        var updated = false
        if match < index {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index + 1)
        return updated
    }

    /// A rejected append at `rejected`; `hint` is where the follower's log may match.
    /// Returns false for a stale rejection.
    mutating func maybeDecrease(rejected: UInt64, hint: UInt64) -> Bool {
        if state == .replicate {
            guard rejected > match else { return false }
            next = match + 1
            return true
        }
        guard next > 0, next - 1 == rejected else { return false }
        next = max(min(rejected, hint + 1), match + 1, 1)
        probeSent = false
        return true
    }

    mutating func sentEntries(lastIndex: UInt64?) {
        switch state {
        case .replicate:
            if let last = lastIndex {
                next = last + 1
                inflights.append(last)
            }
        case .probe:
            probeSent = true
        case .snapshot:
            break
        }
    }

    mutating func freeInflights(through index: UInt64) {
        var n = 0
        while n < inflights.count && inflights[n] <= index { n += 1 }
        inflights.removeFirst(n)
    }
}

/// The index that a majority of `voters` has reached, given each voter's value.
func quorumValue(_ values: [UInt64]) -> UInt64 {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted(by: >)
    return sorted[sorted.count / 2]
}

/// A small, fast, seedable generator (SplitMix64). The core never uses an unseeded source.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
