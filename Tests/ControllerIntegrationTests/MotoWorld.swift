import Foundation
import SwitchmanTestSupport

// moto_server plus the AWS "world" integration tests run against, built and read back with
// awscli only: awscli is the independent witness, so nothing here uses our own AWS client.

/// A moto_server on a free loopback port with its own log file. No signature checking: the
/// integration tests are about failover, not SigV4 (ActuatorsTests cover that).
final class MotoServer: Sendable {
    let port: Int
    let process: ChildProcess
    let logFile: URL

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Starts moto, logging to `directory/moto.log`, and waits until it accepts connections.
    static func start(in directory: URL, startTimeout: TimeInterval = 90, recordingTo recording: URL? = nil) async throws -> MotoServer {
        let motoPath = try Tools.require("moto_server")
        _ = try Tools.require("aws")  // fail now, not at the first world-building call
        let log = directory.appendingPathComponent("moto.log")
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "INITIAL_NO_AUTH_ACTION_COUNT")  // would turn signature checks on
        if let recording {
            env["MOTO_ENABLE_RECORDING"] = "True"
            env["MOTO_RECORDER_FILEPATH"] = recording.path
        }
        // A free port can be taken by someone else before moto binds it: then try another.
        for _ in 0..<5 {
            let port = try LoopbackPorts.unused()
            let process = try ChildProcess([motoPath, "-H", "127.0.0.1", "-p", String(port)], environment: env,
                                           combinedOutput: log.path)
            let moto = MotoServer(port: port, process: process, logFile: log)
            // Poll until it accepts connections (or dies); startup speed depends on the load.
            _ = await eventually(timeout: startTimeout) {
                if process.hasExited { return true }
                return await isListening(port: port)
            }
            if !process.hasExited, await isListening(port: port) { return moto }
            await moto.stop()
            if !tail(of: log, lines: 20).contains("in use") { break }
        }
        throw HarnessError.didNotStart(what: "moto_server", log: tail(of: log, lines: 40))
    }

    private init(port: Int, process: ChildProcess, logFile: URL) {
        self.port = port
        self.process = process
        self.logFile = logFile
    }

    func stop() async {
        await process.forceStop()
    }

    var cli: AWSCLI { AWSCLI(endpoint: endpoint) }
}

/// awscli against one endpoint, with fixed fake credentials and no user config, JSON parsed.
struct AWSCLI: Sendable {
    var endpoint: String
    var region = "us-east-1"

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = "testing"
        env["AWS_SECRET_ACCESS_KEY"] = "testing"
        env["AWS_DEFAULT_REGION"] = region
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        // The developer's own AWS config must never leak in (or point anything at real AWS).
        env["AWS_CONFIG_FILE"] = "/nonexistent"
        env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
        env.removeValue(forKey: "AWS_SESSION_TOKEN")
        env.removeValue(forKey: "AWS_PROFILE")
        return env
    }

    /// Runs `aws --endpoint-url … --output json ARGS`; returns the parsed JSON ([:] for no output).
    @discardableResult
    func run(_ args: [String]) async throws -> Any {
        let full = ["aws", "--endpoint-url", endpoint, "--region", region, "--output", "json"] + args
        let result = try await runProcess(full, environment: environment)
        guard result.status == 0 else {
            throw HarnessError.command(args: full, status: result.status, stdout: result.stdout, stderr: result.stderr)
        }
        let text = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty { return [String: Any]() }
        do {
            return try JSONSerialization.jsonObject(with: Data(text.utf8))
        } catch {
            throw HarnessError.unexpected("aws \(args.joined(separator: " ")) printed no JSON: \(text.prefix(2000))")
        }
    }

    func object(_ args: [String]) async throws -> JSON {
        let value = try await run(args)
        guard value is [String: Any] else { throw HarnessError.unexpected("aws \(args.joined(separator: " ")) did not return an object: \(value)") }
        return JSON(value, context: "aws \(args.prefix(2).joined(separator: " "))")
    }
}

/// A read-only walk through JSONSerialization output that throws, with the path, when a
/// field is missing: outside input is never force-unwrapped.
struct JSON {
    let value: Any
    let context: String

    init(_ value: Any, context: String) {
        self.value = value
        self.context = context
    }

    subscript(key: String) -> JSON? {
        guard let dict = value as? [String: Any], let v = dict[key], !(v is NSNull) else { return nil }
        return JSON(v, context: "\(context).\(key)")
    }

