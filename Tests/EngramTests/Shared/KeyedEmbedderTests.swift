import Foundation
import GRDB
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// Issue 11 §4: unkeyed hashed vectors gave back their words and linked equal texts across
/// tenants. The local embedder is now keyed per tenant.
@Suite("The local embedder is keyed per tenant", .timeLimit(.minutes(3)))
struct KeyedEmbedderTests {
    @Test("one tenant's vector for a word differs from another's; within a tenant it is stable", .timeLimit(.minutes(1)))
    func perTenant() async throws {
        let env = try TestEnvironment()
        let store = try await env.openStore()
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        _ = try await vault.tenant("alpha", create: true)
        _ = try await vault.tenant("beta", create: true)
        let alpha = try await vault.embedder(forTenant: "alpha")
        let beta = try await vault.embedder(forTenant: "beta")
        #expect(alpha.id == LocalEmbedder.keyedID && beta.id == LocalEmbedder.keyedID)
        let text = "zebra"
        let a = try await alpha.embed([text])[0]
        let b = try await beta.embed([text])[0]
        let unkeyed = try await LocalEmbedder().embed([text])[0]
        #expect(a != b)
        #expect(VectorMath.dot(a, b) < 0.5, "the two tenants' vectors of one word are unrelated")
        #expect(a != unkeyed, "the public, unkeyed hash no longer tells the word")
        #expect(try await alpha.embed([text])[0] == a)
        // Another vault over the same store (another process) derives the same key.
        let again = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        #expect(try await again.embedder(forTenant: "alpha").embed([text])[0] == a)
        await env.cleanUp()
    }

    @Test("memories are stored with keyed vectors, and `reembed` replaces vectors of the unkeyed embedder", .timeLimit(.minutes(1)))
    func reembed() async throws {
        let env = try TestEnvironment()
        let store = try #require(try await env.openStore() as? SQLiteMemoryStore)
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let tenant = try #require(try await vault.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+14155550161"))
        let extraction = Extraction(
            memories: ["The caller's dog is called Biscuit", "The caller prefers afternoon appointments"].map {
                ExtractedMemory(content: $0, sector: .semantic, importance: 0.6, validFrom: nil, sourceTurns: [], sensitive: false, kind: "fact")
            },
            summary: nil, userName: nil, extractor: "test")
        let batch = try await vault.prepareWrite(
            tenant: "default", user: user, extraction: extraction, conversationID: nil, callAt: nil, idempotencyKey: "k1", eventID: "e1",
            eventType: "test")
        #expect(try await store.apply(batch))
        func embedders() async throws -> [String] {
            try await store.database.pool.read { db in try String.fetchAll(db, sql: "SELECT embedder FROM memory_vectors ORDER BY embedder") }
        }
        #expect(try await embedders() == [LocalEmbedder.keyedID, LocalEmbedder.keyedID])

        // What a database written before the keyed embedder holds: unkeyed vectors under v1.
        let unkeyed = LocalEmbedder()
        for memory in try await vault.memories(tenant: "default", user: user) {
            let vector = Data(VectorMath.toBytes(unkeyed.vector(memory.content)))
            try await store.database.pool.write { db in
                try db.execute(
                    sql: "UPDATE memory_vectors SET embedder = ?, vector = ? WHERE memory_id = ?",
                    arguments: [LocalEmbedder.unkeyedID, vector, memory.id])
            }
        }
        await vault.vectorCache.invalidate(tenant: "default", user: user)
        #expect(try await store.vectors(tenant: "default", user: user, embedder: LocalEmbedder.keyedID).ids.isEmpty)

        #expect(try await vault.reembed(tenant: "default") == 2)
        #expect(try await embedders() == [LocalEmbedder.keyedID, LocalEmbedder.keyedID])
        let hits = try await vault.search(tenant: "default", user: user, query: "what is the dog called", limit: 1)
        #expect(hits.first?.memory.content.contains("Biscuit") == true)
        #expect((hits.first?.breakdown.cosine ?? 0) > 0, "the query's keyed vector matches the re-embedded one")
        await env.cleanUp()
    }
}
