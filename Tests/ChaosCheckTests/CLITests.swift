import ChaosCheck
import Foundation
import SwitchmanTestSupport
import Testing

/// The built `switchman-chaos` (what `swift build --build-tests` produces), or
/// `$SWITCHMAN_CHAOS_BINARY`. Tests fail, never skip, without it.
private func binary() throws -> String {
    if let p = ProcessInfo.processInfo.environment["SWITCHMAN_CHAOS_BINARY"], !p.isEmpty { return p }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let path = root.appendingPathComponent(".build/debug/switchman-chaos").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw ChildProcessError(description: "\(path) is missing: build it with `swift build --product switchman-chaos`")
    }
    return path
}

private func run(_ args: [String], in dir: URL) async throws -> (status: Int32?, output: String) {
    let out = dir.appendingPathComponent("cli-output.txt").path
    let child = try ChildProcess([try binary()] + args, combinedOutput: out)
    let status = await child.wait(timeout: 60)
    if status == nil { await child.forceStop() }
    return (status, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
}

@Suite struct CLITests {
    @Test func checkPrintsOneLinePerCheckerAndWritesItsFiles() async throws {
        let dir = try Fixture().write()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (status, output) = try await run(["check", dir.path], in: dir)
        #expect(status == 0, "\(output)")
        let lines = output.split(separator: "\n")
        #expect(lines.count == Checkers.names.count, "\(output)")
        #expect(lines.first?.hasPrefix(Self.padded("one-leader-per-term") + "  ok  ") == true, "\(output)")
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("verdict.json").path))
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("timeline.svg").path))
    }

    /// A checker's name as the table prints it: padded to the longest name.
    static func padded(_ name: String) -> String {
        name.padding(toLength: Checkers.names.map(\.count).max() ?? name.count, withPad: " ", startingAt: 0)
    }

    @Test func aFailingCheckerExitsOne() async throws {
        var f = Fixture()
        f.log(2, ms(150), "role changed", ["role": "leader", "term": "2", "leader": "2"])
        let dir = try f.write()
        defer { try? FileManager.default.removeItem(at: dir) }
        let svg = dir.appendingPathComponent("elsewhere.svg").path
        let (status, output) = try await run(["check", dir.path, "--svg", svg], in: dir)
        #expect(status == 1, "\(output)")
        #expect(output.contains(Self.padded("one-leader-per-term") + "  FAIL  term 2 had leaders 1 and 2"), "\(output)")
        #expect(FileManager.default.fileExists(atPath: svg))
    }

    @Test func aMalformedLineIsNamedWithItsFileAndLine() async throws {
        let dir = try Fixture().write(raw: ["replica-2.jsonl": "{\"mono_ns\": 1, \"msg\": \"x\"}\n{\"mono_ns\": oops}\n{\"mono_ns\": 2, \"msg\": \"y\"}\n"])
        defer { try? FileManager.default.removeItem(at: dir) }
        let (status, output) = try await run(["check", dir.path], in: dir)
        #expect(status == 2, "\(output)")
        #expect(output.contains("switchman-chaos: \(dir.path)/replica-2.jsonl:2: not a JSON object: {\"mono_ns\": oops}"), "\(output)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("verdict.json").path))
    }
}
