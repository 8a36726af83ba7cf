import Logging
import NIOConcurrencyHelpers
import Raft
import ServiceLifecycle

/// The crash test's proposal writer: a single-replica `RaftNode` on an LMDB store, with many
/// proposals in flight at once (so group commit is exercised), reporting each proposal once
/// `propose` returned — that is, once it is durable and committed.
public enum RaftCrashWriter {
    /// The payload of proposal `k`: `k` as 8 little-endian bytes, then bytes derived from `k`.
    public static func payload(_ k: UInt64) -> [UInt8] {
        withUnsafeBytes(of: k.littleEndian) { Array($0) } + LMDBStoreDebugTools.crashPayload(index: k)
    }

    /// The proposal number of an entry written by this writer, if it is one.
    public static func proposalNumber(_ entry: Entry) -> UInt64? {
        guard entry.kind == .normal, entry.data.count > 8 else { return nil }
        var k: UInt64 = 0
        for i in 0..<8 { k |= UInt64(entry.data[i]) << (8 * UInt64(i)) }
        return entry.data == payload(k) ? k : nil
    }

    /// Runs until killed. `acked(index, k)` is called once proposal `k` committed at `index`.
    public static func run(
        store: LMDBLogStore, concurrency: Int, logger: Logger, acked: @escaping @Sendable (UInt64, UInt64) -> Void
    ) async throws {
        let state = try store.load()
        let nextK = NIOLockedValueBox((state.entries.compactMap(proposalNumber).max() ?? 0) + 1)
        var config = RaftNodeConfiguration(id: 1, bootstrap: Membership(voters: [1]), peers: [:])
        config.tickInterval = .milliseconds(10)
        config.snapshotEvery = .max
        let node = try RaftNode(
            configuration: config, storage: store, transport: NoPeersTransport(), stateMachine: DiscardingStateMachine(),
            logger: logger)
        let group = ServiceGroup(services: [node], gracefulShutdownSignals: [], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for _ in 0..<concurrency {
                tasks.addTask {
                    while true {
                        let k = nextK.withLockedValue { k in
                            defer { k += 1 }
                            return k
                        }
                        do {
                            let position = try await node.propose(payload(k))
                            acked(position.index, k)
                        } catch RaftNodeError.rejected(.notLeader) {
                            // Not elected yet after a restart; the proposal was not written.
                            try await Task.sleep(for: .milliseconds(5))
                        }
                    }
                }
            }
            try await tasks.next()
        }
    }
}

/// A transport for a single-replica cluster: there is nobody to talk to.
public struct NoPeersTransport: RaftMessageTransport {
    public let inbound: AsyncStream<InboundMessage>

    public init() { inbound = AsyncStream { _ in } }

    public func send(to peer: UInt64, _ payload: [UInt8], onWritten: (@Sendable (Bool) -> Void)?) -> SendResult { .droppedUnknownPeer }
    public func setPeers(_ addresses: [UInt64: PeerAddress]) {}
}

final class DiscardingStateMachine: RaftStateMachine {
    func apply(_ entry: Entry) {}
    func snapshot() -> [UInt8] { [] }
    func restore(from snapshot: Snapshot) throws {}
}
