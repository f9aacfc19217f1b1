import Foundation
import Synchronization
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore
@testable import Worker

/// The `MemoryStore` contract, run on every backend the test setup has: SQLite always, PostgreSQL
/// with pgvector under `make test`. Rows are built by hand (the store only persists sealed bytes);
/// `MemoryVault` and the routes are covered on both backends by the end-to-end tests.
@Suite("Store contract", .timeLimit(.minutes(1)))
struct StoreContractTests {
    /// A store on a fresh database, with one tenant and one user, closed and dropped afterwards.
    struct Fixture {
        let env: TestEnvironment
        let store: any MemoryStore
        let tenant = "t_contract"
        let user = UserKey("u_contractaaaaaaaaaaaaaaaaa2")!
        let other = UserKey("u_contractaaaaaaaaaaaaaaaaa3")!
        let t0 = Date(timeIntervalSince1970: 1_763_000_000)

        static func make(_ backend: Backend) async throws -> Fixture {
            let env = try await TestEnvironment.make(backend)
            let fixture = Fixture(env: env, store: try await env.openStore())
            _ = try await fixture.store.ensureTenant(
                TenantRecord(
                    id: fixture.tenant, name: "Contract clinic", pseudonymSecretWrapped: Data([1, 2, 3]), keyID: "k1", consentMode: .implicit,
                    allowSensitivePrecall: false, createdAt: fixture.t0))
            for user in [fixture.user, fixture.other] {
                _ = try await fixture.store.ensureUser(
                    UserRecord(tenant: fixture.tenant, user: user, dataKeyWrapped: Data(repeating: 7, count: 40), keyID: "k1", createdAt: fixture.t0))
            }
            return fixture
        }

        func finish() async {
            await StoreFactory.close(store)
            await env.cleanUp()
        }

        func row(
            _ id: String, user: UserKey? = nil, slot: String? = nil, kind: String = "conversation", validFrom: Date? = nil, sensitive: Bool = false,
            terms: Int = 3
        ) -> MemoryRow {
            MemoryRow(
                id: id, tenant: tenant, user: user ?? self.user, sector: slot == nil ? .episodic : .semantic,
                sealedContent: Data("sealed-\(id)".utf8),
                slot: slot, importance: 0.6, salience0: 0.5, reinforcedAt: validFrom ?? t0, sensitive: sensitive, validFrom: validFrom ?? t0,
                validTo: nil, supersededBy: nil, status: .active,
                sources: [MemorySource(conversationID: "conv_\(id)", turns: [0, 1], kind: kind, extractor: "local-v1")],
                createdAt: t0, lastRecalledAt: nil, needsReextraction: false, termCount: terms)
        }

        func batch(_ key: String, user: UserKey? = nil, rows: [MemoryRow], at: Date? = nil) -> WriteBatch {
            var batch = WriteBatch(
                tenant: tenant, user: user ?? self.user, idempotencyKey: key, eventID: "evt_\(key)", eventType: "post_call_transcription",
                processedAt: at ?? t0, callAt: at ?? t0)
            batch.inserts = rows
            for (i, row) in rows.enumerated() {
                batch.vectors.append(VectorRow(memoryID: row.id, embedder: "local-hash-384", vector: Self.unit(i, dims: 384)))
                batch.postings.append(TermPosting(term: Data("term-common".utf8), memoryID: row.id, frequency: 1))
                batch.postings.append(TermPosting(term: Data("term-\(row.id)".utf8), memoryID: row.id, frequency: 2))
            }
            return batch
        }

        /// A unit vector along axis `i`, for cosine checks.
        static func unit(_ i: Int, dims: Int) -> [Float] {
            var v = [Float](repeating: 0, count: dims)
            v[i % dims] = 1
            return v
        }
    }

