import Actuators
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import Controller

/// EC2 discovery in batches: against a stub EC2 that answers DescribeInstances by applying the
/// request's own tag filter to a fixed inventory, so a wrong filter gives wrong answers.
@Suite struct InstanceDirectoryTests {
    struct Stub: Sendable {
        var id: String
        var tags: [String: String]
        var ip: String
        var running = true
        /// Interfaces besides the primary (`eni-<id>`, device index 0): id, device index, tags.
        /// Listed before the primary, as AWS may.
        var more: [(id: String, index: Int, tags: [String: String])] = []
    }

    static let inventory: [Stub] = [
        Stub(id: "i-0a", tags: ["switchman/tunnel": "a"], ip: "10.0.0.10"),
        // b has two: the lower id unless the known one is among them.
        Stub(id: "i-0b2", tags: ["switchman/tunnel": "b"], ip: "10.0.0.22"),
        Stub(id: "i-0b1", tags: ["switchman/tunnel": "b"], ip: "10.0.0.21"),
        // c's only instance is stopped.
        Stub(id: "i-0c", tags: ["switchman/tunnel": "c"], ip: "10.0.0.30", running: false),
        // Same value under another key: belongs to tunnel e only.
        Stub(id: "i-0e", tags: ["vpn": "a"], ip: "10.0.0.50"),
        // Not ours at all.
        Stub(id: "i-0z", tags: ["switchman/tunnel": "z"], ip: "10.0.0.90"),
        // f forwards on its second interface, tagged; g has the tag on two.
        Stub(id: "i-0f", tags: ["switchman/tunnel": "f"], ip: "10.0.0.60",
             more: [("eni-f-fwd", 1, ["forward": "yes"]), ("eni-f-mgmt", 2, ["forward": "no"])]),
        Stub(id: "i-0g", tags: ["switchman/tunnel": "g"], ip: "10.0.0.70",
             more: [("eni-g-2", 2, ["forward": "yes"]), ("eni-g-1", 1, ["forward": "yes"])]),
    ]

    func tunnel(_ name: String, key: String = "switchman/tunnel", value: String? = nil) -> TunnelConfig {
        TunnelConfig(name: name, instance: InstanceSelector(tagKey: key, tagValue: value ?? name),
                     sentinel: HostPort(host: "127.0.0.1", port: 1), probes: [], require: .all)
    }

    @Test func tunnelsSharingATagKeyShareOneCallAndEachGetsItsOwnInstance() async throws {
        try await withDirectory { directory, requests in
            let tunnels = [tunnel("a"), tunnel("b"), tunnel("c"), tunnel("d"), tunnel("e", key: "vpn", value: "a")]
            let known = ["b": InstanceIdentity(instanceId: "i-0b2", eniId: "eni-old", privateIP: "10.0.0.22")]
            let deadline = NIODeadline.now() + .seconds(30)

            let batched = await directory.currentInstances(of: tunnels, known: known, deadline: deadline)
            let calls = requests.withLockedValue { $0 }
            #expect(calls.count == 2, "one DescribeInstances per tag key, got \(calls.count)")
            #expect(calls.contains { Set(filterValues($0, "tag:switchman/tunnel")) == ["a", "b", "c", "d"] })

            func id(_ r: Result<InstanceIdentity?, any Error>?) -> String? { (try? r?.get())??.instanceId }
            #expect(id(batched["a"]) == "i-0a")
            #expect(id(batched["b"]) == "i-0b2", "the known instance is kept")
            #expect(id(batched["c"]) == nil && id(batched["d"]) == nil)
            #expect(id(batched["e"]) == "i-0e")
            #expect((try? batched["a"]?.get())??.privateIP == "10.0.0.10")
            #expect((try? batched["a"]?.get())??.eniId == "eni-i-0a")

            // One by one gives the same answers (b without a known one: the lower id).
            for t in tunnels {
                let single = try await directory.currentInstance(of: t, known: known[t.name], deadline: deadline)
                #expect(single?.instanceId == id(batched[t.name]), "\(t.name)")
            }
            let unknownB = await directory.currentInstances(of: [tunnel("b")], known: [:], deadline: deadline)
            #expect(id(unknownB["b"]) == "i-0b1")
        }
    }

