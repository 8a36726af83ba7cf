import Foundation
import SwitchmanTestSupport
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RaftRuntime
import Testing

@testable import Controller

// The operator CLI: table and JSON rendering of the admin documents, settings and exit
// codes, AdminClient against a fake mutual-TLS admin server, and the real `switchman`
// binary against that server.

// MARK: Fixtures

private let sampleTime = Date(timeIntervalSince1970: 1_714_564_800)  // 2024-05-01T12:00:00Z

private let sampleMembers = [
    AdminMember(id: 1, zone: "us-east-1a", role: "leader", reachable: true, peer: "10.0.1.10:7000", admin: "10.0.1.10:7100", matchIndex: 120,
        lastContactMillisAgo: nil),
    AdminMember(id: 2, zone: "us-east-1b", role: "follower", reachable: true, peer: "10.0.2.10:7000", admin: "10.0.2.10:7100", matchIndex: 118,
        lastContactMillisAgo: 40),
    AdminMember(id: 3, zone: "", role: "unknown", reachable: false, peer: "10.0.3.10:7000", admin: "10.0.3.10:7100", matchIndex: nil,
        lastContactMillisAgo: nil),
]

private let sampleTunnels = [
    AdminTunnel(
        name: "a-vpn1", state: "up", stale: false, drained: false, since: sampleTime,
        instance: AdminInstance(instanceId: "i-0abc", eniId: "eni-1", privateIP: "10.0.1.20", forwards: true),
        observations: [
            AdminObservation(replica: 1, healthyRun: 5, unhealthyRun: 0, rttMillis: 3, ageMillis: 200, fresh: true),
            AdminObservation(replica: 2, healthyRun: 4, unhealthyRun: 0, ageMillis: 900, fresh: true),
            AdminObservation(replica: 3, healthyRun: 0, unhealthyRun: 2, ageMillis: 60_000, fresh: false),
        ]),
    AdminTunnel(name: "b-vpn2", state: "down", stale: true, drained: true, drainReason: "kernel upgrade", drainedBy: "client/alice", observations: []),
]

private let sampleRoutes = [
    AdminRoute(
        routeTable: "rtb-0a", destination: "10.2.0.0/16", region: "us-east-1", desired: "a-vpn1", desiredENI: "eni-1", actual: "a-vpn1",
        reason: "preferred tunnel up", lastWrite: AdminWrite(term: 3, index: 117, success: true, requestId: "req-1", at: sampleTime)),
    AdminRoute(
        routeTable: "rtb-0b", destination: "192.168.0.0/24", region: "us-east-1", desired: nil, actual: nil, reason: "no healthy tunnel",
        alert: "every tunnel is down", lastWrite: AdminWrite(term: 3, index: 119, success: false, detail: "throttled")),
    AdminRoute(routeTable: "rtb-0b", destination: "10.3.0.0/16", region: "us-east-1", desired: "b-vpn2", reason: "", lastWrite: nil),
]

private let sampleStatus = AdminStatus(
    cluster: "prod", answeredBy: 2, leader: 1, term: 3, commitIndex: 120, appliedIndex: 119, consistency: "linearizable",
    leaseRemainingMillis: 1450, members: sampleMembers, tunnels: sampleTunnels, routes: sampleRoutes)

/// The rows of the table under `title` (its header line first), up to the next blank line.
private func section(_ text: String, _ title: String) -> [String] {
    let lines = text.components(separatedBy: "\n")
    guard let start = lines.firstIndex(of: title) else { return [] }
    return Array(lines[(start + 1)...].prefix { !$0.isEmpty })
}

/// Every row's cells start where their header starts (cells hold no double blanks here).
private func expectAligned(_ rows: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    guard let header = rows.first else {
        Issue.record("no table", sourceLocation: sourceLocation)
        return
    }
    func starts(_ line: String) -> [Int] {
        let chars = Array(line)
        return chars.indices.filter { i in chars[i] != " " && (i == 0 || (i >= 2 && chars[i - 1] == " " && chars[i - 2] == " ")) }
    }
    let columns = starts(header)
    for row in rows.dropFirst() {
        #expect(Array(starts(row).prefix(columns.count)) == Array(columns.prefix(starts(row).count)), "misaligned: \(row)", sourceLocation: sourceLocation)
        #expect(!row.hasSuffix(" "), "trailing blank: \(row)", sourceLocation: sourceLocation)
    }
}

@Suite("AdminFormat")
struct AdminFormatTests {
    /// Issue #16: a tunnel passed over because EC2 would drop what its instance forwards
    /// says so where an operator looks first.
    @Test func aTunnelWhoseSourceDestCheckIsOnSaysSoInTheTunnelsTable() {
        var tunnel = sampleTunnels[0]
        tunnel.instance?.forwards = false
        let text = AdminFormat.render(AdminTunnels(cluster: "prod", answeredBy: 1, leader: 1, term: 3, consistency: "linearizable", tunnels: [tunnel]))
        #expect(text.contains("i-0abc 10.0.1.20 (source/dest check on: not a candidate)"), "\(text)")
        let fine = AdminFormat.render(AdminTunnels(cluster: "prod", answeredBy: 1, leader: 1, term: 3, consistency: "linearizable", tunnels: [sampleTunnels[0]]))
        #expect(!fine.contains("source/dest check"))
    }

