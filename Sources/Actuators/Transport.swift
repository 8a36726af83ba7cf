import AsyncHTTPClient
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import Synchronization

/// Settings shared by the EC2 and Route 53 clients.
public struct AWSClientConfiguration: Sendable {
    public var region: String
    /// Replaces the service's public endpoint (moto, a VPC interface endpoint, a proxy),
    /// e.g. `http://127.0.0.1:5000`. Signing still uses the real region and service name.
    public var endpointOverride: String?
    public var identity: CallerIdentity
    public var retry: RetryPolicy
    /// Used when the caller passes no deadline of its own.
    public var defaultCallTimeout: TimeAmount
    /// FIPS 140 endpoints (where the service has them in the Region).
    public var fips: Bool

    public init(
        region: String,
        endpointOverride: String? = nil,
        identity: CallerIdentity,
        retry: RetryPolicy = RetryPolicy(),
        defaultCallTimeout: TimeAmount = .seconds(30),
        fips: Bool = false
    ) {
        self.fips = fips
        self.region = region
        self.endpointOverride = endpointOverride
        self.identity = identity
        self.retry = retry
        self.defaultCallTimeout = defaultCallTimeout
    }
}

/// One logical API call before signing.
struct AWSOperation: Sendable {
    var action: String
    var method: HTTPMethod
    var path: String
    var query: [(name: String, value: String)] = []
    var headers: [(name: String, value: String)] = []
    var body: [UInt8] = []
    var idempotency: Idempotency
    /// Present on writes: goes into the User-Agent.
    var fencing: FencingToken?
}

struct AWSResponse: Sendable {
    var status: Int
    var requestID: String?
    var body: [UInt8]
    /// The response's `Date` header: AWS's clock, for measuring our skew.
    var date: String? = nil
}

/// Signs, rate-limits, sends and retries. One per service per process.
final class AWSTransport: Sendable {
    let service: String
    let signingRegion: String
    let endpoint: String
    let host: String
    let configuration: AWSClientConfiguration
    let credentials: any CredentialsSource
    let http: HTTPClient
    let limiter: RateLimiter
    let signer: SigV4Signer
    let logger: Logger
    let jitter: @Sendable () -> Double
    /// Shared by every call of this client (the SDKs' standard retry mode).
    let retryBudget = RetryBudget()
    /// Seconds to add to our clock when signing: AWS refuses a signature more than 5 minutes
    /// off its own clock, so a skew measured from its `Date` header is corrected here.
    let clockOffset = Mutex<Double>(0)
    /// Where our clock is read; a test sets it to a skewed one.
    let clock: @Sendable () -> Date

    init(
        service: String, signingRegion: String, defaultEndpoint: String,
        configuration: AWSClientConfiguration, credentials: any CredentialsSource,
        httpClient: HTTPClient, limiter: RateLimiter, logger: Logger,
        jitter: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
        clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.clock = clock
        self.service = service
        self.signingRegion = signingRegion
        var endpoint = configuration.endpointOverride ?? defaultEndpoint
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        self.endpoint = endpoint
        self.host = Self.hostHeader(of: endpoint)
        self.configuration = configuration
        self.credentials = credentials
        self.http = httpClient
        self.limiter = limiter
        self.signer = SigV4Signer(region: signingRegion, service: service)
        self.logger = logger
        self.jitter = jitter
    }

    /// `host[:port]` exactly as the HTTP client will send it, because it is signed.
    static func hostHeader(of endpoint: String) -> String {
        var rest = Substring(endpoint)
        if let r = rest.range(of: "://") { rest = rest[r.upperBound...] }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        if rest.hasSuffix(":443") && endpoint.hasPrefix("https") { rest = rest.dropLast(4) }
        if rest.hasSuffix(":80") && endpoint.hasPrefix("http:") { rest = rest.dropLast(3) }
        return String(rest)
    }

