import Foundation
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum CertificateDirectoryError: Error, Equatable, CustomStringConvertible {
    case missingCA(directory: String)
    case filesExist([String])
    case io(path: String, operation: String, errno: Int32)
    case unreadable(path: String, reason: String)

    public var description: String {
        switch self {
        case .missingCA(let directory):
            return "no cluster CA in \(directory) (expected ca.pem and ca-key.pem); "
                + "create one with `switchman certs init --dir \(directory)`"
        case .filesExist(let paths):
            return "refusing to overwrite existing file(s): \(paths.joined(separator: ", ")) (use --force to replace them)"
        case .io(let path, let operation, let code):
            return "\(operation) \(path) failed: \(String(cString: strerror(code)))"
        case .unreadable(let path, let reason):
            return "cannot read \(path): \(reason)"
        }
    }
}

/// The on-disk layout of a cluster's certificates, all PEM, in one directory:
///
///     ca.pem                  cluster CA certificate (the only trust root)
///     ca-key.pem              cluster CA private key (0600)
///     member-<id>.pem         replica certificate (serverAuth+clientAuth, URI switchman://member/<id>)
///     member-<id>-key.pem     its private key (0600)
///     client-<name>.pem       operator certificate (clientAuth, URI switchman://client/<name>)
///     client-<name>-key.pem   its private key (0600)
public struct CertificateDirectory: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public var caCertificatePath: String { file("ca.pem") }
    public var caKeyPath: String { file("ca-key.pem") }
    public func memberCertificatePath(_ id: UInt64) -> String { file("member-\(id).pem") }
    public func memberKeyPath(_ id: UInt64) -> String { file("member-\(id)-key.pem") }
    public func clientCertificatePath(_ name: String) -> String { file("client-\(name).pem") }
    public func clientKeyPath(_ name: String) -> String { file("client-\(name)-key.pem") }

    private func file(_ name: String) -> String {
        path.hasSuffix("/") ? path + name : path + "/" + name
    }

    public var hasCA: Bool {
        FileManager.default.fileExists(atPath: caCertificatePath) && FileManager.default.fileExists(atPath: caKeyPath)
    }

    /// Creates the cluster CA. Returns the paths written.
    @discardableResult
    public func initCA(clusterName: String, validityDays: Int = 3650, force: Bool = false) throws -> [String] {
        try refuseExisting([caCertificatePath, caKeyPath], force: force)
        let ca = try ClusterCertificateAuthority.generate(clusterName: clusterName, validityDays: validityDays)
        try createDirectory()
        // The key goes first: a certificate without its key is useless, a lone key is harmless.
        try Self.writeSecurely(try ca.privateKey.serializeAsPEM().pemString, to: caKeyPath, mode: 0o600, force: force)
        try Self.writeSecurely(try ca.certificate.serializeAsPEM().pemString, to: caCertificatePath, mode: 0o644, force: force)
        return [caCertificatePath, caKeyPath]
    }

    public func loadCA() throws -> ClusterCertificateAuthority {
        guard hasCA else { throw CertificateDirectoryError.missingCA(directory: path) }
        return try ClusterCertificateAuthority(
            certificatePEM: try Self.read(caCertificatePath),
            privateKeyPEM: try Self.read(caKeyPath)
        )
    }

    @discardableResult
    public func issueMember(id: UInt64, hosts: [String], validityDays: Int = 825, force: Bool = false) throws -> [String] {
        let certPath = memberCertificatePath(id)
        let keyPath = memberKeyPath(id)
        let ca = try loadCA()
        try refuseExisting([certPath, keyPath], force: force)
        let issued = try ca.issueMember(id: id, hosts: hosts, validityDays: validityDays)
        try Self.writeSecurely(try issued.privateKeyPEM(), to: keyPath, mode: 0o600, force: force)
        try Self.writeSecurely(try issued.certificatePEM(), to: certPath, mode: 0o644, force: force)
        return [certPath, keyPath]
    }

    @discardableResult
    public func issueClient(name: String, validityDays: Int = 825, force: Bool = false) throws -> [String] {
        guard ClientName.isValid(name) else { throw CertificateGenerationError.invalidClientName(name) }
        let certPath = clientCertificatePath(name)
        let keyPath = clientKeyPath(name)
        let ca = try loadCA()
        try refuseExisting([certPath, keyPath], force: force)
        let issued = try ca.issueClient(name: name, validityDays: validityDays)
        try Self.writeSecurely(try issued.privateKeyPEM(), to: keyPath, mode: 0o600, force: force)
        try Self.writeSecurely(try issued.certificatePEM(), to: certPath, mode: 0o644, force: force)
        return [certPath, keyPath]
    }

    /// Everything a local cluster needs in one go: the CA (reused when it already exists, unless
    /// `force`), one certificate per member, and the given client certificates. Checks for
    /// existing files before writing anything, so a refused run leaves the directory untouched.
    @discardableResult
    public func bootstrap(
        clusterName: String,
        members: [UInt64],
        hosts: [String],
        clients: [String] = ["operator"],
        force: Bool = false
    ) throws -> [String] {
        for name in clients where !ClientName.isValid(name) {
            throw CertificateGenerationError.invalidClientName(name)
        }
        for host in hosts { _ = try ClusterCertificateAuthority.generalName(forHost: host) }
        var leafPaths = members.flatMap { [memberCertificatePath($0), memberKeyPath($0)] }
        leafPaths += clients.flatMap { [clientCertificatePath($0), clientKeyPath($0)] }
        try refuseExisting(leafPaths, force: force)

        var written: [String] = []
        if force || !hasCA {
            written += try initCA(clusterName: clusterName, force: force)
        }
        for id in members {
            written += try issueMember(id: id, hosts: hosts, force: force)
        }
        for name in clients {
            written += try issueClient(name: name, force: force)
        }
        return written
    }

    private func refuseExisting(_ paths: [String], force: Bool) throws {
        guard !force else { return }
        let existing = paths.filter { FileManager.default.fileExists(atPath: $0) }
        if !existing.isEmpty { throw CertificateDirectoryError.filesExist(existing) }
    }

    private func createDirectory() throws {
        do {
            try FileManager.default.createDirectory(
                atPath: path,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
        } catch {
            throw CertificateDirectoryError.unreadable(path: path, reason: "\(error)")
        }
    }

    static func read(_ path: String) throws -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CertificateDirectoryError.unreadable(path: path, reason: "\(error)")
        }
    }

    /// Creates the file with its final mode from the start (O_EXCL unless forced), so a key is
    /// never readable by others, not even for an instant, and is never silently replaced.
    public static func writeSecurely(_ contents: String, to path: String, mode: mode_t, force: Bool) throws {
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL)
        let fd = open(path, flags, mode)
        guard fd >= 0 else {
            if errno == EEXIST { throw CertificateDirectoryError.filesExist([path]) }
            throw CertificateDirectoryError.io(path: path, operation: "open", errno: errno)
        }
        defer { close(fd) }
        // open() honours the umask and leaves an existing (forced) file's mode alone.
        guard fchmod(fd, mode) == 0 else {
            throw CertificateDirectoryError.io(path: path, operation: "chmod", errno: errno)
        }
        let bytes = Array(contents.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CertificateDirectoryError.io(path: path, operation: "write", errno: errno)
            }
            offset += n
        }
        guard fsync(fd) == 0 else {
            throw CertificateDirectoryError.io(path: path, operation: "fsync", errno: errno)
        }
    }
}