    /// Issue #16 items 2 and 4: impaired status checks, scheduled events and where the
    /// tunnel's Elastic IP is, in the tunnels table.
    @Test func theTunnelsTableShowsEC2StatusScheduledEventsAndTheElasticIP() {
        var tunnel = sampleTunnels[0]
        tunnel.instance?.impaired = true
        tunnel.instance?.ec2Status = "instance impaired, system ok"
        tunnel.instance?.scheduledEvents = ["system-reboot from 2026-12-09T02:00:00Z until 2026-12-09T04:00:00Z"]
        tunnel.instance?.elasticIP = "203.0.113.7"
        tunnel.instance?.elasticIPHere = false
        let text = AdminFormat.render(AdminTunnels(cluster: "prod", answeredBy: 1, leader: 1, term: 3, consistency: "linearizable", tunnels: [tunnel]))
        #expect(text.contains("(EC2 status impaired: not a candidate)"), "\(text)")
        #expect(text.contains("(scheduled: system-reboot from 2026-12-09T02:00:00Z until 2026-12-09T04:00:00Z)"), "\(text)")
        #expect(text.contains("EIP 203.0.113.7 (not on this instance yet)"), "\(text)")
        let fine = AdminFormat.render(AdminTunnels(cluster: "prod", answeredBy: 1, leader: 1, term: 3, consistency: "linearizable", tunnels: [sampleTunnels[0]]))
        #expect(!fine.contains("EIP") && !fine.contains("impaired") && !fine.contains("scheduled"))
    }

    @Test func tableAlignsColumnsAndPadsAllButTheLast() {
        var table = AdminTable(headers: ["ID", "ZONE", "NOTE"])
        table.append(["1", "us-east-1a", "x"])
        table.append(["22", "b", ""])
        #expect(
            table.render() == """
                ID  ZONE        NOTE
                1   us-east-1a  x
                22  b
                """)
    }

    @Test func emptyTableShowsItsHeadersAndSaysSo() {
        #expect(AdminTable(headers: ["A", "B"]).render() == "A  B\n(none)")
        #expect(AdminTable(headers: ["A"], emptyText: "(no events)").render() == "A\n(no events)")
    }

    @Test func statusHeaderBlockAndSections() {
        let text = AdminFormat.render(sampleStatus)
        let lines = text.components(separatedBy: "\n")
        #expect(lines[0] == "cluster        prod")
        #expect(lines[1] == "answered by    2")
        #expect(lines[2] == "leader         1 (us-east-1a)")
        #expect(lines[3] == "term           3")
        #expect(lines[4] == "commit index   120")
        #expect(lines[5] == "applied index  119")
        #expect(lines[6] == "consistency    linearizable")
        #expect(lines[7] == "lease          1.5s left")

        let memberRows = section(text, "MEMBERS")
        #expect(
            memberRows == [
                "ID  ZONE        ROLE      REACHABLE  MATCH  LAST-CONTACT",
                "1   us-east-1a  leader    yes        120    -",
                "2   us-east-1b  follower  yes        118    40ms ago",
                "3   -           unknown   no         -      -",
            ])

        let tunnelRows = section(text, "TUNNELS")
        #expect(tunnelRows.count == 3)
        #expect(tunnelRows[0].hasPrefix("NAME    STATE         DRAINED  INSTANCE          OBSERVATIONS"))
        #expect(tunnelRows[1] == "a-vpn1  up            no       i-0abc 10.0.1.20  1:up(5) 2:up(4) 3:down(2,stale)")
        #expect(tunnelRows[2] == "b-vpn2  down (stale)  yes      -                 -")
        #expect(text.contains("DRAINED\n  b-vpn2: kernel upgrade (by client/alice)"))

        let routeRows = section(text, "ROUTES")
        expectAligned(routeRows)
        #expect(routeRows[0] == "TABLE   DESTINATION     DESIRED  ACTUAL  LAST-WRITE    REASON")
        #expect(routeRows[1] == "rtb-0a  10.2.0.0/16     a-vpn1   a-vpn1  3/117 ok      preferred tunnel up")
        #expect(routeRows[2] == "rtb-0b  192.168.0.0/24  -        -       3/119 failed  no healthy tunnel")
        #expect(routeRows[3] == "rtb-0b  10.3.0.0/16     b-vpn2   -       -             -")
        #expect(text.contains("ALERTS\n  rtb-0b 192.168.0.0/24: every tunnel is down"))
        #expect(text.hasSuffix("\n") && !text.hasSuffix("\n\n"))
    }

    @Test func statusWithoutLeaderLeaseOrAnything() {
        let empty = AdminStatus(
            cluster: "c", answeredBy: 3, leader: 0, term: 7, commitIndex: 0, appliedIndex: 0, consistency: "stale", leaseRemainingMillis: nil,
            members: [], tunnels: [], routes: [])
        let text = AdminFormat.render(empty)
        #expect(text.contains("leader         none\n"))
        #expect(text.contains("lease          -\n"))
        #expect(section(text, "MEMBERS") == ["ID  ZONE  ROLE  REACHABLE  MATCH  LAST-CONTACT", "(none)"])
        #expect(section(text, "TUNNELS") == ["NAME  STATE  DRAINED  INSTANCE  OBSERVATIONS", "(none)"])
        #expect(section(text, "ROUTES") == ["TABLE  DESTINATION  DESIRED  ACTUAL  LAST-WRITE  REASON", "(none)"])
        #expect(!text.contains("ALERTS") && !text.contains("DRAINED\n"))
    }

    @Test func membersTunnelsRoutesDocuments() {
        let membersText = AdminFormat.render(
            AdminMembers(cluster: "prod", answeredBy: 2, leader: 1, term: 3, consistency: "stale", members: sampleMembers))
        let lines = membersText.components(separatedBy: "\n")
        #expect(lines[0] == "cluster prod, leader 1 (us-east-1a), term 3; answered by 2 (stale)")
        expectAligned(Array(lines[2...].prefix { !$0.isEmpty }))
        #expect(lines[2] == "ID  ZONE        ROLE      REACHABLE  PEER            ADMIN           MATCH  LAST-CONTACT")
        #expect(lines[3] == "1   us-east-1a  leader    yes        10.0.1.10:7000  10.0.1.10:7100  120    -")

        let tunnelsText = AdminFormat.render(
            AdminTunnels(cluster: "prod", answeredBy: 2, leader: 0, term: 3, consistency: "linearizable", tunnels: sampleTunnels))
        #expect(tunnelsText.hasPrefix("cluster prod, leader none, term 3; answered by 2 (linearizable)\n\nNAME "))
        #expect(tunnelsText.contains("b-vpn2: kernel upgrade"))

        let routesText = AdminFormat.render(
            AdminRoutes(cluster: "prod", answeredBy: 1, leader: 1, term: 3, consistency: "linearizable", routes: []))
        #expect(routesText.hasSuffix("TABLE  DESTINATION  DESIRED  ACTUAL  LAST-WRITE  REASON\n(none)\n"))
    }

    @Test func eventsAndWriteResults() {
        let events = AdminEvents(
            answeredBy: 1, consistency: "linearizable", firstAvailableSeq: 40,
            events: [
                AdminEvent(seq: 41, at: sampleTime, kind: "tunnel-down", tunnel: "a-vpn1", text: "majority says down"),
                AdminEvent(seq: 142, at: sampleTime.addingTimeInterval(61), kind: "leader", tunnel: nil, text: "member 2 leads term 4"),
            ])
        let text = AdminFormat.render(events)
        #expect(
            text == """
                answered by 1 (linearizable); events before seq 40 were evicted

                SEQ  TIME                  KIND         TUNNEL  TEXT
                41   2024-05-01T12:00:00Z  tunnel-down  a-vpn1  majority says down
                142  2024-05-01T12:01:01Z  leader       -       member 2 leads term 4

                """)
        let none = AdminFormat.render(AdminEvents(answeredBy: 1, consistency: "stale", firstAvailableSeq: 1, events: []))
        #expect(none == "answered by 1 (stale)\n\nSEQ  TIME  KIND  TUNNEL  TEXT\n(no events)\n")

        #expect(AdminFormat.render(AdminResult(ok: true, message: "drained a-vpn1", index: 42, term: 3)) == "ok: drained a-vpn1 (term 3, index 42)\n")
        #expect(AdminFormat.render(AdminResult(ok: false, message: "already the leader")) == "not done: already the leader\n")
    }

    @Test func observationsLastWritesAndDurations() {
        #expect(AdminFormat.observations([]) == "-")
        #expect(
            AdminFormat.observations([AdminObservation(replica: 4, healthyRun: 0, unhealthyRun: 0, ageMillis: 0, fresh: true)]) == "4:unknown")
        #expect(AdminFormat.lastWrite(AdminWrite(term: 2, index: 9)) == "2/9 pending")
        #expect(AdminFormat.lastWrite(nil) == "-")
        #expect(AdminFormat.millis(0) == "0ms")
        #expect(AdminFormat.millis(999) == "999ms")
        #expect(AdminFormat.millis(2000) == "2s")
        #expect(AdminFormat.millis(12_340) == "12.3s")
        #expect(AdminFormat.millis(245_000) == "4m05s")
        #expect(AdminFormat.millis(7_800_000) == "2h10m")
    }
}

