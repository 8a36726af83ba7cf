import Crypto
import Foundation
import RaftRuntime
import SwiftASN1
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a sentinel's certificate names its tunnel, and how clients check it.
///
/// A sentinel certificate carries two names for tunnel `T`:
/// - the DNS SAN `T.sentinel.switchman.invalid`, which is what clients verify. They connect
///   to the configured `sentinel:` address but check the certificate as if they had asked
///   for that name (TLS hostname verification with the address overridden), so a sentinel
///   certificate for tunnel A cannot answer for tunnel B, and member or operator
///   certificates (which never carry such a name) cannot pose as a sentinel. `.invalid` is
///   a reserved top-level domain, so the name can never resolve to anything by accident.
/// - the URI SAN `switchman://sentinel/T`, for people reading `certs inspect`.
///
/// Its only extended key usage is serverAuth: a sentinel runs on a VPN instance, a less
/// trusted machine than a replica, and its key must never open the peer transport or the
/// admin API (both require a member or client identity, which it lacks).
public enum SentinelIdentity {
    public static let uriPrefix = "switchman://sentinel/"
    public static let dnsSuffix = ".sentinel.switchman.invalid"

    /// One DNS label: letters, digits and hyphens, 1-63 of them, no hyphen at either end.
    /// Tunnel names end up in certificate names and file names, so nothing else is allowed.
    public static func isValidTunnelName(_ name: String) -> Bool {
        guard (1...63).contains(name.utf8.count), name.first != "-", name.last != "-" else { return false }
        return name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D
        }
    }

    /// The name clients verify the sentinel's certificate against (lower case: DNS names
    /// compare case-insensitively, and certificates store them in lower case).
    public static func dnsName(forTunnel tunnel: String) -> String {
        tunnel.lowercased() + dnsSuffix
    }

    public static func uri(forTunnel tunnel: String) -> String {
        uriPrefix + tunnel
    }

    /// The tunnel a certificate is a sentinel certificate for, or why it is not one.
    public static func tunnel(of certificate: Certificate) throws -> String {
        let names = try certificate.extensions.subjectAlternativeNames ?? SubjectAlternativeNames()
        var uris: [String] = []
        for case .uniformResourceIdentifier(let uri) in names where uri.hasPrefix(uriPrefix) { uris.append(uri) }
        guard uris.count == 1, let uri = uris.first else {
            throw SentinelCertificateError.notASentinelCertificate(uris.isEmpty ? "it names no sentinel" : "it names \(uris.count) sentinels")
        }
        let tunnel = String(uri.dropFirst(uriPrefix.count))
        guard isValidTunnelName(tunnel) else { throw SentinelCertificateError.notASentinelCertificate("malformed identity \(uri)") }
        guard names.contains(.dnsName(dnsName(forTunnel: tunnel))) else {
            throw SentinelCertificateError.notASentinelCertificate("it lacks the DNS name \(dnsName(forTunnel: tunnel)) clients verify")
        }
        guard try certificate.extensions.extendedKeyUsage?.contains(.serverAuth) == true else {
            throw SentinelCertificateError.notASentinelCertificate("it lacks the serverAuth extended key usage")
        }
        return tunnel
    }
}

public enum SentinelCertificateError: Error, Equatable, CustomStringConvertible {
    case invalidTunnelName(String)
    case invalidHost(String)
    case notASentinelCertificate(String)
    case wrongTunnel(expected: String, certificate: String)

    public var description: String {
        switch self {
        case .invalidTunnelName(let name):
            return "invalid tunnel name \"\(name)\": use 1-63 letters, digits and hyphens, not starting or ending with a hyphen"
        case .invalidHost(let host): return "\"\(host)\" is neither an IP address nor a valid DNS name"
        case .notASentinelCertificate(let why): return "not a sentinel certificate: \(why)"
        case .wrongTunnel(let expected, let certificate):
            return "the certificate is for the sentinel of tunnel \"\(certificate)\", not \"\(expected)\""
        }
    }
}

extension CertificateDirectory {
    public func sentinelCertificatePath(_ tunnel: String) -> String { join("sentinel-\(tunnel).pem") }
    public func sentinelKeyPath(_ tunnel: String) -> String { join("sentinel-\(tunnel)-key.pem") }

