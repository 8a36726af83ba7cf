import ArgumentParser
import ChaosCheck
import Foundation

@main
struct SwitchmanChaos: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchman-chaos",
        abstract: "Checks the histories the chaos rig records (chaos/HISTORY.md, chaos/CHECKERS.md).",
        subcommands: [Check.self])
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Runs every checker over one run directory; writes verdict.json and timeline.svg.",
        discussion: "Exit status: 0 when every checker passes, 1 when any fails, 2 when the run directory cannot be read.")

    @Argument(help: "The run directory (meta.json, proxy.jsonl, replica-<id>.jsonl, faults.jsonl).")
    var dir: String

    @Option(help: "Where to write the timeline (default: DIR/timeline.svg).")
    var svg: String?

    @Option(help: "Where to write the verdict (default: DIR/verdict.json).")
    var json: String?

    func run() throws {
        let directory = URL(fileURLWithPath: dir)
        let history: RunHistory
        do {
            history = try HistoryLoader.load(directory: directory)
        } catch {
            // Distinct from a failed checker: the rig, not the system under test, is at fault.
            FileHandle.standardError.write(Data("switchman-chaos: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let verdict = Checkers.run(history)
        let width = verdict.checkers.map(\.name.count).max() ?? 0
        for c in verdict.checkers {
            print("\(c.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(c.ok ? "ok  " : "FAIL")  \(c.detail)")
        }
        for (file, count) in history.truncatedLines.sorted(by: { $0.key < $1.key }) {
            print("note: skipped \(count) cut-off line(s) in \(file)")
        }
        if history.orphanResponses > 0 { print("note: \(history.orphanResponses) proxy response line(s) had no request line") }

        let jsonURL = json.map { URL(fileURLWithPath: $0) } ?? directory.appendingPathComponent("verdict.json")
        let svgURL = svg.map { URL(fileURLWithPath: $0) } ?? directory.appendingPathComponent("timeline.svg")
        do {
            try verdict.json().write(to: jsonURL)
            try Data(Timeline.svg(history, verdict: verdict).utf8).write(to: svgURL)
        } catch {
            FileHandle.standardError.write(Data("switchman-chaos: cannot write the verdict or timeline: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if !verdict.ok { throw ExitCode(1) }
    }
}
