import Actuators
import Foundation
import Yams

/// Reads a config file into `SwitchmanConfig`, collecting every problem rather than stopping
/// at the first: an operator fixing a 1,000-route file wants the whole list in one run.
///
/// The YAML is composed into a `Yams.Node` tree (not decoded with `Decodable`) because only
/// the node tree keeps line numbers, and every message names a key path and a line.
public enum ConfigLoader {
    public static func load(contentsOf path: String) -> ConfigLoadResult {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            return ConfigLoadResult(
                config: nil,
                diagnostics: [
                    ConfigDiagnostic(
                        severity: .error, file: path, line: nil, path: "",
                        message: "cannot read the file (\(error.localizedDescription))")
                ])
        }
        return load(yaml: text, file: path)
    }

    public static func load(yaml: String, file: String) -> ConfigLoadResult {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            return ConfigLoadResult(config: nil, diagnostics: [yamlDiagnostic(error, file: file)])
        } catch {
            return ConfigLoadResult(
                config: nil,
                diagnostics: [
                    ConfigDiagnostic(severity: .error, file: file, line: nil, path: "", message: "invalid YAML: \(error)")
                ])
        }
        guard let root else {
            return ConfigLoadResult(
                config: nil,
                diagnostics: [ConfigDiagnostic(severity: .error, file: file, line: 1, path: "", message: "the file is empty")])
        }
        var reader = ConfigReader(file: file)
        let config = reader.read(root)
        let diagnostics = reader.diagnostics.sorted { ($0.line ?? 0, $0.path) < ($1.line ?? 0, $1.path) }
        let hasErrors = diagnostics.contains { $0.severity == .error }
        return ConfigLoadResult(config: hasErrors ? nil : config, diagnostics: diagnostics)
    }

    static func yamlDiagnostic(_ error: YamlError, file: String) -> ConfigDiagnostic {
        func diag(_ line: Int?, _ message: String) -> ConfigDiagnostic {
            ConfigDiagnostic(severity: .error, file: file, line: line, path: "", message: "invalid YAML: \(message)")
        }
        switch error {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let prefix = context.map { "\($0.text) (line \($0.mark.line)): " } ?? ""
            return diag(mark.line, prefix + problem)
        case .reader(let problem, _, _, _):
            return diag(nil, problem)
        case .duplicatedKeysInMapping(let duplicates, let context):
            return diag(context.mark.line, "duplicate key(s) \(duplicates.sorted().joined(separator: ", ")) in one mapping")
        default:
            return diag(nil, "\(error)")
        }
    }
}

/// A `Node` with the path it was found at, so every message can name both.
struct Located {
    var node: Node
    var path: String

    var line: Int { node.mark?.line ?? 0 }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    func element(_ index: Int) -> String { "\(path)[\(index)]" }
}

/// A mapping whose keys were checked against the schema.
struct Fields {
    var at: Located
    var values: [String: Located]

    subscript(_ key: String) -> Located? { values[key] }
}

struct ConfigReader {
    let file: String
    var diagnostics: [ConfigDiagnostic] = []
    /// Every tunnel name the file declares, valid tunnel or not, so one bad tunnel entry
    /// does not also make every route naming it fail as "unknown tunnel".
    var declaredTunnels: Set<String> = []

    init(file: String) { self.file = file }

    // MARK: Reporting

    mutating func error(_ at: Located, _ message: String) {
        diagnostics.append(ConfigDiagnostic(severity: .error, file: file, line: at.line, path: at.path, message: message))
    }

    mutating func error(path: String, line: Int, _ message: String) {
        diagnostics.append(ConfigDiagnostic(severity: .error, file: file, line: line, path: path, message: message))
    }