// MARK: JSON field names

/// Decodes `literal` as `T`, compares with `expected`, re-encodes with AdminJSON's encoder
/// and checks the result is the same JSON object: every field name (and value) of the
/// literal survives, so a rename in AdminModel.swift fails here.
private func expectStableJSON<T: Codable & Equatable>(
    _ literal: String, _ expected: T, sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let decoded = try AdminJSON.decoder().decode(T.self, from: Data(literal.utf8))
    #expect(decoded == expected, sourceLocation: sourceLocation)
    let reencoded = try AdminJSON.encoder().encode(decoded)
    let a = try JSONSerialization.jsonObject(with: Data(literal.utf8)) as? NSDictionary
    let b = try JSONSerialization.jsonObject(with: reencoded) as? NSDictionary
    #expect(a != nil && a == b, "re-encoded differs: \(String(decoding: reencoded, as: UTF8.self))", sourceLocation: sourceLocation)
    // Sorted keys: `--output json` is diffable between runs.
    let topLevelKeys = String(decoding: reencoded, as: UTF8.self).components(separatedBy: "\n")
        .filter { $0.hasPrefix("  \"") }
        .compactMap { $0.dropFirst(3).split(separator: "\"").first.map(String.init) }
    #expect(topLevelKeys == topLevelKeys.sorted() && topLevelKeys.count == (b?.count ?? -1), sourceLocation: sourceLocation)
}

@Suite("AdminJSON")
struct AdminJSONTests {
    static let statusLiteral = """
        {
          "cluster": "prod", "answeredBy": 2, "leader": 1, "term": 3, "commitIndex": 120, "appliedIndex": 119,
          "consistency": "linearizable", "leaseRemainingMillis": 1450,
          "members": [
            {"id": 1, "zone": "us-east-1a", "role": "leader", "reachable": true, "peer": "10.0.1.10:7000",
             "admin": "10.0.1.10:7100", "matchIndex": 120, "lastContactMillisAgo": 5}
          ],
          "tunnels": [
            {"name": "a-vpn1", "state": "up", "stale": false, "drained": true, "drainReason": "maintenance",
             "drainedBy": "client/alice", "since": "2024-05-01T12:00:00Z",
             "instance": {"instanceId": "i-0abc", "eniId": "eni-1", "privateIP": "10.0.1.20", "forwards": true},
             "observations": [
               {"replica": 1, "healthyRun": 5, "unhealthyRun": 0, "rttMillis": 3, "ageMillis": 200, "fresh": true}
             ]}
          ],
          "routes": [
            {"routeTable": "rtb-0a", "destination": "10.2.0.0/16", "region": "us-east-1", "desired": "a-vpn1",
             "desiredENI": "eni-1", "actual": "a-vpn1", "reason": "preferred", "alert": "none really",
             "lastWrite": {"term": 3, "index": 117, "success": true, "detail": "replaced", "requestId": "req-1",
                           "at": "2024-05-01T12:00:00Z"}}
          ]
        }
        """

