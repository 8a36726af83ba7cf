import ChaosCheck
import Foundation

func ms(_ v: Int64) -> Int64 { v * 1_000_000 }

/// A run directory built in code: a healthy three-replica run that every checker passes.
/// Tests break one thing, write it to a temporary directory, and load it back through the
/// same loader the CLI uses.
struct Fixture {
    static let table = "rtb-1"
    static let dest = "10.1.0.0/16"

    var meta: [String: Any] = [
        "scenario": "unit", "seed": 7,
        "replicas": [1, 2, 3], "finalMembers": [1, 2, 3], "fakedClock": [Int](),
        "enis": ["eni-a1": "a1", "eni-a2": "a2"],
        "routes": [["table": table, "destination": dest, "candidates": ["a1", "a2"]]],
        "probeIntervalMs": 500, "fall": 2, "rise": 3, "holdDownMs": 1000,
        "electionTimeoutMs": 1000, "lockDelayMs": 3100,
        "startMonoNs": 0, "healedMonoNs": ms(5000), "endMonoNs": ms(10000),
        "convergenceBoundMs": 3000, "convergedMonoNs": ms(6000),
        "healthyAtEnd": ["a1", "a2"],
        "flapping": [[String: Any]](),
        "finalRoutes": [["table": table, "destination": dest, "eni": "eni-a1"]],
    ]
    var proxy: [[String: Any]] = []
    var replicas: [Int: [[String: Any]]] = [:]
    var faults: [[String: Any]] = [
        ["mono_ns": ms(3000), "wall": 3.0, "event": "start", "fault": "partition", "detail": "{1} | {2,3}"],
        ["mono_ns": ms(5000), "wall": 5.0, "event": "stop", "fault": "partition", "detail": "healed"],
    ]

    init() {
        for id in 1...3 {
            log(id, ms(10), "switchman serve starting", ["id": "\(id)", "pid": "\(100 + id)"])
            log(id, ms(100), "role changed", ["role": id == 1 ? "leader" : "follower", "term": "2", "leader": "1"])
            for i in 1...3 { applied(id, ms(200 + Int64(i)), index: i, term: 2) }
        }
        log(1, ms(900), "AWS write starting", ["token": "term/2 index/10", "term": "2", "index": "10", "leaseRemainingMs": "640", "write": "route"])
        describe(seq: 1, at: ms(800), done: ms(810), eni: "eni-a2")
        checkOff(seq: 101, at: ms(600), done: ms(610), eni: "eni-a1")
        checkOff(seq: 102, at: ms(620), done: ms(630), eni: "eni-a2")
        write(seq: 2, at: ms(1000), done: ms(1010), node: 1, term: 2, index: 10, eni: "eni-a1")
        describe(seq: 3, at: ms(2000), done: ms(2010), eni: "eni-a1")
    }

    /// A rig note (not a fault: `faults` in the stats counts only starts).
    mutating func note(at mono: Int64, _ kind: String, _ detail: String) {
        faults.append(["mono_ns": mono, "wall": Double(mono) / 1e9, "event": "note", "fault": kind, "detail": detail])
    }

    mutating func log(_ id: Int, _ mono: Int64, _ msg: String, _ meta: [String: String]) {
        replicas[id, default: []].append(["ts_ms": Double(mono) / 1e6, "mono_ns": mono, "level": "notice", "label": "switchman", "msg": msg, "meta": meta])
    }

    mutating func applied(_ id: Int, _ mono: Int64, index: Int, term: Int, digest: String? = nil) {
        log(id, mono, "entry applied", ["index": "\(index)", "term": "\(term)", "kind": "normal", "digest": digest ?? "d\(index)"])
    }

    mutating func describe(seq: Int, at: Int64, done: Int64, eni: String?) {
        proxy.append(["seq": seq, "mono_ns": at, "wall": 1.0, "method": "POST", "path": "/", "action": "DescribeRouteTables", "node": 1])
        let route: [String: Any] = ["table": Self.table, "destination": Self.dest, "eni": eni.map { $0 as Any } ?? NSNull(), "state": "active"]
        let local: [String: Any] = ["table": Self.table, "destination": "10.0.0.0/16", "eni": NSNull(), "state": "active"]
        proxy.append(["seq": seq, "done_ns": done, "status": 200, "routes": [local, route]])
    }

    /// The leader's ModifyNetworkInterfaceAttribute (`on: false` turns the check off).
    mutating func checkOff(seq: Int, at: Int64, done: Int64?, eni: String, on: Bool = false, status: Int = 200) {
        proxy.append([
            "seq": seq, "mono_ns": at, "wall": 1.0, "method": "POST", "path": "/", "action": "ModifyNetworkInterfaceAttribute",
            "node": 1, "term": 2, "index": 9, "NetworkInterfaceId": eni, "SourceDestCheck.Value": on ? "true" : "false",
        ])
        if let done { proxy.append(["seq": seq, "done_ns": done, "status": status]) }
    }

    mutating func write(
        seq: Int, at: Int64, done: Int64?, node: Int, term: Int, index: Int, eni: String?, status: Int = 200, action: String = "ReplaceRoute"
    ) {
        var request: [String: Any] = [
            "seq": seq, "mono_ns": at, "wall": 1.0, "method": "POST", "path": "/", "action": action,
            "node": node, "term": term, "index": index, "RouteTableId": Self.table, "DestinationCidrBlock": Self.dest,
        ]
        if let eni { request["NetworkInterfaceId"] = eni }
        proxy.append(request)
        if let done { proxy.append(["seq": seq, "done_ns": done, "status": status]) }
    }

    /// Writes the files; `raw` overrides a file's whole text (for malformed-input tests).
    func write(raw: [String: String] = [:]) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("chaoscheck-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        func jsonl(_ objects: [[String: Any]]) throws -> String {
            try objects.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]), as: UTF8.self) }
                .joined(separator: "\n") + "\n"
        }
        var files: [String: String] = [
            "meta.json": String(decoding: try JSONSerialization.data(withJSONObject: meta, options: [.prettyPrinted]), as: UTF8.self),
            "proxy.jsonl": try jsonl(proxy),
            "faults.jsonl": try jsonl(faults),
        ]
        for (id, lines) in replicas { files["replica-\(id).jsonl"] = try jsonl(lines) }
        for (name, text) in raw { files[name] = text }
        for (name, text) in files { try Data(text.utf8).write(to: dir.appendingPathComponent(name)) }
        return dir
    }

    func load() throws -> RunHistory {
        let dir = try write()
        defer { try? FileManager.default.removeItem(at: dir) }
        return try HistoryLoader.load(directory: dir)
    }

    func check(_ name: String) throws -> CheckResult {
        let verdict = Checkers.run(try load())
        guard let result = verdict.checkers.first(where: { $0.name == name }) else {
            return CheckResult(name: name, ok: false, detail: "no such checker")
        }
        return result
    }
}
