import Foundation
import Synchronization
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramQueue
@testable import EngramStore

/// The write path of issue 14: conflict candidates found through the slot and the caches (not by
/// decrypting every memory), and caches moved forward in place after a write instead of being
/// reloaded. Both must give exactly what the old way gives on the same data, on every backend.
@Suite("Write path", .timeLimit(.minutes(2)))
struct WritePathTests {
    /// A clock the test moves forward between events.
    final class SteppingClock: Sendable {
        private let now = Mutex(Date(timeIntervalSince1970: 1_763_000_000))
        var wallClock: WallClock { WallClock { self.now.withLock { $0 } } }
        func advance(_ seconds: TimeInterval) { now.withLock { $0 = $0.addingTimeInterval(seconds) } }
    }

    struct Fixture {
        let env: TestEnvironment
        let store: any MemoryStore
        let vault: MemoryVault
        let clock: SteppingClock
        let tenant: String
        let user = UserKey("u_writepathaaaaaaaaaaaaaaaa2")!

        static func make(_ backend: Backend) async throws -> Fixture {
            let env = try await TestEnvironment.make(backend)
            let store = try await env.openStore()
            let clock = SteppingClock()
            let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder(), clock: clock.wallClock)
            let tenant = try #require(try await vault.tenant("t_writepath", create: true))
            return Fixture(env: env, store: store, vault: vault, clock: clock, tenant: tenant.id)
        }

        func finish() async {
            await StoreFactory.close(store)
            await env.cleanUp()
        }

        func prepare(_ extraction: Extraction, key: String, allMemories: Bool = false) async throws -> WriteBatch {
            // A `replacing` set that names no memory runs the rules against every current memory,
            // decrypted: the way every write worked before the caches.
            try await vault.prepareWrite(
                tenant: tenant, user: user, extraction: extraction, conversationID: "conv_\(key)", callAt: clock.wallClock.now(),
                idempotencyKey: key, eventID: "evt_\(key)", eventType: "remember", replacing: allMemories ? ["no-such-memory"] : [])
        }

        /// The vault's cached vectors and conflict index at the user's current version, next to
        /// what a reload from the store gives.
        func cachesAgainstReload() async throws -> (
            cached: [String: [Float]], reloaded: [String: [Float]], cachedIndex: ConflictIndex, reloadedIndex: ConflictIndex
        ) {
            let record = try #require(try await store.user(tenant: tenant, user: user))
            let embedder = try await vault.embedder(forTenant: tenant)
            let entry = try await vault.vectorEntry(record, embedder: embedder)
            let stored = try await store.vectors(tenant: tenant, user: user, embedder: embedder.id)
            let index = try await vault.conflictIndex(record)
            let heads = try await store.memoryHeads(tenant: tenant, user: user)
            return (
                Self.byID(ids: entry.ids, flat: entry.flat, dimension: entry.dimension),
                Self.byID(ids: stored.ids, flat: stored.flat, dimension: embedder.dimension),
                index, ConflictIndex(version: MemoryVault.cacheVersion(record), heads: heads)
            )
        }

