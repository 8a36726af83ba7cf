import AsyncHTTPClient
import Foundation
import SwitchmanTestSupport
import Logging
import NIOCore
import NIOHTTP1
import Testing

@testable import Actuators

enum MotoError: Error, CustomStringConvertible {
    case didNotStart(String)
    case cli(args: [String], status: Int32, stderr: String)
    case unexpected(String)

    var description: String {
        switch self {
        case .didNotStart(let log): return "moto_server did not answer: \(log)"
        case .cli(let args, let status, let stderr): return "aws \(args.joined(separator: " ")) exited \(status): \(stderr)"
        case .unexpected(let what): return what
        }
    }
}

/// Runs a program to completion, output captured through temp files (a pipe could fill up).
@discardableResult
func runProcess(_ args: [String], environment: [String: String]) async throws -> (status: Int32, stdout: String, stderr: String) {
    let dir = try TestPaths.makeTempDir("proc")
    defer { try? FileManager.default.removeItem(at: dir) }
    let out = dir.appendingPathComponent("out"), err = dir.appendingPathComponent("err")
    let child = try ChildProcess(args, environment: environment, stdout: out.path, stderr: err.path)
    let status = await child.wait()
    return (status, (try? String(contentsOf: out, encoding: .utf8)) ?? "", (try? String(contentsOf: err, encoding: .utf8)) ?? "")
}

/// A moto_server on a free loopback port, with its own log file. `@unchecked Sendable`:
/// the only mutable fields (the key) are set by `createSigningUser` before the server is
/// handed to any concurrent code.
final class MotoServer: @unchecked Sendable {
    let port: Int
    let process: ChildProcess
    let logFile: URL
    /// Credentials of the IAM user created through moto (when signature checking is on).
    var accessKeyID = "testing"
    var secretAccessKey = "testing"

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// `unauthenticatedRequests`: set INITIAL_NO_AUTH_ACTION_COUNT so that only the first N
    /// requests skip SigV4 checking.
    static func start(unauthenticatedRequests: Int?) async throws -> MotoServer {
        var lastLog = ""
        // A free port can be taken by someone else before moto binds it: then try another.
        for _ in 0..<5 {
            let port = try LoopbackPorts.unused()
            let dir = try TestPaths.makeTempDir("moto")
            let log = dir.appendingPathComponent("moto.log")
            var env = ProcessInfo.processInfo.environment
            if let n = unauthenticatedRequests { env["INITIAL_NO_AUTH_ACTION_COUNT"] = String(n) }
            let process = try ChildProcess(["moto_server", "-H", "127.0.0.1", "-p", String(port)], environment: env,
                                           stdout: log.path, stderr: log.path)
            let moto = MotoServer(port: port, process: process, logFile: log)
            // Poll until it answers (or dies); startup speed depends on the machine's load.
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            let up = await eventually(timeout: 90) {
                if process.hasExited { return true }
                var request = HTTPClientRequest(url: "\(moto.endpoint)/moto-api/")
                request.method = .GET
                guard let response = try? await http.execute(request, timeout: .seconds(2)) else { return false }
                _ = try? await response.body.collect(upTo: 1 << 20)
                return true
            }
            try? await http.shutdown()
            if up && !process.hasExited { return moto }
            await moto.stop()
            lastLog = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if !lastLog.contains("in use") { break }
        }
        throw MotoError.didNotStart(lastLog)
    }

    private init(port: Int, process: ChildProcess, logFile: URL) {
        self.port = port
        self.process = process
        self.logFile = logFile
    }

    func stop() async {
        await process.forceStop()
    }

    /// awscli v1 against this server (`--endpoint-url`), JSON output parsed.
    @discardableResult
    func aws(_ args: [String]) async throws -> Any {
        var env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = accessKeyID
        env["AWS_SECRET_ACCESS_KEY"] = secretAccessKey
        env["AWS_DEFAULT_REGION"] = "us-east-1"
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        env["AWS_CONFIG_FILE"] = "/nonexistent"
        env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
        env.removeValue(forKey: "AWS_SESSION_TOKEN")
        env.removeValue(forKey: "AWS_PROFILE")
        let full = ["aws", "--endpoint-url", endpoint, "--output", "json"] + args
        let result = try await runProcess(full, environment: env)
        guard result.status == 0 else { throw MotoError.cli(args: args, status: result.status, stderr: result.stderr) }
        let text = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty { return [String: Any]() }
        return try JSONSerialization.jsonObject(with: Data(text.utf8))
    }

