import Crypto
import Foundation
import SwiftASN1
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum CertificateGenerationError: Error, Equatable, CustomStringConvertible {
    case invalidHost(String)
    case invalidClientName(String)
    case invalidClusterName(String)
    case notACertificateAuthority
    case keyDoesNotMatchCertificate
    case unsupportedKey
    case invalidValidity(days: Int)

    public var description: String {
        switch self {
        case .invalidHost(let host): return "\"\(host)\" is neither an IP address nor a valid DNS name"
        case .invalidClientName(let name):
            return "invalid client name \"\(name)\": use 1-64 of A-Z a-z 0-9 . _ - (not starting with . or -)"
        case .invalidClusterName(let name):
            return "invalid cluster name \"\(name)\": use 1-64 of A-Z a-z 0-9 . _ - (not starting with . or -)"
        case .notACertificateAuthority: return "the CA certificate lacks the CA basic constraint or keyCertSign key usage"
        case .keyDoesNotMatchCertificate: return "the CA private key does not belong to the CA certificate"
        case .unsupportedKey: return "only P-256 keys are supported"
        case .invalidValidity(let days): return "validity of \(days) days is not between 1 and 36500"
        }
    }
}

/// A certificate with the private key that goes with it, ready to be written as PEM.
public struct IssuedCertificate: Sendable {
    public let certificate: Certificate
    public let privateKey: Certificate.PrivateKey

    public func certificatePEM() throws -> String { try certificate.serializeAsPEM().pemString }
    public func privateKeyPEM() throws -> String { try privateKey.serializeAsPEM().pemString }
}

/// The cluster's own certificate authority. Peers trust this CA and nothing else, so whoever
/// holds its key decides who may join; keep `ca-key.pem` off the replicas when you can.
public struct ClusterCertificateAuthority: Sendable {
    public let certificate: Certificate
    public let privateKey: Certificate.PrivateKey

    /// Certificates are back-dated a little so a replica whose clock runs slightly behind the
    /// issuing machine does not reject a freshly issued certificate as not yet valid.
    static let clockSkewAllowance: TimeInterval = 300

