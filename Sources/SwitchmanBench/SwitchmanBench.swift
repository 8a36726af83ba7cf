import ArgumentParser

@main
struct SwitchmanBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchman-bench",
        abstract: "Benchmark switchman's Raft against etcd on one machine (see docs/BENCHMARKS.md).",
        subcommands: [RunCommand.self, NodeCommand.self]
    )
}
