import Foundation
import Raft
import RaftTestKit
import Testing

/// Seeds per cluster size in CI; SWITCHMAN_SIM_SEEDS raises it (e.g. 100000 for a long run).
private let seedsPerSize = Int(ProcessInfo.processInfo.environment["SWITCHMAN_SIM_SEEDS"] ?? "") ?? 1500
private let baseSeed = UInt64(ProcessInfo.processInfo.environment["SWITCHMAN_SIM_BASE_SEED"] ?? "") ?? 1

@Suite struct SimulationTests {
    @Test(arguments: [3, 5])
    func randomizedFaultsKeepRaftSafe(nodes: Int) async throws {
        let started = ContinuousClock.now
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: seedsPerSize, nodes: nodes)
        let elapsed = ContinuousClock.now - started
        print("simulation \(nodes) nodes: \(summary.seedsRun) seeds in \(elapsed): \(summary.stats)")
        if let f = summary.failures.first {
            Issue.record("\(f)")
        }
        let s = summary.stats
        // Every fault kind must actually have happened, or the run proves less than it claims.
        #expect(s.elections > summary.seedsRun)
        #expect(s.partitions > 0 && s.asymmetricPartitions > 0)
        #expect(s.crashes > 0 && s.lostUnpersistedWrites > 0)
        #expect(s.messagesDropped > 0 && s.messagesDuplicated > 0)
        #expect(s.compactions > 0 && s.snapshotsInstalled > 0)
        #expect(s.membershipChanges > 0 && s.leaderRemovals > 0)
        #expect(s.transfers > 0)
        #expect(s.writesAcked > 0 && s.readsServed > 0)
    }

    /// Replays one seed: SWITCHMAN_SIM_SEED=N SWITCHMAN_SIM_NODES=3 swift test --filter SimulationTests/replay
    @Test func replay() throws {
        let env = ProcessInfo.processInfo.environment
        let seed = UInt64(env["SWITCHMAN_SIM_SEED"] ?? "") ?? 1
        let nodes = Int(env["SWITCHMAN_SIM_NODES"] ?? "") ?? 3
        let sim = Simulator(config: SimulationConfig(seed: seed, nodes: nodes))
        do {
            let stats = try sim.run()
            print("seed \(seed) (\(nodes) nodes): \(stats)")
        } catch {
            Issue.record("\(error)")
        }
    }

    /// The checkers can fail: with a deliberate rule violation switched on, some seed breaks
    /// an invariant and is reported with its seed.
    @Test(arguments: [TestingMutation.commitPreviousTermEntriesByCounting, .grantVotesWithoutLogCheck])
    func mutationIsCaught(mutation: TestingMutation) async throws {
        // Faults come faster and appends carry one entry each, which makes the interleavings
        // of Figure 8 (an old entry reaches a majority before the new leader's own) likely.
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: 3000, nodes: 5) { cfg in
            cfg.mutations = [mutation]
            cfg.chaosEveryMillis = 10...60
            cfg.maxMessageBytes = 1
        }
        print("mutation \(mutation): caught after \(summary.seedsRun) seeds: \(summary.failures.first.map { $0.violation } ?? "NOT CAUGHT")")
        #expect(!summary.failures.isEmpty, "the simulation did not catch \(mutation)")
    }
}
