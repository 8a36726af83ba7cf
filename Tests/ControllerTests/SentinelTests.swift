import AsyncHTTPClient
import Foundation
import SwitchmanTestSupport
import NIOCore
import NIOPosix
import RaftRuntime
import Testing
import X509

@testable import Controller

#if canImport(Glibc)
import Glibc
#endif

@Suite("Sentinel")
struct SentinelTests {
    static let a = ProbeTarget.tcp(HostPort(host: "10.9.0.1", port: 22))
    static let b = ProbeTarget.icmp(host: "10.9.0.2")

    // MARK: Rounds, counters, history

    @Test func allNeedsEveryTargetAnyNeedsOne() {
        let up = ProbeOutcome.success(Self.a, rtt: .milliseconds(1))
        let down = ProbeOutcome.failure(Self.b, "no")
        #expect(SentinelRecorder.isHealthy([up, up], requirement: .all))
        #expect(!SentinelRecorder.isHealthy([up, down], requirement: .all))
        #expect(SentinelRecorder.isHealthy([up, down], requirement: .any))
        #expect(!SentinelRecorder.isHealthy([down, down], requirement: .any))
        #expect(!SentinelRecorder.isHealthy([], requirement: .all))
        #expect(!SentinelRecorder.isHealthy([], requirement: .any))
    }