    @Test("tenants and users are created once and read back as written", arguments: Backend.available)
    func tenantsAndUsers(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        let again = try await f.store.ensureTenant(
            TenantRecord(
                id: f.tenant, name: "Another name", pseudonymSecretWrapped: Data([9]), keyID: "k2", consentMode: .explicit,
                allowSensitivePrecall: true, createdAt: Date()))
        #expect(again.name == "Contract clinic")
        #expect(again.pseudonymSecretWrapped == Data([1, 2, 3]))
        #expect(again.consentMode == .implicit)
        #expect(again.createdAt == f.t0)
        #expect(try await f.store.tenants().map(\.id) == [f.tenant])
        #expect(try await f.store.tenant(id: "nope") == nil)

        try await f.store.setTenantConsentMode(tenant: f.tenant, mode: .explicit, allowSensitivePrecall: true)
        try await f.store.setRetention(tenant: f.tenant, days: 30)
        let changed = try #require(try await f.store.tenant(id: f.tenant))
        #expect(changed.consentMode == .explicit && changed.allowSensitivePrecall && changed.retentionDays == 30)

        let user = try #require(try await f.store.user(tenant: f.tenant, user: f.user))
        #expect(user.dataKeyWrapped == Data(repeating: 7, count: 40))
        #expect(user.consent == nil && user.memoryVersion == 0)
        let consentAt = f.t0.addingTimeInterval(60)
        try await f.store.setConsent(tenant: f.tenant, user: f.user, granted: false, at: consentAt)
        let withdrawn = try #require(try await f.store.user(tenant: f.tenant, user: f.user))
        #expect(withdrawn.consent == false && withdrawn.consentAt == consentAt)
        #expect(try await f.store.user(tenant: "other-tenant", user: f.user) == nil)
        await f.finish()
    }

