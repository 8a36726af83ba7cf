import Foundation
import NIOCore
import NIOPosix

/// A loopback TCP listener a test opens and closes on demand: the probe target of a tunnel.
/// Open = the tunnel works (connects succeed; anything sent gets an HTTP 200 answer, so it
/// also serves `http://` probes), closed = the tunnel is broken (connects are refused).
/// The port stays the same across close/open so the config can name it once.
final class TCPFlapper: Sendable {
    let port: Int
    private struct State {
        var listener: Channel?
        var connections: [ObjectIdentifier: Channel] = [:]
        var accepted = 0
    }
    private let state = Locked(State())

    var address: String { "127.0.0.1:\(port)" }
    var httpURL: String { "http://127.0.0.1:\(port)/" }
    var isOpen: Bool { state.withLock { $0.listener != nil } }
    /// Connections accepted so far: evidence that someone probes.
    var acceptedConnections: Int { state.withLock { $0.accepted } }

    private init(port: Int) {
        self.port = port
    }

    /// A flapper on a free port, listening when `open`.
    static func start(open: Bool = true) async throws -> TCPFlapper {
        let flapper = TCPFlapper(port: try LoopbackPorts.unused())
        if open { try await flapper.open() }
        return flapper
    }

    /// Starts listening (no-op when open). Retries briefly: the port may still be held by the
    /// connections of the previous open period in TIME_WAIT (SO_REUSEADDR covers most of it).
    func open() async throws {
        if isOpen { return }
        var lastError: (any Error)?
        let deadline = Date().addingTimeInterval(10)
        repeat {
            do {
                let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { [weak self] channel in
                        self?.accepted(channel)
                        return channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(AnswerHTTP200())
                        }
                    }
                    .bind(host: "127.0.0.1", port: port).get()
                state.withLock { $0.listener = listener }
                return
            } catch {
                lastError = error
                try? await Task.sleep(nanoseconds: 100_000_000)
            }
        } while Date() < deadline
        throw HarnessError.unexpected("TCPFlapper could not listen on \(address) again: \(String(describing: lastError))")
    }

    /// Stops listening and resets every open connection (no-op when closed).
    func close() async {
        let (listener, connections) = state.withLock { s -> (Channel?, [Channel]) in
            defer {
                s.listener = nil
                s.connections = [:]
            }
            return (s.listener, Array(s.connections.values))
        }
        try? await listener?.close()
        for c in connections { try? await c.close() }
    }

    private func accepted(_ channel: Channel) {
        let id = ObjectIdentifier(channel)
        state.withLock {
            $0.accepted += 1
            $0.connections[id] = channel
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.state.withLock { _ = $0.connections.removeValue(forKey: id) }
        }
    }
}

/// Answers the first bytes received with a minimal HTTP 200 and closes.
private final class AnswerHTTP200: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let body = "ok\n"
        let response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        let buffer = context.channel.allocator.buffer(string: response)
        // Close once the answer is out; the context may only be used on its event loop.
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in bound.value.close(promise: nil) }
    }
}
