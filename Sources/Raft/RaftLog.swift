/// The in-memory log since the last snapshot. The shell keeps a durable copy through
/// `persist` effects; on restart it hands the durable copy back (`RaftCore.init(restoring:)`).
struct RaftLog {
    private(set) var snapshotIndex: UInt64
    private(set) var snapshotTerm: UInt64
    private(set) var entries: [Entry]
    /// Highest index known committed.
    var committed: UInt64
    /// Highest index the local storage has made durable.
    var persisted: UInt64
    /// Highest index handed to the application through an `apply` effect.
    var applyEmitted: UInt64

    init(snapshotIndex: UInt64, snapshotTerm: UInt64, entries: [Entry], committed: UInt64) {
        self.snapshotIndex = snapshotIndex
        self.snapshotTerm = snapshotTerm
        self.entries = entries
        self.committed = committed
        self.persisted = snapshotIndex + UInt64(entries.count)
        self.applyEmitted = snapshotIndex
    }

    var firstIndex: UInt64 { snapshotIndex + 1 }
    var lastIndex: UInt64 { snapshotIndex + UInt64(entries.count) }
    var lastTerm: UInt64 { entries.last?.term ?? snapshotTerm }

    /// The term of the entry at `index`, or nil if it is compacted away or beyond the end.
    func term(at index: UInt64) -> UInt64? {
        if index == snapshotIndex { return snapshotTerm }
        guard index > snapshotIndex, index <= lastIndex else { return nil }
        return entries[Int(index - snapshotIndex - 1)].term
    }

    func entry(at index: UInt64) -> Entry? {
        guard index > snapshotIndex, index <= lastIndex else { return nil }
        return entries[Int(index - snapshotIndex - 1)]
    }

    func matches(index: UInt64, term: UInt64) -> Bool {
        self.term(at: index) == term
    }

    /// Election restriction (§5.4.1): is a log ending at (lastIndex, lastTerm) at least as
    /// up to date as ours?
    func isUpToDate(lastIndex: UInt64, lastTerm: UInt64) -> Bool {
        lastTerm > self.lastTerm || (lastTerm == self.lastTerm && lastIndex >= self.lastIndex)
    }

    /// Entries in `from...to`, at most `maxBytes` (but at least one entry if any).
    func slice(from: UInt64, through: UInt64, maxBytes: Int) -> [Entry] {
        guard from > snapshotIndex, from <= through, through <= lastIndex else { return [] }
        var out: [Entry] = []
        var size = 0
        for i in from...through {
            let e = entries[Int(i - snapshotIndex - 1)]
            if !out.isEmpty && size + e.byteSize > maxBytes { break }
            size += e.byteSize
            out.append(e)
        }
        return out
    }

    /// The largest index ≤ `index` whose term is ≤ `term` (used for fast backtracking).
    func lastIndex(atOrBelow index: UInt64, withTermAtMost term: UInt64) -> UInt64 {
        var i = min(index, lastIndex)
        while i > snapshotIndex {
            if let t = self.term(at: i), t <= term { return i }
            i -= 1
        }
        return snapshotIndex
    }

    mutating func append(_ new: [Entry]) {
        entries.append(contentsOf: new)
    }

    /// Removes entries with index ≥ `index`.
    mutating func truncate(from index: UInt64) {
        guard index <= lastIndex else { return }
        let keep = Int(max(index, firstIndex) - firstIndex)
        entries.removeSubrange(keep...)
        persisted = min(persisted, index - 1)
        applyEmitted = min(applyEmitted, max(index - 1, snapshotIndex))
    }

    /// Drops entries up to and including `index`, which becomes the snapshot point.
    mutating func compact(through index: UInt64, term: UInt64) {
        guard index > snapshotIndex else { return }
        if index >= lastIndex {
            entries.removeAll()
        } else {
            entries.removeFirst(Int(index - snapshotIndex))
        }
        snapshotIndex = index
        snapshotTerm = term
        persisted = max(persisted, index)
        applyEmitted = max(applyEmitted, index)
        committed = max(committed, index)
    }

    /// Replaces the whole log with a snapshot point.
    mutating func restore(snapshotIndex: UInt64, snapshotTerm: UInt64) {
        entries.removeAll()
        self.snapshotIndex = snapshotIndex
        self.snapshotTerm = snapshotTerm
        committed = snapshotIndex
        persisted = snapshotIndex
        applyEmitted = snapshotIndex
    }
}