    @Test("a batch lands once with its idempotency key; a second apply writes nothing", arguments: Backend.available)
    func applyIsIdempotent(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        let batch = f.batch("idem-1", rows: [f.row("m1"), f.row("m2", slot: "name", kind: "summary")])
        #expect(try await f.store.apply(batch))
        #expect(try await f.store.apply(batch) == false)
        #expect(try await f.store.isProcessed(tenant: f.tenant, idempotencyKey: "idem-1"))
        #expect(try await f.store.isProcessed(tenant: "other", idempotencyKey: "idem-1") == false)
        let rows = try await f.store.memories(tenant: f.tenant, user: f.user, includeHistory: true)
        #expect(rows.map(\.id) == ["m1", "m2"])
        #expect(rows[0] == f.row("m1"))
        #expect(try await f.store.activeMemoryCount(tenant: f.tenant, user: f.user) == 2)
        #expect(try await f.store.user(tenant: f.tenant, user: f.user)?.memoryVersion == 1)
        #expect(try await f.store.user(tenant: f.tenant, user: f.user)?.lastCallAt == f.t0)

        #expect(
            try await f.store.recordEvent(
                tenant: f.tenant, idempotencyKey: "idem-2", eventID: "e2", eventType: "call_initiation_failure", user: nil, at: f.t0))
        #expect(
            try await f.store.recordEvent(
                tenant: f.tenant, idempotencyKey: "idem-2", eventID: "e2", eventType: "call_initiation_failure", user: nil, at: f.t0) == false)
        #expect(
            try await f.store.recordEvent(tenant: f.tenant, idempotencyKey: "idem-1", eventID: "e1", eventType: "x", user: f.user, at: f.t0) == false)
        await f.finish()
    }

    @Test("eight concurrent applies of one event: exactly one lands", arguments: Backend.available)
    func concurrentApplies(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        let batch = f.batch("race", rows: [f.row("r1"), f.row("r2")])
        let store = f.store
        let landed = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 { group.addTask { try await store.apply(batch) } }
            var count = 0
            for try await won in group where won { count += 1 }
            return count
        }
        #expect(landed == 1)
        #expect(try await f.store.memories(tenant: f.tenant, user: f.user, includeHistory: true).count == 2)
        #expect(try await f.store.user(tenant: f.tenant, user: f.user)?.memoryVersion == 1)
        await f.finish()
    }

    @Test("heads, vectors, postings and term statistics cover current memories only", arguments: Backend.available)
    func readsForRanking(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        #expect(
            try await f.store.apply(
                f.batch("b1", rows: [f.row("a1", terms: 4), f.row("a2", kind: "summary", sensitive: true, terms: 6), f.row("a3", terms: 2)])))
        #expect(try await f.store.apply(f.batch("b2", user: f.other, rows: [f.row("o1", user: f.other)])))
        var closing = f.batch("b3", rows: [])
        closing.supersessions = [(id: "a3", validTo: f.t0.addingTimeInterval(100), by: "a1")]
        #expect(try await f.store.apply(closing))

        let heads = try await f.store.memoryHeads(tenant: f.tenant, user: f.user).sorted { $0.id < $1.id }
        #expect(heads.map(\.id) == ["a1", "a2"])
        #expect(heads.map(\.isSummary) == [false, true])
        #expect(heads.map(\.sensitive) == [false, true])

        let vectors = try await f.store.vectors(tenant: f.tenant, user: f.user, embedder: "local-hash-384")
        #expect(Set(vectors.ids) == ["a1", "a2"])
        #expect(vectors.flat.count == 2 * 384)
        for (i, id) in vectors.ids.enumerated() {
            let axis = id == "a1" ? 0 : 1
            #expect(vectors.flat[i * 384 + axis] == 1)
        }
        #expect(try await f.store.vectors(tenant: f.tenant, user: f.user, embedder: "openai:text-embedding-3-small").ids.isEmpty)

        let postings = try await f.store.postings(
            tenant: f.tenant, user: f.user, terms: [Data("term-common".utf8), Data("term-a2".utf8), Data("term-o1".utf8)])
        #expect(postings.filter { $0.term == Data("term-common".utf8) }.map(\.memoryID).sorted() == ["a1", "a2"])
        let a2 = try #require(postings.first { $0.term == Data("term-a2".utf8) })
        #expect(a2.frequency == 2 && a2.documentLength == 6)
        #expect(!postings.contains { $0.memoryID == "o1" })

        let stats = try await f.store.termStatistics(tenant: f.tenant, user: f.user)
        #expect(stats.documentCount == 2)
        #expect(abs(stats.averageLength - 5) < 1e-9)
        #expect(try await f.store.memories(tenant: f.tenant, user: f.user, ids: ["a1", "a3", "o1"]).map(\.id).sorted() == ["a1", "a3"])
        await f.finish()
    }

    @Test("supersession closes the old fact; reinforcement adds each source once", arguments: Backend.available)
    func supersessionAndReinforcement(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        #expect(try await f.store.apply(f.batch("s1", rows: [f.row("blue", slot: "favourite.colour"), f.row("ep1")])))
        let later = f.t0.addingTimeInterval(3600)
        var second = f.batch("s2", rows: [f.row("green", slot: "favourite.colour", validFrom: later)], at: later)
        second.supersessions = [(id: "blue", validTo: later, by: "green")]
        let source = MemorySource(conversationID: "conv_2", turns: [3], kind: "conversation", extractor: "local-v1")
        second.reinforcements = [(id: "ep1", salience0: 0.9, source: source)]
        #expect(try await f.store.apply(second))
        var third = f.batch("s3", rows: [], at: later.addingTimeInterval(60))
        third.reinforcements = [(id: "ep1", salience0: 0.95, source: source)]
        #expect(try await f.store.apply(third))

        let all = try await f.store.memories(tenant: f.tenant, user: f.user, includeHistory: true)
        let blue = try #require(all.first { $0.id == "blue" })
        #expect(blue.validTo == later && blue.supersededBy == "green")
        let ep1 = try #require(all.first { $0.id == "ep1" })
        #expect(ep1.salience0 == 0.95)
        #expect(ep1.reinforcedAt == later.addingTimeInterval(60))
        #expect(ep1.sources.count == 2)
        #expect(ep1.sources.last == source)
        let current = try await f.store.memories(tenant: f.tenant, user: f.user, includeHistory: false)
        #expect(Set(current.map(\.id)) == ["green", "ep1"])
        #expect(try await f.store.user(tenant: f.tenant, user: f.user)?.lastCallAt == later.addingTimeInterval(60))
        await f.finish()
    }

    @Test("recall reinforcement, archival, the sweep's paging and counts by status", arguments: Backend.available)
    func maintenance(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        let rows = (1...5).map { f.row("k\($0)") }
        #expect(try await f.store.apply(f.batch("m1", rows: rows)))
        let recalled = f.t0.addingTimeInterval(500)
        try await f.store.reinforce(tenant: f.tenant, [(id: "k1", salience0: 0.8, at: recalled), (id: "k2", salience0: 0.7, at: recalled)])
        let k1 = try #require(try await f.store.memory(tenant: f.tenant, id: "k1"))
        #expect(k1.salience0 == 0.8 && k1.reinforcedAt == recalled && k1.lastRecalledAt == recalled)
        #expect(try await f.store.memory(tenant: "other", id: "k1") == nil)

        let version = try #require(try await f.store.user(tenant: f.tenant, user: f.user)?.memoryVersion)
        try await f.store.archive(tenant: f.tenant, ids: ["k3", "k4"])
        #expect(try #require(try await f.store.user(tenant: f.tenant, user: f.user)?.memoryVersion) > version)
        #expect(try await f.store.memoryCountsByStatus() == ["active": 3, "archived": 2])
        #expect(try await f.store.activeMemoryCount(tenant: f.tenant, user: f.user) == 3)

        var seen: [String] = []
        var after: String? = nil
        while true {
            let page = try await f.store.sweepCandidates(tenant: f.tenant, limit: 2, after: after)
            if page.isEmpty { break }
            seen += page.map(\.id)
            after = page.last?.id
        }
        #expect(seen == ["k1", "k2", "k5"])
        await f.finish()
    }

    @Test("retention deletes old memories for good; a single delete and an operator's correction", arguments: Backend.available)
    func deletionAndReplacement(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        let old = f.t0.addingTimeInterval(-90 * 86400)
        #expect(
            try await f.store.apply(
                f.batch("d1", rows: [f.row("old1", validFrom: old), f.row("old2", validFrom: old), f.row("new1"), f.row("new2")])))
        #expect(try await f.store.deleteMemories(tenant: f.tenant, olderThan: f.t0.addingTimeInterval(-86400)) == 2)
        #expect(try await f.store.deleteMemory(tenant: f.tenant, id: "new2"))
        #expect(try await f.store.deleteMemory(tenant: f.tenant, id: "new2") == false)
        #expect(try await f.store.memories(tenant: f.tenant, user: f.user, includeHistory: true).map(\.id) == ["new1"])
        #expect(try await f.store.postings(tenant: f.tenant, user: f.user, terms: [Data("term-common".utf8)]).map(\.memoryID) == ["new1"])

        var corrected = try #require(try await f.store.memory(tenant: f.tenant, id: "new1"))
        corrected.sealedContent = Data("sealed-corrected".utf8)
        corrected.sensitive = true
        corrected.termCount = 1
        try await f.store.replaceMemory(
            corrected, vectors: [VectorRow(memoryID: "new1", embedder: "local-hash-384", vector: Fixture.unit(5, dims: 384))],
            postings: [TermPosting(term: Data("term-fixed".utf8), memoryID: "new1", frequency: 1)])
        let reread = try #require(try await f.store.memory(tenant: f.tenant, id: "new1"))
        #expect(reread.sealedContent == Data("sealed-corrected".utf8) && reread.sensitive && reread.termCount == 1)
        #expect(try await f.store.postings(tenant: f.tenant, user: f.user, terms: [Data("term-common".utf8)]).isEmpty)
        #expect(try await f.store.postings(tenant: f.tenant, user: f.user, terms: [Data("term-fixed".utf8)]).map(\.memoryID) == ["new1"])
        #expect(try await f.store.vectors(tenant: f.tenant, user: f.user, embedder: "local-hash-384").flat[5] == 1)

        var missing = corrected
        missing.id = "nope"
        await #expect(throws: StoreError.self) { try await f.store.replaceMemory(missing, vectors: [], postings: []) }
        await f.finish()
    }

    @Test("re-extraction: marked memories are listed, replaced once in one transaction, and what they closed reopens", arguments: Backend.available)
    func reextraction(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        var fallback = f.row("fb1", slot: "reason")
        fallback.needsReextraction = true
        var other = f.row("fb2")
        other.needsReextraction = true
        #expect(try await f.store.apply(f.batch("r0", rows: [f.row("old", slot: "reason")])))
        var first = f.batch("r1", rows: [fallback, other])
        first.supersessions = [(id: "old", validTo: f.t0.addingTimeInterval(10), by: "fb1")]
        #expect(try await f.store.apply(first))
        var otherUsers = f.row("fb3", user: f.other)
        otherUsers.needsReextraction = true
        #expect(try await f.store.apply(f.batch("r2", user: f.other, rows: [otherUsers])))

        #expect(try await f.store.memoriesNeedingReextraction(tenant: f.tenant, user: f.user).map(\.id) == ["fb1", "fb2"])
        #expect(try await f.store.memoriesNeedingReextraction(tenant: f.tenant, user: nil).count == 3)

        let replacement = f.batch("reextract:conv_fb1", rows: [f.row("llm1")], at: f.t0.addingTimeInterval(20))
        #expect(try await f.store.replaceExtraction(replacement, replacing: ["fb1"]))
        #expect(try await f.store.replaceExtraction(replacement, replacing: ["fb2"]) == false)
        let all = try await f.store.memories(tenant: f.tenant, user: f.user, includeHistory: true)
        #expect(Set(all.map(\.id)) == ["old", "fb2", "llm1"])
        let reopened = try #require(all.first { $0.id == "old" })
        #expect(reopened.validTo == nil && reopened.supersededBy == nil)
        #expect(try await f.store.postings(tenant: f.tenant, user: f.user, terms: [Data("term-fb1".utf8)]).isEmpty)
        #expect(try await f.store.memoriesNeedingReextraction(tenant: f.tenant, user: f.user).map(\.id) == ["fb2"])
        await f.finish()
    }

    @Test("erasure destroys the key, every row of the user, and leaves a tombstone", arguments: Backend.available)
    func erasure(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        #expect(try await f.store.apply(f.batch("e1", rows: [f.row("x1"), f.row("x2")])))
        #expect(try await f.store.apply(f.batch("e2", user: f.other, rows: [f.row("y1", user: f.other)])))
        #expect(try await f.store.tombstone(tenant: f.tenant, user: f.user) == nil)
        let at = f.t0.addingTimeInterval(7200)
        try await f.store.erase(tenant: f.tenant, user: f.user, at: at)
        #expect(try await f.store.user(tenant: f.tenant, user: f.user) == nil)
        #expect(try await f.store.memories(tenant: f.tenant, user: f.user, includeHistory: true).isEmpty)
        #expect(try await f.store.vectors(tenant: f.tenant, user: f.user, embedder: "local-hash-384").ids.isEmpty)
        #expect(try await f.store.postings(tenant: f.tenant, user: f.user, terms: [Data("term-common".utf8)]).isEmpty)
        #expect(try await f.store.tombstone(tenant: f.tenant, user: f.user) == at)
        #expect(!(try await f.store.wrappedSecrets()).contains { $0.user == f.user })
        // The other caller is untouched.
        #expect(try await f.store.memories(tenant: f.tenant, user: f.other, includeHistory: true).map(\.id) == ["y1"])
        // The processed event stays: a redelivery of the erased caller's call stays a no-op.
        #expect(try await f.store.isProcessed(tenant: f.tenant, idempotencyKey: "e1"))
        // Erasing twice moves the tombstone, and a new call may start the caller afresh.
        try await f.store.erase(tenant: f.tenant, user: f.user, at: at.addingTimeInterval(1))
        #expect(try await f.store.tombstone(tenant: f.tenant, user: f.user) == at.addingTimeInterval(1))
        await f.finish()
    }

    @Test("a write prepared before an erasure is refused inside its transaction, even once the caller is back", arguments: Backend.available)
    func writeAfterErasureIsRefused(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        let stale = f.batch("stale", rows: [f.row("s1")])  // prepared while the caller was not erased
        let erasedAt = f.t0.addingTimeInterval(60)
        try await f.store.erase(tenant: f.tenant, user: f.user, at: erasedAt)
        // A later call started the caller afresh (a new row, a new key): the stale batch still must not land.
        _ = try await f.store.ensureUser(
            UserRecord(
                tenant: f.tenant, user: f.user, dataKeyWrapped: Data(repeating: 8, count: 40), keyID: "k1", createdAt: erasedAt.addingTimeInterval(1))
        )
        #expect(await refusedAsErased { _ = try await f.store.apply(stale) })
        #expect(await refusedAsErased { _ = try await f.store.replaceExtraction(stale, replacing: []) })
        #expect(try await f.store.isProcessed(tenant: f.tenant, idempotencyKey: "stale") == false)  // rolled back with the rest
        #expect(try await f.store.memories(tenant: f.tenant, user: f.user, includeHistory: true).isEmpty)

        // A writer that saw this erasure (and consent given after it) writes.
        var seen = f.batch("after", rows: [f.row("a1")])
        seen.erasedAt = try #require(try await f.store.tombstone(tenant: f.tenant, user: f.user))
        #expect(try await f.store.apply(seen))
        // One more erasure: what was prepared before it is refused again.
        try await f.store.erase(tenant: f.tenant, user: f.user, at: erasedAt.addingTimeInterval(120))
        _ = try await f.store.ensureUser(
            UserRecord(
                tenant: f.tenant, user: f.user, dataKeyWrapped: Data(repeating: 9, count: 40), keyID: "k1",
                createdAt: erasedAt.addingTimeInterval(121)))
        var old = f.batch("old", rows: [f.row("o1")])
        old.erasedAt = seen.erasedAt
        #expect(await refusedAsErased { _ = try await f.store.apply(old) })
        // Another caller of the tenant is not affected.
        #expect(try await f.store.apply(f.batch("other", user: f.other, rows: [f.row("b1", user: f.other)])))
        await f.finish()
    }

    /// True when `body` throws `StoreError.erased` (and only then).
    func refusedAsErased(_ body: () async throws -> Void) async -> Bool {
        do { try await body() } catch StoreError.erased { return true } catch { Issue.record("expected StoreError.erased, got \(type(of: error))") }
        return false
    }

    @Test("a write racing an erasure lands before it or not at all", arguments: Backend.available)
    func writeRacingErasure(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        let store = f.store
        for round in 0..<8 {
            let user = try #require(UserKey("u_racer" + String(UserKey.alphabet[round]) + String(repeating: "a", count: 20)))
            _ = try await store.ensureUser(
                UserRecord(tenant: f.tenant, user: user, dataKeyWrapped: Data(repeating: 7, count: 40), keyID: "k1", createdAt: f.t0))
            let batch = f.batch("race-\(round)", user: user, rows: [f.row("race\(round)a", user: user), f.row("race\(round)b", user: user)])
            let tenant = f.tenant
            let at = f.t0.addingTimeInterval(Double(round))
            async let write: Bool = {
                do { return try await store.apply(batch) } catch StoreError.erased { return false }
            }()
            async let erase: Void = store.erase(tenant: tenant, user: user, at: at)
            _ = try await (write, erase)
            #expect(try await store.memories(tenant: f.tenant, user: user, includeHistory: true).isEmpty, "round \(round)")
            #expect(try await store.vectors(tenant: f.tenant, user: user, embedder: "local-hash-384").ids.isEmpty, "round \(round)")
        }
        await f.finish()
    }

    @Test("webhook secrets, API keys, the audit log and master-key rotation", arguments: Backend.available)
    func secretsKeysAudit(backend: Backend) async throws {
        let f = try await Fixture.make(backend)
        try await f.store.setTenantWebhookSecrets(tenant: f.tenant, current: Data([4, 4]), previous: nil, keyID: "k1")
        let secrets = try #require(try await f.store.tenantWebhookSecrets(tenant: f.tenant))
        #expect(secrets.current == Data([4, 4]) && secrets.previous == nil && secrets.keyID == "k1")
        await #expect(throws: StoreError.self) {
            try await f.store.setTenantWebhookSecrets(tenant: f.tenant, current: Data([5]), previous: nil, keyID: "k-other")
        }

        let key = APIKeyRecord(id: "key_1", tenant: f.tenant, scope: .admin, keyHash: Data(repeating: 0xAB, count: 32), createdAt: f.t0)
        try await f.store.insertAPIKey(key)
        #expect(try await f.store.apiKey(hash: key.keyHash) == key)
        #expect(try await f.store.apiKeys(tenant: f.tenant) == [key])
        #expect(try await f.store.revokeAPIKey(tenant: f.tenant, id: "key_1", at: f.t0.addingTimeInterval(5)))
        #expect(try await f.store.revokeAPIKey(tenant: f.tenant, id: "key_1", at: f.t0.addingTimeInterval(6)) == false)
        #expect(try await f.store.apiKey(hash: key.keyHash)?.revokedAt == f.t0.addingTimeInterval(5))

        let first = AuditEntry(tenant: f.tenant, actor: "key_1", action: "memory.delete", user: f.user, memoryID: "m1", at: f.t0)
        let second = AuditEntry(tenant: f.tenant, actor: "key_1", action: "user.erase", user: f.user, at: f.t0.addingTimeInterval(1))
        try await f.store.audit(first)
        try await f.store.audit(second)
        #expect(try await f.store.auditEntries(tenant: f.tenant, limit: 10) == [second, first])
        #expect(try await f.store.auditEntries(tenant: f.tenant, limit: 1) == [second])

        let wrapped = try await f.store.wrappedSecrets()
        #expect(wrapped.filter { $0.kind == .userDataKey }.count == 2)
        #expect(wrapped.contains { $0.kind == .tenantWebhook && $0.wrapped == Data([4, 4]) })
        let rewrapped = wrapped.map {
            WrappedSecret(kind: $0.kind, tenant: $0.tenant, user: $0.user, wrapped: $0.wrapped + Data([0xFF]), keyID: "k2")
        }
        try await f.store.replaceWrappedSecrets(rewrapped)
        let after = try await f.store.wrappedSecrets()
        #expect(after.allSatisfy { $0.keyID == "k2" && $0.wrapped.last == 0xFF })
        #expect(try await f.store.user(tenant: f.tenant, user: f.user)?.dataKeyWrapped == Data(repeating: 7, count: 40) + Data([0xFF]))
        await f.finish()
    }
}

