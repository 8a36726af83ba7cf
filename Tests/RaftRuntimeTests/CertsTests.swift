import Foundation
import SwiftASN1
import Testing
import X509

@testable import RaftRuntime

func der(_ certificate: Certificate) throws -> [UInt8] {
    var serializer = DER.Serializer()
    try serializer.serialize(certificate)
    return serializer.serializedBytes
}

@Suite("Certificates")
struct CertsTests {
    @Test func caIsSelfSignedCertificateAuthority() throws {
        let ca = try ClusterCertificateAuthority.generate(clusterName: "prod")
        #expect(ca.certificate.subject == ca.certificate.issuer)
        #expect(try ca.certificate.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        #expect(try ca.certificate.extensions.keyUsage?.keyCertSign == true)
        #expect(ca.clusterName == "prod")
        #expect(ca.certificate.signature.description.isEmpty == false)
    }

    @Test func memberCertificateNamesItsIDAndHosts() throws {
        let ca = try ClusterCertificateAuthority.generate(clusterName: "prod")
        let issued = try ca.issueMember(id: 7, hosts: ["127.0.0.1", "::1", "Node7.Example"])
        let certificate = issued.certificate
        #expect(try PeerIdentity.from(derEncoded: der(certificate)) == .member(7))
        let eku = try #require(try certificate.extensions.extendedKeyUsage)
        #expect(eku.contains(.serverAuth) && eku.contains(.clientAuth))
        let names = Array(try #require(try certificate.extensions.subjectAlternativeNames))
        #expect(names.contains(.uniformResourceIdentifier("switchman://member/7")))
        #expect(names.contains(.dnsName("node7.example")))
        #expect(names.contains(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))))
        #expect(names.contains(.ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1])))))
        #expect("\(certificate.subject)".contains("CN=member-7"))
        #expect(try certificate.extensions.basicConstraints == .notCertificateAuthority)
    }

    @Test func memberCertificateVerifiesAgainstTheCA() async throws {
        let ca = try ClusterCertificateAuthority.generate(clusterName: "prod")
        let leaf = try ca.issueMember(id: 1, hosts: ["127.0.0.1"]).certificate
        var verifier = Verifier(rootCertificates: CertificateStore([ca.certificate])) {
            RFC5280Policy()
        }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore())
        guard case .validCertificate = result else {
            Issue.record("member certificate does not chain to the CA: \(result)")
            return
        }
    }

    @Test func clientCertificateIsNotAMember() throws {
        let ca = try ClusterCertificateAuthority.generate(clusterName: "prod")
        let issued = try ca.issueClient(name: "operator")
        let identity = try PeerIdentity.from(derEncoded: der(issued.certificate))
        #expect(identity == .client("operator"))
        #expect(identity.memberID == nil)
        let eku = try #require(try issued.certificate.extensions.extendedKeyUsage)
        #expect(eku.contains(.clientAuth) && !eku.contains(.serverAuth))
    }

    @Test func identityParsingIsStrict() throws {
        #expect(try PeerIdentity.parse(uri: "switchman://member/12") == .member(12))
        #expect(throws: PeerIdentityError.self) { try PeerIdentity.parse(uri: "switchman://member/012") }
        #expect(throws: PeerIdentityError.self) { try PeerIdentity.parse(uri: "switchman://member/+1") }
        #expect(throws: PeerIdentityError.self) { try PeerIdentity.parse(uri: "switchman://member/") }
        #expect(throws: PeerIdentityError.self) { try PeerIdentity.parse(uri: "switchman://client/../x") }
        #expect(throws: PeerIdentityError.self) { try PeerIdentity.from(derEncoded: [0x30, 0x03, 0x02, 0x01]) }
    }

    @Test func badInputsAreRefused() throws {
        let ca = try ClusterCertificateAuthority.generate(clusterName: "prod")
        #expect(throws: CertificateGenerationError.invalidHost("bad host!")) {
            try ca.issueMember(id: 1, hosts: ["bad host!"])
        }
        #expect(throws: CertificateGenerationError.invalidClientName("a/b")) { try ca.issueClient(name: "a/b") }
        #expect(throws: CertificateGenerationError.invalidClusterName("")) {
            try ClusterCertificateAuthority.generate(clusterName: "")
        }
    }

    @Test func caReloadsFromPEMAndRejectsForeignKey() throws {
        let ca = try ClusterCertificateAuthority.generate(clusterName: "prod")
        let other = try ClusterCertificateAuthority.generate(clusterName: "prod")
        let certPEM = try ca.certificate.serializeAsPEM().pemString
        let reloaded = try ClusterCertificateAuthority(
            certificatePEM: certPEM,
            privateKeyPEM: try ca.privateKey.serializeAsPEM().pemString
        )
        #expect(reloaded.certificate == ca.certificate)
        #expect(throws: CertificateGenerationError.keyDoesNotMatchCertificate) {
            try ClusterCertificateAuthority(
                certificatePEM: certPEM,
                privateKeyPEM: try other.privateKey.serializeAsPEM().pemString
            )
        }
    }
}

