import Foundation
import Raft
import RaftTestKit
import Testing

/// Seeds per cluster size in CI; SWITCHMAN_SIM_SEEDS raises it (e.g. 100000 for a long run).
private let seedsPerSize = Int(ProcessInfo.processInfo.environment["SWITCHMAN_SIM_SEEDS"] ?? "") ?? 1500
private let baseSeed = UInt64(ProcessInfo.processInfo.environment["SWITCHMAN_SIM_BASE_SEED"] ?? "") ?? 1

/// The replay settings of a failure (mutations, fault rates, audit), read from the
/// environment so a printed replay command reruns exactly the failing configuration.
private func environmentConfig(seed: UInt64, nodes: Int) -> (SimulationConfig, [String]) {
    var cfg = SimulationConfig(seed: seed, nodes: nodes)
    let problems = cfg.apply(environment: ProcessInfo.processInfo.environment)
    return (cfg, problems)
}

/// Durability before speech (DESIGN.md rule 1), broken at one send site each.
private let speechMutations: [TestingMutation] = [
    .requestVoteBeforeDurable, .grantVoteBeforeDurable, .acknowledgeAppendBeforeDurable,
    .acknowledgeCommittedBeforeDurable, .acknowledgeCommittedSnapshotBeforeDurable,
    .acknowledgeMatchingSnapshotBeforeDurable, .acknowledgeInstalledSnapshotBeforeDurable,
]

