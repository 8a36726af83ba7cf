import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What one probe of one target found.
public struct ProbeOutcome: Sendable, Equatable {
    public var target: ProbeTarget
    public var ok: Bool
    /// Round-trip time of the answer (ICMP echo reply, TCP handshake, HTTP response head).
    public var rtt: Duration?
    /// Why the target did not answer; `nil` when `ok`.
    public var error: String?

    public init(target: ProbeTarget, ok: Bool, rtt: Duration?, error: String?) {
        self.target = target
        self.ok = ok
        self.rtt = rtt
        self.error = error
    }

    public static func success(_ target: ProbeTarget, rtt: Duration) -> ProbeOutcome {
        ProbeOutcome(target: target, ok: true, rtt: rtt, error: nil)
    }

    public static func failure(_ target: ProbeTarget, _ error: String) -> ProbeOutcome {
        ProbeOutcome(target: target, ok: false, rtt: nil, error: error)
    }
}

/// Probes one target. The sentinel takes this as a parameter so its round logic can be tested
/// with scripted answers.
public protocol TargetProber: Sendable {
    /// Never throws and never takes much longer than `timeout`: every failure is an outcome.
    func probe(_ target: ProbeTarget, timeout: Duration) async -> ProbeOutcome
}

/// Which ICMP socket the ICMP probe may open.
public enum ICMPSocketMode: Sendable {
    /// The unprivileged ping socket (`SOCK_DGRAM`/`IPPROTO_ICMP`), allowed to users whose
    /// group is in `net.ipv4.ping_group_range`; when that refuses us, a raw ICMP socket, which
    /// works with CAP_NET_RAW (root). Debian ships the range disabled ("1 0"), so a root
    /// sentinel on a stock instance still probes.
    case automatic
    /// The ping socket only (an error naming the sysctl when it is refused).
    case pingSocketOnly
}

/// The real probes: ICMP echo, TCP connect, HTTP GET.
///
/// ICMP uses blocking syscalls bounded by `poll()` with the probe's timeout, run on a
/// `NIOThreadPool` so neither an event loop nor the cooperative pool ever waits on them.
/// Give the pool at least as many threads as ICMP targets probed at once, or probes queue
/// behind each other and time out.
public final class LiveTargetProber: TargetProber {
    private let group: any EventLoopGroup
    private let threadPool: NIOThreadPool
    private let http: HTTPClient
    private let icmpMode: ICMPSocketMode

    public init(eventLoopGroup: any EventLoopGroup, threadPool: NIOThreadPool, icmpMode: ICMPSocketMode = .automatic) {
        self.group = eventLoopGroup
        self.threadPool = threadPool
        self.icmpMode = icmpMode
        var configuration = HTTPClient.Configuration()
        // A redirect is an answer from the far side; following it could leave the tunnel.
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        self.http = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: configuration)
    }

    public func shutdown() async {
        try? await http.shutdown()
    }

    public func probe(_ target: ProbeTarget, timeout: Duration) async -> ProbeOutcome {
        switch target {
        case .icmp(let host): return await icmp(target, host: host, timeout: timeout)
        case .tcp(let hostPort): return await tcp(target, hostPort: hostPort, timeout: timeout)
        case .http(let url): return await httpGet(target, url: url, timeout: timeout)
        }
    }

    // MARK: ICMP

    private func icmp(_ target: ProbeTarget, host: String, timeout: Duration) async -> ProbeOutcome {
        let mode = icmpMode
        do {
            let result = try await threadPool.runIfActive { ICMPEcho.ping(host: host, timeout: timeout, mode: mode) }
            switch result {
            case .success(let rtt): return .success(target, rtt: rtt)
            case .failure(let error): return .failure(target, error.description)
            }
        } catch {
            return .failure(target, "the probe thread pool is not running (\(error))")
        }
    }

    // MARK: TCP

    private func tcp(_ target: ProbeTarget, hostPort: HostPort, timeout: Duration) async -> ProbeOutcome {
        let start = ContinuousClock.now
        do {
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(.nanoseconds(max(1, Int64(timeout.nanoseconds))))
                .connect(host: hostPort.host, port: Int(hostPort.port))
                .get()
            let rtt = ContinuousClock.now - start
            try? await channel.close()
            return .success(target, rtt: rtt)
        } catch {
            return .failure(target, Self.describeConnectError(error, timeout: timeout))
        }
    }

    static func describeConnectError(_ error: any Error, timeout: Duration) -> String {
        if let error = error as? ChannelError, case .connectTimeout = error {
            return "no TCP connection within \(DurationParser.format(timeout))"
        }
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first {
                return "connect to \(first.target): \(describeIOError(first.error))"
            }
            if error.dnsAError != nil || error.dnsAAAAError != nil {
                return "cannot resolve \(error.host)"
            }
            return "no address for \(error.host)"
        }
        return describeIOError(error)
    }

    static func describeIOError(_ error: any Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        return "\(error)"
    }

    // MARK: HTTP

    private func httpGet(_ target: ProbeTarget, url: String, timeout: Duration) async -> ProbeOutcome {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        request.headers.add(name: "User-Agent", value: "switchman-sentinel/\(SentinelReport.version)")
        let start = ContinuousClock.now
        do {
            let response = try await http.execute(request, timeout: .nanoseconds(max(1, Int64(timeout.nanoseconds))))
            let rtt = ContinuousClock.now - start
            // Read (and drop) the body so the connection can be reused; a huge body is cut off
            // rather than read to the end, it answered either way.
            var seen = 0
            for try await part in response.body {
                seen += part.readableBytes
                if seen > 64 * 1024 { break }
            }
            guard (200..<400).contains(Int(response.status.code)) else {
                return .failure(target, "HTTP \(response.status.code) \(response.status.reasonPhrase)")
            }
            return .success(target, rtt: rtt)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return .failure(target, "no HTTP answer within \(DurationParser.format(timeout))")
        } catch {
            return .failure(target, Self.describeConnectError(error, timeout: timeout))
        }
    }
}