    func send(_ op: AWSOperation, deadline callerDeadline: NIODeadline?) async throws -> AWSResponse {
        let deadline = callerDeadline ?? (.now() + configuration.defaultCallTimeout)
        let dims = [("service", service), ("action", op.action)]
        var attempt = 0
        var lastError: String?
        // What the last retry took from the quota, refunded when the call succeeds.
        var retryCost: Int? = nil
        var skewCorrected = false
        while true {
            attempt += 1
            if NIODeadline.now() >= deadline {
                throw AWSClientError.deadlineExceeded(action: op.action, attempts: attempt - 1, lastError: lastError)
            }
            let waited = try await limiter.acquire(service: service, action: op.action, deadline: deadline)
            if waited > .zero {
                Timer(label: "switchman_aws_rate_wait_seconds", dimensions: dims).recordNanoseconds(waited.nanoseconds)
            }
            let started = NIODeadline.now()
            Counter(label: "switchman_aws_requests_total", dimensions: dims).increment()
            // What to throw if we stop here, and how retrying should see this failure.
            let failure: FailureKind
            let finalError: any Error
            do {
                let response = try await attemptOnce(op, deadline: min(deadline, started + configuration.retry.attemptTimeout))
                Timer(label: "switchman_aws_request_duration_seconds", dimensions: dims)
                    .recordNanoseconds((NIODeadline.now() - started).nanoseconds)
                if (200..<300).contains(response.status) {
                    await retryBudget.succeeded(refunding: retryCost)
                    return response
                }
                var error = AWSError.parse(service: service, action: op.action, status: response.status,
                                           body: response.body, headerRequestID: response.requestID)
                error.attempt = attempt
                // A refused signature because our clock is off: correct by what AWS's clock
                // says and try again at once, once per call; it is not a failure of AWS.
                if !skewCorrected, Self.clockSkewCodes.contains(error.code), let skew = measureSkew(response.date) {
                    skewCorrected = true
                    logger.warning("AWS refused the request's time; correcting the signing clock", metadata: [
                        "service": "\(service)", "action": "\(op.action)", "code": "\(error.code)",
                        "requestID": "\(error.requestID ?? "none")", "skewSeconds": "\(Int(skew.rounded()))",
                    ])
                    continue
                }
                Counter(label: "switchman_aws_errors_total", dimensions: dims + [("code", error.code)]).increment()
                logger.warning("AWS error", metadata: [
                    "service": "\(service)", "action": "\(op.action)", "code": "\(error.code)",
                    "httpStatus": "\(error.httpStatus)", "requestID": "\(error.requestID ?? "none")",
                    "attempt": "\(attempt)", "message": "\(error.message)",
                ])
                failure = RetryPolicy.classify(error)
                finalError = error
                lastError = error.description
            } catch is NotSent {
                throw AWSClientError.deadlineExceeded(
                    action: op.action, attempts: attempt - 1, lastError: lastError ?? "the deadline passed before the request was sent")
            } catch let error as CredentialsError {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                Counter(label: "switchman_aws_errors_total", dimensions: dims + [("code", "transport")]).increment()
                logger.warning("AWS call failed without a response", metadata: [
                    "service": "\(service)", "action": "\(op.action)", "attempt": "\(attempt)", "error": "\(error)",
                ])
                lastError = "\(error)"
                if NIODeadline.now() >= deadline {
                    throw AWSClientError.deadlineExceeded(action: op.action, attempts: attempt, lastError: lastError)
                }
                failure = .transport
                finalError = AWSClientError.transport(action: op.action, "\(error)")
            }
            let decision = configuration.retry.decide(
                failure: failure, idempotency: op.idempotency, attempt: attempt,
                now: .now(), deadline: deadline, jitter: jitter())
            switch decision {
            case .giveUp(.deadlineCannotCover):
                logger.warning("not retrying: the deadline cannot cover another attempt",
                               metadata: ["service": "\(service)", "action": "\(op.action)", "attempt": "\(attempt)"])
                throw AWSClientError.deadlineExceeded(action: op.action, attempts: attempt, lastError: lastError)
            case .giveUp:
                throw finalError
            case .retry(let delay):
                guard let cost = await retryBudget.spend(for: failure) else {
                    Counter(label: "switchman_aws_retry_quota_exhausted_total", dimensions: dims).increment()
                    logger.warning("not retrying: the retry quota is spent (AWS keeps failing or throttling)", metadata: [
                        "service": "\(service)", "action": "\(op.action)", "attempt": "\(attempt)",
                    ])
                    throw finalError
                }
                retryCost = cost
                Counter(label: "switchman_aws_retries_total", dimensions: dims).increment()
                try await Task.sleep(nanoseconds: UInt64(max(0, delay.nanoseconds)))
            }
        }
    }