@Suite("Certificate directory")
struct CertsDirectoryTests {
    private func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("switchman-certs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    @Test func initWritesCAWithPrivateKeyMode() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = CertificateDirectory(path: dir)
        let written = try store.initCA(clusterName: "prod")
        #expect(Set(written) == [store.caCertificatePath, store.caKeyPath])
        #expect(try mode(store.caKeyPath) == 0o600)
        #expect(try store.loadCA().clusterName == "prod")
    }

    @Test func existingFilesAreNotOverwrittenWithoutForce() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = CertificateDirectory(path: dir)
        try store.initCA(clusterName: "prod")
        let before = try String(contentsOfFile: store.caCertificatePath, encoding: .utf8)
        #expect(throws: CertificateDirectoryError.filesExist([store.caCertificatePath, store.caKeyPath])) {
            try store.initCA(clusterName: "prod")
        }
        #expect(try String(contentsOfFile: store.caCertificatePath, encoding: .utf8) == before)
        try store.initCA(clusterName: "prod", force: true)
        #expect(try String(contentsOfFile: store.caCertificatePath, encoding: .utf8) != before)
        #expect(try mode(store.caKeyPath) == 0o600)
    }

    @Test func memberWithoutCAFailsClearly() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = CertificateDirectory(path: dir)
        #expect(throws: CertificateDirectoryError.missingCA(directory: dir)) {
            try store.issueMember(id: 1, hosts: ["127.0.0.1"])
        }
        #expect(CertificateDirectoryError.missingCA(directory: dir).description.contains("switchman certs init"))
    }

    @Test func memberAndClientFilesLoadAsTransportCredentials() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = CertificateDirectory(path: dir)
        try store.initCA(clusterName: "prod")
        try store.issueMember(id: 3, hosts: ["127.0.0.1", "node3.example"])
        try store.issueClient(name: "operator")
        #expect(try mode(store.memberKeyPath(3)) == 0o600)
        #expect(try mode(store.clientKeyPath("operator")) == 0o600)
        let credentials = try PeerTLSCredentials(directory: store, memberID: 3)
        #expect(try credentials.localIdentity() == .member(3))
        let client = try PeerTLSCredentials(
            caFile: store.caCertificatePath,
            certificateFile: store.clientCertificatePath("operator"),
            privateKeyFile: store.clientKeyPath("operator")
        )
        #expect(try client.localIdentity() == .client("operator"))
        #expect(throws: CertificateDirectoryError.self) { try store.issueMember(id: 3, hosts: []) }
    }

    @Test func bootstrapCreatesEverythingOnceAndReusesCA() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = CertificateDirectory(path: dir)
        let written = try store.bootstrap(clusterName: "local", members: [1, 2, 3], hosts: ["127.0.0.1"])
        #expect(written.count == 2 + 3 * 2 + 2)
        for id: UInt64 in [1, 2, 3] {
            #expect(try PeerTLSCredentials(directory: store, memberID: id).localIdentity() == .member(id))
        }
        let ca = try String(contentsOfFile: store.caCertificatePath, encoding: .utf8)
        // Existing leaves: refused before anything is written.
        #expect(throws: CertificateDirectoryError.self) {
            try store.bootstrap(clusterName: "local", members: [3, 4], hosts: ["127.0.0.1"])
        }
        #expect(!FileManager.default.fileExists(atPath: store.memberCertificatePath(4)))
        // New members only: the CA is reused.
        try store.bootstrap(clusterName: "local", members: [4], hosts: [], clients: [])
        #expect(try String(contentsOfFile: store.caCertificatePath, encoding: .utf8) == ca)
        #expect(try PeerTLSCredentials(directory: store, memberID: 4).localIdentity() == .member(4))
    }

    @Test func summaryDescribesAMemberCertificate() throws {
        let ca = try ClusterCertificateAuthority.generate(clusterName: "prod")
        let pem = try ca.issueMember(id: 5, hosts: ["10.0.0.5"]).certificatePEM()
        let summary = try CertificateSummary(pem: pem)
        #expect(!summary.isCertificateAuthority)
        #expect(try summary.identity.get() == .member(5))
        #expect(summary.alternativeNames.contains("IP:10.0.0.5"))
        #expect(summary.alternativeNames.contains("URI:switchman://member/5"))
    }

    /// Runs the real binary when the build produced it (it does with `swift build --build-tests`).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: CertsDirectoryTests.binaryPath)))
    func binaryBootstrapsAndRefusesToOverwrite() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try run(["certs", "bootstrap", "--dir", dir, "--members", "1,2", "--host", "127.0.0.1"])
        #expect(first.status == 0)
        #expect(first.output.contains("member-2-key.pem"))
        let second = try run(["certs", "member", "--dir", dir, "--id", "1"])
        #expect(second.status != 0)
        #expect(second.output.contains("--force"))
        let missing = try run(["certs", "client", "--dir", dir + "/nowhere", "--name", "ops"])
        #expect(missing.status != 0)
        #expect(missing.output.contains("switchman certs init"))
        let inspect = try run(["certs", "inspect", dir + "/member-2.pem"])
        #expect(inspect.status == 0)
        #expect(inspect.output.contains("member 2"))
    }

    static var binaryPath: String {
        // Tests/RaftRuntimeTests/CertsTests.swift -> package root
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/switchman").path
    }

    private func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binaryPath)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
