import Foundation

/// Reads a run directory (chaos/HISTORY.md) into a `RunHistory`.
public enum HistoryLoader {
    public static func load(directory: URL) throws -> RunHistory {
        let meta = try loadMeta(directory.appendingPathComponent("meta.json"))
        var truncated: [String: Int] = [:]

        let proxyFile = directory.appendingPathComponent("proxy.jsonl")
        guard FileManager.default.fileExists(atPath: proxyFile.path) else {
            throw HistoryError(file: proxyFile.path, "missing")
        }
        let proxyLines = try readJSONL(proxyFile)
        truncated[proxyFile.lastPathComponent] = proxyLines.truncated
        let (proxy, orphans) = try joinProxy(proxyLines.objects)

        // A replica listed in meta but without a log never got far enough to write one.
        var replicas: [Int: [LogLine]] = [:]
        for id in meta.replicas { replicas[id] = [] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in names.sorted() where name.hasPrefix("replica-") && name.hasSuffix(".jsonl") {
            let idText = name.dropFirst("replica-".count).dropLast(".jsonl".count)
            guard let id = Int(idText) else { continue }
            let file = directory.appendingPathComponent(name)
            let read = try readJSONL(file)
            truncated[name] = read.truncated
            replicas[id] = try read.objects.map(logLine)
        }

        var faults: [FaultEvent] = []
        let faultsFile = directory.appendingPathComponent("faults.jsonl")
        // A scenario without a nemesis (a baseline run) may have no faults file at all.
        if FileManager.default.fileExists(atPath: faultsFile.path) {
            let read = try readJSONL(faultsFile)
            truncated[faultsFile.lastPathComponent] = read.truncated
            faults = try read.objects.map { f in
                FaultEvent(monoNs: try f.int("mono_ns"), event: try f.string("event"), fault: try f.string("fault"), detail: try? f.optionalString("detail"))
            }
        }
        return RunHistory(
            meta: meta, proxy: proxy, replicas: replicas, faults: faults,
            truncatedLines: truncated.filter { $0.value > 0 }, orphanResponses: orphans)
    }

    public static func loadMeta(_ url: URL) throws -> RunMeta {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw HistoryError(file: url.path, "cannot read: \(error.localizedDescription)") }
        guard let any = try? JSONSerialization.jsonObject(with: data), let object = any as? [String: Any] else {
            throw HistoryError(file: url.path, "not a JSON object")
        }
        let m = JSONFields(object, file: url.path, line: nil)
        var enis: [String: String] = [:]
        if let raw = object["enis"] {
            guard let dict = raw as? [String: Any] else { throw m.error("\"enis\" is not an object") }
            for (eni, tunnel) in dict {
                guard let t = tunnel as? String else { throw m.error("\"enis\".\(eni) is not a string") }
                enis[eni] = t
            }
        } else {
            throw m.error("missing \"enis\"")
        }
        var meta = RunMeta(
            scenario: try m.string("scenario"),
            seed: try m.int("seed"),
            replicas: try m.intArray("replicas").map { Int($0) },
            finalMembers: try m.intArray("finalMembers").map { Int($0) },
            fakedClock: m.has("fakedClock") ? Set(try m.intArray("fakedClock").map { Int($0) }) : [],
            enis: enis,
            routes: try m.objects("routes").map {
                RouteSpec(table: try $0.string("table"), destination: try $0.string("destination"), candidates: try $0.stringArray("candidates"))
            },
            probeIntervalMs: try m.optionalInt("probeIntervalMs"),
            fall: try m.optionalInt("fall"),
            rise: try m.optionalInt("rise"),
            holdDownMs: try m.int("holdDownMs"),
            electionTimeoutMs: try m.optionalInt("electionTimeoutMs"),
            lockDelayMs: try m.optionalInt("lockDelayMs"),
            startMonoNs: try m.int("startMonoNs"),
            healedMonoNs: try m.int("healedMonoNs"),
            endMonoNs: try m.int("endMonoNs"),
            convergenceBoundMs: try m.int("convergenceBoundMs"),
            convergedMonoNs: try m.optionalInt("convergedMonoNs"),
            healthyAtEnd: Set(try m.stringArray("healthyAtEnd")),
            flapping: m.has("flapping")
                ? try m.objects("flapping").map {
                    FlappingWindow(tunnel: try $0.string("tunnel"), fromMonoNs: try $0.int("fromMonoNs"), toMonoNs: try $0.int("toMonoNs"))
                } : [],
            finalRoutes: try m.objects("finalRoutes").map {
                FinalRoute(table: try $0.string("table"), destination: try $0.string("destination"), eni: try $0.optionalString("eni"))
            })
        if let window = try m.optionalInt("consistencyWindowMs") { meta.consistencyWindowMs = window }
        return meta
    }

