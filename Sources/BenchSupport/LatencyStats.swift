/// Latency percentiles over every recorded request (no sampling, no bucketing: a 10 s run at
/// a few ten thousand requests per second is a few MB of samples).
public struct LatencySummary: Sendable, Equatable {
    public var count: Int
    public var p50: Double
    public var p99: Double
    public var p999: Double
    public var max: Double

    /// `nanoseconds` in any order; the summary is in milliseconds.
    public init(nanoseconds: [UInt64]) {
        let sorted = nanoseconds.sorted()
        count = sorted.count
        p50 = Self.ms(percentile(sorted, 50))
        p99 = Self.ms(percentile(sorted, 99))
        p999 = Self.ms(percentile(sorted, 99.9))
        max = Self.ms(sorted.last)
    }

    private static func ms(_ ns: UInt64?) -> Double { ns.map { Double($0) / 1e6 } ?? .nan }
}

/// Nearest-rank percentile of an ascending array: the smallest sample such that at least
/// `p` percent of the samples are less than or equal to it. nil for no samples.
public func percentile<T: Comparable>(_ sorted: [T], _ p: Double) -> T? {
    guard !sorted.isEmpty else { return nil }
    let clamped = Swift.min(Swift.max(p, 0), 100)
    // 99.9 has no exact binary form: 99.9 / 100 * 1000 is a hair above 999, and rounding it up
    // would pick the 1000th sample. The tolerance is far below one rank for any array size.
    let rank = Int((clamped / 100 * Double(sorted.count) - 1e-9).rounded(.up))
    return sorted[Swift.min(Swift.max(rank, 1), sorted.count) - 1]
}