        static func byID(ids: [String], flat: [Float], dimension: Int) -> [String: [Float]] {
            var out: [String: [Float]] = [:]
            for (i, id) in ids.enumerated() { out[id] = Array(flat[(i * dimension)..<((i + 1) * dimension)]) }
            return out
        }
    }

    /// What a batch decided, with its new ids replaced by their position in the batch (ids are
    /// random, decisions are not).
    struct Decisions: Equatable, CustomStringConvertible {
        var inserts: [String] = []
        var supersessions: [String] = []
        var reinforcements: [String] = []
        var vectors: [String] = []

        init(_ batch: WriteBatch) {
            var position: [String: String] = [:]
            for (i, row) in batch.inserts.enumerated() { position[row.id] = "new#\(i)" }
            func name(_ id: String?) -> String { id.map { position[$0] ?? $0 } ?? "-" }
            inserts = batch.inserts.map { row in
                "\(row.sector.rawValue)|\(row.slot ?? "-")|\(row.importance)|\(row.validFrom.timeIntervalSince1970)|"
                    + "\(row.validTo?.timeIntervalSince1970 ?? -1)|\(name(row.supersededBy))|\(row.sources.map { "\($0.conversationID ?? "-"):\($0.kind)" })|\(row.termCount)"
            }
            supersessions = batch.supersessions.map { "\($0.id)|\($0.validTo.timeIntervalSince1970)|\(name($0.by))" }
            reinforcements = batch.reinforcements.map { "\($0.id)|\($0.salience0)|\($0.source.conversationID ?? "-")" }
            vectors = batch.vectors.map { "\(name($0.memoryID))|\($0.vector.count)" }
        }

        var description: String { "inserts \(inserts), supersessions \(supersessions), reinforcements \(reinforcements)" }
    }

    /// Facts that collide on purpose: slot values that change and repeat, near-duplicates,
    /// variants that differ only in a day or a number (never merged), and unrelated ones.
    static let facts: [(content: String, sector: Sector, slot: String?)] = [
        ("The caller's name is Dana.", .semantic, "name"),
        ("The caller's name is Dara.", .semantic, "name"),
        ("Prefers to be called in the morning.", .procedural, "preferred_contact_time"),
        ("Prefers to be called in the evening.", .procedural, "preferred_contact_time"),
        ("Lives in Lyon.", .semantic, "address.city"),
        ("Lives in Paris.", .semantic, "address.city"),
        ("The cleaning appointment is on Friday at 10:00.", .episodic, nil),
        ("The cleaning appointment is on Tuesday at 10:00.", .episodic, nil),
        ("The cleaning appointment is on Friday at 11:00.", .episodic, nil),
        ("Likes green tea.", .semantic, nil),
        ("Likes green tea a lot.", .semantic, nil),
        ("Does not like coffee.", .semantic, nil),
        ("Her dog Rex has a sore paw.", .episodic, nil),
        ("Her dog Rex has a sore paw again.", .episodic, nil),
        ("Was frustrated by the long wait on the phone.", .emotional, nil),
        ("Was frustrated by the long wait on the phone line.", .emotional, nil),
        ("Asked about the price of a whitening treatment.", .episodic, nil),
        ("Works as a nurse at the city hospital.", .semantic, nil),
        ("Is allergic to penicillin.", .semantic, nil),
        ("Pays by card.", .procedural, nil),
    ]

    @Test("conflicts found through the slot and the caches decide exactly as against every decrypted memory", arguments: Backend.available)
    func sameDecisionsAsFullScan(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        var rng = SplitMix64(seed: 14)
        var reinforced = 0
        var superseded = 0
        var inserted = 0
        var droppedVector: String?
        for event in 0..<36 {
            f.clock.advance(90)
            let count = 1 + Int(rng.next() % 4)
            let picks = (0..<count).map { _ in Self.facts[Int(rng.next() % UInt64(Self.facts.count))] }
            let extraction = Extraction(
                memories: picks.map {
                    ExtractedMemory(
                        content: $0.content, sector: $0.sector, slot: $0.slot, importance: 0.6, sourceTurns: [event], kind: "conversation")
                },
                summary: nil, userName: nil, extractor: "test")
            let narrowed = try await f.prepare(extraction, key: "e\(event)")
            let full = try await f.prepare(extraction, key: "e\(event)", allMemories: true)
            #expect(Decisions(narrowed) == Decisions(full), "event \(event)")

            var batch = narrowed
            if event >= 9, droppedVector == nil, let first = batch.inserts.first(where: { $0.validTo == nil }) {
                // A memory with no vector of this embedder (written by another one): the rules
                // compare its text, so the candidates must include it from now on.
                batch.vectors.removeAll { $0.memoryID == first.id }
                droppedVector = first.id
            }
            #expect(try await f.store.apply(batch))
            #expect(await f.vault.didApply(batch), "event \(event): the caches move forward in place")
            reinforced += batch.reinforcements.count
            superseded += batch.supersessions.count
            inserted += batch.inserts.count
        }
        // The data exercised every rule.
        #expect(reinforced > 0 && superseded > 0 && inserted > 0)
        #expect(droppedVector != nil)
        let caches = try await f.cachesAgainstReload()
        #expect(caches.cached == caches.reloaded)
        #expect(caches.cachedIndex == caches.reloadedIndex)
        await f.finish()
    }

    @Test("caches moved forward in place equal a reload after every write; another writer in between forces the reload", arguments: Backend.available)
    func inPlaceEqualsReload(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        func extraction(_ indices: [Int], turn: Int) -> Extraction {
            Extraction(
                memories: indices.map { Self.facts[$0] }.map {
                    ExtractedMemory(content: $0.content, sector: $0.sector, slot: $0.slot, importance: 0.5, sourceTurns: [turn])
                },
                summary: nil, userName: nil, extractor: "test")
        }
        // Warm the caches, then write: each write's caches equal what the store holds.
        let plan: [[Int]] = [[0, 6, 9], [1, 10, 12], [2, 3], [4, 7, 13], [5, 8, 14, 15], [0, 16], [11, 17, 18, 19]]
        for (i, indices) in plan.enumerated() {
            f.clock.advance(60)
            let batch = try await f.prepare(extraction(indices, turn: i), key: "w\(i)")
            #expect(try await f.store.apply(batch))
            #expect(await f.vault.didApply(batch), "write \(i)")
            let caches = try await f.cachesAgainstReload()
            #expect(caches.cached == caches.reloaded, "write \(i)")
            #expect(caches.cachedIndex == caches.reloadedIndex, "write \(i)")
        }
        #expect(try await f.cachesAgainstReload().cached.count == f.store.activeMemoryCount(tenant: f.tenant, user: f.user))

        // Two writes prepared against one version: the first moves the caches, the second finds
        // the version two steps on and leaves them; the next read reloads and still agrees.
        f.clock.advance(60)
        let first = try await f.prepare(extraction([1, 6], turn: 20), key: "r1")
        let second = try await f.prepare(extraction([3, 12], turn: 21), key: "r2")
        #expect(try await f.store.apply(first))
        #expect(try await f.store.apply(second))
        #expect(await f.vault.didApply(first) == false)
        #expect(await f.vault.didApply(second) == false)
        var caches = try await f.cachesAgainstReload()
        #expect(caches.cached == caches.reloaded)
        #expect(caches.cachedIndex == caches.reloadedIndex)

        // A write by another process (straight to the store), then ours: ours was prepared
        // against the other one's version, so it still moves the caches in place.
        f.clock.advance(60)
        let other = try await f.prepare(extraction([5, 9], turn: 30), key: "o1")
        #expect(try await f.store.apply(other))
        let ours = try await f.prepare(extraction([4, 19], turn: 31), key: "o2")
        #expect(try await f.store.apply(ours))
        #expect(await f.vault.didApply(ours))
        caches = try await f.cachesAgainstReload()
        #expect(caches.cached == caches.reloaded)
        #expect(caches.cachedIndex == caches.reloadedIndex)
        await f.finish()
    }

    @Test("memory ids are UUIDv7 text: 36 characters, version 7, RFC variant, ordered by their millisecond")
    func uuidText() {
        let t0 = Date(timeIntervalSince1970: 1_763_000_000.123)
        let ids = (0..<200).map { UUIDv7.make(at: t0.addingTimeInterval(Double($0) * 0.002)) }
        for id in ids {
            let chars = Array(id)
            #expect(chars.count == 36, "\(id)")
            #expect([8, 13, 18, 23].allSatisfy { chars[$0] == "-" })
            #expect(chars[14] == "7" && "89ab".contains(chars[19]))
            #expect(chars.enumerated().allSatisfy { [8, 13, 18, 23].contains($0.offset) || "0123456789abcdef".contains($0.element) })
            #expect(UUID(uuidString: id) != nil)
        }
        #expect(ids == ids.sorted())
        #expect(ids[0].hasPrefix("019a7afd-1e7b-7"))  // 1,763,000,000,123 ms = 0x019a7afd1e7b
    }

    @Test("an entry moved in place keeps every other vector; a ragged or mis-sized change is refused")
    func entryApply() {
        var entry = VectorCache.Entry(version: "1", ids: ["a", "b", "c"], flat: [1, 0, 0, 1, 0.6, 0.8], dimension: 2)
        let applied = entry.apply(inserting: [(id: "d", vector: [0.8, 0.6])], removing: ["a", "zz"])
        #expect(applied)
        #expect(Fixture.byID(ids: entry.ids, flat: entry.flat, dimension: 2) == ["b": [0, 1], "c": [0.6, 0.8], "d": [0.8, 0.6]])
        #expect(entry.positions.count == 3 && entry.ids.enumerated().allSatisfy { entry.positions[$0.element] == $0.offset })
        #expect(entry.ids(similarTo: [0, 1], atLeast: 0.7).sorted() == ["b", "c"])
        #expect(entry.ids(similarTo: [0, 1, 0], atLeast: 0).isEmpty)
        let misSized = entry.apply(inserting: [(id: "e", vector: [1, 0, 0])], removing: [])
        #expect(!misSized)
        var ragged = VectorCache.Entry(version: "1", ids: ["a", "b"], flat: [1, 0, 0], dimension: 2)
        let raggedApplied = ragged.apply(inserting: [], removing: ["b"])
        #expect(!raggedApplied)
    }
}
