import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import Actuators

// MARK: - paths

enum TestPaths {
    /// The package root, found from this file's location (Tests/ActuatorsTests/…).
    static func packageRoot(_ file: String = #filePath) -> URL {
        URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// `$SWITCHMAN_SHARED_DIR` if set (CI), else `../shared` beside the package.
    static var sharedDir: URL {
        if let dir = ProcessInfo.processInfo.environment["SWITCHMAN_SHARED_DIR"], !dir.isEmpty {
            return URL(fileURLWithPath: dir)
        }
        return packageRoot().deletingLastPathComponent().appendingPathComponent("shared")
    }

    static func makeTempDir(_ tag: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("switchman-\(tag)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}

// MARK: - a tiny HTTP server for fakes (IMDS, fault proxy)

struct TestRequest: Sendable {
    var method: HTTPMethod
    var uri: String
    var headers: HTTPHeaders
    var body: [UInt8]
}

enum TestResponse: Sendable {
    case respond(status: HTTPResponseStatus, headers: [(String, String)] = [], body: [UInt8] = [])
    /// Never answer; the connection stays open until the client gives up or the server stops.
    case hang
}

final class TestHTTPServer: Sendable {
    let port: Int
    private let acceptTask: Task<Void, Never>
    private let serverChannel: Channel

    static func start(_ handler: @escaping @Sendable (TestRequest) async -> TestResponse) async throws -> TestHTTPServer {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        let port = server.channel.localAddress?.port ?? 0
        let task = Task {
            await withDiscardingTaskGroup { group in
                do {
                    try await server.executeThenClose { inbound in
                        for try await connection in inbound {
                            group.addTask { await Self.serve(connection, handler) }
                        }
                    }
                } catch {}
                group.cancelAll()
            }
        }
        return TestHTTPServer(port: port, acceptTask: task, serverChannel: server.channel)
    }

    private init(port: Int, acceptTask: Task<Void, Never>, serverChannel: Channel) {
        self.port = port
        self.acceptTask = acceptTask
        self.serverChannel = serverChannel
    }

    var url: String { "http://127.0.0.1:\(port)" }

    private static func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>,
                              _ handler: @Sendable (TestRequest) async -> TestResponse) async {
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var body: [UInt8] = []
            for try await part in inbound {
                switch part {
                case .head(let h): head = h; body = []
                case .body(let b): body += Array(buffer: b)
                case .end:
                    guard let h = head else { continue }
                    let response = await handler(TestRequest(method: h.method, uri: h.uri, headers: h.headers, body: body))
                    switch response {
                    case .hang:
                        try await Task.sleep(nanoseconds: 3_600_000_000_000)
                        return
                    case .respond(let status, let headers, let responseBody):
                        var hh = HTTPHeaders(headers)
                        hh.replaceOrAdd(name: "Content-Length", value: String(responseBody.count))
                        try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: status, headers: hh)))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: responseBody))))
                        try await outbound.write(.end(nil))
                    }
                }
            }
        }
    }

    func stop() async {
        try? await serverChannel.close()
        acceptTask.cancel()
        await acceptTask.value
    }
}

/// Runs `body` with a server and always stops it, also when `body` throws.
func withTestServer<T>(
    _ handler: @escaping @Sendable (TestRequest) async -> TestResponse,
    _ body: (TestHTTPServer) async throws -> T
) async throws -> T {
    let server = try await TestHTTPServer.start(handler)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

/// Polls `condition` until it holds or `timeout` passes; never assumes how fast anything is.
func eventually(timeout: TimeInterval = 60, _ condition: () async -> Bool) async -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if await condition() { return true }
        try? await Task.sleep(nanoseconds: 100_000_000)
    }
    return await condition()
}

/// Thread-safe mutable box for counters shared with server handlers. `@unchecked Sendable`
/// is safe because `value` is only touched while holding `lock`.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
    var current: Value { withLock { $0 } }
}
