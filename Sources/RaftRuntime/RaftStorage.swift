import NIOConcurrencyHelpers
import Raft

/// Durable storage for one node's Raft state. `RaftNode` calls it from a blocking-I/O
/// thread, one call at a time.
public protocol RaftStorage: AnyObject, Sendable {
    /// Everything that survived: hard state, the latest snapshot and the entries after it.
    func load() throws -> PersistentState

    /// Applies `request` in one atomic, durable (fsynced) transaction, in the order that
    /// `PersistRequest` documents. Throwing means the node must stop (fail-stop): the same
    /// write is never retried, because a failed fsync leaves the page cache in an unknown
    /// state.
    func persist(_ request: PersistRequest) throws

    /// Applies several requests, in order, as durably as `persist(_:)`. Stores that can
    /// should do it in one transaction (group commit: one fsync for many proposals).
    func persist(batch requests: [PersistRequest]) throws
}

extension RaftStorage {
    public func persist(batch requests: [PersistRequest]) throws {
        for r in requests { try persist(r) }
    }
}

/// Storage in memory, for tests and simulations of the shell. Not durable.
public final class InMemoryRaftStorage: RaftStorage {
    private let state: NIOLockedValueBox<PersistentState>

    public init(_ state: PersistentState = PersistentState()) { self.state = NIOLockedValueBox(state) }

    public func load() throws -> PersistentState { state.withLockedValue { $0 } }

    public func persist(_ request: PersistRequest) throws {
        state.withLockedValue { $0.apply(request) }
    }
}

extension PersistentState {
    /// Applies a persist request to an in-memory copy (the reference semantics for stores).
    public mutating func apply(_ request: PersistRequest) {
        if let s = request.snapshot { snapshot = s }
        if let c = request.compactThrough { entries.removeAll { $0.index <= c } }
        if let t = request.truncateFrom { entries.removeAll { $0.index >= t } }
        entries.append(contentsOf: request.entries)
        if let hs = request.hardState { hardState = hs }
    }
}
