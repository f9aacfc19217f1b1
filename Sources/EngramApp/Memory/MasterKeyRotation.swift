import EngramCore
import EngramStore
import Foundation

/// Re-wraps every wrapped secret (user data keys, tenant pseudonym and webhook secrets) under a
/// new master key, in one transaction. Memory content is never re-encrypted: it is sealed with
/// the data keys, which do not change.
public enum MasterKeyRotation {
    public static func rotate(store: any MemoryStore, from old: KeyRing, to newKey: MasterKey) async throws -> Int {
        let next = KeyRing(master: newKey)
        var rewrapped: [WrappedSecret] = []
        for secret in try await store.wrappedSecrets() {
            let context: String
            switch secret.kind {
            case .userDataKey: context = "user:\(secret.tenant):\(secret.user?.rawValue ?? "")"
            case .tenantPseudonym: context = "tenant:\(secret.tenant)"
            case .tenantWebhook, .tenantWebhookPrevious: context = "webhook:\(secret.tenant)"
            }
            if secret.kind == .userDataKey, secret.wrapped.allSatisfy({ $0 == 0 }) { continue }  // erased
            let plain = try old.unwrap(secret.wrapped, keyID: secret.keyID, context: context)
            let wrapped = try next.wrap(plain, context: context)
            var updated = secret
            updated.wrapped = wrapped.wrapped
            updated.keyID = wrapped.keyID
            rewrapped.append(updated)
        }
        try await store.replaceWrappedSecrets(rewrapped)
        return rewrapped.count
    }
}