    var array: [JSON] {
        ((value as? [Any]) ?? []).enumerated().map { JSON($0.element, context: "\(context)[\($0.offset)]") }
    }

    var string: String? { value as? String }
    var bool: Bool? { value as? Bool }

    /// The string at `path` (object keys; an array step takes its first element).
    func string(_ path: String...) throws -> String {
        var cur = self
        for key in path {
            if let next = cur[key] {
                cur = next
            } else if let first = cur.array.first, let next = first[key] {
                cur = next
            } else {
                throw HarnessError.unexpected("\(context): no \(path.joined(separator: ".")) in \(String(describing: value).prefix(2000))")
            }
        }
        guard let s = cur.string else { throw HarnessError.unexpected("\(cur.context) is not a string: \(cur.value)") }
        return s
    }
}

/// One VPN instance as EC2 sees it.
struct VPNInstance: Sendable, Hashable, CustomStringConvertible {
    /// The value of the world's tag key (`switchman/tunnel=<tag>`): the tunnel's name.
    var tag: String
    var instanceID: String
    /// The primary ENI (device index 0).
    var eniID: String
    var privateIP: String
    var subnetID: String
    var zone: String

    var description: String { "\(tag): \(instanceID) \(eniID) \(privateIP) in \(zone)" }
}

/// One availability zone of the world's VPC: its subnet and the route table associated with it.
struct WorldZone: Sendable, Hashable {
    var name: String
    var subnetID: String
    var routeTableID: String
    var cidr: String
}

/// The AWS world a cluster test starts from, built through awscli:
///   VPC 10.0.0.0/16, one subnet and one route table per zone (associated), a VPN instance
///   per tunnel tagged `tagKey=<tunnel>`, optionally a route in each zone's table to the
///   remote VPC through the zone's own VPN instance, and a Route 53 hosted zone.
final class MotoWorld: Sendable {
    struct Spec: Sendable {
        var zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
        var vpcCIDR = "10.0.0.0/16"
        /// "VPC B", the destination of every managed route.
        var remoteCIDR = "172.16.0.0/16"
        var tagKey = "switchman/tunnel"
        /// Tunnels (= VPN instances) and the index of the zone each one lives in.
        var tunnels: [(name: String, zone: Int)] = [("vpn-a", 0), ("vpn-b", 1)]
        /// Route `remoteCIDR` in zone i's table through the tunnel in zone i (or tunnel 0 when
        /// zone i has none) before the test starts, as an existing deployment would have.
        var initialRoutes = true
        var hostedZoneName = "vpn.example.internal"
    }

    let moto: MotoServer
    let cli: AWSCLI
    let spec: Spec
    let vpcID: String
    let zones: [WorldZone]
    /// The instances as first launched, in `spec.tunnels` order (replacements are not added).
    let vpnInstances: [VPNInstance]
    /// Hosted zone id without the `/hostedzone/` prefix.
    let hostedZoneID: String
    let amiID: String

    var endpoint: String { moto.endpoint }
    var region: String { cli.region }
    var remoteCIDR: String { spec.remoteCIDR }
    var tagKey: String { spec.tagKey }
    var routeTables: [String] { zones.map(\.routeTableID) }

    func instance(_ tunnel: String) throws -> VPNInstance {
        guard let found = vpnInstances.first(where: { $0.tag == tunnel }) else {
            throw HarnessError.unexpected("no tunnel \(tunnel) in the world (have \(vpnInstances.map(\.tag)))")
        }
        return found
    }

    /// The DNS name the world suggests for a tunnel's record: `<tunnel>.<hostedZoneName>`.
    func dnsName(_ tunnel: String) -> String { "\(tunnel).\(spec.hostedZoneName)" }

    private init(moto: MotoServer, spec: Spec, vpcID: String, zones: [WorldZone], vpnInstances: [VPNInstance], hostedZoneID: String, amiID: String) {
        self.moto = moto
        self.cli = moto.cli
        self.spec = spec
        self.vpcID = vpcID
        self.zones = zones
        self.vpnInstances = vpnInstances
        self.hostedZoneID = hostedZoneID
        self.amiID = amiID
    }

