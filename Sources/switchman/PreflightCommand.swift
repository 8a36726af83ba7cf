import ArgumentParser
import Controller
import Foundation
import Logging

struct PreflightCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preflight",
        abstract: "Check a config against its AWS account before the first start, changing nothing.",
        discussion: """
            Resolves the credentials (and says which source gave them), finds every tunnel's \
            instance by its tag, reads every managed route table, asks EC2 with DryRun whether \
            IAM allows the route write the leader would make for every managed route \
            (DryRunOperation vs UnauthorizedOperation), and reads every Route 53 zone. \
            Exits 0 when every check passed, 1 when any failed, 2 on a bad config.
            """
    )

    @Option(help: "The YAML config file.")
    var config: String

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    @Option(help: "Log level for the AWS calls (trace, debug, info, warning, error).")
    var logLevel: String = "error"

    func run() async throws {
        let loaded = ConfigLoader.load(contentsOf: config)
        guard let file = loaded.config else {
            for d in loaded.diagnostics { FileHandle.standardError.write(Data("\(d)\n".utf8)) }
            throw ExitCode(2)
        }
        var logger = Logger(label: "switchman.preflight")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .error
        let checks = await Preflight.run(config: file, environment: ProcessInfo.processInfo.environment, logger: logger)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(checks), as: UTF8.self))
        } else {
            let width = max(7, checks.map(\.subject.count).max() ?? 0)
            print("CHECK       " + "SUBJECT".padding(toLength: width + 2, withPad: " ", startingAt: 0) + "RESULT  DETAIL")
            for c in checks {
                print(c.check.padding(toLength: 12, withPad: " ", startingAt: 0)
                      + c.subject.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                      + (c.ok ? "ok      " : "FAILED  ") + c.detail)
            }
            let failed = checks.filter { !$0.ok }.count
            print(failed == 0 ? "\(checks.count) checks passed." : "\(failed) of \(checks.count) checks failed.")
        }
        if checks.contains(where: { !$0.ok }) { throw ExitCode(1) }
    }
}
