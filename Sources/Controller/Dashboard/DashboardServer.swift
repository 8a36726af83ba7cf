#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// Where `switchman dashboard` listens, and why it normally listens on loopback only.
public enum DashboardListen {
    public static let defaultAddress = "127.0.0.1:8080"

    /// `host:port`, `[v6]:port`; nil when malformed.
    public static func parse(_ text: String) -> HostPort? { HostPort.parse(text) }

    /// `localhost`, 127.0.0.0/8, `::1` (and `::ffff:127.x.x.x`).
    public static func isLoopback(_ host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            // s_addr is in network byte order: the first octet is the lowest byte in memory.
            return withUnsafeBytes(of: &v4) { $0.first == 127 }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            let bytes = withUnsafeBytes(of: &v6) { Array($0) }
            if bytes == [UInt8](repeating: 0, count: 15) + [1] { return true }
            let mappedPrefix = [UInt8](repeating: 0, count: 10) + [0xff, 0xff]
            return Array(bytes.prefix(12)) == mappedPrefix && bytes[12] == 127
        }
        return false
    }

    /// Why a non-loopback address is refused unless the operator insists (`--allow-remote`).
    public static func refusal(_ address: String) -> String {
        """
        --listen \(address) is not a loopback address. The dashboard serves plain HTTP without \
        any login and acts on the cluster with your operator certificate, so anyone who can \
        reach it can drain tunnels and move leadership as you. Listen on 127.0.0.1 (use an \
        SSH tunnel to reach it from elsewhere), or pass --allow-remote if that is really meant.
        """
    }
}

/// How the dashboard server runs.
public struct DashboardConfiguration: Sendable {
    public var host: String
    /// 0: any free port (tests); `onRunning` gets the real one.
    public var port: Int
    /// Off (loopback): requests must name a loopback host in `Host`, which defeats DNS
    /// rebinding (a web page whose own name resolves to 127.0.0.1 would otherwise count as
    /// same-origin). On: any `Host` (the operator chose to expose it; names are unknown).
    public var allowRemote: Bool
    /// How often the page polls `/api/status` and `/api/events`.
    public var refreshMillis: Int
    /// Status answers younger than this are shared between pages (see DashboardStatusSource).
    public var statusMaxAge: Duration
    /// Shown on the page: the admin endpoints the backend talks to.
    public var endpoints: [String]

    public init(
        host: String = "127.0.0.1", port: Int = 8080, allowRemote: Bool = false, refreshMillis: Int = 1000,
        statusMaxAge: Duration = .milliseconds(500), endpoints: [String] = []
    ) {
        self.host = host
        self.port = port
        self.allowRemote = allowRemote
        self.refreshMillis = refreshMillis
        self.statusMaxAge = statusMaxAge
        self.endpoints = endpoints
    }
}

/// `switchman dashboard`'s web server (docs/ADMIN.md, "Dashboard"): one page and its JSON
/// endpoints over plain HTTP, relaying to the cluster through a `DashboardBackend`.
///
/// | method, path | |
/// |---|---|
/// | `GET /` | the page, with the current status and events embedded so it shows data at once |
/// | `GET /dashboard.js`, `GET /dashboard.css` | its script and style (no external assets) |
/// | `GET /api/status` | `DashboardStatus` (200; 502/503 with `status` nil when no replica answered) |
/// | `GET /api/events?since=N&limit=M` | `AdminEvents` (without `since`: the latest `limit`, default 200) |
/// | `POST /api/tunnels/{name}/drain` | body `{"reason": "..."}` → `AdminResult` |
/// | `POST /api/tunnels/{name}/undrain` | → `AdminResult` |
/// | `POST /api/leader/transfer` | body `{"to": N}` or `{}` → `AdminResult` |
///
/// Writes must carry `X-Switchman-Dashboard: 1` and, when the browser sends them, an `Origin`
/// equal to the page's and `Sec-Fetch-Site: same-origin` (CSRF: a foreign page cannot set a
/// custom header without a CORS preflight, which this server never approves).
public enum DashboardServer {
    /// Header names: literal, valid tokens, so the unwraps cannot fail.
    /// The custom header every write must carry.
    static let csrfHeader = HTTPField.Name("X-Switchman-Dashboard")!
    static let originHeader = HTTPField.Name.origin
    static let fetchSiteHeader = HTTPField.Name("Sec-Fetch-Site")!
    static let frameOptionsHeader = HTTPField.Name("X-Frame-Options")!
    static let referrerPolicyHeader = HTTPField.Name("Referrer-Policy")!
    /// Events embedded in the page and answered for `/api/events` without `since`.
    static let latestEvents = 200
    /// The admin API's cap on `limit`.
    static let maximumEventLimit = 10_000

