import SwiftASN1
import X509

/// Who a certificate says its holder is. The URI subject alternative name is the authority;
/// the common name only mirrors it for humans reading `openssl x509 -text`.
public enum PeerIdentity: Hashable, Sendable, CustomStringConvertible {
    /// A cluster replica: `switchman://member/<id>`.
    case member(UInt64)
    /// An operator or tool: `switchman://client/<name>`. Never allowed on the peer transport.
    case client(String)

    public static let memberURIPrefix = "switchman://member/"
    public static let clientURIPrefix = "switchman://client/"

    public var uri: String {
        switch self {
        case .member(let id): return Self.memberURIPrefix + String(id)
        case .client(let name): return Self.clientURIPrefix + name
        }
    }

    public var description: String {
        switch self {
        case .member(let id): return "member \(id)"
        case .client(let name): return "client \(name)"
        }
    }

    public var memberID: UInt64? {
        if case .member(let id) = self { return id }
        return nil
    }
}

public enum PeerIdentityError: Error, Equatable, CustomStringConvertible {
    case unparseableCertificate(String)
    case noIdentity
    case ambiguousIdentity([String])
    case malformedIdentity(String)
    case missingExtendedKeyUsage(PeerIdentity)

    public var description: String {
        switch self {
        case .unparseableCertificate(let why): return "certificate cannot be parsed: \(why)"
        case .noIdentity: return "certificate carries no switchman:// URI subject alternative name"
        case .ambiguousIdentity(let uris): return "certificate names more than one identity: \(uris.joined(separator: ", "))"
        case .malformedIdentity(let uri): return "malformed identity URI \(uri)"
        case .missingExtendedKeyUsage(let identity):
            return "certificate for \(identity) lacks the extended key usage that identity needs"
        }
    }
}

extension PeerIdentity {
    /// Reads the identity from a DER certificate, as handed out by NIOSSL after a handshake.
    /// A member identity is only granted when the certificate may also act as both TLS client
    /// and server, so a client certificate cannot pass for a member even if someone issued one
    /// with a member URI by mistake and without the server EKU.
    public static func from(derEncoded der: [UInt8]) throws -> PeerIdentity {
        let certificate: Certificate
        do {
            certificate = try Certificate(derEncoded: der)
        } catch {
            throw PeerIdentityError.unparseableCertificate(String(describing: error))
        }
        return try from(certificate: certificate)
    }

    public static func from(certificate: Certificate) throws -> PeerIdentity {
        let sans: SubjectAlternativeNames?
        do {
            sans = try certificate.extensions.subjectAlternativeNames
        } catch {
            throw PeerIdentityError.unparseableCertificate(String(describing: error))
        }
        var uris: [String] = []
        for name in sans ?? SubjectAlternativeNames() {
            if case .uniformResourceIdentifier(let uri) = name, uri.hasPrefix("switchman://") {
                uris.append(uri)
            }
        }
        guard let uri = uris.first else { throw PeerIdentityError.noIdentity }
        guard uris.count == 1 else { throw PeerIdentityError.ambiguousIdentity(uris) }
        let identity = try parse(uri: uri)

        let usages: ExtendedKeyUsage?
        do {
            usages = try certificate.extensions.extendedKeyUsage
        } catch {
            throw PeerIdentityError.unparseableCertificate(String(describing: error))
        }
        let eku = usages ?? ExtendedKeyUsage()
        switch identity {
        case .member:
            guard eku.contains(.serverAuth), eku.contains(.clientAuth) else {
                throw PeerIdentityError.missingExtendedKeyUsage(identity)
            }
        case .client:
            guard eku.contains(.clientAuth) else { throw PeerIdentityError.missingExtendedKeyUsage(identity) }
        }
        return identity
    }

    public static func parse(uri: String) throws -> PeerIdentity {
        if uri.hasPrefix(memberURIPrefix) {
            let rest = uri.dropFirst(memberURIPrefix.count)
            // Only canonical decimal: "01" or "+1" would let two URIs name the same member.
            guard let id = UInt64(rest), String(id) == rest else {
                throw PeerIdentityError.malformedIdentity(uri)
            }
            return .member(id)
        }
        if uri.hasPrefix(clientURIPrefix) {
            let name = String(uri.dropFirst(clientURIPrefix.count))
            guard ClientName.isValid(name) else { throw PeerIdentityError.malformedIdentity(uri) }
            return .client(name)
        }
        throw PeerIdentityError.malformedIdentity(uri)
    }
}

/// Client names end up in file names and URIs, so they are kept to a safe alphabet.
public enum ClientName {
    public static func isValid(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count), name.first != ".", name.first != "-" else { return false }
        return name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2D || byte == 0x2E || byte == 0x5F
        }
    }
}
