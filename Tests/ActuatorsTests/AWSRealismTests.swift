import Foundation
import Logging
import NIOCore
import Testing

@testable import Actuators

/// How AWS behaves where moto is kinder, at the level of the client: the SDKs' retry quota,
/// clock skew, partitions, and ReplaceRoute's answer for a route that is not there.
struct AWSRealismTests {
    @Test func retryQuotaStopsRetriesWhenSpentAndRefillsOnSuccess() {
        var q = RetryQuota(capacity: 20)
        #expect(q.spend(for: .throttled) == RetryQuota.retryCost)
        #expect(q.spend(for: .transport) == RetryQuota.timeoutRetryCost)
        #expect(q.available == 5)
        #expect(q.spend(for: .transport) == nil)  // 10 > 5: no retry, nothing taken
        #expect(q.available == 5)
        #expect(q.spend(for: .serverError) == 5)
        #expect(q.spend(for: .throttled) == nil)
        q.succeeded(refunding: 5)
        #expect(q.available == 5)
        q.succeeded(refunding: nil)
        #expect(q.available == 6)
        for _ in 0..<100 { q.succeeded(refunding: 10) }
        #expect(q.available == 20)
    }

    /// Against a server that throttles every call, a client stops retrying once its quota is
    /// spent: at most capacity / cost retries in all, however many calls are made.
    @Test func aThrottlingServerSpendsTheQuotaAndThenCallsFailFast() async throws {
        let calls = Locked(0)
        try await withTestServer({ _ in
            calls.withLock { $0 += 1 }
            return .respond(status: .serviceUnavailable, headers: [("x-amzn-RequestId", "req-throttle")], body: Array(
                "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>req-throttle</RequestID></Response>".utf8))
        }) { server in
            var logger = Logger(label: "test.quota")
            logger.logLevel = .critical
            let config = AWSClientConfiguration(
                region: "us-east-1", endpointOverride: server.url, identity: CallerIdentity(nodeID: "n1"),
                retry: RetryPolicy(maxAttempts: 1000, baseBackoff: .nanoseconds(1), maxBackoff: .nanoseconds(1),
                                   attemptTimeout: .seconds(10), minimumAttemptTime: .nanoseconds(1)))
            let ec2 = EC2Client(configuration: config, credentials: StaticCredentials(AWSCredentials(accessKeyID: "AKID", secretAccessKey: "s")),
                                rateLimiter: RateLimiter(limits: RateLimits.unlimited), logger: logger)
            for _ in 0..<3 {
                await #expect(throws: AWSError.self) {
                    _ = try await ec2.describeRouteTables(deadline: .now() + .seconds(60))
                }
            }
        }
        // 500 / 5 = 100 retries over all three calls, plus each call's first attempt. An
        // attempt that fails on the connection instead (a loaded machine) costs 10 and never
        // reaches the server, so fewer may arrive (102 in one CI run), never more, and never
        // fewer than if every retry had cost 10.
        #expect((3 + 500 / 10)...(3 + 500 / 5) ~= calls.current, "\(calls.current) calls")
    }

    /// AWS refuses a request signed with a clock more than 5 minutes off; the client reads
    /// AWS's clock from the Date header, signs again with the corrected time, and keeps it.
    @Test func aSkewedClockIsCorrectedFromTheDateHeader() async throws {
        let skew: TimeInterval = 15 * 60
        let seen = Locked<[String]>([])
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let amzDate = DateFormatter()
        amzDate.locale = Locale(identifier: "en_US_POSIX")
        amzDate.timeZone = TimeZone(identifier: "UTC")
        amzDate.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        try await withTestServer({ r in
            let signed = r.headers.first(name: "x-amz-date") ?? ""
            seen.withLock { $0.append(signed) }
            let serverNow = Date()
            let date = [("Date", formatter.string(from: serverNow))]
            guard let t = amzDate.date(from: signed), abs(t.timeIntervalSince(serverNow)) < 300 else {
                return .respond(status: .badRequest, headers: date, body: Array(
                    "<Response><Errors><Error><Code>RequestExpired</Code><Message>Request has expired.</Message></Error></Errors><RequestID>req-skew</RequestID></Response>".utf8))
            }
            return .respond(status: .ok, headers: date, body: Array("<DescribeRouteTablesResponse><routeTableSet/></DescribeRouteTablesResponse>".utf8))
        }) { server in
            var logger = Logger(label: "test.skew")
            logger.logLevel = .critical
            let config = AWSClientConfiguration(region: "us-east-1", endpointOverride: server.url, identity: CallerIdentity(nodeID: "n1"))
            let ec2 = EC2Client(configuration: config, credentials: StaticCredentials(AWSCredentials(accessKeyID: "AKID", secretAccessKey: "s")),
                                logger: logger, clock: { Date().addingTimeInterval(-skew) })
            _ = try await ec2.describeRouteTables(deadline: .now() + .seconds(30))
            _ = try await ec2.describeRouteTables(deadline: .now() + .seconds(30))
        }
        // Refused once, then signed with AWS's time, and the correction is kept: one request
        // alone carries the skewed time (a loaded run may retry one on its connection).
        let skewed = seen.current.filter { amzDate.date(from: $0).map { abs($0.timeIntervalSinceNow) >= 300 } ?? true }
        #expect(skewed.count == 1 && seen.current.count >= 3, "\(seen.current)")
    }

    @Test func endpointsFollowThePartition() {
        #expect(AWSPartition(region: "eu-west-1") == .aws)
        #expect(AWSPartition(region: "cn-north-1") == .awsCN)
        #expect(AWSPartition(region: "us-gov-west-1") == .awsUSGov)
        #expect(EC2Client.endpoint(region: "eu-west-1") == "https://ec2.eu-west-1.amazonaws.com")
        #expect(EC2Client.endpoint(region: "cn-northwest-1") == "https://ec2.cn-northwest-1.amazonaws.com.cn")
        #expect(EC2Client.endpoint(region: "us-gov-west-1", fips: true) == "https://ec2-fips.us-gov-west-1.amazonaws.com")
        #expect(AWSPartition.aws.route53(fips: false) == ("https://route53.amazonaws.com", "us-east-1"))
        #expect(AWSPartition.aws.route53(fips: true).endpoint == "https://route53-fips.amazonaws.com")
        #expect(AWSPartition.awsCN.route53(fips: false) == ("https://route53.amazonaws.com.cn", "cn-northwest-1"))
        #expect(AWSPartition.awsUSGov.route53(fips: false) == ("https://route53.us-gov.amazonaws.com", "us-gov-west-1"))
        let o = EndpointOverrides(all: "http://a", ec2: "http://e", route53: nil, ec2ByRegion: ["us-west-2": "http://w"])
        #expect(o.ec2(region: "us-west-2") == "http://w")
        #expect(o.ec2(region: "us-east-1") == "http://e")
        #expect(o.route53Endpoint == "http://a")
    }

    /// ReplaceRoute on a table without that static route answers InvalidParameterValue ("There
    /// is no route defined …", as AWS and moto do); a write planned as a replace from a read
    /// that has since gone stale must create the route instead of failing every pass.
    @Test func aReplacePlannedFromAStaleReadCreatesTheMissingRoute() async throws {
        try await withMoto(signatureChecking: false) { moto in
            let topo = try await Topology.build(moto)
            let c = Clients(endpoint: moto.endpoint, credentials: AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing"))
            let route = DesiredRoute(routeTableId: topo.routeTables[0], destination: "192.168.0.0/16", target: .instance(topo.vpnA))
            let outcome = await c.routes.writeRoute(route, exists: true, fencing: FencingToken(term: 1, index: 2), deadline: .now() + .seconds(60))
            #expect("\(outcome)" == "created")
            #expect(try await moto.routesSeenByCLI(topo.routeTables[0])["192.168.0.0/16"] == topo.vpnA)
            // And the other way: planned as a create, the route is there, so it is replaced.
            let again = DesiredRoute(routeTableId: topo.routeTables[0], destination: "192.168.0.0/16", target: .instance(topo.vpnB))
            let second = await c.routes.writeRoute(again, exists: false, fencing: FencingToken(term: 1, index: 3), deadline: .now() + .seconds(60))
            #expect("\(second)" == "replaced")
            #expect(try await moto.routesSeenByCLI(topo.routeTables[0])["192.168.0.0/16"] == topo.vpnB)
        }
    }
}