    /// Builds the world in a running moto.
    static func build(on moto: MotoServer, spec: Spec = Spec()) async throws -> MotoWorld {
        let cli = moto.cli
        guard !spec.zones.isEmpty, spec.zones.count <= 200 else { throw HarnessError.unexpected("MotoWorld needs 1…200 zones") }
        for t in spec.tunnels where !spec.zones.indices.contains(t.zone) {
            throw HarnessError.unexpected("tunnel \(t.name) is in zone \(t.zone), but there are \(spec.zones.count) zones")
        }
        let vpc = try await cli.object(["ec2", "create-vpc", "--cidr-block", spec.vpcCIDR]).string("Vpc", "VpcId")
        let octets = spec.vpcCIDR.split(separator: ".")
        guard octets.count == 4 else { throw HarnessError.unexpected("vpcCIDR \(spec.vpcCIDR) is not a /16 like 10.0.0.0/16") }
        // Independent calls run side by side: each awscli call is a ~1s Python start-up, and a
        // serial build of a 3-zone world takes over 15s.
        let vpcPrefix = "\(octets[0]).\(octets[1])"
        async let amiCall = cli.object(["ec2", "describe-images", "--owners", "amazon"]).string("Images", "ImageId")
        let zones = try await concurrentMap(Array(spec.zones.enumerated())) { i, name in
            let cidr = "\(vpcPrefix).\(i).0/24"
            async let subnetCall = cli.object(["ec2", "create-subnet", "--vpc-id", vpc, "--cidr-block", cidr,
                                               "--availability-zone", name]).string("Subnet", "SubnetId")
            async let tableCall = cli.object(["ec2", "create-route-table", "--vpc-id", vpc]).string("RouteTable", "RouteTableId")
            let (subnet, table) = try await (subnetCall, tableCall)
            _ = try await cli.object(["ec2", "associate-route-table", "--route-table-id", table, "--subnet-id", subnet])
                .string("AssociationId")
            return WorldZone(name: name, subnetID: subnet, routeTableID: table, cidr: cidr)
        }
        let ami = try await amiCall
        let tagKey = spec.tagKey
        let instances = try await concurrentMap(spec.tunnels.map { ($0.name, zones[$0.zone]) }) { tag, zone in
            try await launch(cli: cli, ami: ami, tagKey: tagKey, tag: tag, zone: zone)
        }
        if spec.initialRoutes, let fallback = instances.first {
            let routes = zones.enumerated().map { i, zone in
                (zone.routeTableID, zip(spec.tunnels, instances).first(where: { $0.0.zone == i })?.1 ?? fallback)
            }
            let remote = spec.remoteCIDR
            _ = try await concurrentMap(routes) { (table: String, own: VPNInstance) -> Void in
                try await cli.run(["ec2", "create-route", "--route-table-id", table,
                                   "--destination-cidr-block", remote, "--instance-id", own.instanceID])
            }
        }
        let hostedZone = try await cli.object(["route53", "create-hosted-zone", "--name", spec.hostedZoneName,
                                               "--caller-reference", UUID().uuidString]).string("HostedZone", "Id")
        let zoneID = hostedZone.hasPrefix("/hostedzone/") ? String(hostedZone.dropFirst("/hostedzone/".count)) : hostedZone
        return MotoWorld(moto: moto, spec: spec, vpcID: vpc, zones: zones, vpnInstances: instances, hostedZoneID: zoneID, amiID: ami)
    }

    private static func launch(cli: AWSCLI, ami: String, tagKey: String, tag: String, zone: WorldZone) async throws -> VPNInstance {
        let out = try await cli.object([
            "ec2", "run-instances", "--image-id", ami, "--instance-type", "t3.micro", "--count", "1",
            "--subnet-id", zone.subnetID,
            "--tag-specifications", "ResourceType=instance,Tags=[{Key=\(tagKey),Value=\(tag)},{Key=Name,Value=\(tag)}]",
        ])
        guard let instance = out["Instances"]?.array.first else { throw HarnessError.unexpected("run-instances returned no instance: \(out.value)") }
        return try vpnInstance(instance, tag: tag, zone: zone.name)
    }

    private static func vpnInstance(_ instance: JSON, tag: String, zone: String) throws -> VPNInstance {
        let primary = instance["NetworkInterfaces"]?.array.first(where: {
            ($0["Attachment"]?["DeviceIndex"]?.value as? Int) == 0
        }) ?? instance["NetworkInterfaces"]?.array.first
        guard let primary else { throw HarnessError.unexpected("instance has no network interface: \(instance.value)") }
        return VPNInstance(tag: tag, instanceID: try instance.string("InstanceId"), eniID: try primary.string("NetworkInterfaceId"),
                           privateIP: try instance.string("PrivateIpAddress"), subnetID: try instance.string("SubnetId"), zone: zone)
    }

