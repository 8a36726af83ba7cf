import Controller
import Foundation
import Testing

extension RunningCluster {
    /// Runs an admin command again while it exits 3 (no leader or no quorum yet), for up to 120 s.
    func cliUntilALeaderAnswers(_ args: [String], endpoints: [UInt64]) async throws -> CommandResult {
        var last = try await cli(args, endpoints: endpoints)
        if last.status != 3 { return last }
        return try await eventuallyValue(timeout: 120, every: 0.5) { () -> CommandResult? in
            last = try await cli(args, endpoints: endpoints)
            return last.status == 3 ? nil : last
        } ?? last
    }
}

extension ClusterTests {
/// Issue #15 items 1 and 2 with real processes: the voters are not the config file's, an
/// empty data directory is refused, and a member whose disk is gone comes back by the
/// documented procedure (remove, --join, learner, voter).
@Suite struct MembershipStartTests {
    @Test func theVotersOutliveAnEditedFileAndALostDiskRejoinsOnlyAsALearner() async throws {
        try await withCluster { scope in
            let c = try await RunningCluster.start(scope, dns: false)
            _ = try await c.waitForLeader()
            var env = ProcessInfo.processInfo.environment
            env["AWS_ACCESS_KEY_ID"] = "testing"
            env["AWS_SECRET_ACCESS_KEY"] = "testing"
            env["AWS_EC2_METADATA_DISABLED"] = "true"

            // 1. Replicas 1 and 2 restart from a file that names them and a member 4 in place
            //    of 3. Each still counts the voters 1, 2 and 3, so the edited files cannot
            //    make a second quorum ({1, 2} of {1, 2, 4}) beside the one replica 3 counts on.
            var edited = c.config
            edited.members.removeAll { $0.id == 3 }
            edited.members.append(.init(
                id: 4, peer: "127.0.0.1:\(try LoopbackPorts.unused())", admin: "127.0.0.1:\(try LoopbackPorts.unused())", zone: "us-east-1c"))
            let editedPath = try scope.write(edited, name: "edited.yaml")
            for id in [UInt64(1), 2] {
                _ = await (try c.replica(id)).terminate()
                let p = try scope.spawn("replica-\(id)-edited", ["serve", "--config", editedPath, "--id", "\(id)", "--log-level", "info"], environment: env)
                #expect(await p.waitForLog(containing: "differs from the membership in the Raft log", timeout: 120), "\(p.logTail())")
            }
            for id in [UInt64(1), 2] {
                let seen = try c.decode(AdminMembers.self, try await c.cli(["members", "--stale", "--output", "json"], endpoints: [id]).stdout)
                let three = seen.members.first { $0.id == 3 }
                #expect(three != nil && three?.role != "not a member" && three?.role != "learner", "replica \(id) sees \(seen.members)")
                #expect(seen.members.first { $0.id == 4 }?.role == "not a member", "replica \(id) sees \(seen.members)")
            }

            // 2. Replica 3 loses its disk. Started as before, it refuses the empty directory
            //    and says what to do.
            let old3 = try c.replica(3)
            _ = await old3.terminate()
            let dir3 = c.config.dataDir.replacingOccurrences(of: "{id}", with: "3")
            try FileManager.default.removeItem(atPath: dir3)
            let bare = try scope.spawn("replica-3-bare", ["serve", "--config", c.configPath, "--id", "3", "--log-level", "info"], environment: env)
            let status = await bare.waitForExit(timeout: 120)
            #expect(status != nil && status != 0, "an empty directory without --bootstrap or --join must not start (exit \(String(describing: status)))")
            #expect(bare.log.contains("--join") && bare.log.contains("is empty"), "\(bare.logTail())")

            // 2b. The operator's mistake: --join while the cluster still lists it as a voter. The
            //     peers know the incarnation of its old directory and refuse the new one, so
            //     its empty log never votes.
            let early = try scope.spawn("replica-3-early", ["serve", "--config", c.configPath, "--id", "3", "--log-level", "info", "--join"], environment: env)
            let refused = await eventuallyValue(timeout: 60) { () -> Bool? in
                let logs = [try? c.scope.process("replica-1-edited"), try? c.scope.process("replica-2-edited")].compactMap { $0?.log }
                return logs.contains { $0.contains("reason=new_incarnation") } ? true : nil
            }
            #expect(refused == true, "no peer refused the new incarnation of member 3")
            _ = await early.terminate()
            try FileManager.default.removeItem(atPath: dir3)

            // 3. The procedure: remove it, start it with --join, add it as a learner, promote it.
            // Exit 3 is "no leader yet" (replica 3 may have led until step 2): ask again, as an operator does.
            let removed = try await c.cliUntilALeaderAnswers(["member", "remove", "--id", "3"], endpoints: [1, 2])
            #expect(removed.status == 0, "\(removed.stdout)\(removed.stderr)")
            let joined = try scope.spawn("replica-3-joined", ["serve", "--config", c.configPath, "--id", "3", "--log-level", "info", "--join"], environment: env)
            #expect(await joined.waitForLog(containing: "data directory joined", timeout: 60), "\(joined.logTail())")
            let peer3 = try c.config.member(3).peer
            let learner = try await c.cliUntilALeaderAnswers(["member", "add", "--id", "3", "--peer", peer3, "--learner"], endpoints: [1, 2])
            #expect(learner.status == 0, "\(learner.stdout)\(learner.stderr)")
            // Promotion is refused until the learner holds everything committed; ask again, as an operator does.
            let promoted = try await eventually(timeout: 120, every: 1) {
                try await c.cli(["member", "add", "--id", "3", "--peer", peer3], endpoints: [1, 2]).status == 0
            }
            #expect(promoted, "replica 3 was never promoted: \(joined.logTail())")
            let after = try c.decode(AdminMembers.self, try await c.cli(["members", "--output", "json"], endpoints: [1, 2]).stdout)
            let three = after.members.first { $0.id == 3 }
            #expect(three?.role == "follower" || three?.role == "leader", "\(after.members)")
            // The rejoined replica applies what the cluster commits.
            let drained = try await c.cli(["drain", c.tunnels[0], "--reason", "rejoin check"], endpoints: [1, 2])
            #expect(drained.status == 0, "\(drained.stdout)\(drained.stderr)")
            let applied = try await eventually(timeout: 60, every: 0.5) {
                let r = try await c.cli(["tunnels", "--stale", "--output", "json"], endpoints: [3])
                return r.status == 0 && r.stdout.contains("rejoin check")
            }
            #expect(applied, "replica 3 never applied the drain: \(joined.logTail())")
        }
    }
}
}
