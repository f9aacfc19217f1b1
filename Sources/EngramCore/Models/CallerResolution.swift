import Foundation

/// Which caller an event or a tool request is about, by the tenant's rule for ids the client
/// supplies (`data.user_id`, the `user_id` dynamic variable or tool argument):
///
/// - `trust_client_user_ids` on: the first client id (a `u_` key or an external id), else the
///   phone number (the order of ELEVENLABS.md before the setting existed).
/// - off (the default): the phone number whenever it normalises to E.164; a client id only when
///   there is no usable phone number (web and SDK calls). A client cannot move a phone caller
///   into another profile by sending an id.
public enum CallerResolution {
    public static func resolve(clientIDs: [String?], phone: String?, trustClientIDs: Bool) -> CallerIdentity? {
        let client = clientIDs.lazy.compactMap { CallerReference.fromUserID($0) }.first
        let phoneIdentity = PhoneNumber.normalize(phone).map { CallerIdentity.phone($0) }
        return trustClientIDs ? (client ?? phoneIdentity) : (phoneIdentity ?? client)
    }

    /// Every identity the request or event names, whichever the rule picks: an erasure of any
    /// of them must find the event (it carries that caller's number or id).
    public static func candidates(clientIDs: [String?], phone: String?) -> [CallerIdentity] {
        var found = clientIDs.compactMap { CallerReference.fromUserID($0) }
        if let phone = PhoneNumber.normalize(phone) { found.append(.phone(phone)) }
        return found
    }
}
