import Raft

/// Runs many seeds across worker tasks and adds up what happened.
public enum SeedRunner {
    public struct Summary: Sendable {
        public var seedsRun = 0
        public var stats = SimulationStats()
        public var failures: [SimulationFailure] = []
    }

    /// Runs `count` seeds starting at `firstSeed`; stops early after `stopAfterFailures`.
    public static func run(
        firstSeed: UInt64, count: Int, nodes: Int, workers: Int = 2, stopAfterFailures: Int = 1,
        configure: @Sendable @escaping (inout SimulationConfig) -> Void = { _ in }
    ) async -> Summary {
        await withTaskGroup(of: Summary.self) { group in
            for w in 0..<max(workers, 1) {
                group.addTask {
                    var s = Summary()
                    var i = w
                    while i < count {
                        var cfg = SimulationConfig(seed: firstSeed &+ UInt64(i), nodes: nodes)
                        configure(&cfg)
                        let sim = Simulator(config: cfg)
                        do throws(SimulationFailure) {
                            s.stats.add(try sim.run())
                        } catch {
                            s.stats.add(sim.stats)
                            s.failures.append(error)
                            if s.failures.count >= stopAfterFailures { break }
                        }
                        s.seedsRun += 1
                        i += max(workers, 1)
                    }
                    return s
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
}
