import ArgumentParser

@main
struct Switchman: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchman",
        abstract: "Raft-replicated failover controller for AWS VPC interconnects.",
        discussion: """
            Replicas in several availability zones agree, over Raft with mutual TLS, on the \
            health of every VPN tunnel; only the leased leader rewrites EC2 route tables and \
            Route 53 records.
            """,
        version: SwitchmanVersion.string,
        subcommands: [Demo.self, Certs.self, ConfigCommand.self, Debug.self]
    )
}

enum SwitchmanVersion {
    static let string = "0.1.0"
}