    static let statusValue = AdminStatus(
        cluster: "prod", answeredBy: 2, leader: 1, term: 3, commitIndex: 120, appliedIndex: 119, consistency: "linearizable",
        leaseRemainingMillis: 1450,
        members: [
            AdminMember(id: 1, zone: "us-east-1a", role: "leader", reachable: true, peer: "10.0.1.10:7000", admin: "10.0.1.10:7100",
                matchIndex: 120, lastContactMillisAgo: 5)
        ],
        tunnels: [
            AdminTunnel(
                name: "a-vpn1", state: "up", stale: false, drained: true, drainReason: "maintenance", drainedBy: "client/alice", since: sampleTime,
                instance: AdminInstance(instanceId: "i-0abc", eniId: "eni-1", privateIP: "10.0.1.20", forwards: true),
                observations: [AdminObservation(replica: 1, healthyRun: 5, unhealthyRun: 0, rttMillis: 3, ageMillis: 200, fresh: true)])
        ],
        routes: [
            AdminRoute(
                routeTable: "rtb-0a", destination: "10.2.0.0/16", region: "us-east-1", desired: "a-vpn1", desiredENI: "eni-1", actual: "a-vpn1",
                reason: "preferred", alert: "none really",
                lastWrite: AdminWrite(term: 3, index: 117, success: true, detail: "replaced", requestId: "req-1", at: sampleTime))
        ])

    @Test func statusAndEverythingInIt() throws {
        try expectStableJSON(Self.statusLiteral, Self.statusValue)
    }

    @Test func optionalFieldsMayBeAbsent() throws {
        try expectStableJSON(
            """
            {"cluster": "c", "answeredBy": 1, "leader": 0, "term": 0, "commitIndex": 0, "appliedIndex": 0,
             "consistency": "stale", "members": [], "tunnels": [
               {"name": "t", "state": "unknown", "stale": true, "drained": false, "observations": []}],
             "routes": [{"routeTable": "r", "destination": "d", "region": "x", "reason": ""}]}
            """,
            AdminStatus(
                cluster: "c", answeredBy: 1, leader: 0, term: 0, commitIndex: 0, appliedIndex: 0, consistency: "stale",
                members: [], tunnels: [AdminTunnel(name: "t", state: "unknown", stale: true, drained: false, observations: [])],
                routes: [AdminRoute(routeTable: "r", destination: "d", region: "x", reason: "")]))
    }

    @Test func listDocuments() throws {
        let member = Self.statusValue.members[0]
        try expectStableJSON(
            """
            {"cluster": "prod", "answeredBy": 2, "leader": 1, "term": 3, "consistency": "stale", "members": [
              {"id": 1, "zone": "us-east-1a", "role": "leader", "reachable": true, "peer": "10.0.1.10:7000",
               "admin": "10.0.1.10:7100", "matchIndex": 120, "lastContactMillisAgo": 5}]}
            """,
            AdminMembers(cluster: "prod", answeredBy: 2, leader: 1, term: 3, consistency: "stale", members: [member]))
        try expectStableJSON(
            """
            {"cluster": "prod", "answeredBy": 2, "leader": 1, "term": 3, "consistency": "linearizable", "tunnels": [
              {"name": "t", "state": "down", "stale": false, "drained": false, "observations": [
                {"replica": 2, "healthyRun": 0, "unhealthyRun": 3, "ageMillis": 10, "fresh": false}]}]}
            """,
            AdminTunnels(
                cluster: "prod", answeredBy: 2, leader: 1, term: 3, consistency: "linearizable",
                tunnels: [
                    AdminTunnel(
                        name: "t", state: "down", stale: false, drained: false,
                        observations: [AdminObservation(replica: 2, healthyRun: 0, unhealthyRun: 3, ageMillis: 10, fresh: false)])
                ]))
        try expectStableJSON(
            """
            {"cluster": "prod", "answeredBy": 2, "leader": 1, "term": 3, "consistency": "linearizable", "routes": [
              {"routeTable": "r", "destination": "0.0.0.0/0", "region": "eu-west-1", "actual": "t", "reason": "drift",
               "lastWrite": {"term": 1, "index": 2}}]}
            """,
            AdminRoutes(
                cluster: "prod", answeredBy: 2, leader: 1, term: 3, consistency: "linearizable",
                routes: [
                    AdminRoute(
                        routeTable: "r", destination: "0.0.0.0/0", region: "eu-west-1", actual: "t", reason: "drift",
                        lastWrite: AdminWrite(term: 1, index: 2))
                ]))
        try expectStableJSON(
            """
            {"answeredBy": 3, "consistency": "stale", "firstAvailableSeq": 7, "events": [
              {"seq": 8, "at": "2024-05-01T12:00:00Z", "kind": "drain", "tunnel": "t", "text": "drained"},
              {"seq": 9, "at": "2024-05-01T12:00:00Z", "kind": "leader", "text": "x"}]}
            """,
            AdminEvents(
                answeredBy: 3, consistency: "stale", firstAvailableSeq: 7,
                events: [
                    AdminEvent(seq: 8, at: sampleTime, kind: "drain", tunnel: "t", text: "drained"),
                    AdminEvent(seq: 9, at: sampleTime, kind: "leader", tunnel: nil, text: "x"),
                ]))
    }

