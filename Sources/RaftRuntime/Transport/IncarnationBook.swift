import Foundation
import Logging
import NIOConcurrencyHelpers

/// The incarnation each peer said in its hello, kept durably: a member id that comes back
/// with another one is a member that lost its data directory (or was set up again by
/// mistake) and must not take part — its empty log and forgotten vote could help elect a
/// leader that lacks committed entries. It is let in again only after its removal is
/// committed (`forget`), as a new member added learner first.
public final class IncarnationBook: Sendable {
    public enum Verdict: Equatable, Sendable {
        case admitted
        case changed(known: UInt64)
    }

    private let known: NIOLockedValueBox<[UInt64: UInt64]>
    private let save: @Sendable ([UInt64: UInt64]) throws -> Void
    private let logger: Logger

    public init(known: [UInt64: UInt64] = [:], logger: Logger, save: @escaping @Sendable ([UInt64: UInt64]) throws -> Void = { _ in }) {
        self.known = NIOLockedValueBox(known)
        self.save = save
        self.logger = logger
    }

    static let record = "peer-incarnations"

    /// The book kept in `store` beside the log.
    public static func stored(in store: LMDBLogStore, logger: Logger) throws -> IncarnationBook {
        var known: [UInt64: UInt64] = [:]
        if let bytes = try store.readRecord(record) {
            do {
                let decoded = try JSONDecoder().decode([String: UInt64].self, from: Data(bytes))
                for (k, v) in decoded { if let id = UInt64(k) { known[id] = v } }
            } catch {
                throw LMDBStoreError.corruptValue(path: store.path, key: "meta/record/\(record)", reason: "\(error)")
            }
        }
        return IncarnationBook(known: known, logger: logger) { book in
            let text = Dictionary(uniqueKeysWithValues: book.map { (String($0.key), $0.value) })
            try store.writeRecord(record, Array(try JSONEncoder().encode(text)))
        }
    }

    public var snapshot: [UInt64: UInt64] { known.withLockedValue { $0 } }

    /// 0 is "not said" (a peer from before incarnations): neither checked nor recorded.
    public func admit(_ member: UInt64, incarnation: UInt64) -> Verdict {
        guard incarnation != 0 else { return .admitted }
        let (verdict, toSave): (Verdict, [UInt64: UInt64]?) = known.withLockedValue { book in
            if let k = book[member] { return (k == incarnation ? .admitted : .changed(known: k), nil) }
            book[member] = incarnation
            return (.admitted, book)
        }
        if let toSave { persist(toSave, "recorded a peer's incarnation", ["peer": "\(member)", "incarnation": "\(incarnation)"]) }
        return verdict
    }

    /// A member whose removal is committed: its next incarnation is a new member.
    public func forget(_ members: Set<UInt64>) {
        let toSave: [UInt64: UInt64]? = known.withLockedValue { book in
            let before = book.count
            for m in members { book[m] = nil }
            return book.count == before ? nil : book
        }
        if let toSave { persist(toSave, "forgot removed members' incarnations", ["peers": "\(members.sorted())"]) }
    }

    private func persist(_ book: [UInt64: UInt64], _ what: Logger.Message, _ metadata: Logger.Metadata) {
        do {
            try save(book)
            logger.info(what, metadata: metadata)
        } catch {
            // The store is poisoned by a failed write and the node stops on its next Raft
            // write; the book in memory still refuses a changed incarnation until then.
            logger.error("could not save the peers' incarnations", metadata: ["error": "\(error)"])
        }
    }
}
