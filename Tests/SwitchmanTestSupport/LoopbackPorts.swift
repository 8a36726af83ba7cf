import Foundation

#if canImport(Glibc)
import Glibc
#endif

public struct NoFreePort: Error, CustomStringConvertible {
    public var description: String { "no free loopback port between \(LoopbackPorts.lowest) and the ephemeral range" }
}

/// Ports for test servers that bind a moment after the port is chosen, or bind it again
/// after a restart. They come from below the kernel's ephemeral range: a port from inside it
/// (what `bind(port: 0)` returns) can meanwhile become the local port of any outgoing
/// connection on the machine, and then the server cannot start. cluster/free_ports.py does
/// the same for the scripts.
public enum LoopbackPorts {
    static let lowest = 10_000
    private static let lock = NSLock()
    /// Handed out by this process already, so two parallel tests never share one.
    /// `nonisolated(unsafe)`: only touched under `lock`.
    nonisolated(unsafe) private static var handedOut = Set<Int>()

    static var ephemeralStart: Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
            let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first,
            let start = Int(first)
        else { return 32_768 }
        return start
    }

    /// A port nothing on 127.0.0.1 is bound to now, never handed out before by this process.
    public static func unused() throws -> Int {
        let top = max(ephemeralStart, lowest + 1_000)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<1_000 {
            let port = Int.random(in: lowest..<top, using: &rng)
            guard isFree(port) else { continue }
            let fresh = lock.withLock { handedOut.insert(port).inserted }
            if fresh { return port }
        }
        throw NoFreePort()
    }

    static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}
