import Foundation
import Raft

/// Runs many seeds across worker threads and adds up what happened.
public enum SeedRunner {
    public struct Summary: Sendable {
        public var seedsRun = 0
        public var stats = SimulationStats()
        public var failures: [SimulationFailure] = []
    }

    /// Runs `count` seeds starting at `firstSeed`; a worker stops after `stopAfterFailures`.
    public static func run(
        firstSeed: UInt64, count: Int, nodes: Int, workers: Int = 2, stopAfterFailures: Int = 1,
        configure: @Sendable @escaping (inout SimulationConfig) -> Void = { _ in }
    ) async -> Summary {
        let workers = max(workers, 1)
        let lowest = LowestFailure()
        return await withTaskGroup(of: Summary.self) { group in
            for w in 0..<workers {
                group.addTask {
                    await onOwnThread {
                        runWorker(first: w, stride: workers, firstSeed: firstSeed, count: count, nodes: nodes,
                                  stopAfterFailures: stopAfterFailures, lowest: lowest, configure: configure)
                    }
                }
            }
            var total = Summary()
            for await s in group {
                total.seedsRun += s.seedsRun
                total.stats.add(s.stats)
                total.failures.append(contentsOf: s.failures)
            }
            total.failures.sort { $0.seed < $1.seed }
            return total
        }
    }

    private static func runWorker(
        first: Int, stride: Int, firstSeed: UInt64, count: Int, nodes: Int, stopAfterFailures: Int,
        lowest: LowestFailure, configure: (inout SimulationConfig) -> Void
    ) -> Summary {
        var s = Summary()
        var i = first
        while i < count {
            // Looking for the first failing seed, a worker past one another worker already
            // found cannot find an earlier one.
            if stopAfterFailures == 1, let found = lowest.index, i > found { break }
            var cfg = SimulationConfig(seed: firstSeed &+ UInt64(i), nodes: nodes)
            configure(&cfg)
            let sim = Simulator(config: cfg)
            do throws(SimulationFailure) {
                s.stats.add(try sim.run())
            } catch {
                s.stats.add(sim.stats)
                s.failures.append(error)
                lowest.offer(i)
                if s.failures.count >= stopAfterFailures { break }
            }
            s.seedsRun += 1
            i += stride
        }
        return s
    }

    // @unchecked: `lowest` is only read and written while holding `lock`.
    private final class LowestFailure: @unchecked Sendable {
        private let lock = NSLock()
        private var lowest: Int?

        var index: Int? { lock.withLock { lowest } }

        func offer(_ i: Int) {
            lock.withLock { lowest = min(lowest ?? i, i) }
        }
    }

    /// Runs CPU-bound work on a thread of its own — not on Swift's cooperative pool, nor on
    /// Dispatch's width-limited global queues — so a long simulation does not starve the
    /// async tests (network, timers) running beside it.
    private static func onOwnThread(_ work: @escaping @Sendable () -> Summary) async -> Summary {
        await withCheckedContinuation { cont in
            let t = Thread { cont.resume(returning: work()) }
            t.stackSize = 8 << 20
            t.start()
        }
    }
}