@Suite struct SimulationTests {
    @Test(arguments: [3, 5])
    func randomizedFaultsKeepRaftSafe(nodes: Int) async throws {
        let problems = environmentConfig(seed: baseSeed, nodes: nodes).1
        for p in problems { Issue.record("\(p)") }
        guard problems.isEmpty else { return }
        let started = ContinuousClock.now
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: seedsPerSize, nodes: nodes) { cfg in
            _ = cfg.apply(environment: ProcessInfo.processInfo.environment)
        }
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
        #expect(s.powerCuts > 0 && s.powerCutsOnVotes > 0 && s.slowDisks > 0)
        #expect(s.diskStalls > 0 && s.lateAcknowledgements > 0)
        #expect(s.promisesAudited > 0)
        #expect(s.messagesDropped > 0 && s.messagesDuplicated > 0)
        #expect(s.compactions > 0 && s.snapshotsInstalled > 0)
        #expect(s.membershipChanges > 0 && s.leaderRemovals > 0)
        #expect(s.transfers > 0)
        #expect(s.writesAcked > 0 && s.readsServed > 0 && s.forwardedProposals > 0)
    }

    /// Replays one seed with the settings a failure printed, e.g.
    /// SWITCHMAN_SIM_SEED=N SWITCHMAN_SIM_NODES=3 swift test --filter SimulationTests/replay
    @Test func replay() throws {
        let env = ProcessInfo.processInfo.environment
        let seed = UInt64(env["SWITCHMAN_SIM_SEED"] ?? "") ?? 1
        let nodes = Int(env["SWITCHMAN_SIM_NODES"] ?? "") ?? 3
        let (cfg, problems) = environmentConfig(seed: seed, nodes: nodes)
        for p in problems { Issue.record("\(p)") }
        guard problems.isEmpty else { return }
        let sim = Simulator(config: cfg)
        do {
            let stats = try sim.run()
            print("seed \(seed) (\(nodes) nodes): \(stats)")
        } catch {
            Issue.record("\(error)")
        }
    }

    /// The checkers can fail: with a deliberate rule violation switched on, some seed breaks
    /// an invariant and is reported with its seed.
    @Test(arguments: [TestingMutation.commitPreviousTermEntriesByCounting, .grantVotesWithoutLogCheck,
                      .keepLeaseOnTransfer, .hideTransferElection] + speechMutations)
    func mutationIsCaught(mutation: TestingMutation) async throws {
        // Faults come faster and appends carry one entry each, which makes the interleavings
        // of Figure 8 (an old entry reaches a majority before the new leader's own) likely.
        // 6,000: the Figure 8 mutation needs the rarest interleaving; since disk stalls and
        // late acknowledgements joined the fault model its first catching seed is 5,242.
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: 6000, nodes: 5) { cfg in
            cfg.mutations = [mutation]
            cfg.chaosEveryMillis = 10...60
            cfg.maxMessageBytes = 1
        }
        report(mutation, summary)
        #expect(!summary.failures.isEmpty, "the simulation did not catch \(mutation)")
    }

    /// Issue #15 item 3: a voter that grants votes the moment it restarts helps elect a
    /// leader while the old one's lease runs. The story needs a candidate cut off from the
    /// leader but as up to date as the voter (an idle cluster, one link down) and a restart
    /// of that voter inside the lease; the lease checker then sees two leases at once. The
    /// wide partitions, churn and lossy links are off: each of them ends the story early
    /// (the candidate falls behind, or hears the leader again), so with them on only one
    /// seed in several thousand tells it; faults come faster, as for `mutationIsCaught`.
    @Test func aVoteGrantedRightAfterRestartIsCaught() async throws {
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: 6000, nodes: 3) { cfg in
            cfg.mutations = [.grantVotesRightAfterRestart]
            cfg.chaosEveryMillis = 10...60
            restartStoryConfig(&cfg)
            for fault in ["partitions", "membershipChanges", "leadershipTransfers", "messageLoss", "duplication",
                          "slowDisks", "powerCuts"] {
                _ = cfg.faults.turnOff(fault)
            }
        }
        report(TestingMutation.grantVotesRightAfterRestart, summary)
        #expect(!summary.failures.isEmpty, "the simulation did not catch votes granted right after a restart")
    }

    private func restartStoryConfig(_ cfg: inout SimulationConfig) {
        cfg.idleStretches = true
        cfg.linkCuts = true
        cfg.supervisedRestarts = true
    }

    /// Every node's clock at its own rate (within half the drift bound): no node leads in a
    /// newer term while another's lease runs (docs/RAFT.md, "The lease's guarantee").
    /// Idle stretches, single cut links and supervised restarts too, with every other
    /// fault: what catches `grantVotesRightAfterRestart` finds nothing with the fix in.
    @Test(arguments: [3, 5])
    func leasesNeverOverlapWithDriftingClocks(nodes: Int) async throws {
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: max(1, seedsPerSize / 5), nodes: nodes) { cfg in
            cfg.driftingClocks = true
            restartStoryConfig(&cfg)
            _ = cfg.apply(environment: ProcessInfo.processInfo.environment)
        }
        if let f = summary.failures.first { Issue.record("\(f)") }
        let s = summary.stats
        #expect(s.transfers > 0 && s.crashes > 0 && s.idleStretches > 0 && s.linkCuts > 0)
    }

    /// With the speech audit off, the fault model alone must turn a promise sent ahead of its
    /// write into a visible failure: a forgotten vote into two leaders of one term, a
    /// forgotten entry into a changed history. Otherwise the audit would be the only thing
    /// standing between a refactor and a broken rule 1, and the other checkers would prove
    /// nothing about durability.
    @Test(arguments: [TestingMutation.grantVoteBeforeDurable, .acknowledgeAppendBeforeDurable])
    func brokenPromiseHasConsequences(mutation: TestingMutation) async throws {
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: seedsPerSize, nodes: 3) { cfg in
            cfg.mutations = [mutation]
            cfg.auditSpeech = false
        }
        report(mutation, summary, " (audit off)")
        #expect(!summary.failures.isEmpty, "with the audit off the simulation did not notice \(mutation)")
    }

    private func report(_ mutation: TestingMutation, _ summary: SeedRunner.Summary, _ how: String = "") {
        report("\(mutation)", summary, how)
    }

    private func report(_ mutation: String, _ summary: SeedRunner.Summary, _ how: String = "") {
        if let f = summary.failures.first {
            print("mutation \(mutation)\(how): caught at seed \(f.seed): \(f.violation)\n  replay: \(f.replayCommand)")
        } else {
            print("mutation \(mutation)\(how): NOT CAUGHT in \(summary.seedsRun) seeds")
        }
    }

    /// Issue #15 item 1, in the shell: a founder replaced by editing the other founders'
    /// config files and restarting them. Voters taken from the files (the old shell) give
    /// two views of the cluster whose quorums do not overlap; taken from the data
    /// directory's founding record, the edit changes nothing. Snapshots and membership
    /// changes are off: either puts the voters in the log, where the file no longer counts.
    private func fileEditConfig(_ cfg: inout SimulationConfig, fromTheFile: Bool) {
        cfg.fileEdits = true
        cfg.membershipFromTheFile = fromTheFile
        cfg.faults.snapshots = false
        cfg.faults.membershipChanges = false
    }

    @Test func votersTakenFromTheFileAreCaught() async throws {
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: 3000, nodes: 3) { fileEditConfig(&$0, fromTheFile: true) }
        report("membershipFromTheFile", summary)
        #expect(!summary.failures.isEmpty, "the simulation did not catch voters taken from the config file")
    }

    /// Issue #15 item 2: a voter whose disk is lost for good. Back under its id with an
    /// empty log (the old shell), its vote elects a leader without committed entries; kept
    /// out (refused at start, refused by its peers' incarnation check) and removed by the
    /// operator, nothing is lost.
    @Test(arguments: [3, 5])
    func aVoterBackWithAnEmptyDiskIsCaught(nodes: Int) async throws {
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: 3000, nodes: nodes) {
            $0.lostDisks = true
            $0.rejoinWithLostDisk = true
        }
        report("rejoinWithLostDisk", summary, " (\(nodes) nodes)")
        #expect(!summary.failures.isEmpty, "the simulation did not catch a voter rejoining with an empty disk")
    }

    /// Issue #15 item 8: a voter started on an older copy of its own directory. Nothing in
    /// the runtime tells it from the original (docs/RAFT.md, "Not detected"), so this is the
    /// simulator showing the hazard the restore procedure exists for, not a fix.
    @Test(arguments: [3, 5])
    func aVoterStartedOnAnOlderCopyOfItsDiskIsCaught(nodes: Int) async throws {
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: 3000, nodes: nodes) { $0.rolledBackDisks = true }
        report("rolledBackDisks", summary, " (\(nodes) nodes)")
        #expect(!summary.failures.isEmpty, "the simulation did not catch a voter started on an older copy of its disk")
    }

    @Test(arguments: [3, 5])
    func aVoterWhoseDiskIsLostIsRemovedAndNothingIsLost(nodes: Int) async throws {
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: max(1, seedsPerSize / 5), nodes: nodes) {
            $0.lostDisks = true
        }
        if let f = summary.failures.first { Issue.record("\(f)") }
        #expect(summary.stats.lostDisks > summary.seedsRun / 4)
    }

    @Test func fileEditsChangeNothingWhenTheVotersComeFromTheDataDirectory() async throws {
        let summary = await SeedRunner.run(firstSeed: baseSeed, count: max(1, seedsPerSize / 5), nodes: 3) {
            fileEditConfig(&$0, fromTheFile: false)
        }
        if let f = summary.failures.first { Issue.record("\(f)") }
        #expect(summary.stats.fileEdits > summary.seedsRun / 2)
    }
}
