import NIOCore
import NIOSSL
import X509

public enum PeerTLSCredentialsError: Error, CustomStringConvertible {
    case noCertificate(String)
    case identityMismatch(expected: UInt64, certificate: PeerIdentity)
    case invalid(String)

    public var description: String {
        switch self {
        case .noCertificate(let source): return "no certificate found in \(source)"
        case .identityMismatch(let expected, let identity):
            return "local certificate names \(identity), but this replica is member \(expected)"
        case .invalid(let why): return "invalid TLS credentials: \(why)"
        }
    }
}

/// The material one replica needs for the peer transport: the cluster CA (the only trust
/// root), its own member certificate and key.
public struct PeerTLSCredentials: Sendable {
    public let trustRoots: [NIOSSLCertificate]
    public let certificateChain: [NIOSSLCertificate]
    public let privateKey: NIOSSLPrivateKey

    public init(caPEM: String, certificatePEM: String, privateKeyPEM: String) throws {
        self.trustRoots = try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))
        self.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
        self.privateKey = try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
        guard !trustRoots.isEmpty else { throw PeerTLSCredentialsError.noCertificate("CA PEM") }
        guard !certificateChain.isEmpty else { throw PeerTLSCredentialsError.noCertificate("certificate PEM") }
    }

    public init(caFile: String, certificateFile: String, privateKeyFile: String) throws {
        try self.init(
            caPEM: try CertificateDirectory.read(caFile),
            certificatePEM: try CertificateDirectory.read(certificateFile),
            privateKeyPEM: try CertificateDirectory.read(privateKeyFile)
        )
    }

    /// Member `id`'s files in the standard layout (see ``CertificateDirectory``).
    public init(directory: CertificateDirectory, memberID id: UInt64) throws {
        try self.init(
            caFile: directory.caCertificatePath,
            certificateFile: directory.memberCertificatePath(id),
            privateKeyFile: directory.memberKeyPath(id)
        )
    }

    /// The identity our own certificate claims; checked at start so a replica configured with
    /// another member's files fails loudly instead of being refused by every peer.
    public func localIdentity() throws -> PeerIdentity {
        guard let leaf = certificateChain.first else { throw PeerTLSCredentialsError.noCertificate("certificate chain") }
        return try PeerIdentity.from(derEncoded: try leaf.toDERBytes())
    }

    /// Mutual TLS 1.3 only, trusting the cluster CA alone. Hostnames are not checked: peers are
    /// addressed by member id, and the transport checks the id in the certificate instead,
    /// which also holds when a replica is reached through an address not in its SANs.
    func makeServerContext() throws -> NIOSSLContext {
        var config = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: certificateChain.map { .certificate($0) },
            privateKey: .privateKey(privateKey),
            trustRoots: .certificates(trustRoots)
        )
        config.minimumTLSVersion = .tlsv13
        config.maximumTLSVersion = .tlsv13
        config.certificateVerification = .noHostnameVerification
        return try NIOSSLContext(configuration: config)
    }

    func makeClientContext() throws -> NIOSSLContext {
        var config = TLSConfiguration.makeClientConfiguration()
        config.minimumTLSVersion = .tlsv13
        config.maximumTLSVersion = .tlsv13
        config.certificateVerification = .noHostnameVerification
        config.trustRoots = .certificates(trustRoots)
        config.certificateChain = certificateChain.map { .certificate($0) }
        config.privateKey = .privateKey(privateKey)
        return try NIOSSLContext(configuration: config)
    }
}
