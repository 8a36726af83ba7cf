import ArgumentParser
import Foundation
import Logging

/// `--log-level` and `--log-format` of the long-running commands (serve, sentinel, dashboard):
/// logs to standard error, for every logger in the process.
struct LogOptions: ParsableArguments {
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (default: info; the dashboard: notice).")
    var logLevel: String?

    @Option(
        name: .long,
        help: "Log format: text (one readable line per event) or json (one JSON object per line, with millisecond wall time and monotonic nanoseconds, for log shippers and the chaos checkers).")
    var logFormat: Format = .text

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical (got \"\(logLevel)\")")
        }
    }

    /// Sends every logger's output to standard error at the chosen level; returns `label`'s logger.
    func bootstrap(label: String, default defaultLevel: Logger.Level = .info) -> Logger {
        let level = logLevel.flatMap(Logger.Level.init(rawValue:)) ?? defaultLevel
        let format = logFormat
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
        return Logger(label: label)
    }
}

/// One JSON object per line on standard error: `ts_ms` (wall clock, milliseconds since 1970,
/// with fractions), `mono_ns` (CLOCK_MONOTONIC, shared by every process on the host, so lines
/// from different processes can be ordered even across a wall-clock step), level, label,
/// msg and meta (every metadata value as a string). chaos/HISTORY.md relies on this shape.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var meta = metadata
        if let provided = metadataProvider?.get() { meta.merge(provided) { _, new in new } }
        if let extra = event.metadata { meta.merge(extra) { _, new in new } }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let mono = UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
        let wall = Date().timeIntervalSince1970 * 1000
        var fields: [String: String] = [:]
        for (k, v) in meta { fields[k] = "\(v)" }
        var line = "{\"ts_ms\":\(String(format: "%.3f", wall)),\"mono_ns\":\(mono),\"level\":\(Self.quote(event.level.rawValue)),"
        line += "\"label\":\(Self.quote(label)),\"msg\":\(Self.quote("\(event.message)")),\"meta\":{"
        line += fields.keys.sorted().map { "\(Self.quote($0)):\(Self.quote(fields[$0] ?? ""))" }.joined(separator: ",")
        line += "}}\n"
        // One write(2) per line: lines from concurrent tasks never interleave, and a process
        // killed mid-run leaves at most its last line cut short.
        line.withCString { p in
            var rest = strlen(p)
            var q = p
            while rest > 0 {
                let n = write(STDERR_FILENO, q, rest)
                if n <= 0 { if errno == EINTR { continue } else { return } }
                rest -= n
                q += n
            }
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