    /// By tag, not by position or index: the interface carrying the tunnel's interfaceTag (the
    /// lowest id when several do), found with one DescribeNetworkInterfaces per tag key;
    /// none carrying it is no identity, never the primary by default.
    @Test func theInterfaceIsChosenByTagWhenTheTunnelNamesOne() async throws {
        try await withDirectory { directory, requests in
            func tagged(_ name: String, _ value: String = "yes") -> TunnelConfig {
                var t = tunnel(name)
                t.instance.interfaceTag = InterfaceTag(key: "forward", value: value)
                return t
            }
            let tunnels = [tagged("f"), tagged("g"), tagged("a"), tunnel("b")]
            let result = await directory.currentInstances(of: tunnels, known: [:], deadline: .now() + .seconds(30))
            #expect((try? result["f"]?.get())??.eniId == "eni-f-fwd")
            #expect((try? result["g"]?.get())??.eniId == "eni-g-1")
            #expect((try? result["a"]?.get()) == .some(nil), "a's instance has no tagged interface")
            #expect((try? result["b"]?.get())??.eniId == "eni-i-0b1")
            let eniCalls = requests.withLockedValue { $0 }.filter { $0["Action"] == "DescribeNetworkInterfaces" }
            #expect(eniCalls.count == 1)
            let one = try await directory.currentInstance(of: tagged("f"), known: nil, deadline: .now() + .seconds(30))
            #expect(one?.eniId == "eni-f-fwd")
            let other = try await directory.currentInstance(of: tagged("f", "no"), known: nil, deadline: .now() + .seconds(30))
            #expect(other?.eniId == "eni-f-mgmt")
            // Without a tag, device index 0 whatever the listing order.
            let untagged = try await directory.currentInstance(of: tunnel("f"), known: nil, deadline: .now() + .seconds(30))
            #expect(untagged?.eniId == "eni-i-0f")
        }
    }

    @Test func aFailedCallFailsOnlyItsOwnTunnels() async throws {
        try await withDirectory(failKey: "vpn") { directory, _ in
            let result = await directory.currentInstances(of: [tunnel("a"), tunnel("e", key: "vpn", value: "a")], known: [:],
                                                          deadline: .now() + .seconds(30))
            #expect((try? result["a"]?.get())??.instanceId == "i-0a")
            guard case .failure = result["e"] else {
                Issue.record("expected e's lookup to fail, got \(String(describing: result["e"]))")
                return
            }
        }
    }

    /// While an AZ is impaired the filtered lookup fails: the known instances are looked up
    /// by id and keep their identity; a known one that stopped, or no known one, reports the
    /// failure (nothing is dropped or invented).
    @Test func filteredLookupFailingFallsBackToTheKnownInstancesByID() async throws {
        try await withDirectory(azOutage: true) { directory, requests in
            let known = [
                "a": InstanceIdentity(instanceId: "i-0a", eniId: "eni-i-0a", privateIP: "10.0.0.10"),
                "c": InstanceIdentity(instanceId: "i-0c", eniId: "eni-i-0c", privateIP: "10.0.0.30"),
            ]
            let result = await directory.currentInstances(of: [tunnel("a"), tunnel("b"), tunnel("c")], known: known,
                                                          deadline: .now() + .seconds(30))
            #expect((try? result["a"]?.get())??.instanceId == "i-0a")
            for name in ["b", "c"] {
                guard case .failure = result[name] else {
                    Issue.record("expected \(name)'s lookup to report the failure, got \(String(describing: result[name]))")
                    continue
                }
            }
            let byID = requests.withLockedValue { $0 }.filter { $0.keys.contains { $0.hasPrefix("InstanceId.") } }
            #expect(byID.count == 1, "one lookup by id for the batch")
        }
    }

    /// A directory on the stub EC2 (no retries, so a scripted error is final), closed after
    /// `body` also when it throws.
    func withDirectory(failKey: String? = nil, azOutage: Bool = false,
                       _ body: (EC2InstanceDirectory, NIOLockedValueBox<[[String: String]]>) async throws -> Void) async throws {
        let requests = NIOLockedValueBox<[[String: String]]>([])
        let server = try await stubEC2(requests: requests, failKey: failKey, azOutage: azOutage)
        do {
            let port = try #require(server.localAddress?.port)
            let config = AWSClientConfiguration(
                region: "us-east-1", endpointOverride: "http://127.0.0.1:\(port)", identity: CallerIdentity(nodeID: "n1"),
                retry: RetryPolicy(maxAttempts: 1))
            var logger = Logger(label: "test.instances")
            logger.logLevel = .critical
            let ec2 = EC2Client(configuration: config, credentials: StaticCredentials(AWSCredentials(accessKeyID: "k", secretAccessKey: "s")),
                                logger: logger)
            try await body(EC2InstanceDirectory(defaultRegion: "us-east-1", logger: logger) { _ in ec2 }, requests)
            try? await server.close()
        } catch {
            try? await server.close()
            throw error
        }
    }

    // MARK: the stub

    func filterValues(_ params: [String: String], _ name: String) -> [String] {
        guard let index = params.first(where: { $0.key.hasSuffix(".Name") && $0.value == name })?.key.dropLast(".Name".count) else { return [] }
        return params.filter { $0.key.hasPrefix("\(index).Value.") }.map(\.value)
    }

