import Foundation
import SwitchmanTestSupport
import Testing
@testable import Controller

@Suite struct ConfigTests {
    @Test func baseConfigIsValid() throws {
        let result = ConfigLoader.load(yaml: baseYAML, file: "t.yaml")
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let config = try #require(result.config)
        #expect(config.cluster.members.map(\.id) == [1, 2, 3])
        #expect(config.routes.count == 2)
        #expect(config.health.failbackHoldDown == .seconds(30))
        #expect(config.health.observationTTL == HealthConfig.defaults.observationTTL)
        #expect(config.timing.lease == .milliseconds(950))
        #expect(config.tls.paths(for: 2).cert == "node-2.pem")
        #expect(config.dataDir(for: 3) == "/var/lib/switchman/3")
    }

    @Test func fullExampleIsValid() throws {
        let path = repoRoot.appendingPathComponent("docs/example-config.yaml").path
        let result = ConfigLoader.load(contentsOf: path)
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics.map(\.description))")
        let config = try #require(result.config)
        #expect(config.cluster.name == "interconnect-prod")
        #expect(config.tunnels.count == 4)
        #expect(config.tunnel(named: "a-vpn1")?.dns == DNSRecordConfig(zoneId: "Z0123456789ABC", name: "vpn1.a.example.internal", ttl: 30))
        #expect(config.tunnel(named: "a-vpn2")?.dns?.ttl == 60)
        #expect(config.tunnel(named: "b-vpn3")?.region == "us-west-2")
        #expect(config.tunnel(named: "b-vpn3")?.sentinel == HostPort(host: "172.16.0.10", port: 7300))
        // 2 routes + a route set of 2 tables × 2 destinations.
        #expect(config.routes.count == 6)
        #expect(config.routes[2] == RouteConfig(routeTable: "rtb-0b1a", destination: try #require(try? IPv4CIDR.parse("10.0.0.0/16").get()), candidates: ["b-vpn3", "b-vpn4"], region: "us-west-2"))
        #expect(config.health.failbackHoldDown == .seconds(120))
        #expect(config.health.rise == 5)
        #expect(config.aws == AWSConfig(region: "us-east-1", endpoint: nil, profile: nil))
    }

    @Test func defaultsApplyWhenHealthAndTimingAreOmitted() throws {
        let cut = try #require(baseYAML.range(of: "health:"))
        let yaml = String(baseYAML[..<cut.lowerBound])
        let config = try #require(ConfigLoader.load(yaml: yaml, file: "t.yaml").config)
        #expect(config.health == .defaults)
        #expect(config.timing == .defaults)
    }

    @Test func unknownKeySuggestsTheClosestKnownOne() {
        let yaml = replacing("    sentinel: \"vpn1.internal:7300\"", with: "    sentinal: \"vpn1.internal:7300\"")
        let l = line(of: "sentinal", in: yaml)
        let m = errorMessages(yaml)
        #expect(m.contains("t.yaml:\(l): tunnels[0].sentinal: unknown key \"sentinal\" (did you mean \"sentinel\"?)"), "\(m)")
        #expect(m.contains("t.yaml:\(line(of: "- name: vpn1", in: yaml)): tunnels[0].sentinel: missing required key"), "\(m)")
    }

    @Test func unknownTopLevelKeyWithoutCloseMatch() {
        let yaml = baseYAML + "frobnicate: 1\n"
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "frobnicate", in: yaml)): frobnicate: unknown key \"frobnicate\""])
    }

    @Test func wrongTypes() {
        var yaml = replacing("fall: 3", with: "fall: many")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "fall: many", in: yaml)): health.fall: expected an integer, got \"many\""])
        yaml = replacing("autoFailback: true", with: "autoFailback: sometimes")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "autoFailback", in: yaml)): health.autoFailback: expected true or false, got \"sometimes\""])
        yaml = replacing("  region: us-east-1", with: "  region: [us-east-1]")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "region:", in: yaml)): aws.region: expected a string, got a list"])
        yaml = replacing("    candidates: [vpn1, vpn2]", with: "    candidates: vpn1")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "candidates: vpn1", in: yaml)): routes[0].candidates: expected a list, got \"vpn1\""])
        yaml = replacing("maxClockDrift: 0.05", with: "maxClockDrift: lots")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "maxClockDrift", in: yaml)): timing.maxClockDrift: expected a number, got \"lots\""])
        yaml = replacing("dataDir: \"/var/lib/switchman/{id}\"", with: "dataDir:")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "dataDir", in: yaml)): dataDir: expected a string, got nothing"])
    }

    @Test func badDurations() {
        for bad in ["5", "1x", "ms", "1.s", "-1s", "1s2"] {
            let yaml = replacing("probeInterval: 1s", with: "probeInterval: \"\(bad)\"")
            #expect(
                errorMessages(yaml) == ["t.yaml:\(line(of: "probeInterval", in: yaml)): health.probeInterval: expected a duration like 250ms, 1s or 1m30s, got \"\(bad)\""],
                "\(bad)")
        }
        #expect(DurationParser.parse("1m30s") == .seconds(90))
        #expect(DurationParser.parse("250ms") == .milliseconds(250))
        #expect(DurationParser.parse("1.5s") == .milliseconds(1500))
        #expect(DurationParser.parse("1h2m3s4ms") == .milliseconds(3_723_004))
        #expect(DurationParser.parse("10us") == .microseconds(10))
    }

    @Test func duplicateMemberIDs() {
        let yaml = replacing("{id: 2,", with: "{id: 1,")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "{id: 1, peer: \"10.0.0.2", in: yaml)): cluster.members[1].id: duplicate member id 1 (first used at cluster.members[0].id, line \(line(of: "{id: 1,", in: yaml)))"])
    }

    @Test func memberIDMustBePositive() {
        let yaml = replacing("{id: 3,", with: "{id: 0,")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "{id: 0,", in: yaml)): cluster.members[2].id: must be at least 1, got 0"])
    }

    @Test func duplicateTunnelNames() {
        let yaml = replacing("  - name: vpn2", with: "  - name: vpn1")
        let m = errorMessages(yaml)
        #expect(m.contains("t.yaml:\(line(of: "- name: vpn1", in: yaml, occurrence: 2)): tunnels[1].name: duplicate tunnel name \"vpn1\" (first used at tunnels[0].name, line \(line(of: "- name: vpn1", in: yaml)))"), "\(m)")
    }

    @Test func duplicateRoute() {
        let yaml = replacing("rtb-02", with: "rtb-01")
        let l2 = line(of: "destination: 10.1.0.0/16", in: yaml, occurrence: 2)
        let l1 = line(of: "destination: 10.1.0.0/16", in: yaml)
        #expect(errorMessages(yaml) == ["t.yaml:\(l2): routes[1].destination: duplicate route rtb-01 10.1.0.0/16 (already at routes[0].destination, line \(l1))"])
    }

    @Test func unknownTunnelReference() {
        let yaml = replacing("candidates: [vpn2, vpn1]", with: "candidates: [vpn3, vpm1]")
        let l = line(of: "vpn3", in: yaml)
        let m = errorMessages(yaml)
        #expect(m == [
            "t.yaml:\(l): routes[1].candidates[0]: unknown tunnel \"vpn3\" (did you mean \"vpn1\"?)",
            "t.yaml:\(l): routes[1].candidates[1]: unknown tunnel \"vpm1\" (did you mean \"vpn1\"?)",
        ], "\(m)")
    }

    @Test func repeatedCandidate() {
        let yaml = replacing("candidates: [vpn2, vpn1]", with: "candidates: [vpn2, vpn2]")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "[vpn2, vpn2]", in: yaml)): routes[1].candidates[1]: tunnel \"vpn2\" is already a candidate at routes[1].candidates[0]"])
    }

    @Test func overlappingCIDRsInOneRouteTable() {
        let yaml = baseYAML.replacingOccurrences(of: "health:", with: """
              - routeTable: rtb-01
                destination: 10.1.2.0/24
                candidates: [vpn1]
            health:
            """)
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "10.1.2.0/24", in: yaml)): routes[2].destination: 10.1.2.0/24 overlaps 10.1.0.0/16 (routes[0].destination, line \(line(of: "10.1.0.0/16", in: yaml))) in route table rtb-01; one route would shadow part of the other"])
        // The same prefixes in different route tables are fine.
        let other = yaml.replacingOccurrences(of: "  - routeTable: rtb-01\n    destination: 10.1.2.0/24", with: "  - routeTable: rtb-03\n    destination: 10.1.2.0/24")
        #expect(errorMessages(other) == [])
    }

    @Test func malformedCIDRs() {
        var yaml = replacing("destination: 10.1.0.0/16", with: "destination: 10.1.0.0/33")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "/33", in: yaml)): routes[0].destination: expected an IPv4 CIDR like 10.1.0.0/16, got \"10.1.0.0/33\""])
        yaml = replacing("destination: 10.1.0.0/16", with: "destination: 10.1.0.1/16")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "10.1.0.1/16", in: yaml)): routes[0].destination: \"10.1.0.1/16\" has host bits set (did you mean 10.1.0.0/16?)"])
        for bad in ["10.1.0/16", "10.1.0.0", "300.1.0.0/16", "010.1.0.0/16", "a.b.c.d/8"] {
            #expect(IPv4CIDR.parse(bad) == .failure(.malformed), "\(bad)")
        }
    }

    @Test func badRouteTableID() {
        let yaml = replacing("routeTable: rtb-01", with: "routeTable: subnet-01")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "subnet-01", in: yaml)): routes[0].routeTable: expected a route table id like rtb-0123abcd, got \"subnet-01\""])
    }

    @Test func fewerThanThreeMembers() {
        let yaml = replacing("    - {id: 3, peer: \"10.0.0.3:7100\", admin: \"10.0.0.3:7200\", zone: c}\n", with: "")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "members:", in: yaml) + 1): cluster.members: a cluster needs at least 3 members to survive the loss of one, got 2"])
    }

    @Test func evenMemberCountWarns() throws {
        let yaml = replacing("zone: c}\n", with: "zone: c}\n    - {id: 4, peer: \"10.0.0.4:7100\", admin: \"10.0.0.4:7200\", zone: d}\n")
        let result = ConfigLoader.load(yaml: yaml, file: "t.yaml")
        #expect(result.errors.isEmpty)
        #expect(result.config != nil)
        #expect(result.warnings.map(\.description) == ["t.yaml:\(line(of: "members:", in: yaml) + 1): warning: cluster.members: 4 members tolerate no more failures than 3; use an odd count"])
    }

    @Test func heartbeatNotShorterThanElectionTimeout() {
        let yaml = replacing("heartbeat: 100ms", with: "heartbeat: 1s")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "heartbeat", in: yaml)): timing.heartbeat: heartbeat (1s) must be shorter than electionTimeout (1s), or followers time out between heartbeats"])
    }

    @Test func leaseMustBeShorterThanElectionTimeout() {
        let yaml = replacing("maxClockDrift: 0.05", with: "maxClockDrift: 0")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "maxClockDrift", in: yaml)): timing.maxClockDrift: the leader lease electionTimeout × (1 − maxClockDrift) = 1s must be positive and shorter than electionTimeout (1s); a maxClockDrift of 0 assumes perfect clocks"])
        // A lease that rounds down to nothing.
        let tiny = replacing("heartbeat: 100ms", with: "heartbeat: 100us", in: replacing("electionTimeout: 1s", with: "electionTimeout: 900us"))
        #expect(errorMessages(tiny).first?.contains("timing.maxClockDrift: the leader lease electionTimeout × (1 − maxClockDrift) = 0s must be positive") == true, "\(errorMessages(tiny))")
    }

    /// Issue #17 item 5: the write deadline is its own setting, at most the lease, and the
    /// lock-delay follows from it; `profile: aggressive` is the in-Region Raft timing.
    @Test func writeDeadlineAndTheAggressiveProfileSetTheLockDelay() throws {
        let base = try #require(ConfigLoader.load(yaml: baseYAML, file: "t.yaml").config)
        #expect(base.timing.effectiveWriteDeadline == .milliseconds(950))
        #expect(base.timing.lockDelay == .milliseconds(998))
        #expect(base.timing.lockDelayAfterTransfer == .milliseconds(1996))
        let short = try #require(ConfigLoader.load(yaml: replacing("maxClockDrift: 0.05", with: "maxClockDrift: 0.05\n  writeDeadline: 400ms"), file: "t.yaml").config)
        #expect(short.timing.lockDelay == .milliseconds(420))
        let tooLong = replacing("maxClockDrift: 0.05", with: "maxClockDrift: 0.05\n  writeDeadline: 2s")
        #expect(errorMessages(tooLong) == ["t.yaml:\(line(of: "writeDeadline", in: tooLong)): timing.writeDeadline: writeDeadline (2s) must be longer than 0s and at most the lease, electionTimeout × (1 − maxClockDrift) = 950ms: a write may not outlast the lease it was fenced in"])

        let aggressiveYAML = replacing("heartbeat: 100ms", with: "profile: aggressive", in: replacing("  electionTimeout: 1s\n", with: ""))
        let aggressive = try #require(ConfigLoader.load(yaml: aggressiveYAML, file: "t.yaml").config, "\(errorMessages(aggressiveYAML))")
        #expect(aggressive.timing.heartbeat == .milliseconds(50) && aggressive.timing.electionTimeout == .milliseconds(500))
        #expect(aggressive.timing.lockDelay == .milliseconds(499))
        let unknown = replacing("heartbeat: 100ms", with: "profile: fast\n  heartbeat: 100ms")
        #expect(errorMessages(unknown) == ["t.yaml:\(line(of: "profile", in: unknown)): timing.profile: unknown timing profile \"fast\": expected default or aggressive"])
    }

    @Test func driftCheckIntervalIsADurationAboveZero() throws {
        let base = try #require(ConfigLoader.load(yaml: baseYAML, file: "t.yaml").config)
        #expect(base.reconcile.driftCheckInterval == .seconds(10))
        let set = try #require(ConfigLoader.load(yaml: baseYAML + "reconcile: {driftCheckInterval: 30s}\n", file: "t.yaml").config)
        #expect(set.reconcile.driftCheckInterval == .seconds(30))
        let zero = baseYAML + "reconcile:\n  driftCheckInterval: 0s\n"
        #expect(errorMessages(zero) == ["t.yaml:\(line(of: "driftCheckInterval", in: zero)): reconcile.driftCheckInterval: must be longer than 0s"])
        let unknown = baseYAML + "reconcile:\n  driftInterval: 5s\n"
        #expect(errorMessages(unknown).first?.contains("reconcile.driftInterval: unknown key") == true, "\(errorMessages(unknown))")
    }

    @Test func maxClockDriftOutOfRange() {
        for bad in ["0.5", "-0.1", "2"] {
            let yaml = replacing("maxClockDrift: 0.05", with: "maxClockDrift: \(bad)")
            #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "maxClockDrift", in: yaml)): timing.maxClockDrift: must be at least 0 and below 0.5, got \(Double(bad) ?? 0)"])
        }
    }

    @Test func probeTimeoutNotShorterThanInterval() {
        let yaml = replacing("probeTimeout: 500ms", with: "probeTimeout: 2s")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "probeTimeout", in: yaml)): health.probeTimeout: probeTimeout (2s) must be shorter than probeInterval (1s), or probes pile up"])
    }

    @Test func observationTTLMustOutliveAProbeInterval() {
        let yaml = replacing("autoFailback: true", with: "autoFailback: true\n  observationTTL: 1s")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "observationTTL", in: yaml)): health.observationTTL: observationTTL (1s) must be longer than probeInterval (1s), or every observation is stale before it is refreshed"])
    }

    @Test func fallAndRiseAtLeastOne() {
        var yaml = replacing("fall: 3", with: "fall: 0")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "fall: 0", in: yaml)): health.fall: must be between 1 and 1000, got 0"])
        yaml = replacing("rise: 3", with: "rise: -2")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "rise: -2", in: yaml)): health.rise: must be between 1 and 1000, got -2"])
    }

    @Test func badSentinelAddress() {
        let yaml = replacing("sentinel: \"vpn2.internal:7300\"", with: "sentinel: foo")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "sentinel: foo", in: yaml)): tunnels[1].sentinel: expected host:port, got \"foo\""])
        for good in ["10.0.0.1:1", "vpn.example.com:7300", "[fd00::1]:7300", "localhost:65535"] { #expect(HostPort.parse(good) != nil, "\(good)") }
        for bad in ["10.0.0.1", "host:0", "host:65536", ":80", "a b:80", "-x:80", "[fd00::1]7300"] { #expect(HostPort.parse(bad) == nil, "\(bad)") }
    }

    @Test func missingRequiredKeys() {
        let yaml = replacing("aws:\n  region: us-east-1", with: "aws:\n  profile: p")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "profile: p", in: yaml)): aws.region: missing required key"])
        let m = errorMessages("cluster: {}\n")
        #expect(m.count == 6, "\(m)")
        #expect(m.contains("t.yaml:1: aws: missing required key"))
        #expect(m.contains("t.yaml:1: cluster.members: missing required key"))
    }

    @Test func tunnelInAnotherRegionThanTheRoute() {
        let yaml = replacing("    instance: {tagKey: t, tagValue: vpn2}", with: "    region: eu-west-1\n    instance: {tagKey: t, tagValue: vpn2}")
        let m = errorMessages(yaml)
        #expect(m.contains("t.yaml:\(line(of: "[vpn1, vpn2]", in: yaml)): routes[0].candidates[1]: tunnel \"vpn2\" is in eu-west-1 but this route is in us-east-1; a route can only point at an instance in its own VPC"), "\(m)")
        #expect(m.count == 2)
    }

    @Test func theInterfaceIsChosenByDeviceIndexOrByTagNotBoth() throws {
        let tagged = replacing("    instance: {tagKey: t, tagValue: vpn2}",
                               with: "    instance: {tagKey: t, tagValue: vpn2, interfaceTag: {key: switchman/forward, value: \"yes\"}}")
        let config = try #require(ConfigLoader.load(yaml: tagged, file: "t.yaml").config)
        #expect(config.tunnel(named: "vpn2")?.instance.interfaceTag == InterfaceTag(key: "switchman/forward", value: "yes"))
        #expect(config.tunnel(named: "vpn1")?.instance.interfaceTag == nil)
        let both = replacing("    instance: {tagKey: t, tagValue: vpn2}",
                             with: "    instance: {tagKey: t, tagValue: vpn2, deviceIndex: 1, interfaceTag: {key: k, value: v}}")
        let m = errorMessages(both)
        #expect(m.contains { $0.contains("tunnels[1].instance.interfaceTag: instance.interfaceTag and instance.deviceIndex both choose") }, "\(m)")
        let noValue = replacing("    instance: {tagKey: t, tagValue: vpn2}", with: "    instance: {tagKey: t, tagValue: vpn2, interfaceTag: {key: k}}")
        #expect(errorMessages(noValue).contains { $0.contains("tunnels[1].instance.interfaceTag.value: missing required key") }, "\(errorMessages(noValue))")
    }

    /// Issue #16: a tunnel's Elastic IP, which address its DNS record publishes, and the
    /// scheduled-event drain.
    @Test func elasticIPsAndPublicDNSAndScheduledEventDrains() throws {
        let withEIP = replacing("    instance: {tagKey: t, tagValue: vpn2}",
                                with: "    instance: {tagKey: t, tagValue: vpn2}\n    eip: eipalloc-0123456789abcdef0\n    dns: {zoneId: Z1, name: vpn2.example.internal, address: public}")
            .replacingOccurrences(of: "aws:\n  region: us-east-1", with: "aws:\n  region: us-east-1\n  autoDrainOnScheduledEvent: true\n  scheduledEventDrainLead: 15m")
        let config = try #require(ConfigLoader.load(yaml: withEIP, file: "t.yaml").config, "\(errorMessages(withEIP))")
        #expect(config.tunnel(named: "vpn2")?.eip == "eipalloc-0123456789abcdef0")
        #expect(config.tunnel(named: "vpn2")?.dns?.address == .public)
        #expect(config.tunnel(named: "vpn1")?.eip == nil)
        #expect(config.aws.autoDrainOnScheduledEvent && config.aws.scheduledEventDrainLead == .seconds(900))
        let defaults = try #require(ConfigLoader.load(yaml: baseYAML, file: "t.yaml").config)
        #expect(!defaults.aws.autoDrainOnScheduledEvent && defaults.aws.scheduledEventDrainLead == .seconds(600))

        let badID = replacing("    instance: {tagKey: t, tagValue: vpn2}", with: "    instance: {tagKey: t, tagValue: vpn2}\n    eip: 203.0.113.5")
        #expect(errorMessages(badID) == ["t.yaml:\(line(of: "eip: 203", in: badID)): tunnels[1].eip: expected an Elastic IP allocation id like eipalloc-0123456789abcdef0, got \"203.0.113.5\""])
        let publicWithout = replacing("    instance: {tagKey: t, tagValue: vpn2}",
                                      with: "    instance: {tagKey: t, tagValue: vpn2}\n    dns: {zoneId: Z1, name: vpn2.example.internal, address: public}")
        #expect(errorMessages(publicWithout).contains { $0.contains("tunnels[1].dns.address: dns.address public publishes the tunnel's Elastic IP") },
                "\(errorMessages(publicWithout))")
        let badAddress = replacing("    instance: {tagKey: t, tagValue: vpn2}",
                                   with: "    instance: {tagKey: t, tagValue: vpn2}\n    dns: {zoneId: Z1, name: vpn2.example.internal, address: elastic}")
        #expect(errorMessages(badAddress).contains { $0.contains("tunnels[1].dns.address: expected private or public, got \"elastic\"") })
        let shared = replacing("    instance: {tagKey: t, tagValue: vpn2}", with: "    instance: {tagKey: t, tagValue: vpn2}\n    eip: eipalloc-12345678")
            .replacingOccurrences(of: "    instance: {tagKey: t, tagValue: vpn1}", with: "    instance: {tagKey: t, tagValue: vpn1}\n    eip: eipalloc-12345678")
        #expect(errorMessages(shared).contains { $0.contains("tunnels[1].eip: Elastic IP eipalloc-12345678 is already the address of tunnels[0].eip") },
                "\(errorMessages(shared))")
    }

    @Test func everyErrorIsCollected() {
        var yaml = replacing("fall: 3", with: "fall: x")
        yaml = replacing("sentinel: \"vpn2.internal:7300\"", with: "sentinel: foo", in: yaml)
        yaml = replacing("{id: 2,", with: "{id: 1,", in: yaml)
        yaml = replacing("destination: 10.1.0.0/16", with: "destination: nope", in: yaml)
        let result = ConfigLoader.load(yaml: yaml, file: "t.yaml")
        #expect(result.config == nil)
        #expect(result.errors.count == 4, "\(result.errors.map(\.description))")
        #expect(result.errors.map { $0.line ?? 0 } == result.errors.map { $0.line ?? 0 }.sorted())
        #expect(result.errors.allSatisfy { $0.line != nil && !$0.path.isEmpty })
    }

    @Test func yamlSyntaxErrorNamesTheLine() {
        let yaml = replacing("    candidates: [vpn1, vpn2]", with: "    candidates: [vpn1, vpn2")
        let m = errorMessages(yaml)
        #expect(m.count == 1)
        #expect(m.first?.hasPrefix("t.yaml:") == true && m.first?.contains("invalid YAML") == true, "\(m)")
        #expect(errorMessages("") == ["t.yaml:1: the file is empty"])
        #expect(errorMessages("a: 1\na: 2\n").first?.contains("duplicate key") == true, "\(errorMessages("a: 1\na: 2\n"))")
    }

    @Test func routeSetsExpandAndAreCheckedLikeRoutes() throws {
        let yaml = baseYAML.replacingOccurrences(of: "health:", with: """
            routeSets:
              - name: set
                routeTables: [rtb-0a, rtb-0b]
                destinations: [10.2.0.0/16, 10.3.0.0/16, 10.1.0.0/16]
                candidates: [vpn1, vpn2]
              - routeTables: [rtb-01]
                destinations: [10.2.0.0/16]
                candidates: [vpn2]
            health:
            """)
        let config = try #require(ConfigLoader.load(yaml: yaml, file: "t.yaml").config)
        #expect(config.routes.count == 2 + 6 + 1)
        let dup = yaml.replacingOccurrences(of: "  - routeTables: [rtb-01]\n    destinations: [10.2.0.0/16]", with: "  - routeTables: [rtb-01]\n    destinations: [10.1.128.0/17]")
        #expect(errorMessages(dup) == ["t.yaml:\(line(of: "10.1.128.0/17", in: dup)): routeSets[1].destinations[0]: 10.1.128.0/17 overlaps 10.1.0.0/16 (routes[0].destination, line \(line(of: "10.1.0.0/16", in: dup))) in route table rtb-01; one route would shadow part of the other"])
    }

    @Test func twentyVPCsParseAndValidate() throws {
        let yaml = generatedTwentyVPCConfig()
        let result = ConfigLoader.load(yaml: yaml, file: "twenty.yaml")
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics.prefix(5).map(\.description))")
        let config = try #require(result.config)
        #expect(config.tunnels.count == 40)
        #expect(config.routes.count == 1000)
        #expect(Set(config.routes.map { RouteKey(routeTable: $0.routeTable, destination: $0.destination) }).count == 1000)
    }

    /// Random edits of a valid file: the loader must answer every one without trapping, and
    /// every problem it finds must carry a line.
    @Test func randomMutationsNeverCrash() throws {
        let example = try String(contentsOf: repoRoot.appendingPathComponent("docs/example-config.yaml"), encoding: .utf8)
        let alphabet = Array(":-[]{},'\"&*!|>#%@ \n\t0123456789abcxyz.~/")
        var rng = SplitMix64(seed: 0x5EED)
        var invalid = 0
        for _ in 0..<400 {
            var chars = Array(example)
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                guard !chars.isEmpty else { break }
                let i = Int.random(in: 0..<chars.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: chars.remove(at: i)
                case 1: chars.insert(alphabet.randomElement(using: &rng) ?? " ", at: i)
                case 2: chars[i] = alphabet.randomElement(using: &rng) ?? " "
                default:
                    let j = min(chars.count, i + Int.random(in: 1...40, using: &rng))
                    chars.insert(contentsOf: chars[i..<j], at: j)
                }
            }
            let result = ConfigLoader.load(yaml: String(chars), file: "f.yaml")
            if result.config == nil {
                invalid += 1
                #expect(!result.errors.isEmpty)
            }
            #expect(result.errors.allSatisfy { $0.line != nil || $0.message.contains("invalid YAML") })
        }
        #expect(invalid > 100)
    }

    // MARK: Sentinel probes and TLS files

    @Test func probesAndRequireParse() throws {
        let config = try #require(ConfigLoader.load(yaml: baseYAML, file: "t.yaml").config)
        #expect(config.tunnels[0].probes == [.icmp(host: "10.1.0.10")])
        #expect(config.tunnels[0].require == .all)
        let yaml = replacing(
            "    probes: [{icmp: 10.1.0.10}]",
            with: "    require: any\n    probes: [{icmp: vpn-far.example.internal}, {tcp: \"10.1.0.10:443\"}, {http: \"https://10.1.0.10:8443/health\"}]")
        let mixed = try #require(ConfigLoader.load(yaml: yaml, file: "t.yaml").config, "\(errorMessages(yaml))")
        #expect(
            mixed.tunnels[0].probes == [
                .icmp(host: "vpn-far.example.internal"), .tcp(HostPort(host: "10.1.0.10", port: 443)), .http(url: "https://10.1.0.10:8443/health"),
            ])
        #expect(mixed.tunnels[0].require == .any)
        #expect(mixed.tunnels[0].probes.map(\.kind) == ["icmp", "tcp", "http"])
        #expect(mixed.tunnels[0].probes.map(\.target) == ["vpn-far.example.internal", "10.1.0.10:443", "https://10.1.0.10:8443/health"])
    }

    @Test func fullExampleHasProbesAndSentinelFiles() throws {
        let path = repoRoot.appendingPathComponent("docs/example-config.yaml").path
        let config = try #require(ConfigLoader.load(contentsOf: path).config)
        #expect(config.tunnel(named: "a-vpn1")?.probes.map(\.kind) == ["icmp", "tcp", "http"])
        #expect(config.tunnel(named: "a-vpn2")?.require == .any)
        #expect(config.tunnel(named: "b-vpn3")?.require == .all)
        let paths = config.tls.sentinelPaths(for: "a-vpn1")
        #expect(paths.ca == "/etc/switchman/ca.pem")
        #expect(paths.cert == "/etc/switchman/sentinel-a-vpn1.pem")
        #expect(paths.key == "/etc/switchman/sentinel-a-vpn1-key.pem")
    }

    @Test func sentinelFilesDefaultBesideTheCA() throws {
        let config = try #require(ConfigLoader.load(yaml: baseYAML, file: "t.yaml").config)
        #expect(config.tls.sentinelCert == nil)
        #expect(config.tls.sentinelPaths(for: "vpn1") == ("ca.pem", "sentinel-vpn1.pem", "sentinel-vpn1-key.pem"))
        var yaml = replacing("tls: {ca: ca.pem,", with: "tls: {ca: /etc/sw/ca.pem,")
        let inDirectory = try #require(ConfigLoader.load(yaml: yaml, file: "t.yaml").config)
        #expect(inDirectory.tls.sentinelPaths(for: "vpn2") == ("/etc/sw/ca.pem", "/etc/sw/sentinel-vpn2.pem", "/etc/sw/sentinel-vpn2-key.pem"))
        yaml = replacing("key: \"node-{id}-key.pem\"}", with: "key: \"node-{id}-key.pem\", sentinelCert: \"/s/{tunnel}/c.pem\", sentinelKey: /s/k.pem}")
        let explicit = try #require(ConfigLoader.load(yaml: yaml, file: "t.yaml").config, "\(errorMessages(yaml))")
        #expect(explicit.tls.sentinelPaths(for: "vpn1") == ("ca.pem", "/s/vpn1/c.pem", "/s/k.pem"))
        yaml = replacing("key: \"node-{id}-key.pem\"}", with: "key: \"node-{id}-key.pem\", sentinelCrt: x}")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "sentinelCrt", in: yaml)): tls.sentinelCrt: unknown key \"sentinelCrt\" (did you mean \"sentinelCert\"?)"])
        yaml = replacing("key: \"node-{id}-key.pem\"}", with: "key: \"node-{id}-key.pem\", sentinelKey: [a]}")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "sentinelKey", in: yaml)): tls.sentinelKey: expected a string, got a list"])
    }

    @Test func aTunnelWithoutProbesIsRefused() {
        var yaml = replacing("    probes: [{icmp: 10.1.0.10}]\n", with: "")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "- name: vpn1", in: yaml)): tunnels[0].probes: a sentinel needs at least one probe target"])
        yaml = replacing("    probes: [{icmp: 10.1.0.10}]", with: "    probes: []")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "probes: []", in: yaml)): tunnels[0].probes: a sentinel needs at least one probe target"])
        yaml = replacing("    probes: [{icmp: 10.1.0.10}]", with: "    probes: {icmp: 10.1.0.10}")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "probes: {icmp", in: yaml)): tunnels[0].probes: expected a list, got a mapping"])
    }

    @Test func badProbeTargets() {
        let cases: [(String, String)] = [
            ("{ping: 10.1.0.10}", "tunnels[0].probes[0].ping: unknown key \"ping\""),
            ("{icmp: 10.1.0.10, tcp: \"10.1.0.10:22\"}", "tunnels[0].probes[0]: expected exactly one of icmp, tcp or http, got icmp and tcp"),
            ("{}", "tunnels[0].probes[0]: expected exactly one of icmp, tcp or http, got none"),
            ("icmp", "tunnels[0].probes[0]: expected a mapping with keys icmp, tcp, http, got \"icmp\""),
            ("{tcp: 10.1.0.10}", "tunnels[0].probes[0].tcp: expected host:port, got \"10.1.0.10\""),
            ("{tcp: \"10.1.0.10:0\"}", "tunnels[0].probes[0].tcp: expected host:port, got \"10.1.0.10:0\""),
            ("{icmp: \"10.1.0.10:80\"}", "tunnels[0].probes[0].icmp: expected an IPv4 address or DNS name like 10.1.0.10, got \"10.1.0.10:80\""),
            ("{icmp: }", "tunnels[0].probes[0].icmp: expected a string, got nothing"),
            ("{http: \"ftp://10.1.0.10/\"}", "tunnels[0].probes[0].http: expected an http(s) URL like http://10.1.0.10/health, got \"ftp://10.1.0.10/\""),
            ("{http: \"10.1.0.10/health\"}", "tunnels[0].probes[0].http: expected an http(s) URL like http://10.1.0.10/health, got \"10.1.0.10/health\""),
            ("{icmp: 10.1.0.10}, {icmp: 10.1.0.10}", "tunnels[0].probes[1].icmp: duplicate probe target icmp 10.1.0.10 (first at tunnels[0].probes[0].icmp, line LINE)"),
        ]
        for (entry, expected) in cases {
            let yaml = replacing("    probes: [{icmp: 10.1.0.10}]", with: "    probes: [\(entry)]")
            let l = line(of: "probes: [\(entry)]", in: yaml)
            let message = expected.replacingOccurrences(of: "LINE", with: "\(l)")
            #expect(errorMessages(yaml) == ["t.yaml:\(l): \(message)"], "\(entry)")
        }
    }

    @Test func requireMustBeAllOrAny() {
        let yaml = replacing("    probes: [{icmp: 10.1.0.10}]", with: "    probes: [{icmp: 10.1.0.10}]\n    require: most")
        #expect(errorMessages(yaml) == ["t.yaml:\(line(of: "require: most", in: yaml)): tunnels[0].require: expected all or any, got \"most\""])
    }

    @Test func tunnelNamesMustBeDNSLabels() {
        let yaml = replacing("  - name: vpn2", with: "  - name: vpn_2")
            .replacingOccurrences(of: "[vpn1, vpn2]", with: "[vpn1, vpn_2]").replacingOccurrences(of: "[vpn2, vpn1]", with: "[vpn_2, vpn1]")
        #expect(
            errorMessages(yaml) == [
                "t.yaml:\(line(of: "- name: vpn_2", in: yaml)): tunnels[1].name: a tunnel name becomes a DNS label in its sentinel's certificate: use 1-63 letters, digits and hyphens, not starting or ending with a hyphen, got \"vpn_2\""
            ])
    }
}