    public static func generate(
        clusterName: String,
        validityDays: Int = 3650,
        now: Date = Date()
    ) throws -> ClusterCertificateAuthority {
        guard ClientName.isValid(clusterName) else { throw CertificateGenerationError.invalidClusterName(clusterName) }
        try checkValidity(validityDays)
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try DistinguishedName {
            OrganizationName(clusterName)
            CommonName("switchman \(clusterName) cluster CA")
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: key.publicKey)
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-clockSkewAllowance),
            notValidAfter: now.addingTimeInterval(TimeInterval(validityDays) * 86400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: key
        )
        return ClusterCertificateAuthority(certificate: certificate, privateKey: key)
    }

    /// Loads an existing CA, refusing a key that does not sign for this certificate.
    public init(certificatePEM: String, privateKeyPEM: String) throws {
        let certificate = try Certificate(pemEncoded: certificatePEM)
        let key = try Certificate.PrivateKey(pemEncoded: privateKeyPEM)
        try self.init(checking: certificate, key: key)
    }

    init(checking certificate: Certificate, key: Certificate.PrivateKey) throws {
        guard key.publicKey == certificate.publicKey else { throw CertificateGenerationError.keyDoesNotMatchCertificate }
        guard case .isCertificateAuthority = try certificate.extensions.basicConstraints,
            try certificate.extensions.keyUsage?.keyCertSign == true
        else { throw CertificateGenerationError.notACertificateAuthority }
        self.init(certificate: certificate, privateKey: key)
    }

    private init(certificate: Certificate, privateKey: Certificate.PrivateKey) {
        self.certificate = certificate
        self.privateKey = privateKey
    }

    /// The cluster name recorded in the CA's subject (organization).
    public var clusterName: String? {
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.organizationName {
                if let value = String(attribute.value) { return value }
            }
        }
        return nil
    }

    /// A replica certificate: usable as TLS server and client, naming the member both in a URI
    /// SAN (what the transport checks) and in the CN (what humans read).
    public func issueMember(
        id: UInt64,
        hosts: [String],
        validityDays: Int = 825,
        now: Date = Date()
    ) throws -> IssuedCertificate {
        var names = try hosts.map(Self.generalName(forHost:))
        names.append(.uniformResourceIdentifier(PeerIdentity.member(id).uri))
        return try issue(
            commonName: "member-\(id)",
            names: names,
            usages: [.serverAuth, .clientAuth],
            validityDays: validityDays,
            now: now
        )
    }

    /// An operator certificate: TLS client only, so it can talk to admin endpoints but never
    /// pass for a replica on the peer transport.
    public func issueClient(name: String, validityDays: Int = 825, now: Date = Date()) throws -> IssuedCertificate {
        guard ClientName.isValid(name) else { throw CertificateGenerationError.invalidClientName(name) }
        return try issue(
            commonName: name,
            names: [.uniformResourceIdentifier(PeerIdentity.client(name).uri)],
            usages: [.clientAuth],
            validityDays: validityDays,
            now: now
        )
    }

    private func issue(
        commonName: String,
        names: [GeneralName],
        usages: [ExtendedKeyUsage.Usage],
        validityDays: Int,
        now: Date
    ) throws -> IssuedCertificate {
        try Self.checkValidity(validityDays)
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let organization = clusterName
        let subject = try DistinguishedName {
            if let organization { OrganizationName(organization) }
            CommonName(commonName)
        }
        let authorityKeyID = try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage(usages)
            SubjectAlternativeNames(names)
            SubjectKeyIdentifier(hash: key.publicKey)
            AuthorityKeyIdentifier(keyIdentifier: authorityKeyID)
        }
        // A leaf must not outlive its CA: verifiers would reject it after the CA expires anyway,
        // and a clear end date is less surprising.
        let requestedEnd = now.addingTimeInterval(TimeInterval(validityDays) * 86400)
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-Self.clockSkewAllowance),
            notValidAfter: min(requestedEnd, self.certificate.notValidAfter),
            issuer: self.certificate.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: privateKey
        )
        return IssuedCertificate(certificate: certificate, privateKey: key)
    }

    private static func checkValidity(_ days: Int) throws {
        guard (1...36500).contains(days) else { throw CertificateGenerationError.invalidValidity(days: days) }
    }

    /// IP literals become IP SANs (TLS clients match addresses against those, never DNS SANs).
    static func generalName(forHost host: String) throws -> GeneralName {
        if let bytes = ipAddressBytes(host) {
            return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes)))
        }
        guard isValidDNSName(host) else { throw CertificateGenerationError.invalidHost(host) }
        return .dnsName(host.lowercased())
    }

    static func ipAddressBytes(_ host: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    static func isValidDNSName(_ host: String) -> Bool {
        var name = Substring(host)
        if name.hasPrefix("*.") { name = name.dropFirst(2) }
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-" else { return false }
            return label.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == 0x2D
            }
        }
    }
}

/// What `switchman certs inspect` shows, computed here so the CLI need not depend on X509.
public struct CertificateSummary: Sendable {
    public let subject: String
    public let issuer: String
    public let notValidBefore: Date
    public let notValidAfter: Date
    public let isCertificateAuthority: Bool
    /// The switchman identity, or why there is none.
    public let identity: Result<PeerIdentity, PeerIdentityError>
    public let alternativeNames: [String]

    public init(pem: String) throws {
        let certificate = try Certificate(pemEncoded: pem)
        subject = "\(certificate.subject)"
        issuer = "\(certificate.issuer)"
        notValidBefore = certificate.notValidBefore
        notValidAfter = certificate.notValidAfter
        if case .isCertificateAuthority = try certificate.extensions.basicConstraints {
            isCertificateAuthority = true
        } else {
            isCertificateAuthority = false
        }
        do {
            identity = .success(try PeerIdentity.from(certificate: certificate))
        } catch let error as PeerIdentityError {
            identity = .failure(error)
        }
        alternativeNames = try (certificate.extensions.subjectAlternativeNames ?? SubjectAlternativeNames()).map {
            name in
            switch name {
            case .dnsName(let dns): return "DNS:\(dns)"
            case .uniformResourceIdentifier(let uri): return "URI:\(uri)"
            case .ipAddress(let octets): return "IP:\(Self.formatIP(Array(octets.bytes)))"
            default: return "\(name)"
            }
        }
    }

    static func formatIP(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        if bytes.count == 16 {
            return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
                .joined(separator: ":")
        }
        return bytes.map { String($0, radix: 16) }.joined(separator: " ")
    }
}