    @Test func runCountersAndBoundedHistory() {
        var recorder = SentinelRecorder(tunnel: "vpn1", requirement: .all, historyLimit: 5)
        #expect(recorder.report.round == 0 && !recorder.report.healthy && recorder.report.checkedAt == nil)
        let up = [ProbeOutcome.success(Self.a, rtt: .milliseconds(2))]
        let down = [ProbeOutcome.failure(Self.a, "refused")]
        let pattern = [up, up, up, down, down, up, up, up, up, up, up, up]
        for (i, outcomes) in pattern.enumerated() {
            recorder.record(outcomes, at: Date(timeIntervalSince1970: Double(i)))
            #expect(recorder.history.count <= 5)
            if i == 2 { #expect(recorder.healthyRun == 3 && recorder.unhealthyRun == 0) }
            if i == 4 { #expect(recorder.healthyRun == 0 && recorder.unhealthyRun == 2) }
        }
        let report = recorder.report
        #expect(report.round == 12)
        #expect(report.healthy)
        #expect(report.healthyRun == 7 && report.unhealthyRun == 0)
        #expect(report.history.map(\.round) == [8, 9, 10, 11, 12])
        #expect(report.checkedAt == Date(timeIntervalSince1970: 11))
        #expect(report.targets == [SentinelTargetReport(target: "10.9.0.1:22", kind: "tcp", ok: true, rttMillis: 2, error: nil)])

        var big = SentinelRecorder(tunnel: "vpn1", requirement: .any)
        for i in 0..<500 { big.record(i % 7 == 0 ? down : up, at: Date()) }
        #expect(big.history.count == SentinelRecorder.defaultHistoryLimit)
        #expect(big.history.last?.round == 500)
    }

    @Test func roundsProbeEveryTargetAndApplyTheRequirement() async throws {
        let pki = try SentinelPKI(tunnels: ["vpn1"])
        let prober = ScriptedProber()
        prober.set(Self.b, up: false)
        for (requirement, healthy) in [(ProbeRequirement.all, false), (.any, true)] {
            let sentinel = Sentinel(
                tunnel: tunnelConfig("vpn1", port: 1, probes: [Self.a, Self.b], require: requirement), health: .defaults, prober: prober,
                credentials: try pki.credentials(for: "vpn1"), logger: quietLogger())
            let round = await sentinel.runRound()
            #expect(round.healthy == healthy)
            #expect(round.targets.map(\.ok) == [true, false])
            #expect(round.targets[1].error == "scripted failure" && round.targets[1].rttMillis == nil)
            #expect(round.targets[0].rttMillis == 1.5)
            #expect(sentinel.report.require == requirement.rawValue)
        }
    }

    // MARK: The mTLS server

    /// A sentinel for `tunnel` on a free loopback port, with one round done.
    static func withSentinel(
        _ pki: SentinelPKI, tunnel name: String = "vpn1", prober: ScriptedProber = ScriptedProber(), instanceId: String? = nil,
        _ body: (Sentinel, TunnelConfig) async throws -> Void
    ) async throws {
        let server = Sentinel(
            tunnel: tunnelConfig(name, port: 1, probes: [a, b]), health: .defaults, prober: prober, credentials: try pki.credentials(for: name),
            listen: HostPort(host: "127.0.0.1", port: 0), instanceId: instanceId, logger: quietLogger())
        let task = Task { try await server.run() }
        try await eventually("the sentinel to listen") { server.localAddress?.port != nil }
        let port = try #require(server.localAddress?.port)
        _ = await server.runRound()
        do {
            try await body(server, tunnelConfig(name, port: port, probes: [a, b]))
        } catch {
            task.cancel()
            _ = await task.result
            throw error
        }
        task.cancel()
        _ = await task.result
    }

    /// Issue #16 item 3: the report names the instance the sentinel runs on, and the replica's
    /// check carries it on, so a verdict can be matched to the tunnel's current instance.
    @Test func theReportNamesTheInstanceAndTheCheckCarriesIt() async throws {
        let pki = try SentinelPKI(tunnels: ["vpn1"])
        try await Self.withSentinel(pki, instanceId: "i-0abc123") { server, tunnel in
            #expect(server.report.instanceId == "i-0abc123")
            let client = try pki.memberClient()
            let check = await SentinelTunnelChecker(prober: client).check(tunnel, timeout: .seconds(10))
            await client.shutdown()
            #expect(check.healthy && check.instanceId == "i-0abc123", "\(check)")
        }
    }

    @Test func membersAndOperatorsReadTheVerdict() async throws {
        let pki = try SentinelPKI(tunnels: ["vpn1"])
        let prober = ScriptedProber()
        prober.set(Self.b, up: false)
        try await Self.withSentinel(pki, prober: prober) { _, tunnel in
            for client in [try pki.memberClient(), try pki.operatorClient()] {
                let result = await client.probe(tunnel: tunnel, timeout: .seconds(30))
                guard case .reachable(let report) = result else {
                    Issue.record("expected a report, got \(result)")
                    await client.shutdown()
                    return
                }
                #expect(report.tunnel == "vpn1")
                #expect(!report.healthy)
                #expect(report.round >= 1 && report.unhealthyRun >= 1 && report.healthyRun == 0)
                #expect(report.targets.map(\.target) == ["10.9.0.1:22", "10.9.0.2"])
                #expect(report.targets.map(\.kind) == ["tcp", "icmp"])
                #expect(report.targets[1].error == "scripted failure")
                #expect(report.checkedAt != nil)
                #expect(report.history.isEmpty, "a poll asks for no history (?history=0)")
                await client.shutdown()
            }
        }
    }

    @Test func refusesClientsFromAnotherCAAndClientsWithoutACertificate() async throws {
        let pki = try SentinelPKI(tunnels: ["vpn1"])
        let other = try SentinelPKI(tunnels: ["vpn1"], cluster: "other")
        try await Self.withSentinel(pki) { _, tunnel in
            // A member of another cluster, trusting our CA so only the server's check is tested.
            let stranger = try SentinelClient(
                caPEM: try pki.read(pki.directory.caCertificatePath), certificatePEM: try other.read(other.directory.memberCertificatePath(1)),
                keyPEM: try other.read(other.directory.memberKeyPath(1)), logger: quietLogger())
            let result = await stranger.probe(tunnel: tunnel, timeout: .seconds(30))
            guard case .unreachable = result else {
                Issue.record("a certificate from another CA was accepted: \(result)")
                return
            }
            await stranger.shutdown()

            let anonymous = try pki.rawClient(certificate: nil, key: nil)
            await #expect(throws: (any Error).self) {
                _ = try await anonymous.execute(HTTPClientRequest(url: "https://127.0.0.1:\(tunnel.sentinel.port)/v1/verdict"), timeout: .seconds(30))
            }
            try await anonymous.shutdown()

            // Another tunnel's sentinel certificate is from the right CA but names no member
            // or operator (and lacks clientAuth): never a 200.
            let sentinelKey = try pki.rawClient(
                certificate: pki.directory.sentinelCertificatePath("vpn1"), key: pki.directory.sentinelKeyPath("vpn1"))
            do {
                let response = try await sentinelKey.execute(
                    HTTPClientRequest(url: "https://127.0.0.1:\(tunnel.sentinel.port)/v1/verdict"), timeout: .seconds(30))
                #expect(response.status == .forbidden)
            } catch {
                // Refused during the handshake: also fine.
            }
            try await sentinelKey.shutdown()
        }
    }

    @Test func clientsRefuseASentinelOfAnotherTunnel() async throws {
        let pki = try SentinelPKI(tunnels: ["vpn1", "vpn2"])
        try await Self.withSentinel(pki, tunnel: "vpn2") { _, vpn2 in
            let client = try pki.memberClient()
            // The config says vpn1's sentinel is at this address, but vpn2's answers.
            var vpn1 = vpn2
            vpn1.name = "vpn1"
            let result = await client.probe(tunnel: vpn1, timeout: .seconds(30))
            guard case .unreachable = result else {
                Issue.record("vpn2's sentinel passed for vpn1: \(result)")
                await client.shutdown()
                return
            }
            if case .reachable(let report) = await client.probe(tunnel: vpn2, timeout: .seconds(30)) {
                #expect(report.tunnel == "vpn2")
            } else {
                Issue.record("vpn2's sentinel did not answer for vpn2")
            }
            await client.shutdown()
        }
    }

    @Test func jsonShapeAndPaths() async throws {
        let pki = try SentinelPKI(tunnels: ["vpn1"])
        try await Self.withSentinel(pki) { _, tunnel in
            let client = try pki.rawClient(certificate: pki.directory.memberCertificatePath(1), key: pki.directory.memberKeyPath(1))
            let base = "https://127.0.0.1:\(tunnel.sentinel.port)"
            let response = try await client.execute(HTTPClientRequest(url: base + "/v1/verdict"), timeout: .seconds(30))
            #expect(response.status == .ok)
            #expect(response.headers["Content-Type"].first == "application/json")
            let body = try await response.body.collect(upTo: 1 << 20)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any])
            #expect(
                Set(object.keys) == ["tunnel", "healthy", "healthyRun", "unhealthyRun", "round", "checkedAt", "require", "targets", "history",
                                     "instanceId"])
            #expect(object["instanceId"] is NSNull, "a sentinel told no instance says so explicitly")
            #expect(object["tunnel"] as? String == "vpn1")
            #expect(object["healthy"] as? Bool == true)
            let checkedAt = try #require(object["checkedAt"] as? String)
            #expect(ISO8601DateFormatter().date(from: checkedAt) != nil, "\(checkedAt)")
            let targets = try #require(object["targets"] as? [[String: Any]])
            #expect(targets.count == 2)
            #expect(Set(targets[0].keys) == ["target", "kind", "ok", "rttMillis", "error"])
            #expect(targets[0]["error"] is NSNull)
            let history = try #require(object["history"] as? [[String: Any]])
            #expect(Set(history.first?.keys.map { $0 } ?? []) == ["round", "checkedAt", "healthy", "targets"])

