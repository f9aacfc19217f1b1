import EngramCore
import Foundation

extension EventIngestor {
    /// The caller an event would write for, as `ingest` resolves it (the same decryption, tenant,
    /// parse and identity rule), without writing anything: "<tenant> NUL <user key>". The worker
    /// runs events of different callers side by side and keeps each caller's events in one lane,
    /// in queue order. nil when it cannot tell (unreadable event, unknown tenant, no caller):
    /// such events all go to one lane.
    public func laneKey(_ envelope: Envelope) async -> String? {
        guard let body = ([envelopeCipher] + previousEnvelopeCiphers).lazy.compactMap({ try? envelope.openBody(cipher: $0) }).first,
            let tenant = try? await vault.tenant(envelope.tenant)
        else { return nil }
        let user: UserKey?
        switch envelope.type {
        case EventType.postCallTranscription:
            guard let (_, data, _) = try? Self.readPostCall(body),
                let identity = Self.identity(of: data, trustClientIDs: tenant.record.trustClientUserIDs)
            else { return nil }
            user = tenant.userKeys.key(for: identity)
        case EventType.remember:
            user = (try? JSONDecoder().decode(RememberEvent.self, from: body)).flatMap { UserKey($0.user) }
        default:
            return nil
        }
        return user.map { "\(tenant.id)\u{0}\($0.rawValue)" }
    }
}
