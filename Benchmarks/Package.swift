// swift-tools-version: 6.1
import Foundation
import PackageDescription

// `.package(path: "..")` names the root package by its folder ("main", "h-scale", a CI
// checkout's name…), not by "Switchman": find that name rather than assume it.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

// Micro-benchmarks of Switchman's hot pure paths (docs/BENCHMARKS.md, issue 9 item 6), with
// ordo-one/benchmark. A package of its own so that `swift build` / `swift test` in the root
// never build the benchmark tool or its dependencies. Run:
//
//     cd Benchmarks && swift package --allow-writing-to-package-directory benchmark
//
// Only the "MallocInterposer" trait is enabled: that also turns off the package's default
// "RuntimeInterposer" trait (the Swift 6.3 ARC runtime interposer), whose package is not
// needed then and is not resolved. No jemalloc is involved in 1.38.
let package = Package(
    name: "SwitchmanBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "SwitchmanBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Raft", package: root),
                .product(name: "Controller", package: root),
            ],
            path: "Benchmarks/SwitchmanBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
