import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Testing

@testable import Controller

// `switchman dashboard`'s server in-process against a fake cluster: its JSON endpoints, the
// CSRF and DNS-rebinding checks on writes and hosts, and a page that loads nothing from
// outside. (The page in a real browser against a real cluster: DashboardBrowserTests.)

// MARK: Fixtures

private let fixedTime = Date(timeIntervalSince1970: 1_714_564_800)

private func sampleStatus(consistency: String = "linearizable", drainReason: String? = nil) -> AdminStatus {
    AdminStatus(
        cluster: "prod", answeredBy: 1, leader: 1, term: 3, commitIndex: 120, appliedIndex: 120, consistency: consistency,
        leaseRemainingMillis: consistency == "stale" ? nil : 1200,
        members: [
            AdminMember(id: 1, zone: "us-east-1a", role: "leader", reachable: true, peer: "10.0.1.10:7000", admin: "10.0.1.10:7100", matchIndex: 120,
                lastContactMillisAgo: nil),
            AdminMember(id: 2, zone: "us-east-1b", role: "follower", reachable: true, peer: "10.0.2.10:7000", admin: "10.0.2.10:7100",
                matchIndex: 119, lastContactMillisAgo: 40),
        ],
        tunnels: [
            AdminTunnel(
                name: "a-vpn1", state: "up", stale: false, drained: drainReason != nil, drainReason: drainReason, drainedBy: drainReason.map { _ in "client/alice" },
                since: fixedTime, instance: AdminInstance(instanceId: "i-0abc", eniId: "eni-1", privateIP: "10.0.1.20", forwards: true),
                observations: [
                    AdminObservation(replica: 1, healthyRun: 5, unhealthyRun: 0, rttMillis: 3, ageMillis: 200, fresh: true),
                    AdminObservation(replica: 2, healthyRun: 4, unhealthyRun: 0, ageMillis: 300, fresh: true),
                ]),
            AdminTunnel(name: "b-vpn2", state: "down", stale: false, drained: false, observations: [
                AdminObservation(replica: 1, healthyRun: 0, unhealthyRun: 3, ageMillis: 100, fresh: true)
            ]),
        ],
        routes: [
            AdminRoute(
                routeTable: "rtb-0a", destination: "10.2.0.0/16", region: "us-east-1", desired: "a-vpn1", desiredENI: "eni-1", actual: "a-vpn1",
                reason: "preferred tunnel up", lastWrite: AdminWrite(term: 3, index: 117, success: true, requestId: "req-1", at: fixedTime))
        ])
}

private func sampleEvents(_ seqs: ClosedRange<UInt64>) -> AdminEvents {
    AdminEvents(
        answeredBy: 1, consistency: "linearizable", firstAvailableSeq: seqs.lowerBound,
        events: seqs.map { AdminEvent(seq: $0, at: fixedTime.addingTimeInterval(Double($0)), kind: "tunnelDown", tunnel: "b-vpn2", text: "event \($0)") })
}

/// A cluster that answers from fixed documents and records every call.
private final class FakeBackend: DashboardBackend {
    struct Calls: Sendable {
        var status: [Bool] = []
        var preferred: [HostPort?] = []
        var events: [(since: UInt64?, limit: Int?, stale: Bool)] = []
        var drains: [(tunnel: String, reason: String)] = []
        var undrains: [String] = []
        var transfers: [UInt64?] = []
    }

    let calls = NIOLockedValueBox(Calls())
    let statusAnswer: @Sendable (Bool) throws -> AdminStatus
    let eventHistory: AdminEvents
    let writeError: (any Error & Sendable)?

    init(
        status: @escaping @Sendable (Bool) throws -> AdminStatus = { _ in sampleStatus() }, events: AdminEvents = sampleEvents(1...3),
        writeError: (any Error & Sendable)? = nil
    ) {
        self.statusAnswer = status
        self.eventHistory = events
        self.writeError = writeError
    }