    public static func make(
        backend: any DashboardBackend, configuration: DashboardConfiguration, logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> any Service {
        let source = DashboardStatusSource(backend: backend, maxAge: configuration.statusMaxAge, endpoints: configuration.endpoints)
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: DashboardGuard(allowRemote: configuration.allowRemote, extraHost: configuration.host, logger: logger))

        router.get("/") { _, _ -> Response in
            let status = await source.current()
            let events = try? await latest(backend, limit: latestEvents)
            let initial = DashboardInitialData(status: status, events: events, refreshMillis: configuration.refreshMillis)
            let html = DashboardPage.html(initialJSON: try embeddable(initial))
            return page(html, type: "text/html; charset=utf-8")
        }
        router.get("/dashboard.js") { _, _ -> Response in page(DashboardPage.script, type: "text/javascript; charset=utf-8") }
        router.get("/dashboard.css") { _, _ -> Response in page(DashboardPage.style, type: "text/css; charset=utf-8") }
        // Browsers ask for it on their own; an empty answer keeps the log and console quiet.
        router.get("/favicon.ico") { _, _ -> Response in Response(status: .noContent) }

        router.get("/api/status") { _, _ -> Response in
            let status = await source.current()
            let code = status.status != nil ? 200 : (status.error.map { DashboardErrors.statusFor(code: $0.code) } ?? 502)
            return try json(code, status)
        }
        router.get("/api/events") { request, _ -> Response in
            let query = request.uri.queryParameters
            let limitText = query.get("limit")
            let limit = limitText.flatMap(Int.init)
            if let limitText, limit == nil || limit ?? 0 < 1 {
                return try json(400, AdminError(code: "bad_request", message: "limit must be a positive integer, got \"\(limitText)\""))
            }
            let sinceText = query.get("since")
            let since = sinceText.flatMap(UInt64.init)
            if let sinceText, since == nil {
                return try json(400, AdminError(code: "bad_request", message: "since must be a sequence number, got \"\(sinceText)\""))
            }
            do {
                if let since {
                    return try json(200, try await backend.events(since: since, limit: min(limit ?? 100, maximumEventLimit), stale: false))
                }
                return try json(200, try await latest(backend, limit: min(limit ?? latestEvents, maximumEventLimit)))
            } catch {
                let failure = DashboardErrors.describe(error)
                return try json(failure.status, failure.body)
            }
        }

        router.post("/api/tunnels/:name/drain") { request, context -> Response in
            let name = context.parameters.get("name") ?? ""
            let body: AdminDrainRequest
            do {
                body = try await decode(AdminDrainRequest.self, request)
            } catch {
                return try json(400, AdminError(code: "bad_request", message: "body must be {\"reason\": \"...\"}"))
            }
            let reason = body.reason.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !reason.isEmpty else { return try json(400, AdminError(code: "bad_request", message: "give a reason for the drain")) }
            logger.notice("drain requested from the dashboard", metadata: ["tunnel": "\(name)", "reason": "\(reason)"])
            return try await write(source) { try await backend.drain(tunnel: name, reason: reason) }
        }
        router.post("/api/tunnels/:name/undrain") { _, context -> Response in
            let name = context.parameters.get("name") ?? ""
            logger.notice("undrain requested from the dashboard", metadata: ["tunnel": "\(name)"])
            return try await write(source) { try await backend.undrain(tunnel: name) }
        }
        router.post("/api/leader/transfer") { request, _ -> Response in
            let body: AdminTransferRequest
            do {
                body = try await decode(AdminTransferRequest.self, request)
            } catch {
                return try json(400, AdminError(code: "bad_request", message: "body must be {} or {\"to\": MEMBER_ID}"))
            }
            if body.to == 0 { return try json(400, AdminError(code: "bad_request", message: "to must be a positive member id")) }
            logger.notice("leadership transfer requested from the dashboard", metadata: ["to": "\(body.to.map(String.init) ?? "any")"])
            return try await write(source) { try await backend.transferLeader(to: body.to) }
        }

        return Application(
            router: router, server: .http1(),
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port), serverName: "switchman-dashboard"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// The latest `limit` events: the admin API pages forward from a sequence number, so
    /// ask from the start for as many as it gives and keep the tail.
    static func latest(_ backend: any DashboardBackend, limit: Int) async throws -> AdminEvents {
        var events: AdminEvents
        do {
            events = try await backend.events(since: 0, limit: maximumEventLimit, stale: false)
        } catch let error where DashboardErrors.isNoQuorum(error) {
            // As for the status: a replica's own history beats none while the quorum is lost.
            events = try await backend.events(since: 0, limit: maximumEventLimit, stale: true)
        }
        events.events = Array(events.events.suffix(limit))
        return events
    }

    static func write(_ source: DashboardStatusSource, _ call: () async throws -> AdminResult) async throws -> Response {
        do {
            let result = try await call()
            await source.invalidate()
            return try json(200, result)
        } catch {
            await source.invalidate()
            let failure = DashboardErrors.describe(error)
            return try json(failure.status, failure.body)
        }
    }

    /// An empty body counts as `{}`, so `{"to": N}` is optional for transfers.
    static func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let buffer = try await request.body.collect(upTo: 64 << 10)
        let data = buffer.readableBytes == 0 ? Data("{}".utf8) : Data(buffer.readableBytesView)
        return try JSONDecoder().decode(T.self, from: data)
    }