/// Why an ICMP echo failed.
public enum ICMPError: Error, Equatable, CustomStringConvertible {
    case cannotResolve(String)
    case pingSocketRefused(errno: Int32)
    case socket(errno: Int32)
    case send(errno: Int32)
    case receive(errno: Int32)
    case timeout(Duration)

    public var description: String {
        switch self {
        case .cannotResolve(let host): return "cannot resolve \(host) to an IPv4 address"
        case .pingSocketRefused(let code):
            return "the kernel refused an unprivileged ICMP (ping) socket (\(String(cString: strerror(code)))): "
                + "add this process's group to net.ipv4.ping_group_range "
                + "(e.g. sysctl -w net.ipv4.ping_group_range=\"0 2147483647\") or run with CAP_NET_RAW"
        case .socket(let code): return "cannot open an ICMP socket: \(String(cString: strerror(code)))"
        case .send(let code): return "sending the echo request failed: \(String(cString: strerror(code)))"
        case .receive(let code): return "receiving the echo reply failed: \(String(cString: strerror(code)))"
        case .timeout(let timeout): return "no echo reply within \(DurationParser.format(timeout))"
        }
    }
}

/// One ICMP echo request and its reply, with blocking syscalls bounded by `poll()`.
enum ICMPEcho {
    /// Distinguishes concurrent probes on raw sockets (ping sockets get an id from the kernel).
    private static let sequence = ManagedAtomicCounter()

    static func ping(host: String, timeout: Duration, mode: ICMPSocketMode) -> Result<Duration, ICMPError> {
        let deadline = ContinuousClock.now + timeout
        guard let address = resolve(host) else { return .failure(.cannotResolve(host)) }

        var raw = false
        var fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_ICMP))
        if fd < 0 {
            let code = errno
            guard code == EACCES || code == EPERM else { return .failure(.socket(errno: code)) }
            guard mode == .automatic else { return .failure(.pingSocketRefused(errno: code)) }
            fd = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_ICMP))
            // Neither socket kind is allowed: the sysctl is the fix an operator most likely wants.
            guard fd >= 0 else { return .failure(.pingSocketRefused(errno: code)) }
            raw = true
        }
        defer { close(fd) }

        let identifier = UInt16(truncatingIfNeeded: getpid()) ^ UInt16.random(in: 0...UInt16.max)
        let seq = sequence.next()
        var packet: [UInt8] = [8, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xff), UInt8(seq >> 8), UInt8(seq & 0xff)]
        packet += Array("switchman sentinel".utf8)
        let sum = checksum(packet)
        packet[2] = UInt8(sum >> 8)
        packet[3] = UInt8(sum & 0xff)

        var destination = sockaddr_in()
        destination.sin_family = sa_family_t(AF_INET)
        destination.sin_addr = address
        let start = ContinuousClock.now
        let sent = packet.withUnsafeBytes { bytes in
            withUnsafePointer(to: &destination) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard sent >= 0 else { return .failure(.send(errno: errno)) }

        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { return .failure(.timeout(timeout)) }
            var pollfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pollfd, 1, Int32(clamping: max(1, remaining.milliseconds)))
            if ready < 0 {
                if errno == EINTR { continue }
                return .failure(.receive(errno: errno))
            }
            if ready == 0 { continue }
            var from = sockaddr_in()
            var fromLength = socklen_t(MemoryLayout<sockaddr_in>.size)
            let n = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &from) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, bytes.baseAddress, bytes.count, 0, $0, &fromLength)
                    }
                }
            }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return .failure(.receive(errno: errno))
            }
            guard from.sin_addr.s_addr == address.s_addr else { continue }
            var offset = 0
            if raw {
                // Raw IPv4 sockets hand over the IP header too.
                guard n >= 20 else { continue }
                offset = Int(buffer[0] & 0x0f) * 4
            }
            guard n >= offset + 8 else { continue }
            let type = buffer[offset]
            let replySeq = UInt16(buffer[offset + 6]) << 8 | UInt16(buffer[offset + 7])
            let replyID = UInt16(buffer[offset + 4]) << 8 | UInt16(buffer[offset + 5])
            // A raw socket sees every ICMP packet (our own request on loopback, others'
            // replies); a ping socket only ours, with the kernel's identifier.
            guard type == 0, replySeq == seq, !raw || replyID == identifier else { continue }
            return .success(ContinuousClock.now - start)
        }
    }

    static func resolve(_ host: String) -> in_addr? {
        var address = in_addr()
        if inet_pton(AF_INET, host, &address) == 1 { return address }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        guard let sa = first.pointee.ai_addr, first.pointee.ai_family == AF_INET else { return nil }
        return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
    }

    /// RFC 1071 Internet checksum (a ping socket recomputes it; a raw socket needs it).
    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count {
            sum &+= UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
            i += 2
        }
        if i < bytes.count { sum &+= UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}

/// A wrapping 16-bit counter shared by probe threads.
final class ManagedAtomicCounter: Sendable {
    private let value = NIOLockedValueBox<UInt16>(0)

    func next() -> UInt16 {
        value.withLockedValue {
            $0 &+= 1
            return $0
        }
    }
}