    func status(stale: Bool, preferring: HostPort?) async throws -> AdminStatus {
        calls.withLockedValue {
            $0.status.append(stale)
            $0.preferred.append(preferring)
        }
        return try statusAnswer(stale)
    }

    func events(since: UInt64?, limit: Int?, stale: Bool) async throws -> AdminEvents {
        calls.withLockedValue { $0.events.append((since, limit, stale)) }
        var answer = eventHistory
        answer.events = Array(answer.events.filter { $0.seq > (since ?? 0) }.prefix(limit ?? 100))
        return answer
    }

    func drain(tunnel: String, reason: String) async throws -> AdminResult {
        calls.withLockedValue { $0.drains.append((tunnel, reason)) }
        if let writeError { throw writeError }
        return AdminResult(ok: true, message: "\(tunnel) drained", index: 121, term: 3)
    }

    func undrain(tunnel: String) async throws -> AdminResult {
        calls.withLockedValue { $0.undrains.append(tunnel) }
        if let writeError { throw writeError }
        return AdminResult(ok: true, message: "\(tunnel) undrained", index: 122, term: 3)
    }

    func transferLeader(to: UInt64?) async throws -> AdminResult {
        calls.withLockedValue { $0.transfers.append(to) }
        if let writeError { throw writeError }
        return AdminResult(ok: true, message: "leadership handed over", term: 3)
    }
}

private struct Reply {
    var status: Int
    var headers: HTTPHeaders
    var body: String

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try AdminJSON.decoder().decode(T.self, from: Data(body.utf8))
    }
}

/// A running dashboard server on a free loopback port and a plain HTTP client for it.
private struct Dashboard {
    let port: Int
    let http: HTTPClient

    func call(_ method: HTTPMethod = .GET, _ path: String, headers: [(String, String)] = [], body: String? = nil) async throws -> Reply {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = method
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await http.execute(request, timeout: .seconds(10))
        let buffer = try await response.body.collect(upTo: 4 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: String(buffer: buffer))
    }

    /// A write as the dashboard's own page sends it.
    func write(_ path: String, body: String = "{}", extra: [(String, String)] = []) async throws -> Reply {
        try await call(.POST, path, headers: [("X-Switchman-Dashboard", "1")] + extra, body: body)
    }
}

private func withDashboard(
    _ backend: FakeBackend, statusMaxAge: Duration = .zero, _ body: (Dashboard) async throws -> Void
) async throws {
    var logger = Logger(label: "dashboard-test")
    // The refusals these tests provoke are logged as warnings; keep the test output for failures.
    logger.logLevel = .error
    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    let app = DashboardServer.make(
        backend: backend,
        configuration: DashboardConfiguration(host: "127.0.0.1", port: 0, statusMaxAge: statusMaxAge, endpoints: ["10.0.1.10:7100", "10.0.2.10:7100"]),
        logger: logger,
        onRunning: { port in
            continuation.yield(port)
            continuation.finish()
        })
    let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var port = 0
        for await p in ports { port = p }
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let outcome: Result<Void, any Error>
        do {
            try #require(port > 0, "the dashboard did not report its port")
            try await body(Dashboard(port: port, http: http))
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        try? await http.shutdown()
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        try outcome.get()
    }
}

// MARK: Tests

@Suite("Dashboard server")
struct DashboardTests {
    @Test func statusRelaysTheClusterStatus() async throws {
        let backend = FakeBackend()
        try await withDashboard(backend) { (d: Dashboard) async throws in
            let r = try await d.call(.GET, "/api/status")
            #expect(r.status == 200, "\(r.body)")
            #expect(r.headers["Content-Type"].first == "application/json")
            #expect(r.headers["Cache-Control"].first == "no-store")
            let doc = try r.decode(DashboardStatus.self)
            #expect(doc.status == sampleStatus())
            #expect(doc.error == nil)
            #expect(doc.endpoints == ["10.0.1.10:7100", "10.0.2.10:7100"])
            // The raw JSON keeps the admin API's field names.
            for key in ["\"status\"", "\"fetchedAt\"", "\"leader\"", "\"leaseRemainingMillis\"", "\"observations\"", "\"lastWrite\""] {
                #expect(r.body.contains(key), "\(key) in \(r.body)")
            }
        }
        #expect(backend.calls.withLockedValue { $0.status } == [false], "a linearizable read")
    }