    @Test func writeBodiesResultsAndErrors() throws {
        try expectStableJSON(#"{"ok": true, "message": "done", "index": 5, "term": 2}"#, AdminResult(ok: true, message: "done", index: 5, term: 2))
        try expectStableJSON(#"{"ok": false, "message": "no"}"#, AdminResult(ok: false, message: "no"))
        try expectStableJSON(
            #"{"code": "not_leader", "message": "ask 2", "leader": 2}"#, AdminError(code: "not_leader", message: "ask 2", leader: 2))
        try expectStableJSON(#"{"code": "no_quorum", "message": "m"}"#, AdminError(code: "no_quorum", message: "m"))
        try expectStableJSON(#"{"reason": "patching"}"#, AdminDrainRequest(reason: "patching"))
        try expectStableJSON(#"{"to": 3}"#, AdminTransferRequest(to: 3))
        try expectStableJSON(#"{}"#, AdminTransferRequest(to: nil))
        try expectStableJSON(
            #"{"id": 4, "peer": "10.0.4.10:7000", "learner": true}"#, AdminMemberRequest(id: 4, peer: "10.0.4.10:7000", learner: true))
    }

    @Test func jsonOutputIsTheDocumentWithSortedKeys() throws {
        let text = try AdminFormat.json(AdminResult(ok: true, message: "m", index: 1, term: 2))
        #expect(text == "{\n  \"index\" : 1,\n  \"message\" : \"m\",\n  \"ok\" : true,\n  \"term\" : 2\n}\n")
    }
}

// MARK: Settings and exit codes

@Suite("AdminSettings")
struct AdminSettingsTests {
    @Test func endpointsParse() throws {
        #expect(try AdminSettings.parseEndpoints("a:1,10.0.0.2:7100") == [HostPort(host: "a", port: 1), HostPort(host: "10.0.0.2", port: 7100)])
        #expect(try AdminSettings.parseEndpoints(" a:1 , [::1]:9 ,a:1") == [HostPort(host: "a", port: 1), HostPort(host: "::1", port: 9)])
        for bad in ["a", "a:0", "a:1,,b:2", "", "a:99999", "a:1,b", "[::1]9", "a b:1"] {
            #expect(throws: AdminUsageError.self, "\(bad)") { try AdminSettings.parseEndpoints(bad) }
        }
    }

    @Test func flagsWinOverEnvironmentAndMissingOnesNameFlagAndVariable() throws {
        let environment = [
            "SWITCHMAN_ENDPOINTS": "e1:1,e2:2", "SWITCHMAN_CA": "/env/ca.pem", "SWITCHMAN_CERT": "/env/c.pem", "SWITCHMAN_KEY": "/env/k.pem",
        ]
        let fromEnvironment = try AdminSettings.resolve(endpoints: nil, ca: nil, cert: nil, key: nil, timeout: nil, environment: environment)
        #expect(
            fromEnvironment
                == AdminSettings(
                    endpoints: [HostPort(host: "e1", port: 1), HostPort(host: "e2", port: 2)], caFile: "/env/ca.pem", certificateFile: "/env/c.pem",
                    keyFile: "/env/k.pem", timeout: .seconds(10)))
        let fromFlags = try AdminSettings.resolve(
            endpoints: "f:3", ca: "/f/ca", cert: "/f/c", key: "/f/k", timeout: "500ms", environment: environment)
        #expect(
            fromFlags
                == AdminSettings(
                    endpoints: [HostPort(host: "f", port: 3)], caFile: "/f/ca", certificateFile: "/f/c", keyFile: "/f/k",
                    timeout: .milliseconds(500)))

        func message(_ body: () throws -> AdminSettings) -> String {
            do {
                _ = try body()
                return ""
            } catch { return "\(error)" }
        }
        let all: [String: String] = ["SWITCHMAN_ENDPOINTS": "e:1", "SWITCHMAN_CA": "a", "SWITCHMAN_CERT": "c", "SWITCHMAN_KEY": "k"]
        for (variable, flag) in [("SWITCHMAN_ENDPOINTS", "--endpoints"), ("SWITCHMAN_CA", "--ca"), ("SWITCHMAN_CERT", "--cert"), ("SWITCHMAN_KEY", "--key")] {
            var partial = all
            partial[variable] = ""
            let text = message { try AdminSettings.resolve(endpoints: nil, ca: nil, cert: nil, key: nil, timeout: nil, environment: partial) }
            #expect(text.contains(flag) && text.contains(variable), "\(text)")
        }
        let badEnv = message {
            try AdminSettings.resolve(endpoints: nil, ca: nil, cert: nil, key: nil, timeout: nil, environment: all.merging(["SWITCHMAN_ENDPOINTS": "nope"]) { $1 })
        }
        #expect(badEnv.hasPrefix("SWITCHMAN_ENDPOINTS: \"nope\" is not host:port"))
        let badFlag = message { try AdminSettings.resolve(endpoints: "x", ca: nil, cert: nil, key: nil, timeout: nil, environment: all) }
        #expect(badFlag.hasPrefix("--endpoints: "))
    }

    @Test func timeouts() throws {
        #expect(try AdminSettings.parseTimeout(nil) == .seconds(10))
        #expect(try AdminSettings.parseTimeout("3") == .seconds(3))
        #expect(try AdminSettings.parseTimeout("1.5") == .milliseconds(1500))
        #expect(try AdminSettings.parseTimeout("2m") == .seconds(120))
        for bad in ["0", "-1", "soon", "0s", "1e9"] {
            #expect(throws: AdminUsageError.self, "\(bad)") { try AdminSettings.parseTimeout(bad) }
        }
    }

    @Test func exitCodes() {
        func server(_ code: String, _ status: Int) -> AdminClientError { .server(AdminError(code: code, message: "m"), status: status) }
        #expect(AdminExitStatus.of(server("no_quorum", 503)) == .noQuorum)
        #expect(AdminExitStatus.of(server("no_leader", 503)) == .noQuorum)
        #expect(AdminExitStatus.noQuorum.rawValue == 3)
        #expect(AdminExitStatus.of(server("internal", 503)) == .error)
        #expect(AdminExitStatus.of(server("not_leader", 409)) == .error)
        #expect(AdminExitStatus.of(server("not_found", 404)) == .error)
        #expect(AdminExitStatus.of(AdminClientError.unreachable(["a:1": "refused"], order: ["a:1"])) == .error)
        #expect(AdminExitStatus.of(AdminClientError.decoding(endpoint: "a:1", status: 200, reason: "x")) == .error)
        #expect(AdminExitStatus.of(AdminUsageError("x")) == .usage)
        #expect(AdminExitStatus.usage.rawValue == 2 && AdminExitStatus.error.rawValue == 1 && AdminExitStatus.ok.rawValue == 0)
    }
}

// MARK: A fake admin server (mutual TLS on loopback)

struct FakeAdminRequest: Sendable {
    var method: String
    var uri: String
    var body: String
    /// The client certificate's identity, as PeerIdentity describes it.
    var identity: String
}

/// Serves scripted answers over mutual TLS with a member certificate, like a replica's admin
/// API, and records every request it got.
final class FakeAdminServer: Sendable {
    let channel: any Channel
    private let recorded = NIOLockedValueBox<[FakeAdminRequest]>([])

    var port: Int { channel.localAddress?.port ?? 0 }
    var address: String { "127.0.0.1:\(port)" }
    var requests: [FakeAdminRequest] { recorded.withLockedValue { $0 } }

    init(pki: CertificateDirectory, member: UInt64, answer: @escaping @Sendable (FakeAdminRequest) -> (Int, String)) async throws {
        func read(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }
        var tls = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(try read(pki.memberCertificatePath(member)).utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(try read(pki.memberKeyPath(member)).utf8), format: .pem)),
            trustRoots: .certificates(try NIOSSLCertificate.fromPEMBytes(Array(try read(pki.caCertificatePath).utf8))))
        tls.minimumTLSVersion = .tlsv13
        tls.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: tls)
        let recorded = self.recorded
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FakeAdminHandler(answer: answer, recorded: recorded))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func close() async { try? await channel.close() }
}

final class FakeAdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let answer: @Sendable (FakeAdminRequest) -> (Int, String)
    let recorded: NIOLockedValueBox<[FakeAdminRequest]>
    private var head: HTTPRequestHead?
    private var body = ""

    init(answer: @escaping @Sendable (FakeAdminRequest) -> (Int, String), recorded: NIOLockedValueBox<[FakeAdminRequest]>) {
        self.answer = answer
        self.recorded = recorded
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = ""
        case .body(let buffer): body += String(buffer: buffer)
        case .end:
            guard let head else { return }
            var identity = "none"
            if let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self),
                let certificate = tls.peerCertificate, let der = try? certificate.toDERBytes(), let peer = try? PeerIdentity.from(derEncoded: der)
            {
                identity = "\(peer)"
            }
            let request = FakeAdminRequest(method: head.method.rawValue, uri: head.uri, body: body, identity: identity)
            recorded.withLockedValue { $0.append(request) }
            let (status, json) = answer(request)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(json.utf8.count))
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: json)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

/// Members 1-3 and operator `operator` on 127.0.0.1, in a temporary directory.
private func makePKI(cluster: String = "test") throws -> CertificateDirectory {
    let directory = CertificateDirectory(path: try temporaryDirectory("admin-pki"))
    try directory.bootstrap(clusterName: cluster, members: [1, 2, 3], hosts: ["127.0.0.1"], clients: ["operator"])
    return directory
}

private func operatorClient(_ pki: CertificateDirectory, _ endpoints: [String], certificateFrom: CertificateDirectory? = nil) throws -> AdminClient {
    let source = certificateFrom ?? pki
    return try AdminClient(
        endpoints: endpoints.compactMap(HostPort.parse), caFile: pki.caCertificatePath, certificateFile: source.clientCertificatePath("operator"),
        keyFile: source.clientKeyPath("operator"), timeout: .seconds(30), logger: quietLogger())
}

/// The error `body` throws, nil when it returns.
private func failure<T>(_ body: () async throws -> T) async -> (any Error)? {
    do {
        _ = try await body()
        return nil
    } catch { return error }
}

private func json<T: Encodable>(_ value: T) -> String {
    (try? AdminFormat.json(value)) ?? "{}"
}

@Suite("AdminClient")
struct AdminClientTests {
    @Test func firstEndpointDownSecondAnswers() async throws {
        let pki = try makePKI()
        let server = try await FakeAdminServer(pki: pki, member: 2) { _ in (200, json(sampleStatus)) }
        let down = try await closedPort()
        let client = try operatorClient(pki, ["127.0.0.1:\(down)", server.address])
        let answer = try await client.status()
        await client.shutdown()
        await server.close()
        #expect(answer == sampleStatus)
        #expect(server.requests.map(\.uri) == ["/v1/status"])
    }

