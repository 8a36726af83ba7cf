import NIOCore

/// Whether repeating a call can do harm.
public enum Idempotency: Sendable {
    /// Reads, ReplaceRoute, UPSERT, and writes whose caller reconciles a duplicate
    /// (CreateRoute → RouteAlreadyExists → replace).
    case safe
    /// A repeat could apply twice or fail confusingly (Route 53 CREATE/DELETE batches): only
    /// retried when AWS says it did not process the request (throttling).
    case unsafe
}

/// What went wrong on one attempt, as far as retrying is concerned.
public enum FailureKind: Sendable, Equatable {
    /// AWS refused to process the call: always safe to repeat.
    case throttled
    /// 5xx: AWS may or may not have applied it.
    case serverError
    /// Connection refused/reset or the attempt timed out: outcome unknown.
    case transport
    /// 4xx other than throttling: repeating gives the same answer.
    case client
}

public struct RetryPolicy: Sendable {
    public var maxAttempts: Int
    /// Full jitter: sleep = random(0, min(maxBackoff, baseBackoff × 2^(attempt−1))).
    public var baseBackoff: TimeAmount
    public var maxBackoff: TimeAmount
    /// One attempt is given at most this long (also bounded by the caller's deadline).
    public var attemptTimeout: TimeAmount
    /// A retry is started only if at least this much time is left after the backoff sleep;
    /// an attempt that cannot complete before the deadline is not worth sending.
    public var minimumAttemptTime: TimeAmount

    /// EC2's and Route 53's throttling codes, plus the generic ones the SDKs treat alike.
    public static let throttlingCodes: Set<String> = [
        "RequestLimitExceeded", "Throttling", "ThrottlingException", "ThrottledException",
        "TooManyRequestsException", "TooManyRequests", "RequestThrottled", "RequestThrottledException",
        "PriorRequestNotComplete", "SlowDown", "EC2ThrottledException",
    ]
    /// 5xx-like codes AWS sometimes sends with a 4xx/200 wrapper.
    public static let transientCodes: Set<String> = ["InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"]

    public init(
        maxAttempts: Int = 5,
        baseBackoff: TimeAmount = .milliseconds(100),
        maxBackoff: TimeAmount = .seconds(5),
        attemptTimeout: TimeAmount = .seconds(10),
        minimumAttemptTime: TimeAmount = .milliseconds(500)
    ) {
        self.maxAttempts = maxAttempts
        self.baseBackoff = baseBackoff
        self.maxBackoff = maxBackoff
        self.attemptTimeout = attemptTimeout
        self.minimumAttemptTime = minimumAttemptTime
    }

    public static func classify(_ error: AWSError) -> FailureKind {
        if error.httpStatus == 429 || throttlingCodes.contains(error.code) { return .throttled }
        if error.httpStatus >= 500 || transientCodes.contains(error.code) { return .serverError }
        return .client
    }

    public enum Decision: Sendable, Equatable {
        case retry(after: TimeAmount)
        case giveUp(Reason)
    }

    public enum Reason: Sendable, Equatable {
        case notRetryable
        case unsafeToRepeat
        case attemptsExhausted
        case deadlineCannotCover
    }

    /// The whole decision in one pure function, so it can be tested without a network.
    /// `jitter` is a uniform random number in [0, 1).
    public func decide(
        failure: FailureKind, idempotency: Idempotency, attempt: Int,
        now: NIODeadline, deadline: NIODeadline, jitter: Double
    ) -> Decision {
        switch failure {
        case .client: return .giveUp(.notRetryable)
        case .serverError, .transport: if idempotency == .unsafe { return .giveUp(.unsafeToRepeat) }
        case .throttled: break
        }
        if attempt >= maxAttempts { return .giveUp(.attemptsExhausted) }
        let delay = backoff(attempt: attempt, jitter: jitter)
        if now + delay + minimumAttemptTime > deadline { return .giveUp(.deadlineCannotCover) }
        return .retry(after: delay)
    }

    public func backoff(attempt: Int, jitter: Double) -> TimeAmount {
        let exponent = min(max(attempt - 1, 0), 30)
        let ceiling = min(maxBackoff.nanoseconds, baseBackoff.nanoseconds.multipliedReportingOverflow(by: Int64(1) << exponent).partialValue)
        let capped = ceiling < 0 ? maxBackoff.nanoseconds : ceiling
        return .nanoseconds(Int64(Double(capped) * min(max(jitter, 0), 1)))
    }
}

/// The SDKs' standard-mode retry quota: every retry spends from one pool per client, a
/// success puts some back, so when AWS keeps throttling or failing, retries stop instead of
/// multiplying the load on a budget the whole account shares (Terraform, other scripts).
/// Figures as in the AWS SDKs' standard retry mode.
public struct RetryQuota: Sendable, Equatable {
    public static let initialCapacity = 500
    public static let retryCost = 5
    public static let timeoutRetryCost = 10
    public static let successIncrement = 1

    public private(set) var available: Int
    public let capacity: Int

    public init(capacity: Int = RetryQuota.initialCapacity) {
        self.capacity = capacity
        self.available = capacity
    }

    /// Takes the cost of one retry after `failure`; nil (nothing taken) when the pool cannot
    /// pay for it. Throttling costs like any other retry: a throttled account is exactly when
    /// extra attempts hurt.
    public mutating func spend(for failure: FailureKind) -> Int? {
        let cost = failure == .transport ? Self.timeoutRetryCost : Self.retryCost
        guard available >= cost else { return nil }
        available -= cost
        return cost
    }

    /// A call succeeded: what its last retry took goes back, or, for a first-try success, a
    /// small increment.
    public mutating func succeeded(refunding cost: Int?) {
        available = min(capacity, available + (cost ?? Self.successIncrement))
    }
}

/// One `RetryQuota` shared by every call of one client.
public actor RetryBudget {
    public private(set) var quota: RetryQuota
    public init(capacity: Int = RetryQuota.initialCapacity) { quota = RetryQuota(capacity: capacity) }
    public func spend(for failure: FailureKind) -> Int? { quota.spend(for: failure) }
    public func succeeded(refunding cost: Int?) { quota.succeeded(refunding: cost) }
    public var available: Int { quota.available }
}
