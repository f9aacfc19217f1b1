@preconcurrency import Crypto
import EngramCore
import EngramObservability
import EngramStore
import Foundation

/// A tenant's pseudonym secret and a webhook secret that belong to no tenant, wrapped under the
/// key ring once (at the gateway's start): a post-call lookup that finds no tenant, or no secret,
/// unwraps these instead, so it does the work of one that finds them (`webhookTenant`). The
/// unwrapped webhook secret is random, never stored or printed: nobody can sign with it.
public struct WebhookDecoy: Sendable {
    let pseudonymWrapped: Data
    let webhookWrapped: Data
    let keyID: String
    static let pseudonymContext = "tenant:\u{0}decoy"
    static let webhookContext = "webhook:\u{0}decoy"
}

/// What the post-call path knows of the tenant its URL names, found by `webhookTenant`.
public struct WebhookTenantLookup: Sendable {
    /// Nil when no tenant has that id.
    public let tenant: TenantContext?
    /// The secrets to check the signature with: the tenant's stored ones, unwrapped, or the
    /// decoy's when it has none (or does not exist). Never empty.
    public let secrets: [String]
    /// `secrets` are the decoy's: a signature that matched them is refused all the same.
    public let secretsAreDecoy: Bool
}

extension MemoryVault {
    /// Makes the decoy secrets of `webhookTenant` (random, wrapped under the current master key).
    public func webhookDecoy() throws -> WebhookDecoy {
        let pseudonym = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        // Shaped like an ElevenLabs secret ("wsec_" and 64 hex digits): an HMAC key of the same length.
        let webhook = "wsec_" + SymmetricKey(size: .bits256).withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }
        let wrappedPseudonym = try keyRing.wrap(pseudonym, context: WebhookDecoy.pseudonymContext)
        let wrappedWebhook = try keyRing.wrap(Data(webhook.utf8), context: WebhookDecoy.webhookContext)
        return WebhookDecoy(pseudonymWrapped: wrappedPseudonym.wrapped, webhookWrapped: wrappedWebhook.wrapped, keyID: wrappedPseudonym.keyID)
    }

    /// The tenant `id` names and its webhook secrets, by the same steps whether it exists or not,
    /// so the time of a refusal does not tell (no tenant enumeration by timing): one read of the
    /// tenant, one unwrap of its pseudonym secret (the decoy's when there is no tenant), one read
    /// of its webhook secrets (which finds none for an unknown id), one unwrap per secret (the
    /// decoy's when there is none). Each step counts in `engram_postcall_tenant_steps_total`.
    public func webhookTenant(_ id: String, decoy: WebhookDecoy) async throws -> WebhookTenantLookup {
        let record = try await store.tenant(id: id)
        EngramMetrics.postCallTenantStep("tenant_read")
        let pseudonym = try keyRing.unwrap(
            record?.pseudonymSecretWrapped ?? decoy.pseudonymWrapped, keyID: record?.keyID ?? decoy.keyID,
            context: record == nil ? WebhookDecoy.pseudonymContext : "tenant:\(id)")
        EngramMetrics.postCallTenantStep("unwrap")
        let deriver = UserKeyDeriver(tenantSecret: pseudonym)

        let stored = try await store.tenantWebhookSecrets(tenant: id)
        EngramMetrics.postCallTenantStep("secrets_read")
        var secrets: [String] = []
        if let stored {
            for wrapped in [stored.current, stored.previous].compactMap({ $0 }) {
                let plain = try keyRing.unwrap(wrapped, keyID: stored.keyID, context: Self.webhookSecretContext(id))
                EngramMetrics.postCallTenantStep("unwrap")
                secrets.append(String(decoding: plain, as: UTF8.self))
            }
        }
        let decoyed = secrets.isEmpty
        if decoyed {
            let plain = try keyRing.unwrap(decoy.webhookWrapped, keyID: decoy.keyID, context: WebhookDecoy.webhookContext)
            EngramMetrics.postCallTenantStep("unwrap")
            secrets = [String(decoding: plain, as: UTF8.self)]
        }
        return WebhookTenantLookup(
            tenant: record.map { TenantContext(record: $0, userKeys: deriver) }, secrets: secrets, secretsAreDecoy: decoyed)
    }
}