    @Test func queriesAndOperatorIdentity() async throws {
        let pki = try makePKI()
        let eventsDoc = AdminEvents(answeredBy: 2, consistency: "stale", firstAvailableSeq: 1, events: [])
        let server = try await FakeAdminServer(pki: pki, member: 2) { request in
            request.uri.hasPrefix("/v1/events") ? (200, json(eventsDoc)) : (200, json(AdminResult(ok: true, message: "drained")))
        }
        let client = try operatorClient(pki, [server.address])
        #expect(try await client.events(since: 5, limit: 10, stale: true) == eventsDoc)
        #expect(try await client.drain(tunnel: "a-vpn1", reason: "patch night").ok)
        _ = try await client.undrain(tunnel: "a vpn/1")
        await client.shutdown()
        await server.close()
        let requests = server.requests
        #expect(requests.map(\.uri) == ["/v1/events?since=5&limit=10&stale=true", "/v1/tunnels/a-vpn1/drain", "/v1/tunnels/a%20vpn%2F1/undrain"])
        #expect(requests.map(\.method) == ["GET", "POST", "POST"])
        #expect(try AdminJSON.decoder().decode(AdminDrainRequest.self, from: Data(requests[1].body.utf8)) == AdminDrainRequest(reason: "patch night"))
        #expect(requests.allSatisfy { $0.identity == "\(PeerIdentity.client("operator"))" })
    }

