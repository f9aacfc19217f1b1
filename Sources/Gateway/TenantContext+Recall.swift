import EngramApp
import EngramCore
import EngramObservability
import EngramQueue

extension TenantContext {
    /// The caller's user key from tool or pre-call arguments, by the tenant's rule for
    /// client-supplied ids (`CallerResolution`): the phone number first unless the tenant trusts `user_id`.
    func userKey(userID: String?, callerID: String?) -> UserKey? {
        CallerResolution.resolve(clientIDs: [userID], phone: callerID, trustClientIDs: record.trustClientUserIDs)
            .map { userKeys.key(for: $0) }
    }

    /// Whether recall for an agent (search tool, pre-call, custom-LLM proxy) may include sensitive
    /// memories: its answer can reach a spoofed caller, so only when the tenant allows it or the
    /// configuration does (operators still see them).
    func includeSensitive(_ configuration: EngramConfiguration) -> Bool {
        record.allowSensitivePrecall || configuration.precallIncludeSensitive
    }
}
