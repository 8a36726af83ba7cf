import Controller
import Foundation
import Testing

extension RunningCluster {
    func adminAddress(_ id: UInt64) throws -> String { try config.member(id).admin }

    /// curl (an independent HTTPS client) with the operator's certificate, or with `cert`.
    func curl(_ id: UInt64, _ path: String, method: String = "GET", body: String? = nil,
              cert: ClusterPKI.Pair? = nil, caFile: String? = nil) async throws -> (status: Int, body: String) {
        let pair = cert ?? pki.operatorClient
        var args = ["curl", "-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}", "-X", method,
                    "--cacert", caFile ?? pki.caCert, "https://\(try adminAddress(id))\(path)"]
        if !pair.cert.isEmpty { args += ["--cert", pair.cert, "--key", pair.key] }
        if let body { args += ["-H", "Content-Type: application/json", "--data", body] }
        let r = try await runProcess(args, timeout: 60)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = lines.last.flatMap { Int($0) } ?? 0
        return (status, lines.dropLast().joined(separator: "\n") + (r.status != 0 ? r.stderr : ""))
    }

    func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try AdminJSON.decoder().decode(T.self, from: Data(text.utf8))
    }
}

extension ClusterTests {
@Suite struct AdminAPITests {
    /// Every replica answers over mutual TLS, followers linearizably; drains go through any
    /// replica; `/metrics` is Prometheus text with the named series; strangers are refused.
    @Test func adminAPIOverMutualTLS() async throws {
        try await withCluster { scope in
            let c = try await RunningCluster.start(scope, dns: false)
            let zones = c.zoneRoutes
            try await c.expectRoutes([zones[0].table: try c.eni(zones[0].own), zones[1].table: try c.eni(zones[1].own)], "initial placement")
            let leader = try await c.waitForLeader()
            let follower = leader.id == 1 ? UInt64(2) : 1

            for id in [leader.id, follower] {
                let r = try await c.curl(id, "/v1/status")
                try #require(r.status == 200, "\(r.body)")
                let s = try c.decode(AdminStatus.self, r.body)
                #expect(s.consistency == "linearizable")
                #expect(s.answeredBy == id)
                #expect(s.leader == leader.id)
                #expect(s.members.map(\.id) == [1, 2, 3])
                #expect(s.tunnels.map(\.state) == ["up", "up"])
                #expect(s.routes.allSatisfy { $0.desired == $0.actual && $0.lastWrite?.success == true })
            }
            // Raw JSON keys are the documented ones.
            let raw = try await c.curl(follower, "/v1/status")
            for key in ["\"cluster\"", "\"leader\"", "\"term\"", "\"commitIndex\"", "\"members\"", "\"reachable\"", "\"tunnels\"",
                        "\"drained\"", "\"observations\"", "\"routes\"", "\"routeTable\"", "\"destination\"", "\"desired\"",
                        "\"actual\"", "\"lastWrite\""] {
                #expect(raw.body.contains(key), "\(key) missing from \(raw.body)")
            }

            // A drain through a follower: applied cluster-wide, and the routes leave the tunnel.
            let drained = zones[0].own
            let d = try await c.curl(follower, "/v1/tunnels/\(drained)/drain", method: "POST", body: #"{"reason":"maintenance"}"#)
            #expect(d.status == 200, "\(d.body)")
            let t = try c.decode(AdminTunnels.self, try await c.curl(leader.id, "/v1/tunnels").body)
            #expect(t.tunnels.first { $0.name == drained }?.drained == true)
            #expect(t.tunnels.first { $0.name == drained }?.drainedBy?.contains("client") == true)
            try await c.expectRoutes([zones[0].table: try c.eni(zones[0].other), zones[1].table: try c.eni(zones[1].own)], "drained tunnel left")
            #expect(try await c.curl(leader.id, "/v1/tunnels/\(drained)/undrain", method: "POST").status == 200)
            #expect(try await c.curl(leader.id, "/v1/tunnels/nope/drain", method: "POST", body: #"{"reason":"x"}"#).status == 404)

            let events = try c.decode(AdminEvents.self, try await c.curl(follower, "/v1/events?since=0&limit=1000").body)
            #expect(events.events.contains { $0.kind == "drained" })
            #expect(events.events.contains { $0.kind == "intent" })

            // Prometheus text with the promised series.
            let m = try await c.curl(leader.id, "/metrics")
            #expect(m.status == 200)
            for series in ["switchman_raft_term", "switchman_leader", "switchman_commit_index", "switchman_applied_index",
                           "switchman_lease_remaining_seconds", "switchman_tunnel_up", "switchman_route_target",
                           "switchman_aws_request_duration_seconds", "switchman_aws_requests_total"] {
                #expect(m.body.contains("\n\(series)") || m.body.hasPrefix(series), "\(series) missing")
            }
            for line in m.body.split(separator: "\n") where !line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                #expect(parts.count == 2 && Double(parts[1]) != nil, "not a sample line: \(line)")
            }

            // A client without a certificate, and a sentinel's certificate, are refused.
            let anonymous = try await c.curl(leader.id, "/v1/status", cert: ClusterPKI.Pair(cert: "", key: ""))
            #expect(anonymous.status != 200)
            // A sentinel's certificate is for serving only (no clientAuth): the handshake fails,
            // and were it to pass, the middleware answers 403.
            let sentinelCert = try c.pki.sentinel(zones[0].own)
            let bySentinel = try await c.curl(leader.id, "/v1/status", cert: sentinelCert)
            #expect(bySentinel.status != 200, "\(bySentinel.body)")

            // Transfers must go to the leader; the leader hands over.
            #expect(try await c.curl(follower, "/v1/leader/transfer", method: "POST", body: "{}").status == 409)
            let moved = try await c.curl(leader.id, "/v1/leader/transfer", method: "POST", body: #"{"to":\#(follower)}"#)
            #expect(moved.status == 200, "\(moved.body)")
            let next = try await c.waitForLeader(newerThan: leader.term)
            #expect(next.id == follower)

            // During a leadership change every request gets an answer (200, or 503 while no
            // leader is known), never a hang or a dropped connection.
            let back = try await c.curl(next.id, "/v1/leader/transfer", method: "POST", body: #"{"to":\#(leader.id)}"#)
            #expect(back.status == 200, "\(back.body)")
            for _ in 0..<10 {
                let r = try await c.curl(3, "/v1/status")
                #expect(r.status == 200 || r.status == 503, "\(r.status) \(r.body)")
            }
            _ = try await c.waitForLeader(newerThan: next.term)

            // Without a quorum: stale reads answer from the replica's copy, linearizable ones
            // say there is no quorum (exit 3 in the CLI).
            let alone = UInt64(3)
            for id in [UInt64(1), 2] { (try c.replica(id)).pause() }
            let stale = try await c.curl(alone, "/v1/status?stale=true")
            #expect(stale.status == 200, "\(stale.body)")
            #expect((try? c.decode(AdminStatus.self, stale.body))?.consistency == "stale")
            let strict = try await c.curl(alone, "/v1/status")
            #expect(strict.status == 503, "\(strict.body)")
            #expect(strict.body.contains("no_quorum") || strict.body.contains("no_leader"), "\(strict.body)")
            for id in [UInt64(1), 2] { (try c.replica(id)).resume() }
        }
    }
}
}

extension RunningCluster {
    /// `switchman ARGS` as an operator would run it: endpoints and certificates from the
    /// environment unless the arguments give them.
    func cli(_ args: [String], endpoints: [UInt64] = [1, 2, 3], extraEnvironment: [String: String] = [:]) async throws -> CommandResult {
        var env = ProcessInfo.processInfo.environment
        env["SWITCHMAN_ENDPOINTS"] = try endpoints.map { try adminAddress($0) }.joined(separator: ",")
        env["SWITCHMAN_CA"] = pki.caCert
        env["SWITCHMAN_CERT"] = pki.operatorClient.cert
        env["SWITCHMAN_KEY"] = pki.operatorClient.key
        for (k, v) in extraEnvironment { env[k] = v }
        return try await SwitchmanBinary.run(args, environment: env, timeout: 120)
    }
}

extension ClusterTests {
@Suite struct CLIClusterTests {
    /// Every subcommand in table and JSON form against three real replicas; endpoint failover;
    /// followers answer linearizably; `--stale` without a quorum; strangers refused; exit codes.
    @Test func everySubcommandAgainstThreeReplicas() async throws {
        try await withCluster { scope in
            let c = try await RunningCluster.start(scope, dns: false)
            let zones = c.zoneRoutes
            try await c.expectRoutes([zones[0].table: try c.eni(zones[0].own), zones[1].table: try c.eni(zones[1].own)], "initial placement")
            let leader = try await c.waitForLeader()
            let follower = leader.id == 1 ? UInt64(2) : 1

            // Reads, table and JSON, through a follower first.
            for command in ["status", "members", "tunnels", "routes", "events"] {
                let table = try await c.cli([command], endpoints: [follower])
                #expect(table.status == 0, "\(command): \(table.stdout)\(table.stderr)")
                #expect(!table.stdout.isEmpty)
                let json = try await c.cli([command, "--output", "json"], endpoints: [follower])
                #expect(json.status == 0, "\(command) json: \(json.stderr)")
                #expect((try? JSONSerialization.jsonObject(with: Data(json.stdout.utf8))) != nil, "\(command) json: \(json.stdout)")
            }
            let status = try c.decode(AdminStatus.self, try await c.cli(["status", "--output", "json"], endpoints: [follower]).stdout)
            #expect(status.consistency == "linearizable" && status.answeredBy == follower && status.leader == leader.id)
            #expect(status.members.map(\.id) == [1, 2, 3])
            // Reachability is what the answering replica hears: the leader hears everyone.
            let fromLeader = try c.decode(AdminStatus.self, try await c.cli(["status", "--output", "json"], endpoints: [leader.id]).stdout)
            #expect(fromLeader.members.allSatisfy { $0.reachable }, "\(fromLeader.members)")
            let table = try await c.cli(["status"]).stdout
            for word in ["MEMBERS", "TUNNELS", "ROUTES", zones[0].own, zones[0].table] { #expect(table.contains(word), "\(word) in\n\(table)") }

            // The first endpoint is down: the next one answers.
            (try c.replica(follower)).pause()
            let failover = try await c.cli(["members", "--timeout", "3s"], endpoints: [follower, leader.id])
            #expect(failover.status == 0, "\(failover.stderr)")
            (try c.replica(follower)).resume()

            // Writes: drain through a follower, undrain, transfer (redirected to the leader).
            let drained = try await c.cli(["drain", zones[0].own, "--reason", "patching"], endpoints: [follower])
            #expect(drained.status == 0, "\(drained.stdout)\(drained.stderr)")
            try await c.expectRoutes([zones[0].table: try c.eni(zones[0].other), zones[1].table: try c.eni(zones[1].own)], "drained")
            #expect(try await c.cli(["undrain", zones[0].own]).status == 0)
            let moved = try await c.cli(["transfer-leader", "--to", "\(follower)"], endpoints: [follower])
            #expect(moved.status == 0, "\(moved.stdout)\(moved.stderr)")
            _ = try await c.waitForLeader(newerThan: leader.term)

            // Membership: a learner joins (nothing runs there yet; learners do not count for
            // quorum) and is removed again, through whichever endpoint, JSON output.
            let spare = try LoopbackPorts.unused()
            let added = try await c.cli(["member", "add", "--id", "4", "--peer", "127.0.0.1:\(spare)", "--learner", "--output", "json"])
            #expect(added.status == 0, "\(added.stdout)\(added.stderr)")
            #expect((try? c.decode(AdminResult.self, added.stdout))?.ok == true, "\(added.stdout)")
            let withLearner = try c.decode(AdminMembers.self, try await c.cli(["members", "--output", "json"]).stdout)
            #expect(withLearner.members.first { $0.id == 4 }?.role == "learner", "\(withLearner.members)")
            // Nothing runs as member 4, so it never catches up, and a stranger is no learner:
            // neither becomes a voter (a dead fourth voter would cost the cluster its quorum).
            let promoted = try await c.cli(["member", "add", "--id", "4", "--peer", "127.0.0.1:\(spare)"])
            #expect(promoted.status == 1 && (promoted.stdout + promoted.stderr).contains("has not caught up"), "\(promoted.stdout)\(promoted.stderr)")
            let stranger5 = try await c.cli(["member", "add", "--id", "5", "--peer", "127.0.0.1:\(spare)"])
            #expect(stranger5.status == 1 && (stranger5.stdout + stranger5.stderr).contains("not a learner"), "\(stranger5.stdout)\(stranger5.stderr)")
            let removed = try await c.cli(["member", "remove", "--id", "4"])
            #expect(removed.status == 0, "\(removed.stdout)\(removed.stderr)")
            let after = try c.decode(AdminMembers.self, try await c.cli(["members", "--output", "json"]).stdout)
            #expect(!after.members.contains { $0.id == 4 }, "\(after.members)")

            // Usage errors exit 2; strangers are refused (1).
            #expect(try await c.cli(["status", "--output", "yaml"]).status == 2)
            #expect(try await c.cli(["drain", zones[0].own]).status == 2, "a drain needs --reason")
            let otherCA = try await ClusterPKI.generate(in: scope.directory.appendingPathComponent("other-pki"), members: [1])
            let stranger = try await c.cli(["status"], extraEnvironment: [
                "SWITCHMAN_CERT": otherCA.operatorClient.cert, "SWITCHMAN_KEY": otherCA.operatorClient.key,
            ])
            #expect(stranger.status == 1, "\(stranger.stdout)\(stranger.stderr)")

            // No quorum: linearizable reads exit 3, stale ones answer.
            for id in [UInt64(1), 2] { (try c.replica(id)).pause() }
            let strict = try await c.cli(["status", "--timeout", "30s"], endpoints: [3])
            #expect(strict.status == 3, "\(strict.stdout)\(strict.stderr)")
            let stale = try await c.cli(["status", "--stale"], endpoints: [3])
            #expect(stale.status == 0, "\(stale.stderr)")
            for id in [UInt64(1), 2] { (try c.replica(id)).resume() }
        }
    }
}
}