    @Test func clientCertificateFromAnotherCAIsRefused() async throws {
        let pki = try makePKI()
        let other = try makePKI(cluster: "other")
        let server = try await FakeAdminServer(pki: pki, member: 1) { _ in (200, json(sampleStatus)) }
        // Trusts our CA, so only the server's check of the client certificate is tested.
        let client = try operatorClient(pki, [server.address], certificateFrom: other)
        let refused = await failure { try await client.status() }
        if case .unreachable(let reasons, let order)? = refused as? AdminClientError {
            #expect(order == [server.address] && reasons[server.address] != nil)
        } else {
            Issue.record("expected unreachable, got \(String(describing: refused))")
        }
        await client.shutdown()
        await server.close()
        #expect(server.requests.isEmpty)
    }

    @Test func serverCertificateFromAnotherCAIsRefused() async throws {
        let pki = try makePKI()
        let other = try makePKI(cluster: "other")
        let impostor = try await FakeAdminServer(pki: other, member: 1) { _ in (200, json(sampleStatus)) }
        let client = try operatorClient(pki, [impostor.address])
        await #expect(throws: AdminClientError.self) { try await client.status() }
        await client.shutdown()
        await impostor.close()
        #expect(impostor.requests.isEmpty)
    }

    @Test func notLeaderIsRetriedAtTheLeader() async throws {
        let pki = try makePKI()
        let leader = try await FakeAdminServer(pki: pki, member: 2) { _ in (200, json(AdminResult(ok: true, message: "transferring", index: 9, term: 4))) }
        let leaderAddress = leader.address
        let follower = try await FakeAdminServer(pki: pki, member: 1) { request in
            if request.method == "GET", request.uri.hasPrefix("/v1/members") {
                let list = AdminMembers(
                    cluster: "test", answeredBy: 1, leader: 2, term: 4, consistency: "stale",
                    members: [
                        AdminMember(id: 1, zone: "a", role: "follower", reachable: true, peer: "127.0.0.1:1", admin: "127.0.0.1:2", matchIndex: nil,
                            lastContactMillisAgo: nil),
                        AdminMember(id: 2, zone: "b", role: "leader", reachable: true, peer: "127.0.0.1:3", admin: leaderAddress, matchIndex: nil,
                            lastContactMillisAgo: nil),
                    ])
                return (200, json(list))
            }
            return (409, json(AdminError(code: "not_leader", message: "member 2 leads", leader: 2)))
        }
        let client = try operatorClient(pki, [follower.address])
        let result = try await client.transferLeader(to: 3)
        await client.shutdown()
        await follower.close()
        await leader.close()
        #expect(result == AdminResult(ok: true, message: "transferring", index: 9, term: 4))
        #expect(follower.requests.map { "\($0.method) \($0.uri)" } == ["POST /v1/leader/transfer", "GET /v1/members?stale=true"])
        #expect(leader.requests.map { "\($0.method) \($0.uri)" } == ["POST /v1/leader/transfer"])
        #expect(try AdminJSON.decoder().decode(AdminTransferRequest.self, from: Data(leader.requests[0].body.utf8)) == AdminTransferRequest(to: 3))
    }

    @Test func noQuorumIsFinalAndMapsToExitThree() async throws {
        let pki = try makePKI()
        let first = try await FakeAdminServer(pki: pki, member: 1) { _ in (503, json(AdminError(code: "no_quorum", message: "2 of 3 unreachable"))) }
        let second = try await FakeAdminServer(pki: pki, member: 2) { _ in (200, json(sampleStatus)) }
        let client = try operatorClient(pki, [first.address, second.address])
        let caught = await failure { try await client.status() }
        await client.shutdown()
        await first.close()
        await second.close()
        #expect(caught as? AdminClientError == .server(AdminError(code: "no_quorum", message: "2 of 3 unreachable"), status: 503))
        #expect(caught.map(AdminExitStatus.of) == .noQuorum)
        // An HTTP answer is final: the second replica was never asked.
        #expect(second.requests.isEmpty)
    }