    static func describe(_ matching: [Stub]) -> String {
        var xml = #"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r2</requestId><reservationSet><item><instancesSet>"#
        for s in matching {
            xml += "<item><instanceId>\(s.id)</instanceId><instanceState><name>\(s.running ? "running" : "stopped")</name></instanceState>"
            xml += "<privateIpAddress>\(s.ip)</privateIpAddress><networkInterfaceSet>"
            for m in s.more {
                xml += "<item><networkInterfaceId>\(m.id)</networkInterfaceId><attachment><deviceIndex>\(m.index)</deviceIndex></attachment></item>"
            }
            let primaryIndex = s.more.isEmpty ? "" : "<attachment><deviceIndex>0</deviceIndex></attachment>"
            xml += "<item><networkInterfaceId>eni-\(s.id)</networkInterfaceId>\(primaryIndex)</item></networkInterfaceSet>"
            xml += "<tagSet>" + s.tags.map { "<item><key>\($0.key)</key><value>\($0.value)</value></item>" }.joined() + "</tagSet></item>"
        }
        return xml + "</instancesSet></item></reservationSet></DescribeInstancesResponse>"
    }

    /// The inventory's tagged interfaces that match the request's attachment and tag filters.
    static func describeInterfaces(_ params: [String: String]) -> String {
        func values(_ name: String) -> Set<String>? {
            guard let index = params.first(where: { $0.key.hasSuffix(".Name") && $0.value == name })?.key.dropLast(".Name".count) else { return nil }
            return Set(params.filter { $0.key.hasPrefix("\(index).Value.") }.map(\.value))
        }
        let instances = values("attachment.instance-id") ?? []
        let tagName = params.first { $0.key.hasSuffix(".Name") && $0.value.hasPrefix("tag:") }?.value
        let key = tagName.map { String($0.dropFirst(4)) }
        let tagValues = tagName.flatMap(values) ?? []
        var xml = #"<DescribeNetworkInterfacesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r3</requestId><networkInterfaceSet>"#
        for s in inventory where instances.contains(s.id) {
            for m in s.more where key.flatMap { m.tags[$0] }.map(tagValues.contains) == true {
                xml += "<item><networkInterfaceId>\(m.id)</networkInterfaceId><attachment><instanceId>\(s.id)</instanceId>"
                xml += "<deviceIndex>\(m.index)</deviceIndex></attachment><tagSet>"
                xml += m.tags.map { "<item><key>\($0.key)</key><value>\($0.value)</value></item>" }.joined() + "</tagSet></item>"
            }
        }
        return xml + "</networkInterfaceSet></DescribeNetworkInterfacesResponse>"
    }

    /// `azOutage`: what AWS documents for an impaired Availability Zone, filtered
    /// DescribeInstances fails (503 Unavailable) while a lookup by instance id still answers.
    func stubEC2(requests: NIOLockedValueBox<[[String: String]]>, failKey: String? = nil, azOutage: Bool = false) async throws -> any Channel {
        let answer: @Sendable ([String: String]) -> (HTTPResponseStatus, String) = { params in
            requests.withLockedValue { $0.append(params) }
            if params["Action"] == "DescribeNetworkInterfaces" { return (.ok, Self.describeInterfaces(params)) }
            let ids = Set(params.filter { $0.key.hasPrefix("InstanceId.") }.map(\.value))
            if !ids.isEmpty { return (.ok, Self.describe(Self.inventory.filter { ids.contains($0.id) })) }
            if azOutage {
                return (.serviceUnavailable, "<Response><Errors><Error><Code>Unavailable</Code><Message>The service is unavailable. Please try again shortly.</Message></Error></Errors><RequestID>r9</RequestID></Response>")
            }
            guard let tagFilter = params.first(where: { $0.key.hasSuffix(".Name") && $0.value.hasPrefix("tag:") }) else {
                return (.badRequest, "<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>no tag filter</Message></Error></Errors><RequestID>r0</RequestID></Response>")
            }
            let key = String(tagFilter.value.dropFirst(4))
            if key == failKey {
                return (.badRequest, "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>scripted</Message></Error></Errors><RequestID>r1</RequestID></Response>")
            }
            let index = tagFilter.key.dropLast(".Name".count)
            let values = Set(params.filter { $0.key.hasPrefix("\(index).Value.") }.map(\.value))
            let wantsRunning = params.contains { $0.value == "instance-state-name" }
            let matching = Self.inventory.filter { s in
                s.tags[key].map(values.contains) == true && (!wantsRunning || s.running)
            }
            return (.ok, Self.describe(matching))
        }
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FormHandler(answer: answer))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }
}

/// Collects a form-encoded request body and answers it with `answer`.
final class FormHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: `body` is only touched on the channel's event loop.
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let answer: @Sendable ([String: String]) -> (HTTPResponseStatus, String)
    var body = ""
    init(answer: @escaping @Sendable ([String: String]) -> (HTTPResponseStatus, String)) { self.answer = answer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: body = ""
        case .body(let buffer): body += String(buffer: buffer)
        case .end:
            var params: [String: String] = [:]
            for pair in body.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0) }
                if kv.count == 2 { params[kv[0]] = kv[1] }
            }
            let (status, text) = answer(params)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: String(text.utf8.count))
            headers.add(name: "Content-Type", value: "text/xml")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