/// What only the PostgreSQL backend has: its migrations table, pgvector columns and their indexes.
@Suite(
    "PostgreSQL backend", .enabled(if: TestPostgres.serverURL != nil, "needs ENGRAM_TEST_POSTGRES_URL (make test starts one)"),
    .timeLimit(.minutes(1)))
struct PostgresBackendTests {
    @Test("migrations are recorded once and re-running them (several processes at once) changes nothing")
    func migrationsRecorded() async throws {
        let env = try await TestEnvironment.make(.postgres)
        let stores = try await withThrowingTaskGroup(of: (any MemoryStore).self) { group in
            for _ in 0..<3 { group.addTask { try await env.openStore() } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let postgres = try #require(stores.first as? PostgresMemoryStore)
        let versions = try await postgres.client.query("SELECT version FROM engram_migrations ORDER BY version")
        var applied: [String] = []
        for try await (version) in versions.decode(String.self) { applied.append(version) }
        #expect(applied == PostgresSchema.migrations.map(\.version))
        let indexes = try await postgres.client.query("SELECT indexname FROM pg_indexes WHERE tablename = 'memory_vectors' ORDER BY indexname")
        var names: [String] = []
        for try await (name) in indexes.decode(String.self) { names.append(name) }
        #expect(names.contains("memory_vectors_hnsw_384") && names.contains("memory_vectors_hnsw_1536"))
        for store in stores { await StoreFactory.close(store) }
        await env.cleanUp()
    }

    @Test("nearest neighbours: the exact and the HNSW search agree, filtered by user and embedder")
    func nearestNeighbours() async throws {
        let f = try await StoreContractTests.Fixture.make(.postgres)
        let store = try #require(f.store as? PostgresMemoryStore)
        #expect(try await store.apply(f.batch("n1", rows: (0..<6).map { f.row("v\($0)") })))
        #expect(try await store.apply(f.batch("n2", user: f.other, rows: [f.row("w0", user: f.other)])))
        var query = StoreContractTests.Fixture.unit(2, dims: 384)
        query[3] = 0.5
        for exact in [true, false] {
            let found = try await store.nearest(tenant: f.tenant, user: f.user, embedder: "local-hash-384", query: query, limit: 2, exact: exact)
            #expect(found.map(\.id) == ["v2", "v3"], "exact: \(exact)")
            #expect(abs((found.first?.similarity ?? 0) - Double(1 / (1.25 as Float).squareRoot())) < 1e-4)
        }
        #expect(
            try await store.nearest(tenant: f.tenant, user: f.user, embedder: "openai:text-embedding-3-small", query: query, limit: 2, exact: true)
                .isEmpty)
        await f.finish()
    }
}

@Suite(
    "engram migrate --from sqlite --to postgres",
    .enabled(if: TestPostgres.serverURL != nil, "needs ENGRAM_TEST_POSTGRES_URL (make test starts one)"), .timeLimit(.minutes(1)))
struct StoreCopyTests {
    @Test("every row is copied sealed; the same master key reads the same memories and search answers")
    func copySQLiteToPostgres() async throws {
        let env = try await TestEnvironment.make(.sqlite)
        let worker = try await buildWorker(configuration: env.configuration(), logger: testLogger)
        let cipher = KeyRing(master: env.masterKey).envelopeCipher
        let phones = [Fixtures.fixturePhone, "+14155550111", "+14155550122"]
        for phone in phones {
            let envelope = try Envelope.seal(
                try fixtureTranscript(phone: phone), tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(), cipher: cipher)
            #expect(try await worker.queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
        }
        try await worker.drain()
        let sqlite = try await openSQLiteStore(path: env.databasePath)
        let erased = try await worker.userKey(phone: "+14155550122")
        try await sqlite.erase(tenant: "default", user: erased, at: Date(timeIntervalSince1970: 1_764_000_000))
        try await sqlite.insertAPIKey(
            APIKeyRecord(
                id: "key_1", tenant: "default", scope: .tool, keyHash: Data(repeating: 1, count: 32),
                createdAt: Date(timeIntervalSince1970: 1_764_000_000)))
        try await sqlite.audit(
            AuditEntry(tenant: "default", actor: "key_1", action: "user.erase", user: erased, at: Date(timeIntervalSince1970: 1_764_000_000)))

        let target = try await TestEnvironment.make(.postgres)
        let postgres = try #require(try await target.openStore() as? PostgresMemoryStore)
        let steps = Mutex<[StoreCopy.Progress]>([])
        let report = try await StoreCopy.copy(from: sqlite, to: postgres, logger: testLogger) { step in steps.withLock { $0.append(step) } }
        #expect(report.tables.first { $0.name == "memories" }?.rows ?? 0 > 0)
        // Progress: every table with rows ends at its row count, the overall count only grows and
        // ends at the sum, and the index build is announced last.
        let reported = steps.withLock { $0 }
        let total = report.tables.map(\.rows).reduce(0, +)
        #expect(reported.last?.phase == .indexing)
        #expect(reported.last?.copied == total)
        #expect(reported.allSatisfy { $0.total == total })
        #expect(zip(reported, reported.dropFirst()).allSatisfy { $0.copied <= $1.copied })
        for table in report.tables where table.rows > 0 {
            #expect(reported.last { $0.phase == .copying && $0.table == table.name }?.tableRows == table.rows, "\(table.name)")
        }
        #expect(report.tables.first { $0.name == "tombstones" }?.rows == 1)
        // A second copy into the same database is refused (it is no longer empty).
        await #expect(throws: StoreError.self) { try await StoreCopy.copy(from: sqlite, to: postgres, logger: testLogger) }

        let keyRing = KeyRing(master: env.masterKey)
        let before = MemoryVault(store: sqlite, keyRing: keyRing, embedder: LocalEmbedder())
        let after = MemoryVault(store: postgres, keyRing: keyRing, embedder: LocalEmbedder())
        let user = try await worker.userKey(phone: Fixtures.fixturePhone)
        let old = try await before.memories(tenant: "default", user: user, includeHistory: true)
        let new = try await after.memories(tenant: "default", user: user, includeHistory: true)
        #expect(!old.isEmpty)
        #expect(new.map(\.id) == old.map(\.id))
        #expect(new.map(\.content) == old.map(\.content))
        let oldHits = try await before.search(tenant: "default", user: user, query: "when is my cleaning", limit: 5)
        let newHits = try await after.search(tenant: "default", user: user, query: "when is my cleaning", limit: 5)
        #expect(newHits.map(\.memory.id) == oldHits.map(\.memory.id))
        #expect(try await postgres.tombstone(tenant: "default", user: erased) == Date(timeIntervalSince1970: 1_764_000_000))
        #expect(try await postgres.apiKeys(tenant: "default").map(\.id) == ["key_1"])
        await postgres.close()

        // The same copy through the real `engram migrate`: progress on stderr (counts and table
        // names, nothing of the rows), the report on stdout.
        let second = try await TestEnvironment.make(.postgres)
        let secondURL = try #require(second.postgres?.url)
        let run = try await runEngram(
            ["migrate", "--from", "sqlite://\(env.databasePath)", "--to", secondURL], environment: [:], directory: env.directory)
        #expect(run.status == 0, "\(run.stderr)")
        let memories = try #require(report.tables.first { $0.name == "memories" }?.rows)
        #expect(run.errorLines.contains { $0.hasPrefix("memories: \(memories) of \(memories) rows (") && $0.hasSuffix("% of all rows)") })
        #expect(run.errorLines.contains { $0.contains("building the vector indexes") })
        #expect(run.stdout.contains("row counts match"))
        #expect(!run.stderr.contains(Fixtures.fixturePhone) && !run.stderr.contains("Friday"))
        await env.cleanUp()
        await target.cleanUp()
        await second.cleanUp()
    }
}

@Suite("PostgreSQL URL", .timeLimit(.minutes(3)))
struct PostgresSettingsTests {
    @Test("a full URL is read, percent-decoded, and printed without its password")
    func parses() throws {
        let settings = try PostgresSettings.parse("postgres://eng%40ram:p%2Fss@db.internal:6543/engram?sslmode=require&pool=25")
        #expect(settings.host == "db.internal" && settings.port == 6543 && settings.database == "engram")
        #expect(settings.username == "eng@ram" && settings.password == "p/ss")
        #expect(settings.tls == .require && settings.maximumConnections == 25)
        #expect(!settings.redacted.contains("p/ss") && !settings.redacted.contains("p%2Fss"))
        let defaults = try PostgresSettings.parse("postgresql://engram@localhost/engram")
        #expect(defaults.port == 5432 && defaults.tls == .prefer && defaults.maximumConnections == 10 && defaults.password == nil)
    }

    @Test(
        "a bad URL is refused with the variable and the reason, never the password",
        arguments: [
            ("mysql://u:secretpw@h/db", "expected postgres://"),
            ("postgres://u:secretpw@/db", "no host"),
            ("postgres://:secretpw@h/db", "no user"),
            ("postgres://u:secretpw@h/", "no database"),
            ("postgres://u:secretpw@h/db?sslmode=verify-full", "sslmode must be"),
            ("postgres://u:secretpw@h/db?pool=0", "pool must be"),
            ("postgres://u:secretpw@h/db?application_name=x", "unknown parameter"),
        ])
    func refuses(url: String, reason: String) {
        #expect {
            try PostgresSettings.parse(url)
        } throws: { error in
            let text = String(describing: error)
            return text.contains("ENGRAM_DATABASE_URL") && text.contains(reason) && !text.contains("secretpw")
        }
    }
}
