import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// Issue 12: the rules the gateway, the worker and the CLI used to write each on their own now
/// live once in the vault. These pin them through the vault's own operations.
@Suite("One door to the data", .timeLimit(.minutes(1)))
struct VaultDoorTests {
    func vault(_ env: TestEnvironment) async throws -> (MemoryVault, TenantContext) {
        let store = try await openSQLiteStore(path: env.databasePath)
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let tenant = try #require(try await vault.tenant("default", create: true))
        return (vault, tenant)
    }

    @Test("a new webhook secret keeps the one it replaces valid until the rotation drops it")
    func webhookSecretRotation() async throws {
        let env = try TestEnvironment()
        let (vault, tenant) = try await vault(env)
        #expect(try await vault.webhookSecrets(tenant: tenant.id).isEmpty)
        #expect(try await vault.setWebhookSecret(tenant: tenant.id, secret: "wsec_first_0123456789", dropPrevious: false) == false)
        #expect(try await vault.webhookSecrets(tenant: tenant.id) == ["wsec_first_0123456789"])
        #expect(try await vault.setWebhookSecret(tenant: tenant.id, secret: "wsec_second_0123456789", dropPrevious: false) == true)
        #expect(try await vault.webhookSecrets(tenant: tenant.id) == ["wsec_second_0123456789", "wsec_first_0123456789"])
        let stored = try await vault.webhookSecretsStored(tenant: tenant.id)
        #expect(stored.current && stored.previous)
        #expect(try await vault.setWebhookSecret(tenant: tenant.id, secret: "wsec_third_0123456789", dropPrevious: true) == false)
        #expect(try await vault.webhookSecrets(tenant: tenant.id) == ["wsec_third_0123456789"])
    }

    @Test("recording consent creates an unknown caller first, then keeps the latest choice")
    func consentCreatesTheCaller() async throws {
        let env = try TestEnvironment()
        let (vault, tenant) = try await vault(env)
        let user = tenant.userKeys.key(for: .phone("+12523960448"))
        #expect(try await vault.user(tenant: tenant.id, user: user) == nil)
        try await vault.setConsent(tenant: tenant.id, user: user, granted: true)
        #expect(try await vault.user(tenant: tenant.id, user: user)?.consent == true)
        try await vault.setConsent(tenant: tenant.id, user: user, granted: false)
        #expect(try await vault.user(tenant: tenant.id, user: user)?.consent == false)
    }

    @Test("erasing through the vault leaves no memory, a tombstone, and an empty search")
    func erasure() async throws {
        let env = try TestEnvironment()
        let (vault, tenant) = try await vault(env)
        let user = tenant.userKeys.key(for: .phone("+12523960448"))
        let extraction = Extraction(
            memories: [ExtractedMemory(content: "The caller is vegetarian.", sector: .semantic, importance: 0.5, sourceTurns: [0])],
            summary: nil, userName: nil, extractor: "test")
        let batch = try await vault.prepareWrite(
            tenant: tenant.id, user: user, extraction: extraction, conversationID: "c", callAt: Date(), idempotencyKey: "k", eventID: "e",
            eventType: "t")
        #expect(try await vault.write(batch))
        #expect(try await vault.search(tenant: tenant.id, user: user, query: "vegetarian", limit: 5).count == 1)
        try await vault.erase(tenant: tenant.id, user: user)
        #expect(try await vault.erasedAt(tenant: tenant.id, user: user) != nil)
        #expect(try await vault.activeMemoryCount(tenant: tenant.id, user: user) == 0)
        #expect(try await vault.search(tenant: tenant.id, user: user, query: "vegetarian", limit: 5).isEmpty)
    }
}