    @Test func foreignBodiesAndAllUnreachable() async throws {
        let pki = try makePKI()
        let server = try await FakeAdminServer(pki: pki, member: 1) { request in
            request.uri.hasPrefix("/v1/status") ? (200, #"{"cluster": 1}"#) : (502, "<html>bad gateway</html>")
        }
        let client = try operatorClient(pki, [server.address])
        let unreadable = await failure { try await client.status() }
        if case .decoding(_, 200, _)? = unreadable as? AdminClientError {} else {
            Issue.record("expected a decoding error, got \(String(describing: unreadable))")
        }
        let foreign = await failure { try await client.members() }
        if case .server(let body, 502)? = foreign as? AdminClientError {
            #expect(body.code == "http_502" && body.message.contains("bad gateway"))
        } else {
            Issue.record("expected a server error, got \(String(describing: foreign))")
        }
        await client.shutdown()
        await server.close()

        let a = try await closedPort()
        let b = try await closedPort()
        let nobody = try operatorClient(pki, ["127.0.0.1:\(a)", "127.0.0.1:\(b)"])
        let caught = await failure { try await nobody.routes() }
        await nobody.shutdown()
        guard case .unreachable(let reasons, let order)? = caught as? AdminClientError else {
            Issue.record("expected unreachable, got \(String(describing: caught))")
            return
        }
        #expect(order == ["127.0.0.1:\(a)", "127.0.0.1:\(b)"] && reasons.count == 2)
        #expect(caught.map(AdminExitStatus.of) == .error)
    }
}

// MARK: The `switchman` binary

/// Runs `switchman` with `arguments`, `environment` replacing the SWITCHMAN_* variables.
private func runSwitchman(_ arguments: [String], environment: [String: String] = [:]) async throws -> (code: Int32, stdout: String, stderr: String) {
    let directory = try temporaryDirectory("admin-cli")
    let out = directory + "/stdout"
    let err = directory + "/stderr"
    // Through env(1): ChildProcess passes this process's environment on, and the test must
    // not depend on whether the machine running it exports SWITCHMAN_*.
    var argv = ["/usr/bin/env"]
    for variable in [AdminSettings.endpointsVariable, AdminSettings.caVariable, AdminSettings.certificateVariable, AdminSettings.keyVariable] {
        argv += ["-u", variable]
    }
    argv += environment.map { "\($0.key)=\($0.value)" }.sorted()
    argv += [switchmanBinary] + arguments
    let process = try ChildProcess(argv, stdout: out, stderr: err)
    let code = await process.wait()
    let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
    let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
    try? FileManager.default.removeItem(atPath: directory)
    return (code, stdout, stderr)
}

@Suite("switchman CLI")
struct SwitchmanCLITests {
    @Test func statusJSONTableAndExitCodes() async throws {
        guard FileManager.default.isExecutableFile(atPath: switchmanBinary) else {
            Issue.record("build the binary first: swift build --build-tests (\(switchmanBinary))")
            return
        }
        let pki = try makePKI()
        let server = try await FakeAdminServer(pki: pki, member: 1) { request in
            request.uri.contains("stale=true") ? (503, json(AdminError(code: "no_leader", message: "no leader in term 5"))) : (200, json(sampleStatus))
        }
        let down = try await closedPort()
        let certs = ["--ca", pki.caCertificatePath, "--cert", pki.clientCertificatePath("operator"), "--key", pki.clientKeyPath("operator")]
        let endpoints = "127.0.0.1:\(down),\(server.address)"

        // 0, JSON: exactly the document, sorted keys.
        let asJSON = try await runSwitchman(["status", "--endpoints", endpoints, "--output", "json"] + certs)
        #expect(asJSON.code == 0, "\(asJSON.stderr)")
        #expect(asJSON.stdout == json(sampleStatus))
        let decoded = try AdminJSON.decoder().decode(AdminStatus.self, from: Data(asJSON.stdout.utf8))
        #expect(decoded == sampleStatus)
        let object = try JSONSerialization.jsonObject(with: Data(asJSON.stdout.utf8)) as? [String: Any]
        for key in ["cluster", "leader", "term", "commitIndex", "members", "tunnels", "routes"] { #expect(object?[key] != nil, "\(key)") }

        // 0, table, everything from the environment.
        let asTable = try await runSwitchman(
            ["status"],
            environment: [
                "SWITCHMAN_ENDPOINTS": endpoints, "SWITCHMAN_CA": pki.caCertificatePath, "SWITCHMAN_CERT": pki.clientCertificatePath("operator"),
                "SWITCHMAN_KEY": pki.clientKeyPath("operator"),
            ])
        #expect(asTable.code == 0, "\(asTable.stderr)")
        #expect(asTable.stdout == AdminFormat.render(sampleStatus))

        // 3: the replica says there is no leader; JSON mode prints the error document too.
        let noLeader = try await runSwitchman(["status", "--stale", "--endpoints", endpoints, "--output", "json"] + certs)
        #expect(noLeader.code == 3, "\(noLeader.stderr)")
        #expect(noLeader.stdout == json(AdminError(code: "no_leader", message: "no leader in term 5")))
        #expect(noLeader.stderr.contains("no_leader"))

        // 2: no endpoints anywhere; the message names the flag and the variable.
        let usage = try await runSwitchman(["status"] + certs)
        #expect(usage.code == 2)
        #expect(usage.stderr.contains("--endpoints") && usage.stderr.contains("SWITCHMAN_ENDPOINTS"), "\(usage.stderr)")
        let badOutput = try await runSwitchman(["status", "--endpoints", endpoints, "--output", "yaml"] + certs)
        #expect(badOutput.code == 2)
        let missingKey = try await runSwitchman(["members", "--endpoints", endpoints, "--ca", pki.caCertificatePath, "--cert", "/x"])
        #expect(missingKey.code == 2)
        #expect(missingKey.stderr.contains("--key") && missingKey.stderr.contains("SWITCHMAN_KEY"), "\(missingKey.stderr)")

        let unreadable = try await runSwitchman(["routes", "--endpoints", endpoints, "--ca", "/nonexistent/ca.pem", "--cert", "/x", "--key", "/y"])
        #expect(unreadable.code == 2)
        #expect(unreadable.stderr.contains("--ca") && unreadable.stderr.contains("/nonexistent/ca.pem"), "\(unreadable.stderr)")

        await server.close()

        // 1: nothing answers.
        let unreachable = try await runSwitchman(["status", "--endpoints", "127.0.0.1:\(down)"] + certs)
        #expect(unreachable.code == 1, "\(unreachable.stderr)")
        #expect(unreachable.stderr.contains("no admin endpoint answered"))
    }
}