    /// JSON for a `<script type="application/json">` element: `<` never appears raw, so no
    /// text from the cluster (event texts, drain reasons) can close the element early.
    static func embeddable<T: Encodable>(_ value: T) throws -> String {
        let text = String(decoding: try AdminJSON.encoder().encode(value), as: UTF8.self)
        return text.replacingOccurrences(of: "<", with: "\\u003c").replacingOccurrences(of: ">", with: "\\u003e")
            .replacingOccurrences(of: "&", with: "\\u0026")
    }

    static func json<T: Encodable>(_ status: Int, _ value: T) throws -> Response {
        let data = try AdminJSON.encoder().encode(value)
        var headers = commonHeaders
        headers[.contentType] = "application/json"
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func page(_ text: String, type: String) -> Response {
        var headers = commonHeaders
        headers[.contentType] = type
        // Only our own script and style; nothing may frame the page (its buttons act on the
        // cluster, so no clickjacking).
        headers[.contentSecurityPolicy] =
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
            + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static var commonHeaders: HTTPFields {
        var headers = HTTPFields()
        headers[.cacheControl] = "no-store"
        headers[.xContentTypeOptions] = "nosniff"
        headers[frameOptionsHeader] = "DENY"
        headers[referrerPolicyHeader] = "no-referrer"
        return headers
    }
}

extension DashboardErrors {
    static func statusFor(code: String) -> Int {
        code == "no_leader" || code == "no_quorum" ? 503 : 502
    }
}

/// What `GET /` embeds for the script to render before its first poll.
struct DashboardInitialData: Encodable {
    var status: DashboardStatus
    var events: AdminEvents?
    var refreshMillis: Int
}

/// Host check (DNS rebinding) on every request, CSRF checks on every write.
struct DashboardGuard: RouterMiddleware {
    typealias Context = BasicRequestContext
    let allowRemote: Bool
    /// The `--listen` host, accepted in `Host` besides the loopback names.
    let extraHost: String
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if !allowRemote, let refusal = Self.hostRefusal(request.head.authority, extraHost: extraHost) {
            logger.warning("dashboard request refused", metadata: ["reason": "\(refusal)", "path": "\(request.uri.path)"])
            return try DashboardServer.json(403, AdminError(code: "forbidden", message: refusal))
        }
        if request.method != .get && request.method != .head,
            let refusal = Self.csrfRefusal(request.headers, host: request.head.authority)
        {
            logger.warning("dashboard write refused", metadata: ["reason": "\(refusal)", "path": "\(request.uri.path)"])
            return try DashboardServer.json(403, AdminError(code: "forbidden", message: refusal))
        }
        return try await next(request, context)
    }

    /// nil when `Host` names this machine's loopback (or the `--listen` host).
    static func hostRefusal(_ authority: String?, extraHost: String) -> String? {
        guard let authority, let host = hostPart(of: authority) else { return "a Host header is required" }
        if DashboardListen.isLoopback(host) || host.lowercased() == extraHost.lowercased() { return nil }
        return "Host \"\(authority)\" is not this dashboard's loopback address (DNS rebinding?)"
    }

    /// `host:port`, `[v6]:port` or a bare host → the host.
    static func hostPart(of authority: String) -> String? {
        if let parsed = HostPort.parse(authority) { return parsed.host }
        if authority.hasPrefix("["), authority.hasSuffix("]") { return String(authority.dropFirst().dropLast()) }
        return authority.isEmpty || authority.contains(":") ? nil : authority
    }

    /// nil when the write comes from the dashboard's own page.
    static func csrfRefusal(_ headers: HTTPFields, host: String?) -> String? {
        guard headers[DashboardServer.csrfHeader] == "1" else {
            return "writes need the header X-Switchman-Dashboard: 1 (sent by the dashboard's own page)"
        }
        if let origin = headers[DashboardServer.originHeader] {
            guard let host, origin == "http://\(host)" || origin == "https://\(host)" else {
                return "Origin \(origin) is not this dashboard"
            }
        }
        if let site = headers[DashboardServer.fetchSiteHeader], site != "same-origin" {
            return "Sec-Fetch-Site \(site): only the dashboard's own page may write"
        }
        return nil
    }
}
