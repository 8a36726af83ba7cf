import ArgumentParser
import BenchSupport
import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RaftRuntime

#if canImport(Glibc)
import Glibc
#endif

enum System: String, Sendable {
    case ours = "switchman"
    case etcd = "etcd"
}

/// One replica process of either cluster. Mutated only by the benchmark's own task.
final class Member {
    let system: System
    let id: UInt64
    let clientPort: Int
    let executable: String
    let arguments: [String]
    let logPath: String
    var process: ChildProcess

    init(system: System, id: UInt64, clientPort: Int, executable: String, arguments: [String], logPath: String) throws {
        self.system = system
        self.id = id
        self.clientPort = clientPort
        self.executable = executable
        self.arguments = arguments
        self.logPath = logPath
        process = try ChildProcess.spawn(
            name: "\(system.rawValue)-\(id)", executable: executable, arguments: arguments, logPath: logPath)
    }

    /// Starts it again on the same data directory (after it was killed).
    func restart() throws {
        process = try ChildProcess.spawn(
            name: "\(system.rawValue)-\(id)", executable: executable, arguments: arguments, logPath: logPath)
    }
}

struct Cluster {
    let system: System
    let members: [Member]

    var putURI: String { system == .ours ? "/propose" : "/v3/kv/put" }
    var live: [Member] { members.filter { !$0.process.hasExited } }
    func cpuSeconds() -> Double { members.compactMap { $0.process.cpuSeconds }.reduce(0, +) }
}

struct ThroughputResult {
    var clients: Int
    var ok: Int
    var failures: Int
    var seconds: Double
    var latency: LatencySummary
    var clientCPU: Double
    var serverCPU: Double
    /// Cores used by everything else on the (shared) machine during the run.
    var otherCPU: Double?
    /// Durable writes (fsyncs with durable storage) on the leader per second.
    var leaderWritesPerSecond: Double?
    /// Proposals per durable write on the leader.
    var proposalsPerWrite: Double?
    /// Mean time of one durable write on the leader, ms (ours: the whole LMDB transaction;
    /// etcd: the WAL fsync alone).
    var meanWriteMs: Double?
    var lastFailure: String?