    /// The objects of a .jsonl file, with how many cut-off lines were skipped. A process
    /// killed mid-write leaves a partial last line; a restarted replica then appends to the
    /// same file, so its first line is glued onto that fragment: such a line is recovered
    /// from its last `{"` that starts a whole object. Anything else malformed is an error.
    static func readJSONL(_ url: URL) throws -> (objects: [JSONFields], truncated: Int) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw HistoryError(file: url.path, "cannot read: \(error.localizedDescription)") }
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let lastNonEmpty = lines.lastIndex { !$0.allSatisfy(\.isWhitespace) }
        var objects: [JSONFields] = []
        var truncated = 0
        for (i, raw) in lines.enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty { continue }
            if let object = JSONFields.parseObject(line[...]) {
                objects.append(JSONFields(object, file: url.path, line: i + 1))
                continue
            }
            if i == lastNonEmpty {
                truncated += 1
                continue
            }
            if let glued = recoverGlued(line) {
                truncated += 1
                objects.append(JSONFields(glued, file: url.path, line: i + 1))
                continue
            }
            let shown = line.count > 80 ? String(line.prefix(80)) + "…" : line
            throw HistoryError(file: url.path, line: i + 1, "not a JSON object: \(shown)")
        }
        return (objects, truncated)
    }

    private static func recoverGlued(_ line: String) -> [String: Any]? {
        var search = line.index(after: line.startIndex)
        while search < line.endIndex, let r = line.range(of: "{\"", range: search..<line.endIndex) {
            if let object = JSONFields.parseObject(line[r.lowerBound...]) { return object }
            search = r.upperBound
        }
        return nil
    }

    /// Joins request and response lines by `seq`. A proxy restart may start `seq` over, so
    /// a response goes to the latest request with its seq that has no answer yet.
    static func joinProxy(_ lines: [JSONFields]) throws -> (calls: [ProxyCall], orphans: Int) {
        var calls: [ProxyCall] = []
        var open: [Int64: Int] = [:]
        var orphans = 0
        for l in lines {
            let seq = try l.int("seq")
            // A write the realism layer applied after its client gave up: the request stays
            // without an answer, so its effect is unknown (it may have happened at any time).
            if l.has("late_applied") { continue }
            if l.has("done_ns") {
                guard let at = open.removeValue(forKey: seq) else {
                    orphans += 1
                    continue
                }
                calls[at].doneNs = try l.int("done_ns")
                calls[at].status = try l.optionalInt("status").map { Int($0) }
                if l.has("routes") {
                    calls[at].routes = try l.objects("routes").map {
                        ObservedRoute(
                            table: try $0.string("table"), destination: try $0.string("destination"),
                            eni: try $0.optionalString("eni"), state: try? $0.optionalString("state"),
                            origin: try? $0.optionalString("origin"))
                    }
                }
                if l.has("realism") { calls[at].realism = try l.stringArray("realism") }
            } else if l.has("mono_ns") {
                var call = ProxyCall(
                    seq: seq, line: l.line ?? 0, monoNs: try l.int("mono_ns"),
                    action: try l.optionalString("action") ?? "\(try l.optionalString("method") ?? "?") \(try l.optionalString("path") ?? "?")",
                    node: try l.optionalInt("node").map { Int($0) }, term: try l.optionalInt("term"), index: try l.optionalInt("index"),
                    table: try l.optionalString("RouteTableId"), destination: try l.optionalString("DestinationCidrBlock"),
                    eni: try l.optionalString("NetworkInterfaceId"), fault: try l.optionalString("fault"))
                call.sourceDestCheck = try l.optionalString("SourceDestCheck.Value")
                open[seq] = calls.count
                calls.append(call)
            } else {
                throw l.error("neither a request (mono_ns) nor a response (done_ns) line")
            }
        }
        return (calls, orphans)
    }

    static func logLine(_ l: JSONFields) throws -> LogLine {
        LogLine(
            line: l.line ?? 0, tsMs: try l.optionalDouble("ts_ms"), monoNs: try l.int("mono_ns"),
            level: try l.optionalString("level"), label: try l.optionalString("label"),
            msg: try l.string("msg"), meta: try l.stringMap("meta"))
    }
}
