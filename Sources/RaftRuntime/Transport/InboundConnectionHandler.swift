import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// Server side of one inbound connection. Nothing is delivered until the peer is
/// authenticated: TLS verified its certificate against the cluster CA, the certificate names a
/// member (not a client), and the hello frame claims exactly that member and our cluster.
final class InboundConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private enum State {
        case handshaking
        case awaitingHello(certifiedMemberID: UInt64)
        case authenticated(memberID: UInt64)
        case closed
    }

    private let context: TransportContext
    private var state: State = .handshaking
    private var reassembly: [UInt8]?
    private var deadline: Scheduled<Void>?
    private var logger: Logger

    init(context: TransportContext) {
        self.context = context
        self.logger = context.logger
    }

    func handlerAdded(context channelContext: ChannelHandlerContext) {
        if let remote = channelContext.channel.remoteAddress {
            logger[metadataKey: "remote"] = "\(remote)"
        }
        let timeout = context.limits.handshakeTimeout
        // A connection that never finishes authenticating would otherwise hold a slot forever.
        let bound = NIOLoopBound((handler: self, context: channelContext), eventLoop: channelContext.eventLoop)
        deadline = channelContext.eventLoop.scheduleTask(in: timeout) {
            bound.value.handler.deadlinePassed(bound.value.context, timeout: timeout)
        }
    }

    private func deadlinePassed(_ channelContext: ChannelHandlerContext, timeout: TimeAmount) {
        switch state {
        case .handshaking, .awaitingHello:
            reject(channelContext, reason: "timeout", detail: "not authenticated within \(timeout)")
        case .authenticated, .closed:
            break
        }
    }

    func handlerRemoved(context channelContext: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func userInboundEventTriggered(context channelContext: ChannelHandlerContext, event: Any) {
        if let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent, case .handshaking = state {
            identifyClient(channelContext)
        }
        channelContext.fireUserInboundEventTriggered(event)
    }

    private func identifyClient(_ channelContext: ChannelHandlerContext) {
        let identity: PeerIdentity
        do {
            identity = try PeerIdentity.ofPeer(on: channelContext)
        } catch {
            reject(channelContext, reason: "bad_certificate", detail: "client certificate unusable: \(error)")
            return
        }
        guard case .member(let id) = identity else {
            reject(channelContext, reason: "not_a_member", detail: "certificate names \(identity), not a member")
            return
        }
        state = .awaitingHello(certifiedMemberID: id)
    }

    func channelRead(context channelContext: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch state {
        case .handshaking, .closed:
            // Frames only arrive after the TLS handshake; anything else is a protocol breach.
            reject(channelContext, reason: "protocol", detail: "frame before authentication")
        case .awaitingHello(let certifiedID):
            checkHello(frame, certifiedID: certifiedID, channelContext)
        case .authenticated(let memberID):
            context.counters.frameReceived(bytes: Frame.headerSize + frame.payload.readableBytes)
            receive(frame, from: memberID, channelContext)
        }
    }

    private func checkHello(_ frame: Frame, certifiedID: UInt64, _ channelContext: ChannelHandlerContext) {
        guard frame.kind == .hello, let hello = Hello.decode(frame.payload) else {
            reject(channelContext, reason: "protocol", detail: "first frame is not a valid hello")
            return
        }
        guard (Hello.oldestVersion...Hello.protocolVersion).contains(hello.version) else {
            reject(channelContext, reason: "version", detail: "unsupported protocol version \(hello.version)")
            return
        }
        guard hello.clusterName == context.clusterName else {
            reject(
                channelContext,
                reason: "wrong_cluster",
                detail: "hello names cluster \"\(hello.clusterName)\", we are \"\(context.clusterName)\""
            )
            return
        }
        guard hello.memberID == certifiedID else {
            reject(
                channelContext,
                reason: "identity_mismatch",
                detail: "hello claims member \(hello.memberID) but the certificate names member \(certifiedID)"
            )
            return
        }
        guard certifiedID != context.localMemberID else {
            reject(channelContext, reason: "identity_mismatch", detail: "peer claims to be us (member \(certifiedID))")
            return
        }
        if let book = context.incarnations, case .changed(let known) = book.admit(certifiedID, incarnation: hello.incarnation) {
            reject(
                channelContext,
                reason: "new_incarnation",
                detail: """
                    member \(certifiedID) came back on another data directory (incarnation \(hello.incarnation), known \(known)): \
                    it is not let in until it is removed (`switchman member remove \(certifiedID)`) and added again as a learner
                    """
            )
            return
        }
        state = .authenticated(memberID: certifiedID)
        deadline?.cancel()
        deadline = nil
        logger[metadataKey: "peer"] = "\(certifiedID)"
        logger.info("accepted inbound peer connection")
        context.counters.inboundAccepted()
        if let superseded = context.registerInbound(channelContext.channel, memberID: certifiedID) {
            logger.info("closing superseded inbound connection from the same member")
            superseded.close(promise: nil)
        }
        channelContext.writeAndFlush(
            wrapOutboundOut(Frame(kind: .helloAccepted, payload: channelContext.channel.allocator.buffer(capacity: 0))),
            promise: nil
        )
    }

    private func receive(_ frame: Frame, from memberID: UInt64, _ channelContext: ChannelHandlerContext) {
        var payload = frame.payload
        switch frame.kind {
        case .message:
            guard var message = reassembly else {
                context.deliver(InboundMessage(from: memberID, payload: payload.readBytes(length: payload.readableBytes) ?? []))
                return
            }
            reassembly = nil
            guard message.count + payload.readableBytes <= context.limits.maximumMessageSize else {
                protocolError(channelContext, "reassembled message exceeds \(context.limits.maximumMessageSize) bytes")
                return
            }
            message.append(contentsOf: payload.readBytes(length: payload.readableBytes) ?? [])
            context.deliver(InboundMessage(from: memberID, payload: message))
        case .fragment:
            var message = reassembly ?? []
            reassembly = nil  // keeps `message` uniquely referenced, so appending does not copy
            guard message.count + payload.readableBytes <= context.limits.maximumMessageSize else {
                protocolError(channelContext, "reassembled message exceeds \(context.limits.maximumMessageSize) bytes")
                return
            }
            message.append(contentsOf: payload.readBytes(length: payload.readableBytes) ?? [])
            reassembly = message
        case .hello, .helloAccepted:
            protocolError(channelContext, "unexpected \(frame.kind) frame after authentication")
        }
    }

    private func protocolError(_ channelContext: ChannelHandlerContext, _ detail: String) {
        context.counters.malformedFrame()
        logger.warning("closing peer connection after protocol error", metadata: ["detail": "\(detail)"])
        close(channelContext)
    }

    func errorCaught(context channelContext: ChannelHandlerContext, error: any Error) {
        switch state {
        case .closed:
            return
        case .handshaking:
            // Garbage, a certificate from another CA, no certificate, TLS 1.2 ... all end here.
            reject(channelContext, reason: "tls", detail: "\(error)")
        case .awaitingHello, .authenticated:
            if error is FrameError {
                protocolError(channelContext, "\(error)")
            } else {
                if case NIOSSLError.uncleanShutdown = error {
                    logger.debug("peer went away without TLS close_notify")
                } else {
                    logger.warning("peer connection error", metadata: ["error": "\(error)"])
                }
                context.counters.connectionError()
                close(channelContext)
            }
        }
    }

    func channelInactive(context channelContext: ChannelHandlerContext) {
        if case .authenticated(let memberID) = state {
            logger.info("inbound peer connection closed")
            context.unregisterInbound(channelContext.channel, memberID: memberID)
        }
        state = .closed
        reassembly = nil
        channelContext.fireChannelInactive()
    }

    private func reject(_ channelContext: ChannelHandlerContext, reason: String, detail: String) {
        guard !isClosed else { return }
        context.counters.rejectedHandshake(reason)
        logger.error("refusing peer connection", metadata: ["reason": "\(reason)", "detail": "\(detail)"])
        close(channelContext)
    }

    private var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    private func close(_ channelContext: ChannelHandlerContext) {
        if case .authenticated(let memberID) = state {
            context.unregisterInbound(channelContext.channel, memberID: memberID)
        }
        state = .closed
        reassembly = nil
        deadline?.cancel()
        deadline = nil
        channelContext.close(promise: nil)
    }
}

extension PeerIdentity {
    /// The identity in the certificate the other end presented during the TLS handshake.
    static func ofPeer(on channelContext: ChannelHandlerContext) throws -> PeerIdentity {
        let tls = try channelContext.pipeline.syncOperations.handler(type: NIOSSLHandler.self)
        guard let certificate = tls.peerCertificate else { throw PeerIdentityError.noIdentity }
        return try PeerIdentity.from(derEncoded: try certificate.toDERBytes())
    }
}
