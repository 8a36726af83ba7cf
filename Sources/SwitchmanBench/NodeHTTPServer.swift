import BenchSupport
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Raft
import RaftRuntime
import ServiceLifecycle

/// The client side of a bench replica: HTTP/1.1 keep-alive over mutual TLS (client
/// certificates required), like etcd's client port, so both clusters pay for the same
/// kind of client path.
final class NodeHTTPServer: Service {
    private let host: String
    private let port: Int
    private let tls: NIOSSLContext
    private let node: RaftNode
    private let metrics: BenchMetrics
    private let storageName: String
    private let logger: Logger

    init(
        host: String, port: Int, credentials: PeerTLSCredentials, node: RaftNode, metrics: BenchMetrics,
        storageName: String, logger: Logger
    ) throws {
        self.host = host
        self.port = port
        self.node = node
        self.metrics = metrics
        self.storageName = storageName
        self.logger = logger
        var config = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: credentials.certificateChain.map { .certificate($0) },
            privateKey: .privateKey(credentials.privateKey),
            trustRoots: .certificates(credentials.trustRoots))
        // Clients are identified by their certificate, not by a host name.
        config.certificateVerification = .noHostnameVerification
        tls = try NIOSSLContext(configuration: config)
    }

    func run() async throws {
        let tls = self.tls
        let node = self.node
        let metrics = self.metrics
        let storageName = self.storageName
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLServerHandler(context: tls))
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(ProposeHandler(node: node, metrics: metrics, storageName: storageName))
                }
            }
            .bind(host: host, port: port).get()
        logger.info("bench HTTP server listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        try? await gracefulShutdown()
        try? await channel.close()
    }
}

/// `POST /propose` and `GET /status`. One request at a time per connection (the pipeline
/// handler holds back pipelined requests until the response is written).
final class ProposeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let node: RaftNode
    private let metrics: BenchMetrics
    private let storageName: String
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(node: RaftNode, metrics: BenchMetrics, storageName: String) {
        self.node = node
        self.metrics = metrics
        self.storageName = storageName
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            guard let h = head else { return }
            head = nil
            handle(context: context, head: h, body: Array(body.readableBytesView))
        }
    }

    private func handle(context: ChannelHandlerContext, head: HTTPRequestHead, body: [UInt8]) {
        let keepAlive = head.isKeepAlive
        let node = self.node
        switch (head.method, head.uri) {
        case (.POST, "/propose"):
            let data: [UInt8]
            do {
                let (k, v) = try PutRequest.parse(body).decoded()
                data = BenchEntry.encode(key: k, value: v)
            } catch {
                respond(context: context, .badRequest, encodeJSON(ErrorResponse(error: "\(error)")), keepAlive: keepAlive)
                return
            }
            context.eventLoop.makeFutureWithTask { try await node.propose(data) }
                .assumeIsolated()
                .whenComplete { [self] result in
                    switch result {
                    case .success(let position):
                        respond(context: context, .ok, encodeJSON(ProposeResponse(index: position.index)), keepAlive: keepAlive)
                    case .failure(RaftNodeError.rejected(.notLeader(let leader))):
                        respond(context: context, .serviceUnavailable, encodeJSON(NotLeaderResponse(leader: leader)), keepAlive: keepAlive)
                    case .failure(let error):
                        respond(context: context, .internalServerError, encodeJSON(ErrorResponse(error: "\(error)")), keepAlive: keepAlive)
                    }
                }
        case (.GET, "/status"):
            let metrics = self.metrics
            let storageName = self.storageName
            context.eventLoop.makeFutureWithTask { await node.status }
                .assumeIsolated()
                .whenSuccess { [self] s in
                    let writes = metrics.durableWrites.value
                    let batches = metrics.batches.value
                    let status = NodeStatusResponse(
                        id: s.id, role: "\(s.role)", term: s.term, leader: s.leader, commitIndex: s.commitIndex,
                        appliedIndex: s.appliedIndex, storage: storageName, durableWrites: writes.count,
                        durableWriteSeconds: writes.sum, proposalBatches: batches.count,
                        batchedProposals: UInt64(batches.sum))
                    respond(context: context, .ok, encodeJSON(status), keepAlive: keepAlive)
                }
        default:
            respond(context: context, .notFound, encodeJSON(ErrorResponse(error: "no such endpoint")), keepAlive: keepAlive)
        }
    }

    private func respond(context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: [UInt8], keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: "\(body.count)")
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}
