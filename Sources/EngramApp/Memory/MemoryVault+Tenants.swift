import EngramCore
import EngramStore
import Foundation

/// Tenant administration, API keys, webhook secrets and the master key, through the vault: the
/// CLI and the gateway never hold the store or the key ring.
extension MemoryVault {
    // MARK: tenants

    /// A tenant's record, nil when there is none (unlike `tenant(_:)`, no key is unwrapped).
    public func tenantRecord(id: String) async throws -> TenantRecord? { try await store.tenant(id: id) }

    public func tenants() async throws -> [TenantRecord] { try await store.tenants() }

    public func setTrustClientUserIDs(tenant: String, trusted: Bool) async throws {
        try await store.setTrustClientUserIDs(tenant: tenant, trusted: trusted)
    }

    /// Days memories are kept; nil keeps them until erased.
    public func setRetention(tenant: String, days: Int?) async throws {
        try await store.setRetention(tenant: tenant, days: days)
    }

    public func setTenantConsentMode(tenant: String, mode: ConsentMode, allowSensitivePrecall: Bool) async throws {
        try await store.setTenantConsentMode(tenant: tenant, mode: mode, allowSensitivePrecall: allowSensitivePrecall)
    }

    // MARK: webhook secrets (the read side is the gateway's signature check, the write side the CLI)

    static func webhookSecretContext(_ tenant: String) -> String { "webhook:\(tenant)" }

    /// The tenant's stored webhook secrets, unwrapped: the current one, then the previous one
    /// while a rotation is under way. Empty when none is stored.
    public func webhookSecrets(tenant: String) async throws -> [String] {
        guard let stored = try await store.tenantWebhookSecrets(tenant: tenant) else { return [] }
        return try [stored.current, stored.previous].compactMap { $0 }.map { wrapped in
            String(decoding: try keyRing.unwrap(wrapped, keyID: stored.keyID, context: Self.webhookSecretContext(tenant)), as: UTF8.self)
        }
    }

    /// Which webhook secrets are stored, without unwrapping them.
    public func webhookSecretsStored(tenant: String) async throws -> (current: Bool, previous: Bool) {
        let stored = try await store.tenantWebhookSecrets(tenant: tenant)
        return (stored?.current != nil, stored?.previous != nil)
    }

    /// Stores `secret` as the tenant's webhook secret. The one it replaces stays valid as the
    /// previous secret (a rotation with overlap) unless `dropPrevious`. Returns whether a previous
    /// secret is kept.
    @discardableResult
    public func setWebhookSecret(tenant: String, secret: String, dropPrevious: Bool) async throws -> Bool {
        let context = Self.webhookSecretContext(tenant)
        let stored = try await store.tenantWebhookSecrets(tenant: tenant)
        var previous: Data?
        if !dropPrevious, let stored, let wrapped = stored.current {
            let plain = try keyRing.unwrap(wrapped, keyID: stored.keyID, context: context)
            previous = try keyRing.wrap(plain, context: context).wrapped
        }
        let current = try keyRing.wrap(Data(secret.utf8), context: context)
        try await store.setTenantWebhookSecrets(tenant: tenant, current: current.wrapped, previous: previous, keyID: current.keyID)
        return previous != nil
    }

    // MARK: API keys (stored as SHA-256 only)

    public func apiKey(hash: Data) async throws -> APIKeyRecord? { try await store.apiKey(hash: hash) }

    public func apiKeys(tenant: String) async throws -> [APIKeyRecord] { try await store.apiKeys(tenant: tenant) }

    public func insertAPIKey(_ key: APIKeyRecord) async throws { try await store.insertAPIKey(key) }

    /// False when the tenant has no active key with this id.
    public func revokeAPIKey(tenant: String, id: String, at: Date) async throws -> Bool {
        try await store.revokeAPIKey(tenant: tenant, id: id, at: at)
    }

    // MARK: master key and queued events

    /// Re-wraps every data key and tenant secret under `newKey`; returns how many.
    public func rotateMasterKey(to newKey: MasterKey) async throws -> Int {
        try await MasterKeyRotation.rotate(store: store, from: keyRing, to: newKey)
    }

    /// Seals an event body for the queue under the current envelope key, tagged with the erasure
    /// tags of `users` so that an erasure finds it.
    public func sealEvent(_ body: Data, tenant: String, type: String, receivedAt: Date, users: [UserKey]) throws -> Envelope {
        try Envelope.seal(
            body, tenant: tenant, type: type, receivedAt: receivedAt, cipher: keyRing.envelopeCipher,
            userTags: users.map { keyRing.userTag(tenant: tenant, user: $0) })
    }

    /// The erasure tags of the callers a post-call webhook names.
    public func erasureTags(of data: PostCallData, tenant: TenantContext) -> [String] {
        EventOwner.tags(of: data, tenant: tenant, keyRing: keyRing)
    }
}