    var rps: Double { seconds > 0 ? Double(ok) / seconds : 0 }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Benchmark a 3-replica switchman Raft cluster against a 3-member etcd cluster (mTLS, loopback).",
        discussion: """
            Generates certificates, starts 3 `switchman-bench node` processes and 3 etcd \
            members, drives each cluster's leader with C closed-loop HTTP/1.1 keep-alive \
            connections over mutual TLS, then measures failover after SIGKILL of the leader \
            and the replicas' resident memory. Every child is killed at the end.
            """
    )

    @Option(help: "Concurrent connections per run, comma-separated.") var clients: String = "1,16,256"
    @Option(help: "Length of each throughput run (e.g. 10s, 500ms).") var duration: String = "10s"
    @Option(help: "Bytes per value.") var valueBytes: Int = 256
    @Option(help: "Storage of our replicas: lmdb (fsync, the durability etcd has) or memory (not durable, NOT comparable).")
    var storage: StorageKind = .lmdb
    @Option(help: "SIGKILL-the-leader trials per cluster (0 skips).") var failoverTrials: Int = 5
    @Option(help: "etcd binary.") var etcd: String = "/usr/bin/etcd"
    @Option(
        help: """
            Parent of etcd's data directories (default: the work directory, on disk). A tmpfs such \
            as /dev/shm turns etcd's fsyncs into no-ops: the fair partner for --storage memory.
            """)
    var etcdDataRoot: String?
    @Flag(help: "Benchmark our cluster only.") var skipEtcd = false
    @Option(help: "First of the loopback ports used (default: random in 20000-59000).") var basePort: Int?
    @Option(help: "Work directory (default: a new temporary directory, removed on success).") var workDir: String?

    func run() async throws {
        let signals = installSignalHandlers()
        defer {
            ChildRegistry.shared.killAll()
            for s in signals { s.cancel() }
        }
        try await benchmark()
    }

    private func benchmark() async throws {
        guard let durationSeconds = parseDuration(duration), durationSeconds > 0 else {
            throw ValidationError("--duration: expected e.g. 10s or 500ms")
        }
        let clientCounts = clients.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !clientCounts.isEmpty, clientCounts.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("--clients: expected positive integers, e.g. 1,16,256")
        }
        let others = otherProcesses(named: "etcd") + otherProcesses(named: "switchman-bench").filter { $0 != getpid() }
        if !others.isEmpty {
            print("WARNING: other etcd/switchman-bench processes are running (pids \(others)); they share the 2 cores.")
        }

        let dir = try workDir ?? makeTemporaryDirectory()
        let base = basePort ?? Int.random(in: 20000..<59000)
        print("work directory: \(dir)   ports: \(base)-\(base + 40)")
        let certs = CertificateDirectory(path: dir + "/certs")
        try certs.bootstrap(
            clusterName: "switchman-bench", members: [1, 2, 3], hosts: ["127.0.0.1", "localhost"], clients: ["bench"])
        let tls = try makeClientTLS(certs)

        let ours = try startOurs(dir: dir, certs: certs, base: base)
        var etcdData = dir
        if let root = etcdDataRoot {
            etcdData = root + "/switchman-bench-etcd-\(base)"
            try FileManager.default.createDirectory(atPath: etcdData, withIntermediateDirectories: true)
        }
        defer {
            if etcdDataRoot != nil {
                ChildRegistry.shared.killAll()
                try? FileManager.default.removeItem(atPath: etcdData)
            }
        }
        let etcdCluster = skipEtcd ? nil : try startEtcd(dir: dir, dataDir: etcdData, certs: certs, base: base)
        try await waitReady(ours, tls: tls)
        if let etcdCluster { try await waitReady(etcdCluster, tls: tls) }
        print("both clusters ready\n")

        var rows: [(Int, ThroughputResult, ThroughputResult?)] = []
        for c in clientCounts {
            let a = try await throughput(ours, clients: c, seconds: durationSeconds, tls: tls)
            report(a, ours.system)
            var b: ThroughputResult?
            if let etcdCluster {
                let r = try await throughput(etcdCluster, clients: c, seconds: durationSeconds, tls: tls)
                report(r, etcdCluster.system)
                b = r
            }
            rows.append((c, a, b))
        }

        var rss: [(System, String)] = []
        for cluster in [ours, etcdCluster].compactMap({ $0 }) {
            let leader = try await findLeader(cluster, tls: tls)
            let follower = cluster.members.first { $0 !== leader }
            let l = leader.process.residentKiB.map { "\($0 / 1024) MiB" } ?? "?"
            let f = follower?.process.residentKiB.map { "\($0 / 1024) MiB" } ?? "?"
            rss.append((cluster.system, "leader \(l), a follower \(f)"))
        }

        var failovers: [(System, [Double])] = []
        if failoverTrials > 0 {
            for cluster in [ours, etcdCluster].compactMap({ $0 }) {
                var times: [Double] = []
                for trial in 1...failoverTrials {
                    let t = try await failover(cluster, tls: tls)
                    print("failover \(cluster.system.rawValue) trial \(trial): \(format(t * 1000, 0)) ms")
                    times.append(t)
                }
                failovers.append((cluster.system, times))
            }
        }

        printTable(rows, rss: rss, failovers: failovers, seconds: durationSeconds)
        ChildRegistry.shared.killAll()
        if workDir == nil { try? FileManager.default.removeItem(atPath: dir) }
    }

    // MARK: - Clusters

    private func startOurs(dir: String, certs: CertificateDirectory, base: Int) throws -> Cluster {
        let peers = (1...3).map { "\($0)=127.0.0.1:\(base + $0)" }.joined(separator: ",")
        let exe = try selfExecutable()
        let members = try (1...3).map { (i: Int) -> Member in
            let args = [
                "node", "--id", "\(i)", "--peers", peers, "--certs", certs.path, "--data", "\(dir)/node-\(i)",
                "--http", "127.0.0.1:\(base + 10 + i)", "--storage", storage.rawValue,
                "--tick-ms", "100", "--election-ticks", "10", "--heartbeat-ticks", "1",
            ]
            return try Member(
                system: .ours, id: UInt64(i), clientPort: base + 10 + i, executable: exe, arguments: args,
                logPath: "\(dir)/node-\(i).log")
        }
        return Cluster(system: .ours, members: members)
    }

    private func startEtcd(dir: String, dataDir: String, certs: CertificateDirectory, base: Int) throws -> Cluster {
        let initial = (1...3).map { "m\($0)=https://127.0.0.1:\(base + 30 + $0)" }.joined(separator: ",")
        let members = try (1...3).map { (i: Int) -> Member in
            let client = "https://127.0.0.1:\(base + 20 + i)"
            let peer = "https://127.0.0.1:\(base + 30 + i)"
            let cert = certs.memberCertificatePath(UInt64(i))
            let key = certs.memberKeyPath(UInt64(i))
            let args = [
                "--name", "m\(i)", "--data-dir", "\(dataDir)/etcd-\(i)",
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "switchman-bench",
                "--cert-file", cert, "--key-file", key, "--trusted-ca-file", certs.caCertificatePath,
                "--client-cert-auth",
                "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", certs.caCertificatePath,
                "--peer-client-cert-auth",
                // The same timing as ours: 100 ms heartbeat, 1 s election timeout.
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--logger", "zap", "--log-level", "warn",
            ]
            return try Member(
                system: .etcd, id: UInt64(i), clientPort: base + 20 + i, executable: etcd, arguments: args,
                logPath: "\(dir)/etcd-\(i).log")
        }
        return Cluster(system: .etcd, members: members)
    }

    // MARK: - Control queries

    private func query(_ m: Member, _ method: HTTPMethod, _ uri: String, body: [UInt8] = [], tls: NIOSSLContext) async throws
        -> HTTPResult
    {
        let c = try await HTTPSConnection.connect(host: "127.0.0.1", port: m.clientPort, tls: tls, timeout: .seconds(2))
        defer { Task { await c.close() } }
        return try await c.request(method, uri, body: body, timeout: .seconds(3))
    }

    private struct View {
        var leader: UInt64
        var index: UInt64
        var isLeader: Bool
    }

    private func view(_ m: Member, tls: NIOSSLContext) async throws -> View {
        switch m.system {
        case .ours:
            let r = try await query(m, .GET, "/status", tls: tls)
            let s = try decodeJSON(NodeStatusResponse.self, r.body)
            return View(leader: s.leader, index: s.commitIndex, isLeader: s.role == "leader")
        case .etcd:
            let r = try await query(m, .POST, "/v3/maintenance/status", body: Array("{}".utf8), tls: tls)
            guard r.status == 200 else { throw SpawnError(description: "etcd status: HTTP \(r.status) \(r.text)") }
            let s = try EtcdStatus.parse(r.body)
            return View(leader: s.leader, index: s.raftIndex, isLeader: s.isLeader)
        }
    }

    private func findLeader(_ cluster: Cluster, tls: NIOSSLContext) async throws -> Member {
        for m in cluster.live {
            if let v = try? await view(m, tls: tls), v.isLeader { return m }
        }
        throw SpawnError(description: "\(cluster.system.rawValue): no leader")
    }

    /// Every live member answers, names the same leader, and has the same log index.
    private func waitReady(_ cluster: Cluster, tls: NIOSSLContext, timeout: Double = 90) async throws {
        let deadline = ContinuousClock.now + .seconds(timeout)
        var last = "no answer yet"
        while ContinuousClock.now < deadline {
            for m in cluster.members where m.process.hasExited {
                throw SpawnError(
                    description: "\(m.process.name) exited during start-up; its log (\(m.logPath)):\n\(m.process.logTail)")
            }
            var views: [View] = []
            for m in cluster.members {
                do { views.append(try await view(m, tls: tls)) } catch { last = "\(m.process.name): \(error)" }
            }
            if views.count == cluster.members.count, let first = views.first, first.leader != 0,
                views.allSatisfy({ $0.leader == first.leader && $0.index == first.index }),
                views.filter(\.isLeader).count == 1
            {
                return
            }
            if views.count == cluster.members.count {
                last = views.map { "leader \($0.leader) index \($0.index)" }.joined(separator: "; ")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw SpawnError(description: "\(cluster.system.rawValue) not ready after \(Int(timeout)) s: \(last)")
    }

    /// Durable writes, their total seconds, and committed proposals on the leader, or nil.
    private func writeCounters(_ m: Member, tls: NIOSSLContext) async -> (writes: Double, seconds: Double, proposals: Double)? {
        switch m.system {
        case .ours:
            guard let r = try? await query(m, .GET, "/status", tls: tls),
                let s = try? decodeJSON(NodeStatusResponse.self, r.body)
            else { return nil }
            return (Double(s.durableWrites), s.durableWriteSeconds, Double(s.batchedProposals))
        case .etcd:
            guard let r = try? await query(m, .GET, "/metrics", tls: tls),
                let fsyncs = prometheusValue("etcd_disk_wal_fsync_duration_seconds_count", in: r.text),
                let fsyncSeconds = prometheusValue("etcd_disk_wal_fsync_duration_seconds_sum", in: r.text),
                let proposals = prometheusValue("etcd_server_proposals_committed_total", in: r.text)
            else { return nil }
            return (fsyncs, fsyncSeconds, proposals)
        }
    }

    // MARK: - Throughput

    private func throughput(_ cluster: Cluster, clients: Int, seconds: Double, tls: NIOSSLContext) async throws
        -> ThroughputResult
    {
        let leader = try await findLeader(cluster, tls: tls)
        let port = leader.clientPort
        let uri = cluster.putURI
        let value = (0..<valueBytes).map { _ in UInt8.random(in: 0...255) }
        let connections = try await withThrowingTaskGroup(of: HTTPSConnection.self) { group in
            for _ in 0..<clients {
                group.addTask { try await HTTPSConnection.connect(host: "127.0.0.1", port: port, tls: tls, timeout: .seconds(10)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        defer { for c in connections { Task { await c.close() } } }
        // Warm-up: one request per connection finishes the TLS handshake outside the timed run.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, c) in connections.enumerated() {
                let body = PutRequest(key: Array("bench-\(i)".utf8), value: value).encoded()
                group.addTask {
                    let r = try await c.request(.POST, uri, body: body, timeout: .seconds(10))
                    guard r.status == 200 else { throw SpawnError(description: "warm-up put: HTTP \(r.status) \(r.text)") }
                }
            }
            try await group.waitForAll()
        }

        let countersBefore = await writeCounters(leader, tls: tls)
        let clientCPU0 = selfCPUSeconds()
        let serverCPU0 = cluster.cpuSeconds()
        let busy0 = machineBusySeconds()
        let started = ContinuousClock.now
        let deadline = NIODeadline.now() + .nanoseconds(Int64(seconds * 1e9))
        let results = await withTaskGroup(of: LoopResult.self) { group in
            for (i, c) in connections.enumerated() {
                let body = PutRequest(key: Array("bench-\(i)".utf8), value: value).encoded()
                group.addTask { await c.closedLoop(.POST, uri, body: body, until: deadline) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let elapsed = ContinuousClock.now - started
        let elapsedSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let clientCPU = selfCPUSeconds() - clientCPU0
        let serverCPU = cluster.cpuSeconds() - serverCPU0
        var otherCPU: Double?
        if let b0 = busy0, let b1 = machineBusySeconds() { otherCPU = max(0, b1 - b0 - clientCPU - serverCPU) }
        let countersAfter = await writeCounters(leader, tls: tls)

        var latencies: [UInt64] = []
        latencies.reserveCapacity(results.reduce(0) { $0 + $1.latenciesNanos.count })
        for r in results { latencies += r.latenciesNanos }
        let failures = results.reduce(0) { $0 + $1.failures }
        let lastFailure = results.compactMap { $0.connectionError ?? $0.lastFailure }.first
        var writesPerSecond: Double?
        var perWrite: Double?
        var meanWriteMs: Double?
        if let b = countersBefore, let a = countersAfter, a.writes > b.writes {
            writesPerSecond = (a.writes - b.writes) / elapsedSeconds
            perWrite = (a.proposals - b.proposals) / (a.writes - b.writes)
            meanWriteMs = (a.seconds - b.seconds) / (a.writes - b.writes) * 1000
        }
        return ThroughputResult(
            clients: clients, ok: latencies.count, failures: failures, seconds: elapsedSeconds,
            latency: LatencySummary(nanoseconds: latencies), clientCPU: clientCPU / elapsedSeconds,
            serverCPU: serverCPU / elapsedSeconds, otherCPU: otherCPU.map { $0 / elapsedSeconds },
            leaderWritesPerSecond: writesPerSecond, proposalsPerWrite: perWrite,
            meanWriteMs: meanWriteMs,
            lastFailure: lastFailure)
    }

    // MARK: - Failover

    /// Seconds from SIGKILL of the leader to the first put committed afterwards, proposing in
    /// a loop against whichever surviving member answers; then restarts the killed member
    /// and waits until the cluster is whole again.
    private func failover(_ cluster: Cluster, tls: NIOSSLContext) async throws -> Double {
        try await waitReady(cluster, tls: tls)
        let leader = try await findLeader(cluster, tls: tls)
        let survivors = cluster.members.filter { $0 !== leader }
        var connections: [HTTPSConnection?] = []
        for m in survivors {
            connections.append(try? await HTTPSConnection.connect(host: "127.0.0.1", port: m.clientPort, tls: tls))
        }
        let body = PutRequest(key: Array("failover".utf8), value: Array(repeating: 7, count: valueBytes)).encoded()
        let killed = ContinuousClock.now
        leader.process.killAndReap()
        let giveUp = killed + .seconds(60)
        var attempt = 0
        var committed: ContinuousClock.Instant?
        while committed == nil, ContinuousClock.now < giveUp {
            let i = attempt % survivors.count
            attempt += 1
            if connections[i] == nil {
                connections[i] = try? await HTTPSConnection.connect(
                    host: "127.0.0.1", port: survivors[i].clientPort, tls: tls, timeout: .milliseconds(500))
            }
            guard let c = connections[i] else {
                try await Task.sleep(for: .milliseconds(5))
                continue
            }
            do {
                // Short, because an etcd follower without a leader does not answer a put
                // until its own request timeout: waiting longer would measure our timeout.
                // This bounds the error of each measurement to about 100 ms.
                let r = try await c.request(.POST, cluster.putURI, body: body, timeout: .milliseconds(100))
                if r.status == 200 {
                    committed = ContinuousClock.now
                } else {
                    // Not leader (yet): the same short pause for both clusters, so neither
                    // client spins on the two cores the election needs.
                    try await Task.sleep(for: .milliseconds(5))
                }
            } catch {
                connections[i] = nil
                await c.close()
            }
        }
        for c in connections { await c?.close() }
        guard let committed else {
            throw SpawnError(description: "\(cluster.system.rawValue): nothing committed within 60 s of killing the leader")
        }
        try leader.restart()
        try await waitReady(cluster, tls: tls)
        let d = committed - killed
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    // MARK: - Output

    private func report(_ r: ThroughputResult, _ system: System) {
        var line = "\(system.rawValue) C=\(r.clients): \(format(r.rps, 0)) req/s, p50 \(format(r.latency.p50, 2)) ms, "
        line += "p99 \(format(r.latency.p99, 2)) ms, p99.9 \(format(r.latency.p999, 2)) ms, failures \(r.failures), "
        line += "client CPU \(format(r.clientCPU, 2)) cores, servers \(format(r.serverCPU, 2)) cores, "
        line += "everything else \(r.otherCPU.map { format($0, 2) } ?? "?") cores"
        if let w = r.leaderWritesPerSecond, let p = r.proposalsPerWrite, let t = r.meanWriteMs {
            line += ", leader durable writes \(format(w, 0))/s of \(format(t, 2)) ms, \(format(p, 1)) proposals/write"
        }
        if let f = r.lastFailure { line += "\n  last failure: \(f)" }
        print(line)
    }

    private func printTable(
        _ rows: [(Int, ThroughputResult, ThroughputResult?)], rss: [(System, String)], failovers: [(System, [Double])],
        seconds: Double
    ) {
        let etcdStorage = etcdDataRoot.map { "data under \($0)" } ?? "data on disk, fsync"
        if storage == .memory && etcdDataRoot == nil {
            print("\nNOTE: our replicas used memory storage (no fsync): NOT comparable with etcd on disk.")
        }
        print("\n## Throughput (\(format(seconds, 0)) s per run, \(valueBytes)-byte values, ours: \(storage.rawValue) storage, etcd: \(etcdStorage))\n")
        print("| C | ours req/s | etcd req/s | ours/etcd | ours p50 / p99 / p99.9 ms | etcd p50 / p99 / p99.9 ms |")
        print("|---:|---:|---:|---:|---|---|")
        for (c, a, b) in rows {
            let ratio = b.map { $0.rps > 0 ? format(a.rps / $0.rps, 2) : "–" } ?? "–"
            let lat = { (r: ThroughputResult) in
                "\(format(r.latency.p50, 2)) / \(format(r.latency.p99, 2)) / \(format(r.latency.p999, 2))"
            }
            print(
                "| \(c) | \(format(a.rps, 0)) | \(b.map { format($0.rps, 0) } ?? "–") | \(ratio) | \(lat(a)) | \(b.map(lat) ?? "–") |"
            )
        }
        print("\nCPU in cores (of 2): load generator / the 3 replicas / everything else on the machine.\n")
        print("| C | ours: client / servers / other | etcd: client / servers / other | ours leader: durable writes/s, mean ms, proposals/write | etcd leader: WAL fsyncs/s, mean ms, proposals/fsync |")
        print("|---:|---|---|---|---|")
        for (c, a, b) in rows {
            let cpu = { (r: ThroughputResult) in
                "\(format(r.clientCPU, 2)) / \(format(r.serverCPU, 2)) / \(r.otherCPU.map { format($0, 2) } ?? "?")"
            }
            let w = { (r: ThroughputResult) -> String in
                guard let w = r.leaderWritesPerSecond, let p = r.proposalsPerWrite, let t = r.meanWriteMs else { return "?" }
                return "\(format(w, 0)), \(format(t, 2)), \(format(p, 1))"
            }
            print("| \(c) | \(cpu(a)) | \(b.map(cpu) ?? "–") | \(w(a)) | \(b.map(w) ?? "–") |")
        }
        if !failovers.isEmpty {
            print("\n## Failover: SIGKILL of the leader → next committed put (ms)\n")
            print("| cluster | trials | median | min | max |")
            print("|---|---|---:|---:|---:|")
            for (system, times) in failovers {
                let ms = times.map { $0 * 1000 }.sorted()
                let trials = ms.map { format($0, 0) }.joined(separator: ", ")
                let median = percentile(ms, 50) ?? .nan
                print("| \(system.rawValue) | \(trials) | \(format(median, 0)) | \(format(ms.first ?? .nan, 0)) | \(format(ms.last ?? .nan, 0)) |")
            }
        }
        print("\n## Resident memory (VmRSS) after the throughput runs\n")
        for (system, text) in rss { print("- \(system.rawValue): \(text)") }
    }
}

func format(_ x: Double, _ digits: Int) -> String {
    guard x.isFinite else { return "–" }
    return String(format: "%.\(digits)f", x)
}

/// "10s", "500ms", "1.5s", "2m"; seconds.
func parseDuration(_ text: String) -> Double? {
    let t = text.trimmingCharacters(in: .whitespaces)
    if t.hasSuffix("ms") { return Double(t.dropLast(2)).map { $0 / 1000 } }
    if t.hasSuffix("s") { return Double(t.dropLast()) }
    if t.hasSuffix("m") { return Double(t.dropLast()).map { $0 * 60 } }
    return Double(t)
}

private func makeClientTLS(_ certs: CertificateDirectory) throws -> NIOSSLContext {
    var config = TLSConfiguration.makeClientConfiguration()
    config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(certs.caCertificatePath))
    config.certificateChain = try NIOSSLCertificate.fromPEMFile(certs.clientCertificatePath("bench")).map { .certificate($0) }
    config.privateKey = .privateKey(try NIOSSLPrivateKey(file: certs.clientKeyPath("bench"), format: .pem))
    // The chain is verified against the cluster CA; the servers are dialled by IP address.
    config.certificateVerification = .noHostnameVerification
    return try NIOSSLContext(configuration: config)
}

private func selfExecutable() throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { throw SpawnError(description: "cannot resolve /proc/self/exe") }
    return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

private func makeTemporaryDirectory() throws -> String {
    var template = Array((NSTemporaryDirectory() + "/switchman-bench-XXXXXX").utf8CString)
    guard let p = mkdtemp(&template) else { throw SpawnError(description: "mkdtemp failed") }
    return String(cString: p)
}

/// Pids of processes whose command name is `name` and that we did not start.
private func otherProcesses(named name: String) -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap { Int32($0) }.filter { pid in
        let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard comm == String(name.prefix(15)) else { return false }
        // Zombies (killed, not yet reaped by init) use no CPU.
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return !(stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? false)
    }
}

/// SIGINT/SIGTERM kill every child before we exit.
private func installSignalHandlers() -> [any DispatchSourceSignal] {
    [SIGINT, SIGTERM].map { sig in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            ChildRegistry.shared.killAll()
            exit(128 + sig)
        }
        source.resume()
        return source
    }
}