    /// An attempt stopped before its request left: nothing of it can reach AWS.
    private struct NotSent: Error {}

    /// A write's body, given to the HTTP client only while its lease lasts.
    struct LeaseCheckedBody: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        struct LeaseOver: Error {}

        let bytes: [UInt8]
        let deadline: NIODeadline

        struct AsyncIterator: AsyncIteratorProtocol {
            var bytes: [UInt8]?
            let deadline: NIODeadline
            mutating func next() async throws -> ByteBuffer? {
                guard let body = bytes else { return nil }
                bytes = nil
                guard NIODeadline.now() < deadline else { throw LeaseOver() }
                return ByteBuffer(bytes: body)
            }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(bytes: bytes, deadline: deadline) }
    }

    private func attemptOnce(_ op: AWSOperation, deadline: NIODeadline) async throws -> AWSResponse {
        let creds = try await credentials.credentials(logger: logger)
        var signable = SigV4Request(method: op.method.rawValue, path: op.path, query: op.query,
                                    headers: [("Host", host)] + op.headers, body: op.body)
        // Signed per attempt: x-amz-date must be fresh, and credentials may have rotated.
        signer.sign(&signable, credentials: creds, date: clock().addingTimeInterval(clockOffset.withLock { $0 }))
        let query = signable.encodedQuery
        var request = HTTPClientRequest(url: endpoint + signable.encodedPath + (query.isEmpty ? "" : "?" + query))
        request.method = op.method
        for (name, value) in signable.headers { request.headers.add(name: name, value: value) }
        request.headers.replaceOrAdd(name: "User-Agent", value: configuration.identity.userAgent(fencing: op.fencing))
        if !op.body.isEmpty {
            // A write's deadline is the end of its leader's lease. The HTTP client writes a
            // request's head and a body given as bytes in one go, as soon as it has a
            // connection, and a process stalled in between (SIGSTOP, a starved CPU) would write
            // them when it wakes, before the client's own deadline timer runs. A body handed
            // over as a sequence is asked for only after the head is out, so the lease is checked
            // as late as we can: past it, the body is refused and the connection closed, and a
            // request without its body is never carried out.
            request.body = op.fencing == nil
                ? .bytes(op.body)
                : .stream(LeaseCheckedBody(bytes: op.body, deadline: deadline), length: .known(Int64(op.body.count)))
        }
        // Checked again here, after the credentials and signing, so a call that is already too
        // late costs no connection.
        guard NIODeadline.now() < deadline else { throw NotSent() }
        // No logger handed to the HTTP client: at trace level it could print request details,
        // and these carry the session token.
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, deadline: deadline)
        } catch is LeaseCheckedBody.LeaseOver {
            throw NotSent()
        }
        let body = try await response.body.collect(upTo: 16 * 1024 * 1024)
        let requestID = response.headers.first(name: "x-amzn-RequestId") ?? response.headers.first(name: "x-amz-request-id")
        return AWSResponse(status: Int(response.status.code), requestID: requestID, body: Array(buffer: body),
                           date: response.headers.first(name: "Date"))
    }

    /// The codes AWS answers a signature whose time is too far from its own with (the set the
    /// SDKs treat as clock skew).
    static let clockSkewCodes: Set<String> = [
        "RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture", "InvalidSignatureException",
        "SignatureDoesNotMatch", "AuthFailure",
    ]

    /// Sets the signing offset from AWS's `Date` header when our clock is off by more than a
    /// minute (AWS allows five); returns the skew in seconds, or nil when there is nothing to
    /// correct (no header, or the clocks agree, so the refusal has another cause).
    func measureSkew(_ header: String?) -> Double? {
        guard let header, let server = Self.httpDate(header) else { return nil }
        let skew = server.timeIntervalSince(clock())
        let current = clockOffset.withLock { $0 }
        guard abs(skew - current) > 60 else { return nil }
        clockOffset.withLock { $0 = skew }
        Gauge(label: "switchman_aws_clock_skew_seconds", dimensions: [("service", service)]).record(skew)
        return skew
    }

    /// RFC 7231 IMF-fixdate, as AWS sends it: `Sun, 06 Dec 2026 21:33:14 GMT`.
    static func httpDate(_ text: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: text)
    }
}
