import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import Controller

#if canImport(Glibc)
import Glibc
#endif

/// The real probes against loopback. Timeouts here are generous upper bounds for a loaded
/// machine; nothing asserts how fast an answer came.
@Suite("Sentinel probes")
struct ProbeTests {
    static func withProber(_ mode: ICMPSocketMode = .automatic, _ body: (LiveTargetProber) async throws -> Void) async throws {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let prober = LiveTargetProber(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, threadPool: pool, icmpMode: mode)
        do {
            try await body(prober)
        } catch {
            await prober.shutdown()
            try await pool.shutdownGracefully()
            throw error
        }
        await prober.shutdown()
        try await pool.shutdownGracefully()
    }

    @Test func tcpConnectsToAListenerAndFailsOnAClosedPort() async throws {
        let listener = try await tcpListener()
        let open = try #require(listener.localAddress?.port)
        let closed = try await closedPort()
        try await Self.withProber { prober in
            let up = await prober.probe(.tcp(HostPort(host: "127.0.0.1", port: UInt16(open))), timeout: .seconds(10))
            #expect(up.ok, "\(up)")
            #expect(up.rtt != nil && up.error == nil)
            let down = await prober.probe(.tcp(HostPort(host: "127.0.0.1", port: UInt16(closed))), timeout: .seconds(10))
            #expect(!down.ok)
            #expect(down.rtt == nil)
            #expect(down.error?.lowercased().contains("refused") == true, "\(down)")
        }
        try await listener.close()
    }

    @Test func httpCountsTwoAndThreeHundredsAsAnswers() async throws {
        let ok = try await httpServer(status: .ok)
        let redirect = try await httpServer(status: .found)
        let broken = try await httpServer(status: .internalServerError)
        let closed = try await closedPort()
        func url(_ channel: any Channel) -> String { "http://127.0.0.1:\(channel.localAddress?.port ?? 0)/health" }
        try await Self.withProber { prober in
            let up = await prober.probe(.http(url: url(ok)), timeout: .seconds(10))
            #expect(up.ok && up.rtt != nil, "\(up)")
            let moved = await prober.probe(.http(url: url(redirect)), timeout: .seconds(10))
            #expect(moved.ok, "\(moved)")
            let failing = await prober.probe(.http(url: url(broken)), timeout: .seconds(10))
            #expect(!failing.ok)
            #expect(failing.error == "HTTP 500 Internal Server Error")
            let nobody = await prober.probe(.http(url: "http://127.0.0.1:\(closed)/"), timeout: .seconds(10))
            #expect(!nobody.ok && nobody.error != nil, "\(nobody)")
        }
        for channel in [ok, redirect, broken] { try await channel.close() }
    }

    /// Tests run as root: the automatic mode falls back to a raw socket when the ping
    /// group range excludes us (Debian's default).
    @Test func icmpEchoToLoopback() async throws {
        try await Self.withProber { prober in
            let outcome = await prober.probe(.icmp(host: "127.0.0.1"), timeout: .seconds(10))
            #expect(outcome.ok, "\(outcome)")
            #expect(outcome.rtt != nil)
            let named = await prober.probe(.icmp(host: "localhost"), timeout: .seconds(10))
            #expect(named.ok, "\(named)")
        }
    }

    /// The unprivileged ping socket alone: it works when our group is in the sysctl's range,
    /// and otherwise the error names the sysctl an operator has to change.
    @Test func pingSocketOnlyWorksOrNamesTheSysctl() async throws {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ping_group_range", encoding: .utf8)) ?? "1 0"
        let bounds = range.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int64($0) }
        let gid = Int64(getegid())
        let allowed = bounds.count == 2 && bounds[0] <= gid && gid <= bounds[1]
        try await Self.withProber(.pingSocketOnly) { prober in
            let outcome = await prober.probe(.icmp(host: "127.0.0.1"), timeout: .seconds(10))
            if allowed {
                #expect(outcome.ok, "\(outcome)")
            } else {
                #expect(!outcome.ok)
                #expect(outcome.error?.contains("net.ipv4.ping_group_range") == true, "\(outcome)")
            }
        }
    }

    /// 198.18.0.0/15 is the benchmarking range: nothing answers there (the test harness
    /// blackholes it). Whether the send fails or no reply comes, the probe reports an error.
    @Test func icmpToASilentHostFailsWithinItsTimeout() async throws {
        try await Self.withProber { prober in
            let outcome = await prober.probe(.icmp(host: "198.18.0.77"), timeout: .milliseconds(300))
            #expect(!outcome.ok)
            #expect(outcome.error != nil)
            let unresolvable = await prober.probe(.icmp(host: "no-such-host.invalid"), timeout: .seconds(5))
            #expect(!unresolvable.ok)
            #expect(unresolvable.error?.contains("cannot resolve") == true, "\(unresolvable)")
        }
    }

    @Test func icmpChecksumMatchesRFC1071() {
        // The example from RFC 1071 section 3: the sum is ddf2, the checksum its complement.
        #expect(ICMPEcho.checksum([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]) == ~UInt16(0xddf2))
        #expect(ICMPEcho.checksum([0xff]) == ~UInt16(0xff00))
    }
}
