@preconcurrency import Crypto
import Foundation

/// A user's data key, unwrapped: encrypts their memory content and keys their term index.
public struct UserDataKey: Sendable {
    public let key: SymmetricKey

    public init(key: SymmetricKey) { self.key = key }

    public static func generate() -> UserDataKey { UserDataKey(key: SymmetricKey(size: .bits256)) }

    public var cipher: FieldCipher { FieldCipher(key: key) }

    /// Keyed hash of a normalised term: the keyword index never holds words.
    public var termKey: SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Data("engram-terms-v1".utf8), outputByteCount: 32)
    }

    public var rawBytes: Data { key.withUnsafeBytes { Data($0) } }
}

/// Wraps and unwraps per-user data keys and tenant secrets with the master key, and holds the
/// envelope key for the queue. Keys made under an older master key are readable while that key
/// is listed in `previous` (rotation).
public struct KeyRing: Sendable {
    public let master: MasterKey
    public let previous: [MasterKey]

    /// The erasure-tag keys of `master` and then `previous`, derived once (HKDF on every
    /// post-call acknowledgement cost more than the HMAC it keys).
    private let tagKeys: [SymmetricKey]

    public init(master: MasterKey, previous: [MasterKey] = []) {
        self.master = master
        self.previous = previous
        tagKeys = ([master] + previous).map(Self.userTagKey)
    }

    /// Encrypts queue envelopes' bodies.
    public var envelopeCipher: FieldCipher { FieldCipher(key: master.derived("engram-envelope-v1")) }

    /// Envelope ciphers to try when opening: the current one, then previous master keys'.
    public var envelopeCiphers: [FieldCipher] { ([master] + previous).map { FieldCipher(key: $0.derived("engram-envelope-v1")) } }

    /// The caller's erasure tag on queued envelopes and spool records: HMAC-SHA256 of
    /// `tenant NUL user` under a key derived from the master key, 32 hex characters. It links a
    /// caller's events to each other (as the user key does), never to a phone number or a name.
    public func userTag(tenant: String, user: UserKey) -> String {
        Self.userTag(tagKeys.first ?? Self.userTagKey(master), tenant: tenant, user: user)
    }

    /// The tag under the current and each previous master key: a purge after a rotation must
    /// also find envelopes tagged before it.
    public func userTags(tenant: String, user: UserKey) -> [String] {
        tagKeys.map { Self.userTag($0, tenant: tenant, user: user) }
    }

    static func userTagKey(_ master: MasterKey) -> SymmetricKey { master.derived("engram-user-tag-v1") }

    static func userTag(_ key: SymmetricKey, tenant: String, user: UserKey) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(tenant)\u{0}\(user.rawValue)".utf8), using: key)
        return Data(mac).prefix(16).hexString
    }

    public func wrap(_ secret: Data, context: String) throws -> (wrapped: Data, keyID: String) {
        (try FieldCipher(key: master.derived("engram-wrap-v1")).seal(secret, context: context), master.id)
    }

    public func unwrap(_ wrapped: Data, keyID: String, context: String) throws -> Data {
        let candidates = [master] + previous
        guard let key = candidates.first(where: { $0.id == keyID }) else {
            throw CipherError(description: "data key wrapped by unknown master key id \(keyID)")
        }
        return try FieldCipher(key: key.derived("engram-wrap-v1")).open(wrapped, context: context)
    }

    public func wrapDataKey(_ dataKey: UserDataKey, tenant: String, user: String) throws -> (wrapped: Data, keyID: String) {
        try wrap(dataKey.rawBytes, context: "user:\(tenant):\(user)")
    }

    public func unwrapDataKey(_ wrapped: Data, keyID: String, tenant: String, user: String) throws -> UserDataKey {
        UserDataKey(key: SymmetricKey(data: try unwrap(wrapped, keyID: keyID, context: "user:\(tenant):\(user)")))
    }
}
