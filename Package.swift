// swift-tools-version: 6.1
import PackageDescription

// Dependency arrows point one way (DESIGN.md): switchman → Controller → (RaftRuntime → Raft), Actuators.
// The Raft core depends on nothing but the standard library.
let package = Package(
    name: "Switchman",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "switchman", targets: ["switchman"]),
        .library(name: "Raft", targets: ["Raft"]),
        // For the micro-benchmarks in Benchmarks/ (their own package): the planner, the
        // controller's entry and state codecs.
        .library(name: "Controller", targets: ["Controller"]),
        // Kept out of `switchman`: the Raft-vs-etcd benchmark (docs/BENCHMARKS.md).
        .executable(name: "switchman-bench", targets: ["SwitchmanBench"]),
        // Kept out of `switchman` too: the chaos rig's history checkers (chaos/CHECKERS.md).
        .executable(name: "switchman-chaos", targets: ["SwitchmanChaos"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.0"),
    ],
    targets: [
        // The core and the simulator are optimized even in debug builds: the simulation
        // tests run thousands of seeds, and -Onone makes them ~10x slower.
        .target(name: "Raft", swiftSettings: [.unsafeFlags(["-O"])]),
        .target(name: "RaftTestKit", dependencies: ["Raft"], swiftSettings: [.unsafeFlags(["-O"])]),
        .systemLibrary(
            name: "CLMDB",
            path: "Sources/CLMDB",
            providers: [.apt(["liblmdb-dev"])]
        ),
        .target(
            name: "RaftRuntime",
            dependencies: [
                "Raft",
                "CLMDB",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "Actuators",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "Controller",
            dependencies: [
                "Raft",
                "RaftRuntime",
                "Actuators",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                // The sentinel (Sources/Controller/Sentinel): its probes, mTLS server and client.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // The admin API and its /metrics.
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "switchman",
            dependencies: [
                "Raft",
                "RaftRuntime",
                "Actuators",
                "Controller",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        // What the benchmark's client and server agree on (JSON bodies, entry encoding) and
        // its statistics; Foundation only, so it is unit-tested without starting processes.
        .target(name: "BenchSupport"),
        .executableTarget(
            name: "SwitchmanBench",
            dependencies: [
                "BenchSupport",
                "Raft",
                "RaftRuntime",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The chaos rig's checkers: history loaders, a linearizability checker, the timeline.
        // Foundation only, so controller unit tests can reuse the linearizability checker.
        .target(name: "ChaosCheck"),
        .executableTarget(
            name: "SwitchmanChaos",
            dependencies: [
                "ChaosCheck",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // One way to run child processes in tests (a plain target: test targets cannot
        // depend on each other).
        .target(name: "SwitchmanTestSupport", path: "Tests/SwitchmanTestSupport"),
        .testTarget(name: "BenchSupportTests", dependencies: ["BenchSupport"]),
        .testTarget(name: "ChaosCheckTests", dependencies: ["ChaosCheck", "SwitchmanTestSupport"]),
        .testTarget(name: "RaftTests", dependencies: ["Raft", "RaftTestKit"]),
        .testTarget(name: "RaftSimulationTests", dependencies: ["Raft", "RaftTestKit"]),
        .testTarget(
            name: "ControllerTests",
            dependencies: [
                "Controller", "Raft", "RaftRuntime", "Actuators", "SwitchmanTestSupport", "ChaosCheck",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "RaftRuntimeTests",
            dependencies: [
                "RaftRuntime",
                "SwitchmanTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "ActuatorsTests",
            dependencies: [
                "SwitchmanTestSupport",
                "Actuators",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        // Multi-process cluster tests: real `switchman` processes against moto_server, checked
        // with awscli. Talks to the code under test only through the built binary.
        .testTarget(
            name: "ControllerIntegrationTests",
            dependencies: [
                // Only the admin API's JSON types: the tests talk to processes, never to the library.
                "Controller",
                "SwitchmanTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
