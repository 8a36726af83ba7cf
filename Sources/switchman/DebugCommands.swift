import ArgumentParser
import Foundation
import Logging
import RaftRuntime

/// Tools for tests and measurements; hidden from `--help`.
struct Debug: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug",
        abstract: "Developer tools (crash-test writer, storage benchmark).",
        shouldDisplay: false,
        subcommands: [CrashWriter.self, RaftCrashWriterCommand.self, StoreBench.self]
    )
}

private func stderrLogger(_ label: String) -> Logger {
    var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = .warning
    return logger
}

extension Debug {
    struct CrashWriter: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "crash-writer",
            abstract: "Append verifiable entries to an LMDB store forever, printing `acked <index>` after each durable batch."
        )

        @Option(name: .long, help: "The store's directory (created if missing).")
        var dir: String

        func run() throws {
            let store = try LMDBLogStore(directory: dir, logger: stderrLogger("switchman.debug.crash-writer"))
            // One unbuffered write(2) per line: stdout is a pipe in the crash test, and an ack
            // sitting in a stdio buffer would be a claim the test never sees.
            try LMDBStoreDebugTools.runCrashWriter(store: store) { last in
                FileHandle.standardOutput.write(Data("acked \(last)\n".utf8))
            }
        }
    }

    struct RaftCrashWriterCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "raft-crash-writer",
            abstract: "Propose verifiable entries to a single-replica RaftNode on LMDB, printing `acked <index> <k>` per committed proposal."
        )

        @Option(name: .long, help: "The store's directory (created if missing).")
        var dir: String

        @Option(name: .long, help: "Proposals in flight at once.")
        var concurrency = 32

        func run() async throws {
            let logger = stderrLogger("switchman.debug.raft-crash-writer")
            let store = try LMDBLogStore(directory: dir, logger: logger)
            try await RaftCrashWriter.run(store: store, concurrency: concurrency, logger: logger) { index, k in
                FileHandle.standardOutput.write(Data("acked \(index) \(k)\n".utf8))
            }
        }
    }

    struct StoreBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "store-bench",
            abstract: "Measure LMDB persist throughput (1- and 64-entry batches of 256 B)."
        )

        @Option(name: .long, help: "A scratch directory for the store (created if missing).")
        var dir: String

        @Option(name: .long, help: "Batches per measurement.")
        var batches = 500

        func run() throws {
            let store = try LMDBLogStore(directory: dir, logger: stderrLogger("switchman.debug.store-bench"))
            for perBatch in [1, 64] {
                let r = try LMDBStoreDebugTools.benchmark(
                    store: store, entriesPerBatch: perBatch, entryBytes: 256, batches: batches)
                print(
                    String(
                        format: "%2d x 256 B per batch: %d batches in %.2f s = %.0f batches/s = %.0f durable commits/s, %.0f entries/s",
                        perBatch, r.batches, r.seconds, r.batchesPerSecond, r.fsyncsPerSecond, r.entriesPerSecond))
            }
            store.close()
        }
    }
}