    // MARK: - reading (the witness)

    /// Every route of `table` with a CIDR destination: destination → target (instance id,
    /// else ENI id, else gateway id).
    func routes(table: String) async throws -> [String: String] {
        let out = try await cli.object(["ec2", "describe-route-tables", "--route-table-ids", table])
        var routes: [String: String] = [:]
        for t in out["RouteTables"]?.array ?? [] {
            for r in t["Routes"]?.array ?? [] {
                guard let destination = r["DestinationCidrBlock"]?.string else { continue }
                routes[destination] = r["InstanceId"]?.string ?? r["NetworkInterfaceId"]?.string ?? r["GatewayId"]?.string
            }
        }
        return routes
    }

    /// The instance id (or ENI id, when the route targets an ENI) `table` sends `destination`
    /// to; nil when there is no such route.
    func routeTarget(table: String, destination: String) async throws -> String? {
        try await routes(table: table)[destination]
    }

    /// Where every world route table sends `destination`, in one awscli call (each call costs
    /// about a second): route table id → target, tables without the route left out.
    func routeTargets(destination: String) async throws -> [String: String] {
        let out = try await cli.object(["ec2", "describe-route-tables", "--route-table-ids"] + routeTables)
        var targets: [String: String] = [:]
        for t in out["RouteTables"]?.array ?? [] {
            guard let id = t["RouteTableId"]?.string else { continue }
            for r in t["Routes"]?.array ?? [] where r["DestinationCidrBlock"]?.string == destination {
                targets[id] = r["InstanceId"]?.string ?? r["NetworkInterfaceId"]?.string ?? r["GatewayId"]?.string
            }
        }
        return targets
    }

    /// The interface's source/destination check as EC2 (moto) reports it.
    func sourceDestCheck(eni: String) async throws -> Bool? {
        let out = try await cli.object([
            "ec2", "describe-network-interface-attribute", "--network-interface-id", eni, "--attribute", "sourceDestCheck",
        ])
        return out["SourceDestCheck"]?["Value"]?.bool
    }

        /// Polls until `table` sends `destination` to `target` or `timeout` passes; returns the
    /// target last seen, so a failing test can say where the route pointed instead.
    func awaitRouteTarget(table: String, destination: String, toBe target: String?, timeout: TimeInterval = 60) async throws -> String? {
        var last: String?
        _ = try await eventually(timeout: timeout, every: 0.2) {
            last = try await routeTarget(table: table, destination: destination)
            return last == target
        }
        return last
    }

    /// Polls until the A record `name` has `value`; returns the value last seen.
    func awaitDNSRecord(zone: String? = nil, name: String, toBe value: String?, timeout: TimeInterval = 60) async throws -> String? {
        var last: String?
        _ = try await eventually(timeout: timeout, every: 0.2) {
            last = try await dnsRecord(zone: zone, name: name)
            return last == value
        }
        return last
    }

    /// Ids of the instances carrying `tagKey=tag`, in the given states (default: alive).
    func instanceIDs(tag: String, states: [String] = ["pending", "running"]) async throws -> [String] {
        var filters = ["Name=tag:\(spec.tagKey),Values=\(tag)"]
        if !states.isEmpty { filters.append("Name=instance-state-name,Values=\(states.joined(separator: ","))") }
        let out = try await cli.object(["ec2", "describe-instances", "--filters"] + filters)
        return (out["Reservations"]?.array ?? []).flatMap { $0["Instances"]?.array ?? [] }.compactMap { $0["InstanceId"]?.string }
    }

    /// `pending`, `running`, `terminated`, …; nil if EC2 does not know the instance.
    func instanceState(_ instanceID: String) async throws -> String? {
        let out = try await cli.object(["ec2", "describe-instances", "--filters", "Name=instance-id,Values=\(instanceID)"])
        let instance = (out["Reservations"]?.array ?? []).flatMap { $0["Instances"]?.array ?? [] }.first
        return instance?["State"]?["Name"]?.string
    }