            // ?history=N trims the history to its last N rounds; anything else is refused.
            try await poll("two rounds") { (try? await Self.rounds(client, base)) ?? 0 >= 2 }
            let one = try await client.execute(HTTPClientRequest(url: base + "/v1/verdict?history=1"), timeout: .seconds(30))
            let oneBody = try await one.body.collect(upTo: 1 << 20)
            let trimmed = try #require(try JSONSerialization.jsonObject(with: Data(oneBody.readableBytesView)) as? [String: Any])
            #expect((trimmed["history"] as? [Any])?.count == 1)
            let bad = try await client.execute(HTTPClientRequest(url: base + "/v1/verdict?history=-1"), timeout: .seconds(30))
            #expect(bad.status == .badRequest)
            _ = try await bad.body.collect(upTo: 1 << 20)

            let missing = try await client.execute(HTTPClientRequest(url: base + "/v1/other"), timeout: .seconds(30))
            #expect(missing.status == .notFound)
            _ = try await missing.body.collect(upTo: 1 << 20)
            var post = HTTPClientRequest(url: base + "/v1/verdict")
            post.method = .POST
            let wrongMethod = try await client.execute(post, timeout: .seconds(30))
            #expect(wrongMethod.status == .methodNotAllowed)
            _ = try await wrongMethod.body.collect(upTo: 1 << 20)
            try await client.shutdown()
        }
    }

    /// The round counter of a raw GET of the full report.
    static func rounds(_ client: HTTPClient, _ base: String) async throws -> Int {
        let response = try await client.execute(HTTPClientRequest(url: base + "/v1/verdict"), timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        let object = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
        return object?["round"] as? Int ?? 0
    }

    @Test func aMalformedRequestClosesOnlyItsConnection() async throws {
        let pki = try SentinelPKI(tunnels: ["vpn1"])
        try await Self.withSentinel(pki) { _, tunnel in
            let client = try pki.memberClient()
            // Open a keep-alive connection first, so "only its connection" means something.
            guard case .reachable = await client.probe(tunnel: tunnel, timeout: .seconds(30)) else {
                Issue.record("no answer before the malformed request")
                await client.shutdown()
                return
            }
            let answer = try await rawTLSExchange(
                port: Int(tunnel.sentinel.port), send: "THIS IS NOT HTTP\r\n\u{0}\u{1}\r\n\r\n",
                certificate: pki.directory.memberCertificatePath(1), key: pki.directory.memberKeyPath(1), ca: pki.directory.caCertificatePath)
            #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
            guard case .reachable = await client.probe(tunnel: tunnel, timeout: .seconds(30)) else {
                Issue.record("the sentinel stopped answering after a malformed request")
                await client.shutdown()
                return
            }
            await client.shutdown()
        }
    }

    /// A replica polls each sentinel every probe interval: the polls share one kept-alive
    /// mTLS connection (one handshake, not one per poll), and when the sentinel restarts the
    /// next poll connects again.
    @Test func pollsReuseOneConnectionAndSurviveARestart() async throws {
        let pki = try SentinelPKI(tunnels: ["vpn1"])
        let client = try pki.memberClient()
        var port = 0
        try await Self.withSentinel(pki) { server, tunnel in
            port = Int(tunnel.sentinel.port)
            for poll in 1...20 {
                guard case .reachable = await client.probe(tunnel: tunnel, timeout: .seconds(30)) else {
                    Issue.record("poll \(poll) got no report")
                    return
                }
                _ = await server.runRound()
            }
            #expect(server.acceptedConnections == 1, "20 polls opened \(server.acceptedConnections) connections")
        }
        // The sentinel is gone: a poll fails (the instance counts as down), it does not hang.
        let tunnel = tunnelConfig("vpn1", port: port, probes: [Self.a, Self.b])
        guard case .unreachable = await client.probe(tunnel: tunnel, timeout: .seconds(1)) else {
            Issue.record("a stopped sentinel still answered")
            await client.shutdown()
            return
        }
        // A new sentinel on the same port: the same client connects again, then keeps that one.
        let restarted = Sentinel(
            tunnel: tunnel, health: .defaults, prober: ScriptedProber(), credentials: try pki.credentials(for: "vpn1"),
            listen: HostPort(host: "127.0.0.1", port: UInt16(port)), logger: quietLogger())
        try await restarted.start()
        let task = Task { try await restarted.run() }
        defer { task.cancel() }
        _ = await restarted.runRound()
        for poll in 1...5 {
            guard case .reachable(let report) = await client.probe(tunnel: tunnel, timeout: .seconds(30)) else {
                Issue.record("poll \(poll) after the restart got no report")
                break
            }
            #expect(report.round >= 1)
        }
        #expect(restarted.acceptedConnections == 1, "5 polls after the restart opened \(restarted.acceptedConnections) connections")
        await client.shutdown()
        task.cancel()
        _ = await task.result
    }

    @Test func credentialsAreCheckedAtLoad() throws {
        let pki = try SentinelPKI(tunnels: ["vpn1", "vpn2"])
        let other = try SentinelPKI(tunnels: ["vpn1"], cluster: "other")
        let d = pki.directory
        #expect(throws: SentinelError.self) {
            try SentinelCredentials(tunnel: "vpn1", caFile: d.caCertificatePath, certificateFile: d.sentinelCertificatePath("vpn2"), keyFile: d.sentinelKeyPath("vpn2"))
        }
        #expect(throws: SentinelError.self) {
            try SentinelCredentials(tunnel: "vpn1", caFile: d.caCertificatePath, certificateFile: d.sentinelCertificatePath("vpn1"), keyFile: d.sentinelKeyPath("vpn2"))
        }
        #expect(throws: SentinelError.self) {
            try SentinelCredentials(
                tunnel: "vpn1", caFile: d.caCertificatePath, certificateFile: other.directory.sentinelCertificatePath("vpn1"),
                keyFile: other.directory.sentinelKeyPath("vpn1"))
        }
        #expect(throws: SentinelError.self) {
            try SentinelCredentials(tunnel: "vpn1", caFile: d.caCertificatePath, certificateFile: d.memberCertificatePath(1), keyFile: d.memberKeyPath(1))
        }
        do {
            _ = try SentinelCredentials(tunnel: "vpn3", caFile: d.caCertificatePath, certificateFile: d.sentinelCertificatePath("vpn3"), keyFile: d.sentinelKeyPath("vpn3"))
            Issue.record("missing files were accepted")
        } catch {
            #expect("\(error)".contains("switchman certs sentinel"), "\(error)")
        }
        // The certificate itself: names, usages, and that PeerIdentity refuses it.
        let certificate = try Certificate(pemEncoded: try pki.read(d.sentinelCertificatePath("vpn1")))
        #expect(try SentinelIdentity.tunnel(of: certificate) == "vpn1")
        #expect(throws: (any Error).self) { try PeerIdentity.from(certificate: certificate) }
    }

    // MARK: The real binary

    @Test func switchmanSentinelServesItsVerdictAndStopsOnSIGTERM() async throws {
        let binary = switchmanBinary
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build it first: swift build --build-tests")
        let pki = try SentinelPKI(tunnels: ["vpn1"])
        let listener = try await tcpListener()
        let target = try #require(listener.localAddress?.port)
        let sentinelPort = try await closedPort()
        let dir = pki.directory.path
        let config = dir + "/switchman.yaml"
        try """
            cluster:
              name: test
              members:
                - {id: 1, peer: "127.0.0.1:17101", admin: "127.0.0.1:17201", zone: a}
                - {id: 2, peer: "127.0.0.1:17102", admin: "127.0.0.1:17202", zone: b}
                - {id: 3, peer: "127.0.0.1:17103", admin: "127.0.0.1:17203", zone: c}
            tls: {ca: "\(dir)/ca.pem", cert: "\(dir)/member-{id}.pem", key: "\(dir)/member-{id}-key.pem"}
            dataDir: "\(dir)/data-{id}"
            aws: {region: us-east-1}
            tunnels:
              - name: vpn1
                instance: {tagKey: t, tagValue: vpn1}
                sentinel: "127.0.0.1:\(sentinelPort)"
                probes: [{tcp: "127.0.0.1:\(target)"}, {icmp: 127.0.0.1}]
            health: {probeInterval: 200ms, probeTimeout: 150ms}

            """.write(toFile: config, atomically: true, encoding: .utf8)

        // An unknown tunnel: exit 1 and say which tunnels exist.
        let wrong = try ChildProcess(
            [binary, "sentinel", "--config", config, "--tunnel", "vpn9"], stdout: dir + "/wrong.out", stderr: dir + "/wrong.err")
        #expect(await wrong.wait() == 1)
        let wrongErr = try String(contentsOfFile: dir + "/wrong.err", encoding: .utf8)
        #expect(wrongErr.contains("unknown tunnel \"vpn9\"") && wrongErr.contains("vpn1"), "\(wrongErr)")

        let child = try ChildProcess([binary, "sentinel", "--config", config, "--tunnel", "vpn1"], stdout: dir + "/out", stderr: dir + "/err")
        let client = try pki.memberClient()
        let tunnel = tunnelConfig("vpn1", port: sentinelPort, probes: [])
        var last: TunnelProbeResult = .unreachable("not asked yet")
        do {
            try await eventually("two healthy rounds from the sentinel process") {
                if child.hasExited { throw ChildProcessError(description: "switchman sentinel exited: \((try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? "")") }
                last = await client.probe(tunnel: tunnel, timeout: .seconds(10))
                if case .reachable(let report) = last { return report.round >= 2 && report.healthyRun >= 2 }
                return false
            }
        } catch {
            await child.forceStop()
            await client.shutdown()
            throw error
        }
        guard case .reachable(let report) = last else { return }
        #expect(report.healthy)
        #expect(report.targets.map(\.kind) == ["tcp", "icmp"])
        #expect(report.targets.allSatisfy { $0.ok })

        // The far side goes away: the sentinel notices, and keeps serving.
        try await listener.close()
        try await eventually("an unhealthy round") {
            if case .reachable(let report) = await client.probe(tunnel: tunnel, timeout: .seconds(10)) {
                return !report.healthy && report.targets.first?.ok == false
            }
            return false
        }

        child.signal(SIGTERM)
        #expect(await child.wait() == 0)
        let log = try String(contentsOfFile: dir + "/err", encoding: .utf8)
        #expect(log.contains("sentinel listening"), "\(log)")
        #expect(log.contains("sentinel stopped"), "\(log)")
        // Gone means unreachable, which replicas count as the instance being down.
        guard case .unreachable = await client.probe(tunnel: tunnel, timeout: .seconds(10)) else {
            Issue.record("a stopped sentinel still answered")
            await client.shutdown()
            return
        }
        await client.shutdown()
    }
}
