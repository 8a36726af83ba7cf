import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

struct HTTPResult: Sendable {
    var status: UInt
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
}

enum HTTPClientError: Error, CustomStringConvertible {
    case closed
    case timeout

    var description: String {
        switch self {
        case .closed: return "connection closed before the response ended"
        case .timeout: return "request timed out"
        }
    }
}

/// What one connection of the closed-loop load saw.
struct LoopResult: Sendable {
    var latenciesNanos: [UInt64] = []
    var failures = 0
    var lastFailure: String?
    var connectionError: String?
}

/// Collects one response at a time and hands it to whoever sent the request. Lives on the
/// channel's event loop; everything is driven from there, so the load generator spends no
/// time hopping between tasks and threads per request.
final class ResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private var context: ChannelHandlerContext?
    private var status: UInt = 0
    private var body: [UInt8] = []
    private var keepBody = true
    private var sentAt: NIODeadline = .now()
    private var onResponse: ((Result<(HTTPResult, UInt64), any Error>) -> Void)?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func send(
        _ head: HTTPRequestHead, _ body: ByteBuffer?, keepBody: Bool,
        _ callback: @escaping (Result<(HTTPResult, UInt64), any Error>) -> Void
    ) {
        guard let context else {
            callback(.failure(HTTPClientError.closed))
            return
        }
        self.keepBody = keepBody
        onResponse = callback
        sentAt = .now()
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            status = h.status.code
            body.removeAll(keepingCapacity: true)
        case .body(let b):
            // Under load only the failures' bodies are worth keeping.
            if keepBody || status != 200 { body += b.readableBytesView }
        case .end:
            let elapsed = UInt64(max(0, (NIODeadline.now() - sentAt).nanoseconds))
            let cb = onResponse
            onResponse = nil
            cb?(.success((HTTPResult(status: status, body: body), elapsed)))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(HTTPClientError.closed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    private func fail(_ error: any Error) {
        let cb = onResponse
        onResponse = nil
        cb?(.failure(error))
    }
}

/// One HTTP/1.1 keep-alive connection over mutual TLS, one request in flight at a time.
final class HTTPSConnection: Sendable {
    let channel: any Channel
    private let handler: NIOLoopBound<ResponseHandler>
    let host: String
    let port: Int

    private init(channel: any Channel, handler: NIOLoopBound<ResponseHandler>, host: String, port: Int) {
        self.channel = channel
        self.handler = handler
        self.host = host
        self.port = port
    }

    static func connect(
        host: String, port: Int, tls: NIOSSLContext, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeout: TimeAmount = .seconds(5)
    ) async throws -> HTTPSConnection {
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    // Certificates are checked against the cluster CA; the servers are
                    // addressed by IP, for which there is no SNI.
                    try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: nil))
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(ResponseHandler())
                }
            }
            .connect(host: host, port: port).get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ResponseHandler.self), eventLoop: channel.eventLoop)
        }.get()
        return HTTPSConnection(channel: channel, handler: handler, host: host, port: port)
    }

    static func head(method: HTTPMethod, uri: String, host: String, bodyBytes: Int) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        headers.add(name: "host", value: host)
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: "\(bodyBytes)")
        return HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers)
    }

    /// One request; on timeout the connection is closed (its state is unknown afterwards).
    func request(_ method: HTTPMethod, _ uri: String, body: [UInt8] = [], timeout: TimeAmount = .seconds(5)) async throws
        -> HTTPResult
    {
        let head = Self.head(method: method, uri: uri, host: host, bodyBytes: body.count)
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: HTTPResult.self)
        let channel = self.channel
        let handler = self.handler
        loop.execute {
            let buffer = body.isEmpty ? nil : channel.allocator.buffer(bytes: body)
            let timer = loop.scheduleTask(in: timeout) {
                promise.fail(HTTPClientError.timeout)
                channel.close(promise: nil)
            }
            handler.value.send(head, buffer, keepBody: true) { result in
                timer.cancel()
                switch result {
                case .success(let (r, _)): promise.succeed(r)
                case .failure(let e): promise.fail(e)
                }
            }
        }
        return try await promise.futureResult.get()
    }

    /// Sends the same request back to back until `deadline`, recording each latency.
    func closedLoop(_ method: HTTPMethod, _ uri: String, body: [UInt8], until deadline: NIODeadline) async -> LoopResult {
        let head = Self.head(method: method, uri: uri, host: host, bodyBytes: body.count)
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: LoopResult.self)
        let channel = self.channel
        let handler = self.handler
        loop.execute {
            let buffer = channel.allocator.buffer(bytes: body)
            var result = LoopResult()
            result.latenciesNanos.reserveCapacity(1 << 16)
            func next() {
                guard NIODeadline.now() < deadline else {
                    promise.succeed(result)
                    return
                }
                handler.value.send(head, buffer, keepBody: false) { outcome in
                    switch outcome {
                    case .success(let (r, nanos)):
                        if r.status == 200 {
                            result.latenciesNanos.append(nanos)
                        } else {
                            result.failures += 1
                            result.lastFailure = "HTTP \(r.status): \(r.text.prefix(200))"
                        }
                        next()
                    case .failure(let e):
                        result.connectionError = "\(e)"
                        promise.succeed(result)
                    }
                }
            }
            next()
        }
        return await (try? promise.futureResult.get()) ?? LoopResult(connectionError: "lost")
    }

    func close() async {
        try? await channel.close()
    }
}
