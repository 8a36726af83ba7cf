import ArgumentParser
import Logging

/// `--log-level` of the long-running commands (serve, sentinel, dashboard): structured logs
/// to standard error, for every logger in the process.
struct LogOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (default: info; the dashboard: notice).")
    var logLevel: String?

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical (got \"\(logLevel)\")")
        }
    }

    /// Sends every logger's output to standard error at the chosen level; returns `label`'s logger.
    func bootstrap(label: String, default defaultLevel: Logger.Level = .info) -> Logger {
        let level = logLevel.flatMap(Logger.Level.init(rawValue:)) ?? defaultLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}
