import Foundation
import NIOCore
import Testing

@testable import Actuators

/// Requests per ensure, counted at the proxy in front of moto: one route in one table, and
/// one route in each of 100 tables, first time and again (idempotent).
@Suite(.timeLimit(.minutes(5)))
struct ScaleTests {
    let fencing = FencingToken(term: 11, index: 1)
    let remote = "10.200.0.0/16"

    /// Creates `count` route tables in one botocore process (awscli's own library): a process
    /// per table would cost a second each. Returns their ids.
    func createRouteTables(_ moto: MotoServer, vpc: String, count: Int) async throws -> [String] {
        let script = """
            import botocore.session, json, os
            s = botocore.session.get_session()
            ec2 = s.create_client("ec2", region_name="us-east-1", endpoint_url=os.environ["ENDPOINT"])
            ids = [ec2.create_route_table(VpcId=os.environ["VPC"])["RouteTable"]["RouteTableId"] for _ in range(int(os.environ["COUNT"]))]
            print(json.dumps(ids))
            """
        var env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = moto.accessKeyID
        env["AWS_SECRET_ACCESS_KEY"] = moto.secretAccessKey
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        env["ENDPOINT"] = moto.endpoint
        env["VPC"] = vpc
        env["COUNT"] = String(count)
        let result = try await runProcess(["python3", "-c", script], environment: env)
        guard result.status == 0, let ids = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String] else {
            throw MotoError.unexpected("creating route tables failed: \(result.stderr)")
        }
        return ids
    }

    @Test func requestsPerEnsureForOneAndHundredTables() async throws {
        try await withMotoAndProxy(signatureChecking: true) { moto, proxy, server in
            let vpc = try #require((try await moto.awsDict(["ec2", "create-vpc", "--cidr-block", "10.0.0.0/16"])["Vpc"] as? [String: Any])?["VpcId"] as? String)
            let ami = try #require(((try await moto.awsDict(["ec2", "describe-images", "--owners", "amazon"])["Images"] as? [[String: Any]])?.first)?["ImageId"] as? String)
            let subnet = try #require((try await moto.awsDict(["ec2", "create-subnet", "--vpc-id", vpc, "--cidr-block", "10.0.9.0/24"])["Subnet"] as? [String: Any])?["SubnetId"] as? String)
            let vpn = try #require(((try await moto.awsDict(["ec2", "run-instances", "--image-id", ami, "--instance-type", "t3.micro",
                                                              "--subnet-id", subnet])["Instances"] as? [[String: Any]])?.first)?["InstanceId"] as? String)
            let tables = try await createRouteTables(moto, vpc: vpc, count: 101)
            #expect(tables.count == 101)
            // Default (AWS-published) rate budgets: 100 CreateRoutes exceed the 50-token burst.
            let c = Clients(endpoint: server.url, credentials: moto.credentials)

            func ensure(_ ids: ArraySlice<String>) async throws -> (requests: [String: Int], outcomes: [DesiredRoute: RouteEnsureOutcome]) {
                proxy.resetCounts()
                let desired = ids.map { DesiredRoute(routeTableId: $0, destination: remote, target: .instance(vpn)) }
                let outcomes = try await c.routes.ensureRoutes(desired, fencing: fencing, deadline: .now() + .seconds(120))
                return (proxy.counts.current, outcomes)
            }

            let one1 = try await ensure(tables[0..<1])
            let one2 = try await ensure(tables[0..<1])
            let many1 = try await ensure(tables[1...])
            let many2 = try await ensure(tables[1...])

            #expect(one1.requests == ["DescribeRouteTables": 1, "CreateRoute": 1])
            #expect(one2.requests == ["DescribeRouteTables": 1])
            #expect(many1.requests["CreateRoute"] == 100)
            #expect(many1.requests["DescribeRouteTables"] ?? 0 <= 2)
            #expect(many1.outcomes.values.allSatisfy { if case .created = $0 { true } else { false } })
            #expect(many2.requests["CreateRoute"] == nil)
            #expect(many2.requests["DescribeRouteTables"] ?? 0 <= 2)

            // awscli reads all 101 tables back.
            let out = try await moto.awsDict(["ec2", "describe-route-tables", "--filters", "Name=vpc-id,Values=\(vpc)"])
            let routed = (out["RouteTables"] as? [[String: Any]] ?? []).filter { table in
                (table["Routes"] as? [[String: Any]] ?? []).contains {
                    ($0["DestinationCidrBlock"] as? String) == remote && ($0["InstanceId"] as? String) == vpn
                }
            }
            #expect(routed.count == 101)

            // Listing by filter: the VPC's 102 tables (101 + main). moto ignores MaxResults for
            // route tables (one page), so NextToken-following is shown with instances below.
            proxy.resetCounts()
            let listed = try await c.ec2.describeRouteTables(filters: [EC2Filter("vpc-id", [vpc])], deadline: .now() + .seconds(60))
            #expect(Set(listed.map(\.id)).isSuperset(of: tables))
            #expect(listed.count == 102)

            // Pagination: 6 tagged instances in pages of 5 → 2 requests, all found. (moto pages
            // by reservation, hence one run-instances per instance.)
            for _ in 0..<6 {
                try await moto.aws(["ec2", "run-instances", "--image-id", ami, "--instance-type", "t3.micro",
                                    "--subnet-id", subnet, "--tag-specifications",
                                    "ResourceType=instance,Tags=[{Key=switchman:role,Value=pager}]"])
            }
            proxy.resetCounts()
            let paged = try await c.ec2.describeInstances(filters: [.tag("switchman:role", "pager")], pageSize: 5,
                                                          deadline: .now() + .seconds(60))
            #expect(paged.count == 6)
            #expect(proxy.count("DescribeInstances") == 2)

            let report = """
                requests per ensure (counted at the proxy in front of moto):
                  1 table,   first time:  \(one1.requests)
                  1 table,   second time: \(one2.requests)
                  100 tables, first time:  \(many1.requests)
                  100 tables, second time: \(many2.requests)
                """
            print(report)
            try? report.write(to: FileManager.default.temporaryDirectory.appendingPathComponent("switchman-actuators-requests.txt"),
                              atomically: true, encoding: .utf8)
        }
    }
}