    /// The A record's value for `name` in `zone` (first value; trailing dots ignored), nil if absent.
    func dnsRecord(zone: String? = nil, name: String) async throws -> String? {
        let zoneID = zone ?? hostedZoneID
        let out = try await cli.object(["route53", "list-resource-record-sets", "--hosted-zone-id", zoneID])
        let wanted = name.hasSuffix(".") ? name : name + "."
        for set in out["ResourceRecordSets"]?.array ?? [] {
            guard set["Type"]?.string == "A", let n = set["Name"]?.string, n.lowercased() == wanted.lowercased() else { continue }
            return set["ResourceRecords"]?.array.first?["Value"]?.string
        }
        return nil
    }

    // MARK: - changing the world by hand (what tests do to the cluster)

    /// Terminates an instance (its routes stay, pointing at a dead instance, as in EC2).
    func terminate(_ instanceID: String) async throws {
        try await cli.run(["ec2", "terminate-instances", "--instance-ids", instanceID])
    }

    /// Launches a replacement VPN instance with the same tag, in the zone of the tunnel's
    /// first instance (or `zone`); returns its new id, ENI and IP.
    func runInstance(tag: String, zone: Int? = nil) async throws -> VPNInstance {
        let index = zone ?? spec.tunnels.first(where: { $0.name == tag })?.zone ?? 0
        guard zones.indices.contains(index) else { throw HarnessError.unexpected("no zone \(index)") }
        return try await Self.launch(cli: cli, ami: amiID, tagKey: spec.tagKey, tag: tag, zone: zones[index])
    }

    /// ReplaceRoute with awscli: drift made by hand, which the reconciler must undo.
    func replaceRouteByHand(table: String, destination: String, instance: String) async throws {
        try await cli.run(["ec2", "replace-route", "--route-table-id", table, "--destination-cidr-block", destination,
                           "--instance-id", instance])
    }

    func createRoute(table: String, destination: String, instance: String) async throws {
        try await cli.run(["ec2", "create-route", "--route-table-id", table, "--destination-cidr-block", destination,
                           "--instance-id", instance])
    }

    func deleteRoute(table: String, destination: String) async throws {
        try await cli.run(["ec2", "delete-route", "--route-table-id", table, "--destination-cidr-block", destination])
    }

    /// UPSERTs an A record (e.g. the record as it was before a replacement).
    func upsertDNSRecord(zone: String? = nil, name: String, value: String, ttl: Int = 60) async throws {
        let batch: [String: Any] = ["Changes": [["Action": "UPSERT", "ResourceRecordSet": [
            "Name": name, "Type": "A", "TTL": ttl, "ResourceRecords": [["Value": value]],
        ] as [String: Any]]]]
        let text = String(decoding: try JSONSerialization.data(withJSONObject: batch), as: UTF8.self)
        try await cli.run(["route53", "change-resource-record-sets", "--hosted-zone-id", zone ?? hostedZoneID, "--change-batch", text])
    }
}

/// `transform` over `items`, at most `width` at a time, results in the order of `items`.
func concurrentMap<T: Sendable, R: Sendable>(_ items: [T], width: Int = 4,
                                             _ transform: @escaping @Sendable (T) async throws -> R) async throws -> [R] {
    try await withThrowingTaskGroup(of: (Int, R).self) { group in
        var results = [R?](repeating: nil, count: items.count)
        var next = 0
        func add() {
            guard next < items.count else { return }
            let index = next, item = items[index]
            group.addTask { (index, try await transform(item)) }
            next += 1
        }
        for _ in 0..<max(1, width) { add() }
        while let (index, value) = try await group.next() {
            results[index] = value
            add()
        }
        return results.compactMap { $0 }
    }
}

/// Starts moto, builds the world, runs `body`, and always stops moto. On failure the error
/// carries the end of moto's log.
func withMotoWorld<T>(_ spec: MotoWorld.Spec = MotoWorld.Spec(), _ body: (MotoWorld) async throws -> T) async throws -> T {
    let dir = try TestPaths.makeTempDir("moto")
    let moto = try await MotoServer.start(in: dir)
    do {
        let world = try await MotoWorld.build(on: moto, spec: spec)
        let result = try await body(world)
        await moto.stop()
        try? FileManager.default.removeItem(at: dir)
        return result
    } catch {
        await moto.stop()
        throw HarnessError.scopeFailed(underlying: error, logs: "--- moto.log (\(moto.logFile.path)), last lines:\n\(tail(of: moto.logFile, lines: 30))")
    }
}
