import NIOSSL

/// The TLS side of every client of the cluster (admin CLI, replicas asking sentinels): TLS 1.3,
/// the cluster CA as the only trust root, and our certificate presented for mutual TLS. What
/// the server's certificate must name is the caller's choice (`verification`).
enum ClusterClientTLS {
    static func configuration(
        caPEM: String, certificatePEM: String, keyPEM: String, verification: CertificateVerification
    ) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv13
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { .certificate($0) }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
        tls.certificateVerification = verification
        return tls
    }
}