    func awsDict(_ args: [String]) async throws -> [String: Any] {
        guard let d = try await aws(args) as? [String: Any] else { throw MotoError.unexpected("aws \(args) did not return an object") }
        return d
    }

    /// Creates an IAM user with an allow-all policy and an access key, through the first
    /// (unauthenticated) requests; from then on everything is signed with that key.
    func createSigningUser() async throws {
        try await aws(["iam", "create-user", "--user-name", "switchman"])
        let key = try await awsDict(["iam", "create-access-key", "--user-name", "switchman"])
        guard let ak = key["AccessKey"] as? [String: Any], let id = ak["AccessKeyId"] as? String,
              let secret = ak["SecretAccessKey"] as? String
        else { throw MotoError.unexpected("no access key in \(key)") }
        try await aws(["iam", "put-user-policy", "--user-name", "switchman", "--policy-name", "all", "--policy-document",
                 #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#])
        accessKeyID = id
        secretAccessKey = secret
    }

    var credentials: AWSCredentials { AWSCredentials(accessKeyID: accessKeyID, secretAccessKey: secretAccessKey) }

    /// Route table as awscli sees it: destination → target id.
    func routesSeenByCLI(_ tableID: String) async throws -> [String: String] {
        let out = try await awsDict(["ec2", "describe-route-tables", "--route-table-ids", tableID])
        var routes: [String: String] = [:]
        for table in out["RouteTables"] as? [[String: Any]] ?? [] {
            for r in table["Routes"] as? [[String: Any]] ?? [] {
                guard let dest = r["DestinationCidrBlock"] as? String else { continue }
                routes[dest] = (r["InstanceId"] as? String) ?? (r["NetworkInterfaceId"] as? String) ?? (r["GatewayId"] as? String) ?? "?"
            }
        }
        return routes
    }
}

/// Starts moto (optionally with signature checking), runs `body`, and always stops moto.
func withMoto<T>(signatureChecking: Bool, _ body: (MotoServer) async throws -> T) async throws -> T {
    // 3 unauthenticated requests: create-user, create-access-key, put-user-policy.
    let moto = try await MotoServer.start(unauthenticatedRequests: signatureChecking ? 3 : nil)
    do {
        if signatureChecking { try await moto.createSigningUser() }
        let result = try await body(moto)
        await moto.stop()
        return result
    } catch {
        await moto.stop()
        throw error
    }
}

// MARK: - counting and fault-injecting proxy

enum Fault: Sendable {
    /// Answer as EC2 does when throttling, without forwarding.
    case throttle
    /// Answer 500 without forwarding.
    case serverError
    /// Forward (moto applies the call), then answer 500: the caller cannot know it worked.
    case forwardThenServerError
    /// Never answer, without forwarding.
    case hang
    /// Forward, but only answer after this long.
    case delay(TimeAmount)
    /// Answer as AWS does for a CreateRoute whose destination exists (moto overwrites
    /// instead, so the proxy plays AWS's documented part), without forwarding.
    case routeAlreadyExists
}

/// A reverse proxy in front of moto that counts requests per action and injects faults.
final class FaultProxy: Sendable {
    let upstream: String
    let http: HTTPClient
    /// Per action, the faults to apply to the next requests, in order.
    let plan = Locked<[String: [Fault]]>([:])
    /// A fault for every request of an action, until cleared.
    let persistent = Locked<[String: Fault]>([:])
    let counts = Locked<[String: Int]>([:])
    let userAgents = Locked<[String]>([])

    init(upstream: String) {
        self.upstream = upstream
        self.http = HTTPClient(eventLoopGroupProvider: .singleton)
    }

    func shutdown() async { try? await http.shutdown() }

    var total: Int { counts.current.values.reduce(0, +) }
    func count(_ action: String) -> Int { counts.current[action] ?? 0 }
    var writeCount: Int {
        counts.current.filter { !($0.key.hasPrefix("Describe") || $0.key.hasPrefix("List") || $0.key.hasPrefix("Get")) }.values.reduce(0, +)
    }
    func resetCounts() { counts.withLock { $0 = [:] } }

    func inject(_ action: String, _ faults: Fault...) { plan.withLock { $0[action, default: []] += faults } }

    static func action(of r: TestRequest) -> String {
        let body = String(decoding: r.body, as: UTF8.self)
        for pair in body.split(separator: "&") where pair.hasPrefix("Action=") { return String(pair.dropFirst(7)) }
        if r.uri.contains("/rrset") { return r.method == .POST ? "ChangeResourceRecordSets" : "ListResourceRecordSets" }
        if r.uri.contains("/change/") { return "GetChange" }
        return "\(r.method.rawValue) \(r.uri)"
    }

    func handle(_ r: TestRequest) async -> TestResponse {
        let action = Self.action(of: r)
        counts.withLock { $0[action, default: 0] += 1 }
        if let ua = r.headers.first(name: "User-Agent") { userAgents.withLock { $0.append("\(action) \(ua)") } }
        let fault = plan.withLock { p -> Fault? in
            guard var list = p[action], !list.isEmpty else { return nil }
            let f = list.removeFirst()
            p[action] = list
            return f
        } ?? persistent.current[action]
        switch fault {
        case .throttle?:
            return .respond(status: .serviceUnavailable, body: Array("""
                <?xml version="1.0" encoding="UTF-8"?>
                <Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>proxy-throttle-\(UUID().uuidString)</RequestID></Response>
                """.utf8))
        case .serverError?:
            return .respond(status: .internalServerError, body: Array("""
                <Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred</Message></Error></Errors><RequestID>proxy-500</RequestID></Response>
                """.utf8))
        case .hang?:
            return .hang
        case .routeAlreadyExists?:
            return .respond(status: .badRequest, body: Array("""
                <Response><Errors><Error><Code>RouteAlreadyExists</Code><Message>The route identified by 192.168.0.0/16 already exists.</Message></Error></Errors><RequestID>proxy-exists</RequestID></Response>
                """.utf8))
        case .forwardThenServerError?:
            _ = await forward(r)
            return .respond(status: .internalServerError, body: Array("<Response><Errors><Error><Code>InternalError</Code><Message>lost</Message></Error></Errors><RequestID>proxy-lost</RequestID></Response>".utf8))
        case .delay(let amount)?:
            let response = await forward(r)
            try? await Task.sleep(nanoseconds: UInt64(amount.nanoseconds))
            return response
        case nil:
            return await forward(r)
        }
    }

    private func forward(_ r: TestRequest) async -> TestResponse {
        var request = HTTPClientRequest(url: upstream + r.uri)
        request.method = r.method
        for (name, value) in r.headers where !["content-length", "transfer-encoding", "connection"].contains(name.lowercased()) {
            request.headers.add(name: name, value: value)
        }
        if !r.body.isEmpty { request.body = .bytes(r.body) }
        do {
            let response = try await http.execute(request, timeout: .seconds(60))
            let body = try await response.body.collect(upTo: 32 << 20)
            let headers = response.headers.filter { !["content-length", "transfer-encoding", "connection"].contains($0.name.lowercased()) }
                .map { ($0.name, $0.value) }
            return .respond(status: response.status, headers: headers, body: Array(buffer: body))
        } catch {
            return .respond(status: .badGateway, body: Array("proxy: \(error)".utf8))
        }
    }
}

/// Moto behind a counting/fault proxy, both stopped at the end whatever happens.
func withMotoAndProxy<T>(signatureChecking: Bool, _ body: (MotoServer, FaultProxy, TestHTTPServer) async throws -> T) async throws -> T {
    try await withMoto(signatureChecking: signatureChecking) { moto in
        let proxy = FaultProxy(upstream: moto.endpoint)
        do {
            let result = try await withTestServer({ await proxy.handle($0) }) { server in
                try await body(moto, proxy, server)
            }
            await proxy.shutdown()
            return result
        } catch {
            await proxy.shutdown()
            throw error
        }
    }
}

/// Clients wired to an endpoint, with test-friendly retry timings.
struct Clients {
    let ec2: EC2Client
    let route53: Route53Client
    let routes: AWSRouteActuator
    let dns: AWSDNSActuator

    init(endpoint: String, credentials: AWSCredentials, retry: RetryPolicy = RetryPolicy(baseBackoff: .milliseconds(20), maxBackoff: .milliseconds(200), attemptTimeout: .seconds(20), minimumAttemptTime: .milliseconds(100)),
         limits: RateLimits = RateLimits()) {
        let config = AWSClientConfiguration(region: "us-east-1", endpointOverride: endpoint,
                                            identity: CallerIdentity(nodeID: "n1"), retry: retry)
        let limiter = RateLimiter(limits: limits)
        var logger = Logger(label: "test.actuators")
        logger.logLevel = .critical
        ec2 = EC2Client(configuration: config, credentials: StaticCredentials(credentials), rateLimiter: limiter, logger: logger)
        route53 = Route53Client(configuration: config, credentials: StaticCredentials(credentials), rateLimiter: limiter, logger: logger)
        routes = AWSRouteActuator(ec2: ec2, logger: logger)
        dns = AWSDNSActuator(route53: route53, pollInterval: .milliseconds(100), logger: logger)
    }
}

/// The topology every route test starts from, built with awscli only.
struct Topology {
    var vpcID: String
    var subnets: [String]
    var routeTables: [String]
    var associations: [String]
    var vpnA: String
    var vpnB: String
    var eni: String

    static func build(_ moto: MotoServer) async throws -> Topology {
        func str(_ d: [String: Any], _ path: String...) throws -> String {
            var cur: Any = d
            for p in path {
                guard let next = (cur as? [String: Any])?[p] ?? ((cur as? [Any])?.first as? [String: Any])?[p] else {
                    throw MotoError.unexpected("no \(path) in \(d)")
                }
                cur = next
            }
            guard let s = cur as? String else { throw MotoError.unexpected("\(path) is not a string") }
            return s
        }
        let vpc = try await str(moto.awsDict(["ec2", "create-vpc", "--cidr-block", "10.0.0.0/16"]), "Vpc", "VpcId")
        var subnets: [String] = [], tables: [String] = [], assocs: [String] = []
        for (i, az) in ["us-east-1a", "us-east-1b"].enumerated() {
            subnets.append(try await str(moto.awsDict(["ec2", "create-subnet", "--vpc-id", vpc, "--cidr-block", "10.0.\(i).0/24",
                                                  "--availability-zone", az]), "Subnet", "SubnetId"))
            tables.append(try await str(moto.awsDict(["ec2", "create-route-table", "--vpc-id", vpc]), "RouteTable", "RouteTableId"))
            assocs.append(try await str(moto.awsDict(["ec2", "associate-route-table", "--route-table-id", tables[i],
                                                 "--subnet-id", subnets[i]]), "AssociationId"))
        }
        let ami = try await str(moto.awsDict(["ec2", "describe-images", "--owners", "amazon"]), "Images", "ImageId")
        var vpn: [String] = []
        for (i, subnet) in subnets.enumerated() {
            vpn.append(try await str(moto.awsDict([
                "ec2", "run-instances", "--image-id", ami, "--instance-type", "t3.micro", "--count", "1", "--subnet-id", subnet,
                "--tag-specifications", "ResourceType=instance,Tags=[{Key=switchman:role,Value=vpn},{Key=Name,Value=vpn-\(i)}]",
            ]), "Instances", "InstanceId"))
        }
        let eni = try await str(moto.awsDict(["ec2", "create-network-interface", "--subnet-id", subnets[1], "--description", "vpn-b extra"]),
                          "NetworkInterface", "NetworkInterfaceId")
        return Topology(vpcID: vpc, subnets: subnets, routeTables: tables, associations: assocs, vpnA: vpn[0], vpnB: vpn[1], eni: eni)
    }
}
