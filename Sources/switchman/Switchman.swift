import ArgumentParser
import Foundation

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
        subcommands: [
            Serve.self, SentinelCommand.self,
            StatusCommand.self, MembersCommand.self, TunnelsCommand.self, RoutesCommand.self, EventsCommand.self,
            DrainCommand.self, UndrainCommand.self, TransferLeaderCommand.self, MemberCommand.self, DashboardCommand.self,
            Demo.self, Certs.self, ConfigCommand.self, PreflightCommand.self, Debug.self,
        ]
    )

    /// Exit codes the operator can script against: 0 ok, 1 error, 2 usage (ArgumentParser
    /// would use 64 for usage errors).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

enum SwitchmanVersion {
    static let string = "0.1.0"
}
