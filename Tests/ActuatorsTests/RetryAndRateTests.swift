import NIOCore
import Testing

@testable import Actuators

struct RetryPolicyTests {
    let policy = RetryPolicy(maxAttempts: 4, baseBackoff: .milliseconds(100), maxBackoff: .seconds(1),
                             attemptTimeout: .seconds(5), minimumAttemptTime: .milliseconds(200))
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    @Test func throttlingIsRetriedEvenForUnsafeCalls() {
        let d = policy.decide(failure: .throttled, idempotency: .unsafe, attempt: 1, now: t0, deadline: t0 + .seconds(10), jitter: 0.5)
        #expect(d == .retry(after: .milliseconds(50)))
    }

    @Test func ambiguousFailuresOnlyForSafeCalls() {
        for failure in [FailureKind.serverError, .transport] {
            #expect(policy.decide(failure: failure, idempotency: .safe, attempt: 1, now: t0, deadline: t0 + .seconds(10), jitter: 1)
                == .retry(after: .milliseconds(100)))
            #expect(policy.decide(failure: failure, idempotency: .unsafe, attempt: 1, now: t0, deadline: t0 + .seconds(10), jitter: 1)
                == .giveUp(.unsafeToRepeat))
        }
    }

    @Test func clientErrorsAreNotRetried() {
        #expect(policy.decide(failure: .client, idempotency: .safe, attempt: 1, now: t0, deadline: t0 + .seconds(10), jitter: 0)
            == .giveUp(.notRetryable))
    }

    @Test func attemptsAreBounded() {
        #expect(policy.decide(failure: .throttled, idempotency: .safe, attempt: 4, now: t0, deadline: t0 + .seconds(100), jitter: 0)
            == .giveUp(.attemptsExhausted))
    }

    @Test func neverRetryWhatTheDeadlineCannotCover() {
        // 100 ms backoff ceiling × jitter 1 + 200 ms minimum attempt > 250 ms left.
        #expect(policy.decide(failure: .throttled, idempotency: .safe, attempt: 1, now: t0, deadline: t0 + .milliseconds(250), jitter: 1)
            == .giveUp(.deadlineCannotCover))
        #expect(policy.decide(failure: .throttled, idempotency: .safe, attempt: 1, now: t0, deadline: t0 + .milliseconds(350), jitter: 1)
            == .retry(after: .milliseconds(100)))
    }

    @Test func exponentialBackoffWithFullJitterIsCapped() {
        #expect(policy.backoff(attempt: 1, jitter: 1) == .milliseconds(100))
        #expect(policy.backoff(attempt: 2, jitter: 1) == .milliseconds(200))
        #expect(policy.backoff(attempt: 3, jitter: 1) == .milliseconds(400))
        #expect(policy.backoff(attempt: 5, jitter: 1) == .seconds(1))
        #expect(policy.backoff(attempt: 60, jitter: 1) == .seconds(1))
        #expect(policy.backoff(attempt: 3, jitter: 0) == .zero)
        #expect(policy.backoff(attempt: 3, jitter: 0.5) == .milliseconds(200))
    }
}

struct TokenBucketTests {
    let t0 = NIODeadline.uptimeNanoseconds(5_000_000_000)

    @Test func burstThenRefill() {
        var bucket = TokenBucket(capacity: 3, refillPerSecond: 2, now: t0)
        let far = t0 + .seconds(60)
        #expect(bucket.reserve(now: t0, deadline: far) == .now)
        #expect(bucket.reserve(now: t0, deadline: far) == .now)
        #expect(bucket.reserve(now: t0, deadline: far) == .now)
        // Empty: the next token arrives in 1/2 s, the one after in 1 s (reservations queue up).
        #expect(bucket.reserve(now: t0, deadline: far) == .after(.milliseconds(500)))
        #expect(bucket.reserve(now: t0, deadline: far) == .after(.seconds(1)))
        // After 2 s the debt (−2) is paid and 2 tokens... level is back to 2.
        #expect(bucket.reserve(now: t0 + .seconds(2), deadline: far) == .now)
        #expect(bucket.reserve(now: t0 + .seconds(2), deadline: far) == .now)
        #expect(bucket.reserve(now: t0 + .seconds(2), deadline: far) == .after(.milliseconds(500)))
    }

    @Test func refillNeverExceedsCapacity() {
        var bucket = TokenBucket(capacity: 2, refillPerSecond: 10, now: t0)
        let later = t0 + .seconds(3600)
        #expect(bucket.reserve(now: later, deadline: later + .seconds(1)) == .now)
        #expect(bucket.reserve(now: later, deadline: later + .seconds(1)) == .now)
        #expect(bucket.reserve(now: later, deadline: later + .seconds(1)) == .after(.milliseconds(100)))
    }

    @Test func refusesWhenTheDeadlineComesFirstAndTakesNothing() {
        var bucket = TokenBucket(capacity: 1, refillPerSecond: 1, now: t0)
        #expect(bucket.reserve(now: t0, deadline: t0 + .seconds(5)) == .now)
        #expect(bucket.reserve(now: t0, deadline: t0 + .milliseconds(500)) == .wouldMissDeadline)
        #expect(bucket.reserve(now: t0, deadline: t0 + .seconds(5)) == .after(.seconds(1)))
    }

    @Test func defaultsFollowPublishedLimits() {
        let limits = RateLimits()
        #expect(limits.bucket(service: "ec2", action: "DescribeRouteTables").spec == BucketSpec(capacity: 100, refillPerSecond: 20))
        #expect(limits.bucket(service: "ec2", action: "ReplaceRoute").spec == BucketSpec(capacity: 50, refillPerSecond: 5))
        #expect(limits.bucket(service: "ec2", action: "ReplaceRoute").key != limits.bucket(service: "ec2", action: "CreateRoute").key)
        // Route 53's limit is per account: one shared bucket.
        #expect(limits.bucket(service: "route53", action: "GetChange").key == limits.bucket(service: "route53", action: "ChangeResourceRecordSets").key)
        #expect(limits.bucket(service: "route53", action: "GetChange").spec == BucketSpec(capacity: 5, refillPerSecond: 5))
    }

    @Test func limiterThrowsInsteadOfWaitingPastTheDeadline() async throws {
        var limits = RateLimits()
        limits.overrides["ReplaceRoute"] = BucketSpec(capacity: 1, refillPerSecond: 0.01)
        let limiter = RateLimiter(limits: limits)
        try await limiter.acquire(service: "ec2", action: "ReplaceRoute", deadline: .now() + .seconds(5))
        await #expect(throws: AWSClientError.self) {
            try await limiter.acquire(service: "ec2", action: "ReplaceRoute", deadline: .now() + .seconds(5))
        }
        // Other actions have their own buckets.
        try await limiter.acquire(service: "ec2", action: "CreateRoute", deadline: .now() + .seconds(5))
    }
}
