import NIOConcurrencyHelpers

/// A replica's view of a tunnel through its sentinel. A tunnel is healthy when the sentinel
/// answers, its latest round passed, and it is still probing: a sentinel whose round count
/// stands still for `stuckPolls` polls is reporting an old result, and is not believed.
public final class SentinelTunnelChecker: TunnelChecker {
    private let prober: any TunnelProber
    private let stuckPolls: Int
    private let rounds = NIOLockedValueBox<[String: (round: Int, unchanged: Int)]>([:])

    public init(prober: any TunnelProber, stuckPolls: Int = 5) {
        self.prober = prober
        self.stuckPolls = max(2, stuckPolls)
    }

    public func check(_ tunnel: TunnelConfig, timeout: Duration) async -> TunnelCheck {
        switch await prober.probe(tunnel: tunnel, timeout: timeout) {
        case .unreachable(let why):
            return TunnelCheck(healthy: false, detail: "sentinel unreachable: \(why)")
        case .reachable(let report):
            let unchanged = rounds.withLockedValue { seen -> Int in
                let previous = seen[tunnel.name]
                let count = previous.map { $0.round == report.round ? $0.unchanged + 1 : 0 } ?? 0
                seen[tunnel.name] = (report.round, count)
                return count
            }
            let rtts = report.targets.compactMap(\.rttMillis)
            let rtt = rtts.max().map { UInt32(clamping: Int($0.rounded(.up))) }
            if unchanged >= stuckPolls {
                return TunnelCheck(healthy: false, rttMillis: rtt, detail: "sentinel stopped probing (round \(report.round))",
                                   instanceId: report.instanceId)
            }
            let failed = report.targets.filter { !$0.ok }.map { "\($0.target): \($0.error ?? "failed")" }
            return TunnelCheck(
                healthy: report.healthy, rttMillis: rtt,
                detail: report.healthy ? "ok" : "probes failed: \(failed.joined(separator: "; "))", instanceId: report.instanceId)
        }
    }
}