    mutating func warning(_ at: Located, _ message: String) {
        diagnostics.append(ConfigDiagnostic(severity: .warning, file: file, line: at.line, path: at.path, message: message))
    }

    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let s):
            if Self.isNull(s) { return "nothing" }
            return "\"\(s.string)\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    /// A plain `~`, `null` or empty value: YAML's null, which is never a valid string here.
    static func isNull(_ s: Node.Scalar) -> Bool {
        s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    // MARK: Shapes

    /// Checks that `at` is a mapping with only `allowed` keys and all of `required` present.
    mutating func fields(_ at: Located, allowed: [String], required: [String]) -> Fields? {
        guard case .mapping(let mapping) = at.node else {
            error(at, "expected a mapping with keys \(required.isEmpty ? allowed.joined(separator: ", ") : required.joined(separator: ", ")), got \(Self.describe(at.node))")
            return nil
        }
        var values: [String: Located] = [:]
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                error(Located(node: keyNode, path: at.path), "keys must be plain strings, got \(Self.describe(keyNode))")
                continue
            }
            let key = keyScalar.string
            let keyAt = Located(node: keyNode, path: at.child(key))
            guard allowed.contains(key) else {
                var message = "unknown key \"\(key)\""
                if let near = suggestion(for: key, among: allowed) { message += " (did you mean \"\(near)\"?)" }
                error(keyAt, message)
                continue
            }
            values[key] = Located(node: valueNode, path: keyAt.path)
        }
        for key in required where values[key] == nil {
            error(Located(node: at.node, path: at.child(key)), "missing required key")
        }
        return Fields(at: at, values: values)
    }

    mutating func list(_ at: Located) -> [Located]? {
        guard case .sequence(let sequence) = at.node else {
            error(at, "expected a list, got \(Self.describe(at.node))")
            return nil
        }
        return sequence.enumerated().map { Located(node: $1, path: at.element($0)) }
    }

    // MARK: Scalars

    mutating func string(_ at: Located?) -> String? {
        guard let at else { return nil }
        guard case .scalar(let s) = at.node, !Self.isNull(s) else {
            error(at, "expected a string, got \(Self.describe(at.node))")
            return nil
        }
        guard !s.string.isEmpty else {
            error(at, "must not be empty")
            return nil
        }
        return s.string
    }

    mutating func int(_ at: Located?, min: Int, max: Int = Int.max) -> Int? {
        guard let at else { return nil }
        guard case .scalar(let s) = at.node, let value = Int(s.string) else {
            error(at, "expected an integer, got \(Self.describe(at.node))")
            return nil
        }
        guard value >= min, value <= max else {
            error(at, max == Int.max ? "must be at least \(min), got \(value)" : "must be between \(min) and \(max), got \(value)")
            return nil
        }
        return value
    }

    mutating func double(_ at: Located?) -> Double? {
        guard let at else { return nil }
        guard case .scalar(let s) = at.node, let value = Double(s.string), value.isFinite else {
            error(at, "expected a number, got \(Self.describe(at.node))")
            return nil
        }
        return value
    }

    mutating func bool(_ at: Located?) -> Bool? {
        guard let at else { return nil }
        guard case .scalar(let s) = at.node, s.string == "true" || s.string == "false" else {
            error(at, "expected true or false, got \(Self.describe(at.node))")
            return nil
        }
        return s.string == "true"
    }

    mutating func duration(_ at: Located?) -> Duration? {
        guard let at else { return nil }
        guard case .scalar(let s) = at.node, let value = DurationParser.parse(s.string) else {
            error(at, "expected a duration like 250ms, 1s or 1m30s, got \(Self.describe(at.node))")
            return nil
        }
        return value
    }

    mutating func hostPort(_ at: Located?) -> HostPort? {
        guard let at, let text = string(at) else { return nil }
        guard let value = HostPort.parse(text) else {
            error(at, "expected host:port, got \"\(text)\"")
            return nil
        }
        return value
    }

    mutating func cidr(_ at: Located?) -> IPv4CIDR? {
        guard let at, let text = string(at) else { return nil }
        switch IPv4CIDR.parse(text) {
        case .success(let cidr): return cidr
        case .failure(.malformed):
            error(at, "expected an IPv4 CIDR like 10.1.0.0/16, got \"\(text)\"")
        case .failure(.hostBitsSet(let canonical)):
            error(at, "\"\(text)\" has host bits set (did you mean \(canonical)?)")
        }
        return nil
    }

    mutating func routeTableID(_ at: Located?) -> String? {
        guard let at, let text = string(at) else { return nil }
        let hex = text.dropFirst(4)
        guard text.hasPrefix("rtb-"), !hex.isEmpty, hex.count <= 17, hex.allSatisfy({ $0.isHexDigit && ($0.isNumber || $0.isLowercase) }) else {
            error(at, "expected a route table id like rtb-0123abcd, got \"\(text)\"")
            return nil
        }
        return text
    }

    mutating func region(_ at: Located?) -> String? {
        guard let at, let text = string(at) else { return nil }
        // Shapes like us-east-1, eu-central-2, us-gov-west-1, ap-southeast-4.
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        let ok = parts.count >= 3 && parts.dropLast().allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isLowercase } }
            && parts.last.map { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } } == true
        guard ok else {
            error(at, "expected an AWS region like us-east-1, got \"\(text)\"")
            return nil
        }
        return text
    }

    // MARK: The document

    static let topKeys = ["cluster", "tls", "dataDir", "aws", "tunnels", "routes", "routeSets", "health", "timing", "reconcile"]

    mutating func read(_ node: Node) -> SwitchmanConfig? {
        let root = Located(node: node, path: "")
        guard let top = fields(root, allowed: Self.topKeys, required: ["cluster", "tls", "dataDir", "aws", "tunnels"]) else {
            return nil
        }
        let cluster = top["cluster"].flatMap { readCluster($0) }
        let tls = top["tls"].flatMap { readTLS($0) }
        let dataDir = string(top["dataDir"])
        let aws = top["aws"].flatMap { readAWS($0) }
        let tunnels = top["tunnels"].flatMap { readTunnels($0) } ?? []
        var routes: [LocatedRoute] = []
        if let at = top["routes"] { routes += readRoutes(at) }
        if let at = top["routeSets"] { routes += readRouteSets(at) }
        if top["routes"] == nil && top["routeSets"] == nil {
            warning(root, "no routes or routeSets: the controller will watch tunnels but manage no route")
        }
        let health = readHealth(top["health"])
        let timing = readTiming(top["timing"])
        let reconcile = readReconcile(top["reconcile"])
        checkRoutes(routes, tunnels: tunnels, defaultRegion: aws?.region)

        guard let cluster, let tls, let dataDir, let aws, let health, let timing, let reconcile else { return nil }
        return SwitchmanConfig(
            cluster: cluster, tls: tls, dataDir: dataDir, aws: aws,
            tunnels: tunnels.map(\.value), routes: routes.map(\.value), health: health, timing: timing, reconcile: reconcile)
    }

    mutating func readReconcile(_ at: Located?) -> ReconcileConfig? {
        var reconcile = ReconcileConfig.defaults
        guard let at else { return reconcile }
        guard let f = fields(at, allowed: ["driftCheckInterval"], required: []) else { return nil }
        if let d = duration(f["driftCheckInterval"]) { reconcile.driftCheckInterval = d } else if f["driftCheckInterval"] != nil { return nil }
        if reconcile.driftCheckInterval <= .zero {
            error(f["driftCheckInterval"] ?? at, "must be longer than 0s")
            return nil
        }
        return reconcile
    }

    mutating func readCluster(_ at: Located) -> ClusterConfig? {
        guard let f = fields(at, allowed: ["name", "members"], required: ["name", "members"]) else { return nil }
        let name = string(f["name"])
        var members: [MemberConfig] = []
        var firstID: [UInt64: Located] = [:]
        var firstPeer: [HostPort: Located] = [:]
        var zones: [String: Located] = [:]
        if let membersAt = f["members"], let items = list(membersAt) {
            for item in items {
                guard let m = fields(item, allowed: ["id", "peer", "admin", "zone"], required: ["id", "peer", "admin", "zone"]) else { continue }
                let id = int(m["id"], min: 1).map { UInt64($0) }
                let peer = hostPort(m["peer"])
                let admin = hostPort(m["admin"])
                let zone = string(m["zone"])
                if let id, let idAt = m["id"] {
                    if let earlier = firstID[id] {
                        error(idAt, "duplicate member id \(id) (first used at \(earlier.path), line \(earlier.line))")
                    } else {
                        firstID[id] = idAt
                    }
                }
                if let peer, let peerAt = m["peer"] {
                    if let earlier = firstPeer[peer] {
                        error(peerAt, "duplicate peer address \(peer) (first used at \(earlier.path), line \(earlier.line))")
                    } else {
                        firstPeer[peer] = peerAt
                    }
                }
                if let zone, let zoneAt = m["zone"] {
                    if let earlier = zones[zone] {
                        warning(zoneAt, "zone \(zone) already holds \(earlier.path): losing that zone loses two replicas")
                    } else {
                        zones[zone] = zoneAt
                    }
                }
                if let id, let peer, let admin, let zone {
                    members.append(MemberConfig(id: id, peer: peer, admin: admin, zone: zone))
                }
            }
            if items.count < 3 {
                error(membersAt, "a cluster needs at least 3 members to survive the loss of one, got \(items.count)")
            } else if items.count % 2 == 0 {
                warning(membersAt, "\(items.count) members tolerate no more failures than \(items.count - 1); use an odd count")
            }
        }
        guard let name else { return nil }
        return ClusterConfig(name: name, members: members)
    }

    mutating func readTLS(_ at: Located) -> TLSConfig? {
        guard let f = fields(at, allowed: ["ca", "cert", "key", "sentinelCert", "sentinelKey"], required: ["ca", "cert", "key"]) else {
            return nil
        }
        let ca = string(f["ca"])
        let cert = string(f["cert"])
        let key = string(f["key"])
        let sentinelCert = string(f["sentinelCert"])
        let sentinelKey = string(f["sentinelKey"])
        guard let ca, let cert, let key else { return nil }
        if f["sentinelCert"] != nil && sentinelCert == nil || f["sentinelKey"] != nil && sentinelKey == nil { return nil }
        return TLSConfig(ca: ca, cert: cert, key: key, sentinelCert: sentinelCert, sentinelKey: sentinelKey)
    }

    mutating func readAWS(_ at: Located) -> AWSConfig? {
        guard let f = fields(at, allowed: ["region", "endpoint", "endpoints", "profile", "fips", "consistencyWindow", "enforceSourceDestCheck",
                                         "autoDrainOnScheduledEvent", "scheduledEventDrainLead"],
                             required: ["region"]) else { return nil }
        let region = region(f["region"])
        let endpoint = url(f["endpoint"])
        let profile = string(f["profile"])
        var endpoints = EndpointOverrides()
        if let at = f["endpoints"], let e = fields(at, allowed: ["ec2", "route53", "regions"], required: []) {
            endpoints.ec2 = url(e["ec2"])
            endpoints.route53 = url(e["route53"])
            if let regionsAt = e["regions"] { endpoints.ec2ByRegion = regionEndpoints(regionsAt) }
        }
        let fips = bool(f["fips"]) ?? false
        let window = duration(f["consistencyWindow"])
        let enforce = bool(f["enforceSourceDestCheck"])
        let autoDrain = bool(f["autoDrainOnScheduledEvent"])
        let lead = duration(f["scheduledEventDrainLead"])
        guard let region else { return nil }
        if fips {
            for r in Set([region] + Array(endpoints.ec2ByRegion.keys)) where !AWSPartition.hasEC2FIPS(region: r) {
                error(f["fips"] ?? at, "EC2 has no FIPS endpoint in \(r) (only US, Canada and GovCloud Regions do)")
            }
        }
        var aws = AWSConfig(region: region, endpoint: endpoint, profile: profile)
        aws.endpoints = endpoints
        aws.fips = fips
        if let window { aws.consistencyWindow = window }
        if let enforce { aws.enforceSourceDestCheck = enforce }
        if let autoDrain { aws.autoDrainOnScheduledEvent = autoDrain }
        if let lead { aws.scheduledEventDrainLead = lead }
        return aws
    }

    mutating func url(_ at: Located?) -> String? {
        guard let at, let text = string(at) else { return nil }
        if let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil {
            return text
        }
        error(at, "expected an http(s) URL like http://127.0.0.1:5000, got \"\(text)\"")
        return nil
    }

    /// `regions: {us-west-2: {ec2: URL}}`.
    mutating func regionEndpoints(_ at: Located) -> [String: String] {
        guard case .mapping(let mapping) = at.node else {
            error(at, "expected a mapping of Region to endpoints, like us-west-2: {ec2: https://…}, got \(Self.describe(at.node))")
            return [:]
        }
        var out: [String: String] = [:]
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let key) = keyNode else { continue }
            let keyAt = Located(node: keyNode, path: at.child(key.string))
            guard let name = region(keyAt) else { continue }
            let valueAt = Located(node: valueNode, path: at.child(key.string))
            if let e = fields(valueAt, allowed: ["ec2"], required: ["ec2"]), let u = url(e["ec2"]) { out[name] = u }
        }
        return out
    }

    mutating func readTunnels(_ at: Located) -> [LocatedValue<TunnelConfig>]? {
        guard let items = list(at) else { return nil }
        if items.isEmpty { error(at, "at least one tunnel is needed") }
        var tunnels: [LocatedValue<TunnelConfig>] = []
        var firstName: [String: Located] = [:]
        var firstSelector: [String: Located] = [:]
        var firstEIP: [String: Located] = [:]
        for item in items {
            guard
                let f = fields(
                    item, allowed: ["name", "region", "instance", "sentinel", "dns", "probes", "require", "eip"], required: ["name", "instance", "sentinel"])
            else { continue }
            let name = string(f["name"])
            if let name, let nameAt = f["name"], !SentinelIdentity.isValidTunnelName(name) {
                error(
                    nameAt,
                    "a tunnel name becomes a DNS label in its sentinel's certificate: use 1-63 letters, digits and hyphens, not starting or ending with a hyphen, got \"\(name)\"")
            }
            let region = region(f["region"])
            var selector: InstanceSelector?
            if let instanceAt = f["instance"],
               let i = fields(instanceAt, allowed: ["tagKey", "tagValue", "deviceIndex", "interfaceTag"], required: ["tagKey", "tagValue"]) {
                if let key = string(i["tagKey"]), let value = string(i["tagValue"]) {
                    selector = InstanceSelector(tagKey: key, tagValue: value)
                    if let index = int(i["deviceIndex"], min: 0, max: 31) { selector?.deviceIndex = index }
                    if let tagAt = i["interfaceTag"] {
                        if i["deviceIndex"] != nil {
                            error(tagAt, "instance.interfaceTag and instance.deviceIndex both choose the interface routes point at; give one of them")
                        } else if let t = fields(tagAt, allowed: ["key", "value"], required: ["key", "value"]),
                                  let tagKey = string(t["key"]), let tagValue = string(t["value"]) {
                            selector?.interfaceTag = InterfaceTag(key: tagKey, value: tagValue)
                        }
                    }
                    let identity = "\(region ?? "")\u{0}\(key)\u{0}\(value)"
                    if let earlier = firstSelector[identity] {
                        error(instanceAt, "tag \(key)=\(value) already selects the instance of \(earlier.path) (line \(earlier.line)); two tunnels cannot share a VPN instance")
                    } else {
                        firstSelector[identity] = instanceAt
                    }
                }
            }
            let sentinel = hostPort(f["sentinel"])
            var eip: String?
            var eipOK = true
            if let eipAt = f["eip"] {
                eipOK = false
                if let text = string(eipAt) {
                    if !Self.isAllocationId(text) {
                        error(eipAt, "expected an Elastic IP allocation id like eipalloc-0123456789abcdef0, got \"\(text)\"")
                    } else if let earlier = firstEIP[text] {
                        error(eipAt, "Elastic IP \(text) is already the address of \(earlier.path) (line \(earlier.line)); one address cannot follow two instances")
                    } else {
                        firstEIP[text] = eipAt
                        eip = text
                        eipOK = true
                    }
                }
            }
            var dns: DNSRecordConfig?
            var dnsOK = true
            if let dnsAt = f["dns"] {
                dnsOK = false
                if let d = fields(dnsAt, allowed: ["zoneId", "name", "ttl", "address"], required: ["zoneId", "name"]) {
                    let zoneId = string(d["zoneId"])
                    var address: DNSAddress? = .private
                    if let addressAt = d["address"] {
                        address = nil
                        if let text = string(addressAt) {
                            if let value = DNSAddress(rawValue: text) {
                                if value == .public && f["eip"] == nil {
                                    error(addressAt, "dns.address public publishes the tunnel's Elastic IP; give the tunnel an eip (eipalloc-…), or use private")
                                } else {
                                    address = value
                                }
                            } else {
                                error(addressAt, "expected private or public, got \"\(text)\"")
                            }
                        }
                    }
                    let recordName = string(d["name"])
                    let ttl = d["ttl"] == nil ? 60 : int(d["ttl"], min: 1, max: 2_147_483_647)
                    if let recordName, let nameAt = d["name"],
                        !HostPort.isValidHostName(Substring(recordName.hasSuffix(".") ? String(recordName.dropLast()) : recordName))
                    {
                        error(nameAt, "expected a DNS name like vpn-a.example.internal, got \"\(recordName)\"")
                    } else if let zoneId, let recordName, let ttl, let address {
                        dns = DNSRecordConfig(zoneId: zoneId, name: recordName, ttl: ttl, address: address)
                        dnsOK = true
                    }
                }
            }
            let probes = readProbes(f["probes"], tunnel: item)
            var requirement = ProbeRequirement.all
            var requirementOK = true
            if let requireAt = f["require"] {
                requirementOK = false
                if let text = string(requireAt) {
                    if let value = ProbeRequirement(rawValue: text) {
                        requirement = value
                        requirementOK = true
                    } else {
                        error(requireAt, "expected all or any, got \"\(text)\"")
                    }
                }
            }
            if let name { declaredTunnels.insert(name) }
            if let name, let nameAt = f["name"] {
                if let earlier = firstName[name] {
                    error(nameAt, "duplicate tunnel name \"\(name)\" (first used at \(earlier.path), line \(earlier.line))")
                    continue
                }
                firstName[name] = nameAt
            }
            if let name, SentinelIdentity.isValidTunnelName(name), let selector, let sentinel, dnsOK, eipOK, let probes, requirementOK,
                f["region"] == nil || region != nil
            {
                tunnels.append(
                    LocatedValue(
                        value: TunnelConfig(
                            name: name, region: region, instance: selector, sentinel: sentinel, dns: dns, probes: probes, require: requirement,
                            eip: eip),
                        at: item))
            }
        }
        return tunnels
    }

    /// `eipalloc-` and 8 or 17 lowercase hex digits, as EC2 names allocations.
    static func isAllocationId(_ text: String) -> Bool {
        guard text.hasPrefix("eipalloc-") else { return false }
        let hex = text.dropFirst("eipalloc-".count)
        return (hex.count == 8 || hex.count == 17) && hex.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    /// A tunnel's `probes`: each entry is a one-key mapping `{icmp: HOST}`, `{tcp: HOST:PORT}`
    /// or `{http: URL}`. Probes are required: a sentinel with nothing to probe could only
    /// ever report its own liveness, not its tunnel's.
    mutating func readProbes(_ at: Located?, tunnel: Located) -> [ProbeTarget]? {
        let message = "a sentinel needs at least one probe target"
        guard let at else {
            error(Located(node: tunnel.node, path: tunnel.child("probes")), message)
            return nil
        }
        guard let entries = list(at) else { return nil }
        if entries.isEmpty {
            error(at, message)
            return nil
        }
        var probes: [LocatedValue<ProbeTarget>] = []
        var ok = true
        for entry in entries {
            guard let f = fields(entry, allowed: ["icmp", "tcp", "http"], required: []) else {
                ok = false
                continue
            }
            guard f.values.count == 1, let only = f.values.first else {
                if !f.values.isEmpty || entry.node.mapping?.isEmpty == true {
                    error(entry, "expected exactly one of icmp, tcp or http, got \(f.values.isEmpty ? "none" : f.values.keys.sorted().joined(separator: " and "))")
                }
                ok = false
                continue
            }
            let valueAt = only.value
            var probe: ProbeTarget?
            switch only.key {
            case "icmp":
                if let host = string(valueAt) {
                    if HostPort.isValidHostName(Substring(host)) {
                        probe = .icmp(host: host)
                    } else {
                        error(valueAt, "expected an IPv4 address or DNS name like 10.1.0.10, got \"\(host)\"")
                    }
                }
            case "tcp":
                probe = hostPort(valueAt).map { ProbeTarget.tcp($0) }
            default:
                if let text = string(valueAt) {
                    if let url = URL(string: text), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
                        let host = url.host, !host.isEmpty
                    {
                        probe = .http(url: text)
                    } else {
                        error(valueAt, "expected an http(s) URL like http://10.1.0.10/health, got \"\(text)\"")
                    }
                }
            }
            guard let probe else {
                ok = false
                continue
            }
            if let earlier = probes.first(where: { $0.value == probe }) {
                error(valueAt, "duplicate probe target \(probe) (first at \(earlier.at.path), line \(earlier.at.line))")
                ok = false
                continue
            }
            probes.append(LocatedValue(value: probe, at: valueAt))
        }
        return ok ? probes.map(\.value) : nil
    }

    typealias LocatedRoute = LocatedValue<RouteConfig>

    mutating func readRoutes(_ at: Located) -> [LocatedRoute] {
        guard let items = list(at) else { return [] }
        var routes: [LocatedRoute] = []
        for item in items {
            guard let f = fields(item, allowed: ["routeTable", "destination", "candidates", "region"], required: ["routeTable", "destination", "candidates"])
            else { continue }
            let table = routeTableID(f["routeTable"])
            let destination = cidr(f["destination"])
            let candidates = readCandidates(f["candidates"])
            let region = region(f["region"])
            if let table, let destination, let candidates, f["region"] == nil || region != nil {
                routes.append(
                    LocatedRoute(
                        value: RouteConfig(routeTable: table, destination: destination, candidates: candidates.map(\.value), region: region),
                        at: f["destination"] ?? item, candidatesAt: candidates.map(\.at)))
            }
        }
        return routes
    }

    /// `routeSets` entries expand to one route per (route table, destination): twenty VPCs
    /// with a route table per AZ and a destination per remote VPC are a few dozen lines
    /// instead of a thousand.
    mutating func readRouteSets(_ at: Located) -> [LocatedRoute] {
        guard let items = list(at) else { return [] }
        var routes: [LocatedRoute] = []
        for item in items {
            guard let f = fields(item, allowed: ["name", "routeTables", "destinations", "candidates", "region"], required: ["routeTables", "destinations", "candidates"])
            else { continue }
            if let nameAt = f["name"] { _ = string(nameAt) }
            var tables: [LocatedValue<String>] = []
            if let tablesAt = f["routeTables"], let entries = list(tablesAt) {
                if entries.isEmpty { error(tablesAt, "must list at least one route table") }
                for entry in entries { if let t = routeTableID(entry) { tables.append(LocatedValue(value: t, at: entry)) } }
            }
            var destinations: [LocatedValue<IPv4CIDR>] = []
            if let destinationsAt = f["destinations"], let entries = list(destinationsAt) {
                if entries.isEmpty { error(destinationsAt, "must list at least one destination") }
                for entry in entries { if let d = cidr(entry) { destinations.append(LocatedValue(value: d, at: entry)) } }
            }
            let candidates = readCandidates(f["candidates"])
            let region = region(f["region"])
            guard let candidates, f["region"] == nil || region != nil else { continue }
            for table in tables {
                for destination in destinations {
                    routes.append(
                        LocatedRoute(
                            value: RouteConfig(routeTable: table.value, destination: destination.value, candidates: candidates.map(\.value), region: region),
                            at: destination.at, candidatesAt: candidates.map(\.at)))
                }
            }
        }
        return routes
    }

    mutating func readCandidates(_ at: Located?) -> [LocatedValue<String>]? {
        guard let at, let entries = list(at) else { return nil }
        if entries.isEmpty {
            error(at, "must name at least one tunnel")
            return nil
        }
        var names: [LocatedValue<String>] = []
        var ok = true
        for entry in entries {
            guard let name = string(entry) else {
                ok = false
                continue
            }
            if let earlier = names.first(where: { $0.value == name }) {
                error(entry, "tunnel \"\(name)\" is already a candidate at \(earlier.at.path)")
                ok = false
                continue
            }
            names.append(LocatedValue(value: name, at: entry))
        }
        return ok ? names : nil
    }

    /// Cross-checks that need the whole file: unknown tunnels, duplicate and overlapping
    /// destinations within one route table, and candidates in another region.
    mutating func checkRoutes(_ routes: [LocatedRoute], tunnels: [LocatedValue<TunnelConfig>], defaultRegion: String?) {
        var tunnelByName: [String: TunnelConfig] = [:]
        for t in tunnels { tunnelByName[t.value.name] = t.value }
        var byTable: [String: [LocatedRoute]] = [:]
        var tableOrder: [String] = []
        for route in routes {
            for (name, at) in zip(route.value.candidates, route.candidatesAt) {
                guard let tunnel = tunnelByName[name] else {
                    if declaredTunnels.contains(name) { continue }
                    var message = "unknown tunnel \"\(name)\""
                    if let near = suggestion(for: name, among: tunnels.map(\.value.name)) { message += " (did you mean \"\(near)\"?)" }
                    error(at, message)
                    continue
                }
                let routeRegion = route.value.region ?? defaultRegion
                let tunnelRegion = tunnel.region ?? defaultRegion
                if let routeRegion, let tunnelRegion, routeRegion != tunnelRegion {
                    error(at, "tunnel \"\(name)\" is in \(tunnelRegion) but this route is in \(routeRegion); a route can only point at an instance in its own VPC")
                }
            }
            let table = route.value.routeTable
            if byTable[table] == nil { tableOrder.append(table) }
            byTable[table, default: []].append(route)
        }
        for table in tableOrder {
            guard let entries = byTable[table] else { continue }
            // Sorting by address then prefix puts any route that contains another right
            // before it, so one sweep with a stack of enclosing prefixes finds every overlap
            // in O(n log n) instead of comparing all pairs.
            let sorted = entries.sorted { $0.value.destination < $1.value.destination }
            var enclosing: [LocatedRoute] = []
            for route in sorted {
                while let last = enclosing.last, !last.value.destination.contains(route.value.destination) { enclosing.removeLast() }
                if let outer = enclosing.last {
                    let here = route.reportAt
                    if outer.value.destination == route.value.destination {
                        // Report the later one in the file, pointing at the earlier one.
                        let (first, second) = outer.reportAt.line <= here.line ? (outer, route) : (route, outer)
                        error(second.reportAt, "duplicate route \(table) \(route.value.destination) (already at \(first.reportAt.path), line \(first.reportAt.line))")
                        continue
                    }
                    error(here, "\(route.value.destination) overlaps \(outer.value.destination) (\(outer.reportAt.path), line \(outer.reportAt.line)) in route table \(table); one route would shadow part of the other")
                }
                enclosing.append(route)
            }
        }
    }

    mutating func readHealth(_ at: Located?) -> HealthConfig? {
        var health = HealthConfig.defaults
        guard let at else { return health }
        guard let f = fields(at, allowed: ["probeInterval", "probeTimeout", "fall", "rise", "failbackHoldDown", "autoFailback", "observationTTL"], required: [])
        else { return nil }
        var ok = true
        func take<T>(_ value: T?, _ key: String, _ slot: inout T) {
            if let value { slot = value } else if f[key] != nil { ok = false }
        }
        take(duration(f["probeInterval"]), "probeInterval", &health.probeInterval)
        take(duration(f["probeTimeout"]), "probeTimeout", &health.probeTimeout)
        take(int(f["fall"], min: 1, max: 1000), "fall", &health.fall)
        take(int(f["rise"], min: 1, max: 1000), "rise", &health.rise)
        take(duration(f["failbackHoldDown"]), "failbackHoldDown", &health.failbackHoldDown)
        take(bool(f["autoFailback"]), "autoFailback", &health.autoFailback)
        take(duration(f["observationTTL"]), "observationTTL", &health.observationTTL)
        guard ok else { return nil }
        let place = { (key: String) in f[key] ?? Located(node: at.node, path: at.child(key)) }
        if health.probeInterval <= .zero {
            error(place("probeInterval"), "must be longer than 0s")
            ok = false
        }
        if health.probeTimeout <= .zero {
            error(place("probeTimeout"), "must be longer than 0s")
            ok = false
        } else if health.probeTimeout >= health.probeInterval {
            error(
                place("probeTimeout"),
                "probeTimeout (\(DurationParser.format(health.probeTimeout))) must be shorter than probeInterval (\(DurationParser.format(health.probeInterval))), or probes pile up")
            ok = false
        }
        if health.observationTTL <= health.probeInterval {
            error(
                place("observationTTL"),
                "observationTTL (\(DurationParser.format(health.observationTTL))) must be longer than probeInterval (\(DurationParser.format(health.probeInterval))), or every observation is stale before it is refreshed")
            ok = false
        }
        return ok ? health : nil
    }

    mutating func readTiming(_ at: Located?) -> TimingConfig? {
        var timing = TimingConfig.defaults
        guard let at else { return timing }
        guard let f = fields(at, allowed: ["profile", "heartbeat", "electionTimeout", "maxClockDrift", "writeDeadline"], required: []) else { return nil }
        var ok = true
        if let p = f["profile"] {
            switch string(p) {
            case "default"?: timing = .defaults
            case "aggressive"?: timing = .aggressive
            case let other?:
                error(p, "unknown timing profile \"\(other)\": expected default or aggressive")
                ok = false
            case nil:
                ok = false
            }
        }
        if let d = duration(f["heartbeat"]) { timing.heartbeat = d } else if f["heartbeat"] != nil { ok = false }
        if let d = duration(f["electionTimeout"]) { timing.electionTimeout = d } else if f["electionTimeout"] != nil { ok = false }
        if let x = double(f["maxClockDrift"]) { timing.maxClockDrift = x } else if f["maxClockDrift"] != nil { ok = false }
        if let d = duration(f["writeDeadline"]) { timing.writeDeadline = d } else if f["writeDeadline"] != nil { ok = false }
        guard ok else { return nil }
        let place = { (key: String) in f[key] ?? Located(node: at.node, path: at.child(key)) }
        if timing.heartbeat <= .zero {
            error(place("heartbeat"), "must be longer than 0s")
            ok = false
        } else if timing.heartbeat >= timing.electionTimeout {
            error(
                place("heartbeat"),
                "heartbeat (\(DurationParser.format(timing.heartbeat))) must be shorter than electionTimeout (\(DurationParser.format(timing.electionTimeout))), or followers time out between heartbeats")
            ok = false
        }
        if !(0..<0.5).contains(timing.maxClockDrift) {
            error(place("maxClockDrift"), "must be at least 0 and below 0.5, got \(timing.maxClockDrift)")
            ok = false
        } else {
            let lease = timing.lease
            if lease <= .zero || lease >= timing.electionTimeout {
                error(
                    place(f["maxClockDrift"] != nil ? "maxClockDrift" : "electionTimeout"),
                    "the leader lease electionTimeout × (1 − maxClockDrift) = \(DurationParser.format(lease)) must be positive and shorter than electionTimeout (\(DurationParser.format(timing.electionTimeout))); a maxClockDrift of 0 assumes perfect clocks")
                ok = false
            } else if let w = timing.writeDeadline, w <= .zero || w > lease {
                error(
                    place("writeDeadline"),
                    "writeDeadline (\(DurationParser.format(w))) must be longer than 0s and at most the lease, electionTimeout × (1 − maxClockDrift) = \(DurationParser.format(lease)): a write may not outlast the lease it was fenced in")
                ok = false
            }
        }
        return ok ? timing : nil
    }
}

/// A parsed value with the node it came from, for cross-reference messages.
struct LocatedValue<Value> {
    var value: Value
    var at: Located
    var candidatesAt: [Located] = []

    /// Where a route problem is reported: its destination (messages name the table).
    var reportAt: Located { at }
}
