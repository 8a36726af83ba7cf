/// An error response from AWS: what the service said, and the request id to quote to support
/// or to find the call in CloudTrail.
public struct AWSError: Error, Sendable, Equatable, CustomStringConvertible {
    public var service: String
    public var action: String
    public var httpStatus: Int
    public var code: String
    public var message: String
    public var requestID: String?
    /// Which attempt produced this error (1 = first try): "RouteAlreadyExists on attempt 2"
    /// means our own first attempt probably succeeded.
    public var attempt: Int = 1

    public init(service: String, action: String, httpStatus: Int, code: String, message: String, requestID: String?, attempt: Int = 1) {
        self.service = service
        self.action = action
        self.httpStatus = httpStatus
        self.code = code
        self.message = message
        self.requestID = requestID
        self.attempt = attempt
    }

    public var description: String {
        "\(service) \(action) failed: \(code) (HTTP \(httpStatus)): \(message) [request id \(requestID ?? "none")]"
    }

    /// Parses both shapes AWS uses: EC2's `<Response><Errors><Error>…</Errors><RequestID>` and
    /// the REST services' `<ErrorResponse><Error>…</Error><RequestId>`.
    static func parse(service: String, action: String, status: Int, body: [UInt8], headerRequestID: String?) -> AWSError {
        guard let root = try? XMLElement.parse(body) else {
            return AWSError(service: service, action: action, httpStatus: status,
                            code: status == 429 ? "TooManyRequests" : "HTTP\(status)",
                            message: String(decoding: body.prefix(200), as: UTF8.self), requestID: headerRequestID)
        }
        let error = root.find("Error")
        let requestID = root.string("RequestID") ?? root.string("RequestId") ?? root.find("RequestId")?.text ?? headerRequestID
        return AWSError(service: service, action: action, httpStatus: status,
                        code: error?.string("Code") ?? "HTTP\(status)",
                        message: error?.string("Message") ?? "", requestID: requestID)
    }
}

/// Failures on our side of the wire.
public enum AWSClientError: Error, Sendable, CustomStringConvertible {
    /// The caller's deadline passed, or the remaining time cannot cover another attempt.
    case deadlineExceeded(action: String, attempts: Int, lastError: String?)
    /// The rate budget cannot hand out a token before the deadline.
    case rateLimited(action: String)
    case transport(action: String, String)
    case invalidResponse(String)

    public var description: String {
        switch self {
        case .deadlineExceeded(let action, let attempts, let last):
            return "\(action): deadline exceeded after \(attempts) attempt(s)\(last.map { ", last error: \($0)" } ?? "")"
        case .rateLimited(let action): return "\(action): rate budget has no token before the deadline"
        case .transport(let action, let why): return "\(action): transport error: \(why)"
        case .invalidResponse(let why): return "invalid response: \(why)"
        }
    }
}
