import Foundation
import RaftTestKit
import Testing

/// Replays every story in testdata/*.txt (see `Transcript` for the commands) and compares
/// what each command prints with what the file says. After a deliberate change of behaviour,
/// `SWITCHMAN_REWRITE_TRANSCRIPTS=1 swift test --filter TranscriptTests` rewrites the files;
/// read the diff as the story of what changed.
@Suite struct TranscriptTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("testdata")

    static var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).filter { $0.hasSuffix(".txt") }.sorted()
    }

    @Test func thereAreTranscripts() {
        #expect(Self.files.count >= 2, "no transcripts found in \(Self.directory.path)")
    }

    @Test(arguments: files)
    func transcriptReplays(file: String) throws {
        let url = Self.directory.appendingPathComponent(file)
        let text = try String(contentsOf: url, encoding: .utf8)
        let replayed = Transcript().replay(text)
        if ProcessInfo.processInfo.environment["SWITCHMAN_REWRITE_TRANSCRIPTS"] == "1" {
            try replayed.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        let want = text.split(separator: "\n", omittingEmptySubsequences: false)
        let got = replayed.split(separator: "\n", omittingEmptySubsequences: false)
        if let k = zip(want, got).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            Issue.record("\(file):\(k + 1): expected \"\(want[k])\", got \"\(got[k])\"")
        } else {
            #expect(want.count == got.count, "\(file): \(want.count) lines expected, \(got.count) replayed")
        }
        #expect(!replayed.contains("error:"), "\(file) has a command that failed")
    }
}
