import EngramCore
import Foundation

/// Whose data a queued event holds, read from its decrypted body: the gateway tags envelopes
/// with it at enqueue, and the erasure purge uses it for envelopes queued before tags existed.
public enum EventOwner {
    /// The user keys of every caller identity the body names (the phone number's and the
    /// client's ids), in the tenant's pseudonyms. Empty when it names none or cannot be read.
    public static func users(body: Data, type: String, tenant: TenantContext) -> [UserKey] {
        switch type {
        case EventType.postCallTranscription, EventType.callInitiationFailure:
            guard let data = (try? JSONDecoder().decode(PostCallWebhook.self, from: body))?.data else { return [] }
            return users(of: data, tenant: tenant)
        case EventType.remember:
            guard let event = try? JSONDecoder().decode(RememberEvent.self, from: body), let user = UserKey(event.user) else { return [] }
            return [user]
        default:
            return []
        }
    }

    /// The user keys of every caller identity a post-call event names (see `users(body:type:tenant:)`).
    public static func users(of data: PostCallData, tenant: TenantContext) -> [UserKey] {
        unique(CallerResolution.candidates(clientIDs: EventIngestor.clientIDs(of: data), phone: data.callerNumber).map(tenant.userKeys.key(for:)))
    }

    /// The erasure tags of a post-call event already parsed (the gateway's, at intake).
    public static func tags(of data: PostCallData, tenant: TenantContext, keyRing: KeyRing) -> [String] {
        users(of: data, tenant: tenant).map { keyRing.userTag(tenant: tenant.id, user: $0) }
    }

    /// The erasure tags of `users(body:type:tenant:)`, under the current master key.
    public static func tags(body: Data, type: String, tenant: TenantContext, keyRing: KeyRing) -> [String] {
        users(body: body, type: type, tenant: tenant).map { keyRing.userTag(tenant: tenant.id, user: $0) }
    }

    static func unique(_ users: [UserKey]) -> [UserKey] {
        var seen = Set<UserKey>()
        return users.filter { seen.insert($0).inserted }
    }
}
