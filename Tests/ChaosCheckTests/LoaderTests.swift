import ChaosCheck
import Foundation
import Testing

@Suite struct LoaderTests {
    @Test func aCutOffLastLineIsSkippedAndCounted() throws {
        let f = Fixture()
        let dir = try f.write()
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("replica-2.jsonl")
        let handle = try FileHandle(forWritingTo: log)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"ts_ms\": 1, \"mono_ns\": 5, \"msg\": \"entry ap".utf8))
        try handle.close()
        let h = try HistoryLoader.load(directory: dir)
        #expect(h.truncatedLines == ["replica-2.jsonl": 1])
        #expect(h.replicas[2]?.count == f.replicas[2]?.count)
        #expect(Checkers.run(h).stats.truncatedLines == 1)
    }

    @Test func aRestartGluedOntoACutOffLineIsRecovered() throws {
        let f = Fixture()
        let dir = try f.write()
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("replica-3.jsonl")
        var text = try String(contentsOf: log, encoding: .utf8)
        text += "{\"ts_ms\": 1, \"mono_ns\": 5, \"msg\": \"entr"
        text += "{\"ts_ms\": 2, \"mono_ns\": 6000000000, \"msg\": \"switchman serve starting\", \"meta\": {\"id\": \"3\"}}\n"
        text += "{\"ts_ms\": 3, \"mono_ns\": 6100000000, \"msg\": \"role changed\", \"meta\": {\"role\": \"follower\", \"term\": \"2\"}}\n"
        try Data(text.utf8).write(to: log)
        let h = try HistoryLoader.load(directory: dir)
        #expect(h.truncatedLines == ["replica-3.jsonl": 1])
        #expect(h.replicas[3]?.suffix(2).map(\.msg) == ["switchman serve starting", "role changed"])
    }

    @Test func aMalformedLineNamesTheFileAndLine() throws {
        var f = Fixture()
        f.proxy.insert(["seq": 99], at: 1)  // neither a request nor a response
        let dir = try f.write()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect {
            try HistoryLoader.load(directory: dir)
        } throws: { error in
            "\(error)".hasSuffix("proxy.jsonl:2: neither a request (mono_ns) nor a response (done_ns) line")
        }

        let garbled = try Fixture().write(raw: ["replica-1.jsonl": "{\"mono_ns\": 1, \"msg\": \"x\"}\nnot json at all\n{\"mono_ns\": 2, \"msg\": \"y\"}\n"])
        defer { try? FileManager.default.removeItem(at: garbled) }
        #expect {
            try HistoryLoader.load(directory: garbled)
        } throws: { error in
            "\(error)".hasSuffix("replica-1.jsonl:2: not a JSON object: not json at all")
        }

        var noMeta = Fixture()
        noMeta.meta["holdDownMs"] = nil
        #expect(throws: HistoryError.self) { try noMeta.load() }
    }
}