    @Test func theLeaderIsAskedFirstOnceKnown() async throws {
        // The leader alone knows its lease and hears every member.
        let backend = FakeBackend()
        try await withDashboard(backend) { (d: Dashboard) async throws in
            for _ in 0..<2 { #expect(try await d.call(.GET, "/api/status").status == 200) }
        }
        #expect(backend.calls.withLockedValue { $0.preferred } == [nil, HostPort(host: "10.0.1.10", port: 7100)])
    }

    @Test func withoutQuorumTheStatusIsTheStaleViewAndSaysSo() async throws {
        let backend = FakeBackend(status: { stale in
            guard stale else { throw AdminClientError.server(AdminError(code: "no_quorum", message: "no quorum"), status: 503) }
            return sampleStatus(consistency: "stale")
        })
        try await withDashboard(backend) { (d: Dashboard) async throws in
            let r = try await d.call(.GET, "/api/status")
            #expect(r.status == 200, "\(r.body)")
            let doc = try r.decode(DashboardStatus.self)
            #expect(doc.status?.consistency == "stale")
            #expect(doc.error?.code == "no_quorum")
        }
        #expect(backend.calls.withLockedValue { $0.status } == [false, true])
    }

    @Test func noReplicaAnsweringIsABadGateway() async throws {
        let backend = FakeBackend(status: { _ in
            throw AdminClientError.unreachable(["10.0.1.10:7100": "connection refused"], order: ["10.0.1.10:7100"])
        })
        try await withDashboard(backend) { (d: Dashboard) async throws in
            let r = try await d.call(.GET, "/api/status")
            #expect(r.status == 502, "\(r.body)")
            let doc = try r.decode(DashboardStatus.self)
            #expect(doc.status == nil)
            #expect(doc.error?.code == "unreachable")
            #expect(doc.error?.message.contains("connection refused") == true)
            // The page still loads and says what is wrong.
            let page = try await d.call(.GET, "/")
            #expect(page.status == 200)
            #expect(page.body.contains("unreachable"))
        }
        #expect(backend.calls.withLockedValue { $0.status } == [false, false], "no stale retry when nobody answered")
    }

    @Test func eventsSinceAndLatest() async throws {
        let backend = FakeBackend(events: sampleEvents(1...350))
        try await withDashboard(backend) { (d: Dashboard) async throws in
            let page = try await d.call(.GET, "/api/events?since=340&limit=5")
            #expect(page.status == 200, "\(page.body)")
            #expect(try page.decode(AdminEvents.self).events.map(\.seq) == [341, 342, 343, 344, 345])

            // Without `since`: the latest 200, oldest first.
            let latest = try await d.call(.GET, "/api/events")
            #expect(latest.status == 200)
            let seqs = try latest.decode(AdminEvents.self).events.map(\.seq)
            #expect(seqs.count == 200 && seqs.first == 151 && seqs.last == 350, "\(seqs.prefix(3))…\(seqs.suffix(3))")

            #expect(try await d.call(.GET, "/api/events?since=x").status == 400)
            #expect(try await d.call(.GET, "/api/events?since=1&limit=0").status == 400)
        }
        let calls = backend.calls.withLockedValue { $0.events }
        #expect(calls.first.map { $0.since == 340 && $0.limit == 5 && !$0.stale } == true)
    }

    @Test func writesNeedTheDashboardHeaderAndSameOrigin() async throws {
        let backend = FakeBackend()
        try await withDashboard(backend) { (d: Dashboard) async throws in
            let body = #"{"reason":"kernel upgrade"}"#
            // A form post or fetch from another site: no custom header.
            let bare = try await d.call(.POST, "/api/tunnels/a-vpn1/drain", body: body)
            #expect(bare.status == 403, "\(bare.body)")
            #expect(try bare.decode(AdminError.self).code == "forbidden")
            #expect(try await d.call(.POST, "/api/tunnels/a-vpn1/drain", headers: [("X-Switchman-Dashboard", "0")], body: body).status == 403)
            // The header, but from another origin, or a browser saying the request is cross-site.
            #expect(try await d.write("/api/tunnels/a-vpn1/drain", body: body, extra: [("Origin", "http://evil.example")]).status == 403)
            #expect(try await d.write("/api/tunnels/a-vpn1/drain", body: body, extra: [("Sec-Fetch-Site", "cross-site")]).status == 403)
            #expect(try await d.write("/api/leader/transfer", extra: [("Origin", "null")]).status == 403)
            #expect(backend.calls.withLockedValue { $0.drains.isEmpty && $0.transfers.isEmpty }, "refused writes never reach the cluster")

            // The page's own request.
            let ok = try await d.write(
                "/api/tunnels/a-vpn1/drain", body: body,
                extra: [("Origin", "http://127.0.0.1:\(d.port)"), ("Sec-Fetch-Site", "same-origin")])
            #expect(ok.status == 200, "\(ok.body)")
            #expect(try ok.decode(AdminResult.self) == AdminResult(ok: true, message: "a-vpn1 drained", index: 121, term: 3))
            #expect(backend.calls.withLockedValue { $0.drains.map { "\($0.tunnel): \($0.reason)" } } == ["a-vpn1: kernel upgrade"])

            // A drain needs a reason.
            #expect(try await d.write("/api/tunnels/a-vpn1/drain", body: #"{"reason":"  "}"#).status == 400)
            #expect(try await d.write("/api/tunnels/a-vpn1/drain", body: "{}").status == 400)
        }
    }

    @Test func undrainAndTransfer() async throws {
        let backend = FakeBackend()
        try await withDashboard(backend) { (d: Dashboard) async throws in
            #expect(try await d.write("/api/tunnels/b-vpn2/undrain").status == 200)
            #expect(try await d.write("/api/leader/transfer", body: #"{"to":2}"#).status == 200)
            #expect(try await d.write("/api/leader/transfer", body: "{}").status == 200)
            #expect(try await d.write("/api/leader/transfer", body: #"{"to":0}"#).status == 400)
            #expect(try await d.write("/api/leader/transfer", body: "not json").status == 400)
            // GET is never a write.
            #expect([404, 405].contains(try await d.call(.GET, "/api/leader/transfer").status))
        }
        let calls = backend.calls.withLockedValue { $0 }
        #expect(calls.undrains == ["b-vpn2"])
        #expect(calls.transfers == [2, nil])
    }

    @Test func theClusterRefusalIsPassedOn() async throws {
        let backend = FakeBackend(writeError: AdminClientError.server(AdminError(code: "not_found", message: "no tunnel named \"nope\""), status: 404))
        try await withDashboard(backend) { (d: Dashboard) async throws in
            let r = try await d.write("/api/tunnels/nope/drain", body: #"{"reason":"x"}"#)
            #expect(r.status == 404)
            #expect(try r.decode(AdminError.self) == AdminError(code: "not_found", message: "no tunnel named \"nope\""))
        }
    }

    @Test func aForeignHostNameIsRefused() async throws {
        // DNS rebinding: a site whose name resolves to 127.0.0.1 is same-origin with itself.
        try await withDashboard(FakeBackend()) { (d: Dashboard) async throws in
            let r = try await d.call(.GET, "/api/status", headers: [("Host", "evil.example:\(d.port)")])
            #expect(r.status == 403, "\(r.body)")
            #expect(try await d.call(.GET, "/", headers: [("Host", "localhost:\(d.port)")]).status == 200)
            #expect(try await d.call(.GET, "/api/status", headers: [("Host", "[::1]:\(d.port)")]).status == 200)
        }
    }

    @Test func statusReadsAreSharedBetweenPagesAndRefreshedAfterAWrite() async throws {
        let backend = FakeBackend()
        try await withDashboard(backend, statusMaxAge: .seconds(60)) { (d: Dashboard) async throws in
            for _ in 0..<3 { #expect(try await d.call(.GET, "/api/status").status == 200) }
            #expect(backend.calls.withLockedValue { $0.status.count } == 1)
            #expect(try await d.write("/api/tunnels/b-vpn2/undrain").status == 200)
            #expect(try await d.call(.GET, "/api/status").status == 200)
            #expect(backend.calls.withLockedValue { $0.status.count } == 2)
        }
    }

    @Test func thePageLoadsNothingFromOutsideAndEmbedsItsData() async throws {
        // A drain reason is operator text: it must not be able to end the embedded JSON.
        let hostile = "</script><script>alert(1)</script>"
        let backend = FakeBackend(status: { _ in sampleStatus(drainReason: hostile) })
        try await withDashboard(backend) { (d: Dashboard) async throws in
            let page = try await d.call(.GET, "/")
            #expect(page.status == 200)
            #expect(page.headers["Content-Type"].first?.hasPrefix("text/html") == true)
            let csp = page.headers["Content-Security-Policy"].first ?? ""
            #expect(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "\(csp)")
            #expect(page.headers["X-Frame-Options"].first == "DENY")
            #expect(page.body.contains(#"id="initial-data""#))
            #expect(page.body.contains("a-vpn1") && page.body.contains("rtb-0a"), "the status is embedded")
            #expect(page.body.contains("event 3"), "the events are embedded")
            #expect(!page.body.contains(hostile))
            #expect(page.body.components(separatedBy: "</script>").count - 1 == 2, "only the page's own two script elements end")

            let script = try await d.call(.GET, "/dashboard.js")
            #expect(script.status == 200 && script.headers["Content-Type"].first?.hasPrefix("text/javascript") == true)
            #expect(script.body.contains("X-Switchman-Dashboard"), "the page's writes carry the CSRF header")
            #expect(script.body.contains("window.confirm") && script.body.contains("window.prompt"), "writes ask first")
            let style = try await d.call(.GET, "/dashboard.css")
            #expect(style.status == 200 && style.body.contains("--bg"))

            for (name, text) in [("page", page.body), ("script", script.body), ("style", style.body)] {
                for scheme in ["http://", "https://", "//cdn", "url(http"] {
                    #expect(!text.lowercased().contains(scheme), "\(name) mentions \(scheme)")
                }
                // Every src/href is a path on this server.
                for attribute in ["src=\"", "href=\""] {
                    for part in text.components(separatedBy: attribute).dropFirst() {
                        #expect(part.hasPrefix("/") && !part.hasPrefix("//"), "\(name): \(attribute)\(part.prefix(40))")
                    }
                }
            }
        }
    }

    @Test func listenAddresses() {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"] {
            #expect(DashboardListen.isLoopback(host), "\(host)")
        }
        for host in ["0.0.0.0", "10.0.0.1", "::", "192.168.1.2", "example.com", "128.0.0.1", "fe80::1"] {
            #expect(!DashboardListen.isLoopback(host), "\(host)")
        }
        #expect(DashboardListen.parse("127.0.0.1:8080") == HostPort(host: "127.0.0.1", port: 8080))
        #expect(DashboardListen.parse("[::1]:9000") == HostPort(host: "::1", port: 9000))
        #expect(DashboardListen.parse("127.0.0.1") == nil)
        #expect(DashboardListen.refusal("0.0.0.0:8080").contains("--allow-remote"))
        #expect(DashboardGuard.hostRefusal("127.0.0.1:8080", extraHost: "127.0.0.1") == nil)
        #expect(DashboardGuard.hostRefusal("evil.example", extraHost: "127.0.0.1") != nil)
        #expect(DashboardGuard.hostRefusal(nil, extraHost: "127.0.0.1") != nil)
    }
}
