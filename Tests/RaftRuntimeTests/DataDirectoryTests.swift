import Foundation
import Raft
import Testing

@testable import RaftRuntime

/// The start-up rules of a data directory (issue #15 items 1 and 2): founding once, joining,
/// refusing an empty, foreign or other member's directory, and never again taking the voters
/// from the config file.
@Suite("Data directory identity")
struct DataDirectoryTests {
    private func withStore(_ label: String, _ body: (String) throws -> Void) throws {
        let scratch = try ScratchDirectory(label)
        defer { scratch.remove() }
        try body(scratch.path)
    }

    private func open(
        _ dir: String, name: String = "c", id: UInt64 = 1, file: [UInt64] = [1, 2, 3], mode: StartMode
    ) throws -> ClusterIdentity {
        let store = try openStore(dir)
        defer { store.close() }
        return try DataDirectory.open(
            store, clusterName: name, memberID: id, fileMembers: file, mode: mode, logger: testLogger("datadir"))
    }

    @Test func anEmptyDirectoryIsRefusedWithoutBootstrapOrJoin() throws {
        try withStore("dd-empty") { dir in
            #expect(throws: DataDirectoryError.empty(path: dir, memberID: 1)) { try open(dir, mode: .existing) }
            let text = "\(DataDirectoryError.empty(path: dir, memberID: 1))"
            #expect(text.contains("--bootstrap") && text.contains("--join") && text.contains("member remove 1"))
            // The refusal wrote nothing: the same start still refuses, a founding start works.
            #expect(throws: DataDirectoryError.self) { try open(dir, mode: .existing) }
            let founded = try open(dir, mode: .bootstrap)
            #expect(founded.founding == [1, 2, 3])
        }
    }

    @Test func foundingRecordsTheFileVotersOnceAndLaterFilesDoNotChangeThem() throws {
        try withStore("dd-found") { dir in
            let founded = try open(dir, file: [3, 1, 2], mode: .bootstrap)
            #expect(founded.founding == [1, 2, 3])
            #expect(founded.clusterID == ClusterIdentity.clusterID(name: "c", founding: [1, 2, 3]))
            // Two founders derive the same id without talking; another founding set or name does not.
            #expect(founded.clusterID == ClusterIdentity.clusterID(name: "c", founding: [2, 3, 1]))
            #expect(founded.clusterID != ClusterIdentity.clusterID(name: "c", founding: [1, 2]))
            #expect(founded.clusterID != ClusterIdentity.clusterID(name: "d", founding: [1, 2, 3]))
            // The file edited to two members, restarted with and without --bootstrap: the
            // founding voters are still the three.
            #expect(try open(dir, file: [1, 2], mode: .existing) == founded)
            #expect(try open(dir, file: [1, 4, 5], mode: .bootstrap) == founded)
            #expect(try open(dir, file: [1], mode: .join) == founded)
        }
    }

    @Test func aJoiningDirectoryHasNoFoundingVoters() throws {
        try withStore("dd-join") { dir in
            let joined = try open(dir, id: 4, file: [1, 2, 3, 4], mode: .join)
            #expect(joined.joined && joined.founding.isEmpty && joined.clusterID.isEmpty)
            #expect(try open(dir, id: 4, file: [1, 2, 3, 4], mode: .bootstrap) == joined)
        }
    }

    @Test func anotherClusterOrMemberIsRefused() throws {
        try withStore("dd-other") { dir in
            _ = try open(dir, name: "prod", id: 2, mode: .bootstrap)
            #expect(throws: DataDirectoryError.otherCluster(path: dir, recorded: "prod", configured: "staging")) {
                try open(dir, name: "staging", id: 2, mode: .existing)
            }
            #expect(throws: DataDirectoryError.otherMember(path: dir, recorded: 2, configured: 3)) {
                try open(dir, name: "prod", id: 3, mode: .bootstrap)
            }
        }
    }

    @Test func aFounderMustBeAmongTheFileMembers() throws {
        try withStore("dd-stranger") { dir in
            #expect(throws: DataDirectoryError.notAFounder(path: dir, memberID: 7, members: [1, 2, 3])) {
                try open(dir, id: 7, mode: .bootstrap)
            }
        }
    }

    @Test func eachDirectoryGetsItsOwnIncarnation() throws {
        try withStore("dd-inc-a") { a in
            try withStore("dd-inc-b") { b in
                let first = try open(a, mode: .bootstrap), second = try open(b, mode: .bootstrap)
                #expect(first.incarnation != second.incarnation)
            }
        }
    }

    @Test func aDirectoryFromBeforeIdentitiesIsAdoptedWithTheFileAsItsFounding() throws {
        try withStore("dd-legacy") { dir in
            do {
                let store = try openStore(dir)
                defer { store.close() }
                try store.persist(PersistRequest(hardState: HardState(term: 4, vote: 2, commit: 0)))
            }
            let adopted = try open(dir, file: [1, 2, 3], mode: .existing)
            #expect(adopted.founding == [1, 2, 3])
            #expect(try open(dir, file: [1, 2], mode: .existing) == adopted)
        }
    }

    @Test func anUndecodableIdentityIsAnErrorNotAFreshStart() throws {
        try withStore("dd-corrupt") { dir in
            do {
                let store = try openStore(dir)
                defer { store.close() }
                try store.writeRecord("identity", Array("{not json".utf8))
            }
            #expect {
                try open(dir, mode: .bootstrap)
            } throws: { error in
                guard case DataDirectoryError.corruptIdentity(let path, _) = error else { return false }
                return path == dir
            }
        }
    }
}
