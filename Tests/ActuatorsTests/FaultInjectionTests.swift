import Foundation
import Logging
import NIOCore
import NIOPosix
import AsyncHTTPClient
import Testing

@testable import Actuators

/// A fault-injecting proxy in front of moto: throttling, 500s, lost answers, hung
/// connections and slow responses. After every fault a plain ensure must converge.
@Suite(.timeLimit(.minutes(5)))
struct FaultInjectionTests {
    let fencing = FencingToken(term: 3, index: 9)
    let remote = "192.168.0.0/16"
    func deadline(_ s: Int64 = 60) -> NIODeadline { .now() + .seconds(s) }
    func ok(_ o: RouteEnsureOutcome?) -> String { o.map { "\($0)" } ?? "missing" }

    @Test func retriesThrottlingServerErrorsLostAnswersAndHungConnections() async throws {
        try await withMotoAndProxy(signatureChecking: true) { moto, proxy, server in
            let topo = try await Topology.build(moto)
            let c = Clients(endpoint: server.url, credentials: moto.credentials, retry: RetryPolicy(
                maxAttempts: 5, baseBackoff: .milliseconds(20), maxBackoff: .milliseconds(200),
                attemptTimeout: .seconds(2), minimumAttemptTime: .milliseconds(100)))
            let rtb0 = topo.routeTables[0], rtb1 = topo.routeTables[1]

            // Throttled reads are retried.
            proxy.resetCounts()
            proxy.inject("DescribeRouteTables", .throttle, .throttle)
            let created = try await c.routes.ensureRoute(DesiredRoute(routeTableId: rtb0, destination: remote, target: .instance(topo.vpnA)),
                                                         fencing: fencing, deadline: deadline())
            #expect(ok(created) == "created")
            #expect(proxy.count("DescribeRouteTables") == 3)
            #expect(try await moto.routesSeenByCLI(rtb0)[remote] == topo.vpnA)

            // 500s on an idempotent write are retried.
            proxy.resetCounts()
            proxy.inject("ReplaceRoute", .serverError, .serverError)
            let replaced = try await c.routes.ensureRoute(DesiredRoute(routeTableId: rtb0, destination: remote, target: .instance(topo.vpnB)),
                                                          fencing: fencing, deadline: deadline())
            #expect(ok(replaced) == "replaced")
            #expect(proxy.count("ReplaceRoute") == 3)
            #expect(try await moto.routesSeenByCLI(rtb0)[remote] == topo.vpnB)

            // CreateRoute applied but its answer lost: the retry meets RouteAlreadyExists (as
            // AWS answers; moto would silently overwrite) and the actuator ensures by replace.
            proxy.resetCounts()
            proxy.inject("CreateRoute", .forwardThenServerError, .routeAlreadyExists)
            let lost = try await c.routes.ensureRoute(DesiredRoute(routeTableId: rtb1, destination: remote, target: .networkInterface(topo.eni)),
                                                      fencing: fencing, deadline: deadline())
            #expect(ok(lost) == "replaced")
            #expect(proxy.count("CreateRoute") == 2)
            #expect(proxy.count("ReplaceRoute") == 1)
            #expect(try await moto.routesSeenByCLI(rtb1)[remote] == topo.eni)
            // Every attempt of a write carries the token.
            #expect(proxy.userAgents.current.filter { $0.hasPrefix("CreateRoute") || $0.hasPrefix("ReplaceRoute") }
                .allSatisfy { $0.hasSuffix("node/n1 term/3 index/9") })

            // A hung connection costs one attempt timeout, then the retry goes through.
            proxy.resetCounts()
            proxy.inject("ReplaceRoute", .hang)
            let afterHang = try await c.routes.ensureRoute(DesiredRoute(routeTableId: rtb0, destination: remote, target: .instance(topo.vpnA)),
                                                           fencing: fencing, deadline: deadline())
            #expect(ok(afterHang) == "replaced")
            #expect(proxy.count("ReplaceRoute") == 2)
            #expect(try await moto.routesSeenByCLI(rtb0)[remote] == topo.vpnA)

            // Idempotent once more.
            proxy.resetCounts()
            _ = try await c.routes.ensureRoutes([
                DesiredRoute(routeTableId: rtb0, destination: remote, target: .instance(topo.vpnA)),
                DesiredRoute(routeTableId: rtb1, destination: remote, target: .networkInterface(topo.eni)),
            ], fencing: fencing, deadline: deadline())
            #expect(proxy.writeCount == 0)
        }
    }

    /// Credentials that take their time, as an IMDS refresh on a busy host might.
    struct SlowCredentials: CredentialsSource {
        let inner: AWSCredentials
        let delay: Duration
        func credentials(logger: Logger) async throws -> AWSCredentials {
            try await Task.sleep(for: delay)
            return inner
        }
    }

    /// A write's deadline is its leader's lease: when it passes between the fence and the
    /// send, no request may leave at all (chaos/README.md, "pause-leader").
    @Test func aCallWhoseDeadlinePassesBeforeSendingSendsNothing() async throws {
        try await withMotoAndProxy(signatureChecking: false) { moto, proxy, server in
            let topo = try await Topology.build(moto)
            let config = AWSClientConfiguration(region: "us-east-1", endpointOverride: server.url, identity: CallerIdentity(nodeID: "n1"))
            var logger = Logger(label: "test.actuators")
            logger.logLevel = .critical
            let ec2 = EC2Client(configuration: config, credentials: SlowCredentials(inner: moto.credentials, delay: .milliseconds(400)),
                                rateLimiter: RateLimiter(limits: RateLimits()), logger: logger)
            proxy.resetCounts()
            await #expect {
                _ = try await ec2.describeRouteTables(filters: [EC2Filter("route-table-id", [topo.routeTables[0]])], deadline: .now() + .milliseconds(100))
            } throws: { error in
                guard case AWSClientError.deadlineExceeded(_, let attempts, _) = error else { return false }
                return attempts == 0
            }
            #expect(proxy.count("DescribeRouteTables") == 0)
        }
    }

    /// Credentials that, when asked, stall the HTTP client's only event loop, as a SIGSTOP or a
    /// starved CPU stalls the whole process: the call passes its last check before sending,
    /// and the loop wakes only after the lease is over.
    struct LoopStallingCredentials: CredentialsSource {
        let inner: AWSCredentials
        let loop: any EventLoop
        let stall: Duration
        let armed: Locked<Bool>
        func credentials(logger: Logger) async throws -> AWSCredentials {
            if armed.withLock({ $0 }) {
                let seconds = Double(stall.components.seconds) + Double(stall.components.attoseconds) / 1e18
                loop.execute { Thread.sleep(forTimeInterval: seconds) }
            }
            return inner
        }
    }

    /// The fence must hold at the point the request's bytes are written, not only before the
    /// call is handed to the HTTP client: a process stalled after the last check of its own,
    /// with a warm connection, would otherwise write as soon as it wakes, before the client's
    /// own deadline timer gets to run (chaos pause-leader, seed 20793).
    @Test func aWriteStalledPastItsLeaseAfterTheLastCheckDoesNotReachAWS() async throws {
        let actions = Locked<[String]>([])
        try await withTestServer({ request in
            let form = String(decoding: request.body, as: UTF8.self)
            let action = form.split(separator: "&").first { $0.hasPrefix("Action=") }.map { String($0.dropFirst(7)) } ?? "?"
            actions.withLock { $0.append(action) }
            let xml = action == "ReplaceRoute"
                ? "<ReplaceRouteResponse><requestId>r-1</requestId><return>true</return></ReplaceRouteResponse>"
                : "<DescribeRouteTablesResponse><requestId>r-0</requestId><routeTableSet/></DescribeRouteTablesResponse>"
            return .respond(status: .ok, headers: [("Content-Type", "text/xml")], body: Array(xml.utf8))
        }) { server in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let http = HTTPClient(eventLoopGroupProvider: .shared(group))
            let armed = Locked(false)
            let config = AWSClientConfiguration(region: "us-east-1", endpointOverride: server.url, identity: CallerIdentity(nodeID: "n1"))
            var logger = Logger(label: "test.actuators")
            logger.logLevel = .critical
            let creds = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "secret", sessionToken: nil)
            let ec2 = EC2Client(configuration: config,
                                credentials: LoopStallingCredentials(inner: creds, loop: group.next(), stall: .milliseconds(600), armed: armed),
                                httpClient: http, rateLimiter: RateLimiter(limits: RateLimits()), logger: logger)
            // Whether the woken loop runs the write or the client's own deadline timer first
            // depends on how the client queued them, so the stall is tried several times.
            for _ in 0..<10 {
                // A read first, so the write finds the connection already open.
                _ = try await ec2.describeRouteTables(deadline: .now() + .seconds(30))
                armed.withLock { $0 = true }
                await #expect {
                    try await ec2.replaceRoute(routeTableId: "rtb-1", destination: remote, target: .networkInterface("eni-1"),
                                               fencing: fencing, deadline: .now() + .milliseconds(250))
                } throws: { error in
                    // Refused by the lease check (0 attempts) or, when the client's own deadline
                    // timer wins the race on a loaded machine, cut off by it (1 attempt, which
                    // the reconciler treats as ambiguous); either way the body never left, as
                    // the server's log below shows.
                    guard case AWSClientError.deadlineExceeded = error else { return false }
                    return true
                }
                armed.withLock { $0 = false }
            }
            // A last read proves the server still answers, so a write missing below is not one
            // still in flight.
            _ = try await ec2.describeRouteTables(deadline: .now() + .seconds(30))
            try await http.shutdown()
            try await group.shutdownGracefully()
        }
        #expect(actions.withLock { $0 }.filter { $0 != "DescribeRouteTables" } == [])
        // Every read arrived; one may arrive twice, retried after the refused write's
        // connection was closed under it (seen once on a loaded CI machine: 12).
        #expect(actions.withLock { $0 }.count >= 11)
    }

    @Test func deadlinesAreRespectedAndAFailedEnsureCanBeRepaired() async throws {
        try await withMotoAndProxy(signatureChecking: false) { moto, proxy, server in
            let topo = try await Topology.build(moto)
            let c = Clients(endpoint: server.url, credentials: moto.credentials, retry: RetryPolicy(
                maxAttempts: 50, baseBackoff: .milliseconds(20), maxBackoff: .milliseconds(100),
                attemptTimeout: .seconds(10), minimumAttemptTime: .milliseconds(100)))
            let rtb0 = topo.routeTables[0]
            let desired = DesiredRoute(routeTableId: rtb0, destination: remote, target: .instance(topo.vpnB))
            _ = try await c.routes.ensureRoute(DesiredRoute(routeTableId: rtb0, destination: remote, target: .instance(topo.vpnA)),
                                               fencing: fencing, deadline: deadline())

            // AWS keeps throttling: the actuator retries until the lease-bounded deadline
            // cannot cover another attempt, then gives up with a deadline error.
            proxy.persistent.withLock { $0["ReplaceRoute"] = .throttle }
            proxy.resetCounts()
            let throttled = try await c.routes.ensureRoute(desired, fencing: fencing, deadline: .now() + .seconds(2))
            guard case .failed(let error) = throttled else { Issue.record("expected failure, got \(throttled)"); return }
            #expect(error is AWSClientError, "\(error)")
            #expect(proxy.count("ReplaceRoute") >= 1)
            #expect(try await moto.routesSeenByCLI(rtb0)[remote] == topo.vpnA)

            // Persistent 500s: same, a clean give-up.
            proxy.persistent.withLock { $0["ReplaceRoute"] = .serverError }
            let failing = try await c.routes.ensureRoute(desired, fencing: fencing, deadline: .now() + .seconds(2))
            #expect(!failing.succeeded)

            // Answers slower than the deadline: the call is abandoned at the deadline.
            proxy.persistent.withLock { $0 = ["DescribeRouteTables": .delay(.seconds(5))] }
            await #expect(throws: AWSClientError.self) {
                _ = try await c.routes.ensureRoute(desired, fencing: fencing, deadline: .now() + .seconds(1))
            }

            // Faults gone: one ordinary ensure repairs everything.
            proxy.persistent.withLock { $0 = [:] }
            let repaired = try await c.routes.ensureRoute(desired, fencing: fencing, deadline: deadline())
            #expect(ok(repaired) == "replaced")
            #expect(try await moto.routesSeenByCLI(rtb0)[remote] == topo.vpnB)
        }
    }

    @Test func route53CreateBatchesAreNotRepeatedAfterAmbiguousFailures() async throws {
        try await withMotoAndProxy(signatureChecking: false) { moto, proxy, server in
            let zone = try await moto.awsDict(["route53", "create-hosted-zone", "--name", "faults.example.internal",
                                               "--caller-reference", UUID().uuidString])
            let zoneID = try #require((zone["HostedZone"] as? [String: Any])?["Id"] as? String)
            let c = Clients(endpoint: server.url, credentials: moto.credentials)
            let rrs = ResourceRecordSet(name: "x.faults.example.internal", type: "A", ttl: 60, values: ["10.1.1.1"])

            // CREATE is not idempotent: a 500 is reported, not retried.
            proxy.inject("ChangeResourceRecordSets", .serverError)
            proxy.resetCounts()
            do {
                _ = try await c.route53.changeResourceRecordSets(hostedZoneId: zoneID, changes: [RecordChange(.create, rrs)],
                                                                 fencing: fencing, deadline: deadline())
                Issue.record("expected the 500 to surface")
            } catch let error as AWSError {
                #expect(error.code == "InternalError")
                #expect(error.requestID == "proxy-500")
            }
            #expect(proxy.count("ChangeResourceRecordSets") == 1)

            // Throttling means "not processed": even a CREATE is retried.
            proxy.inject("ChangeResourceRecordSets", .throttle)
            proxy.resetCounts()
            _ = try await c.route53.changeResourceRecordSets(hostedZoneId: zoneID, changes: [RecordChange(.create, rrs)],
                                                             fencing: fencing, deadline: deadline())
            #expect(proxy.count("ChangeResourceRecordSets") == 2)

            // UPSERT is idempotent: retried after a 500, and the DNS actuator converges.
            proxy.inject("ChangeResourceRecordSets", .forwardThenServerError)
            proxy.resetCounts()
            let outcome = try await c.dns.ensureRecord(DesiredRecord(hostedZoneId: zoneID, name: rrs.name, ttl: 60, values: ["10.1.1.2"]),
                                                       fencing: fencing, deadline: deadline())
            if case .upserted = outcome {} else { Issue.record("expected an upsert, got \(outcome)") }
            #expect(proxy.count("ChangeResourceRecordSets") == 2)
            let out = try await moto.awsDict(["route53", "list-resource-record-sets", "--hosted-zone-id", zoneID])
            let values = (out["ResourceRecordSets"] as? [[String: Any]] ?? [])
                .first { ($0["Name"] as? String) == "x.faults.example.internal." }
                .flatMap { $0["ResourceRecords"] as? [[String: Any]] }?.compactMap { $0["Value"] as? String }
            #expect(values == ["10.1.1.2"])
        }
    }
}
