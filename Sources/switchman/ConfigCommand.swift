import ArgumentParser
import Controller

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Work with switchman config files.",
        subcommands: [Check.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a config file and list every problem with its key path and line.",
            discussion: "Exits 0 when the file is valid (warnings allowed), 1 when it has errors."
        )

        @Argument(help: "The YAML config file.")
        var file: String

        func run() throws {
            let result = ConfigLoader.load(contentsOf: file)
            for diagnostic in result.diagnostics {
                print(diagnostic)
            }
            guard let config = result.config else {
                let count = result.errors.count
                print("\(file): \(count) error\(count == 1 ? "" : "s")")
                throw ExitCode(1)
            }
            print("\(file): OK (\(config.cluster.members.count) members, \(config.tunnels.count) tunnels, \(config.routes.count) routes)")
        }
    }
}
