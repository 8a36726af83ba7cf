import NIOCore

/// A token bucket that reserves: a caller takes a token now even if that drives the level
/// below zero, and waits until the refill covers its debt. Callers are thus served in order,
/// and a caller learns at once whether its deadline allows it to be served at all.
public struct TokenBucket: Sendable {
    public let capacity: Double
    public let refillPerSecond: Double
    public private(set) var level: Double
    private var updated: NIODeadline

    public init(capacity: Double, refillPerSecond: Double, now: NIODeadline) {
        self.capacity = max(1, capacity)
        self.refillPerSecond = max(0.001, refillPerSecond)
        self.level = self.capacity
        self.updated = now
    }

    public enum Grant: Sendable, Equatable {
        case now
        case after(TimeAmount)
        /// Not granted: the token would only arrive after the deadline. Nothing was taken.
        case wouldMissDeadline
    }

    public mutating func reserve(now: NIODeadline, deadline: NIODeadline) -> Grant {
        refill(now)
        if level >= 1 {
            level -= 1
            return .now
        }
        let wait = TimeAmount.nanoseconds(Int64(((1 - level) / refillPerSecond) * 1e9))
        if now + wait > deadline { return .wouldMissDeadline }
        level -= 1
        return .after(wait)
    }

    private mutating func refill(_ now: NIODeadline) {
        guard now > updated else { return }
        let elapsed = Double((now - updated).nanoseconds) / 1e9
        level = min(capacity, level + elapsed * refillPerSecond)
        updated = now
    }
}

public struct BucketSpec: Sendable, Equatable {
    public var capacity: Double
    public var refillPerSecond: Double
    public init(capacity: Double, refillPerSecond: Double) {
        self.capacity = capacity
        self.refillPerSecond = refillPerSecond
    }
}

/// Client-side rate budgets. Defaults follow AWS's published limits:
/// - EC2 (docs "Request throttling for the Amazon EC2 API"): non-mutating actions bucket 100,
///   refill 20/s; mutating actions bucket 50, refill 5/s; one bucket per API action.
/// - Route 53 (docs "Quotas on API requests"): 5 requests per second per account, shared by
///   all Route 53 actions, so they all draw from one bucket.
public struct RateLimits: Sendable {
    public var ec2NonMutating = BucketSpec(capacity: 100, refillPerSecond: 20)
    public var ec2Mutating = BucketSpec(capacity: 50, refillPerSecond: 5)
    public var route53 = BucketSpec(capacity: 5, refillPerSecond: 5)
    /// Per-action overrides (key: action name, e.g. "ReplaceRoute").
    public var overrides: [String: BucketSpec] = [:]

    public init() {}

    /// No client-side budget at all (tests of server-side throttling).
    public static var unlimited: RateLimits {
        var l = RateLimits()
        l.ec2NonMutating = BucketSpec(capacity: 1e9, refillPerSecond: 1e9)
        l.ec2Mutating = l.ec2NonMutating
        l.route53 = l.ec2NonMutating
        return l
    }

    /// Buckets are keyed so that Route 53 actions share one, EC2 actions have one each.
    func bucket(service: String, action: String) -> (key: String, spec: BucketSpec) {
        if let o = overrides[action] { return ("\(service)/\(action)", o) }
        if service == "route53" { return ("route53", route53) }
        let nonMutating = action.hasPrefix("Describe") || action.hasPrefix("Get") || action.hasPrefix("List")
        return ("\(service)/\(action)", nonMutating ? ec2NonMutating : ec2Mutating)
    }
}

/// The buckets of one process, shared by all clients that are handed the same limiter.
public actor RateLimiter {
    public let limits: RateLimits
    private var buckets: [String: TokenBucket] = [:]

    public init(limits: RateLimits = RateLimits()) {
        self.limits = limits
    }

    /// Waits for a token. Throws `rateLimited` at once if the token cannot come before `deadline`.
    /// Returns how long the caller waited.
    @discardableResult
    public func acquire(service: String, action: String, deadline: NIODeadline) async throws -> TimeAmount {
        let (key, spec) = limits.bucket(service: service, action: action)
        let now = NIODeadline.now()
        var bucket = buckets[key] ?? TokenBucket(capacity: spec.capacity, refillPerSecond: spec.refillPerSecond, now: now)
        let grant = bucket.reserve(now: now, deadline: deadline)
        buckets[key] = bucket
        switch grant {
        case .now: return .zero
        case .wouldMissDeadline: throw AWSClientError.rateLimited(action: action)
        case .after(let wait):
            try await Task.sleep(nanoseconds: UInt64(max(0, wait.nanoseconds)))
            return wait
        }
    }
}