    private func join(_ name: String) -> String {
        path.hasSuffix("/") ? path + name : path + "/" + name
    }

    /// Issues `sentinel-<tunnel>.pem` and its key, signed by the CA in this directory.
    /// `dnsNames` and `ipAddresses` are extra SANs for tools that check host names; switchman
    /// itself verifies the tunnel's name (see ``SentinelIdentity``).
    @discardableResult
    public func issueSentinel(
        tunnel: String, dnsNames: [String] = [], ipAddresses: [String] = [], validityDays: Int = 825, force: Bool = false
    ) throws -> [String] {
        let certPath = sentinelCertificatePath(tunnel)
        let keyPath = sentinelKeyPath(tunnel)
        let ca = try loadCA()
        if !force {
            let existing = [certPath, keyPath].filter { FileManager.default.fileExists(atPath: $0) }
            if !existing.isEmpty { throw CertificateDirectoryError.filesExist(existing) }
        }
        let issued = try ca.issueSentinel(tunnel: tunnel, dnsNames: dnsNames, ipAddresses: ipAddresses, validityDays: validityDays)
        // The key first: a certificate without its key is useless, a lone key is harmless.
        try writeSecurely(try issued.privateKeyPEM(), to: keyPath, mode: 0o600, force: force)
        try writeSecurely(try issued.certificatePEM(), to: certPath, mode: 0o644, force: force)
        return [certPath, keyPath]
    }

    private func writeSecurely(_ contents: String, to path: String, mode: mode_t, force: Bool) throws {
        try CertificateDirectory.writeSecurely(contents, to: path, mode: mode, force: force)
    }
}

/// A sentinel certificate with its key (RaftRuntime's `IssuedCertificate` cannot be built
/// outside that module).
public struct IssuedSentinelCertificate: Sendable {
    public let certificate: Certificate
    public let privateKey: Certificate.PrivateKey

    public func certificatePEM() throws -> String { try certificate.serializeAsPEM().pemString }
    public func privateKeyPEM() throws -> String { try privateKey.serializeAsPEM().pemString }
}

extension ClusterCertificateAuthority {
    /// A sentinel certificate (see ``SentinelIdentity`` for its names and why serverAuth only).
    public func issueSentinel(
        tunnel: String, dnsNames: [String] = [], ipAddresses: [String] = [], validityDays: Int = 825, now: Date = Date()
    ) throws -> IssuedSentinelCertificate {
        guard SentinelIdentity.isValidTunnelName(tunnel) else { throw SentinelCertificateError.invalidTunnelName(tunnel) }
        guard (1...36500).contains(validityDays) else { throw CertificateGenerationError.invalidValidity(days: validityDays) }
        var names: [GeneralName] = [.dnsName(SentinelIdentity.dnsName(forTunnel: tunnel))]
        for name in dnsNames {
            guard HostPort.isValidHostName(Substring(name)) else { throw SentinelCertificateError.invalidHost(name) }
            names.append(.dnsName(name.lowercased()))
        }
        for address in ipAddresses {
            guard let bytes = Self.ipBytes(address) else { throw SentinelCertificateError.invalidHost(address) }
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        names.append(.uniformResourceIdentifier(SentinelIdentity.uri(forTunnel: tunnel)))

        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let organization = clusterName
        let subject = try DistinguishedName {
            if let organization { OrganizationName(organization) }
            CommonName("sentinel-\(tunnel)")
        }
        let authorityKeyID = try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth])
            SubjectAlternativeNames(names)
            SubjectKeyIdentifier(hash: key.publicKey)
            AuthorityKeyIdentifier(keyIdentifier: authorityKeyID)
        }
        // Back-dated like the member certificates, so a sentinel whose clock runs a little
        // behind accepts it, and never outliving the CA.
        let requestedEnd = now.addingTimeInterval(TimeInterval(validityDays) * 86400)
        let issued = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: min(requestedEnd, certificate.notValidAfter),
            issuer: certificate.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: privateKey
        )
        return IssuedSentinelCertificate(certificate: issued, privateKey: key)
    }

    static func ipBytes(_ host: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}
