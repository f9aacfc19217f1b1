@preconcurrency import Crypto
import Foundation

/// The 32-byte master key (`ENGRAM_MASTER_KEY`). It wraps per-user data keys and derives the
/// queue-envelope key; its id (a short hash) is stored beside every wrapped key.
public struct MasterKey: Sendable {
    public let key: SymmetricKey
    /// First 8 hex characters of SHA-256 over a derived value: identifies the key without revealing it.
    public let id: String

    public init?(base64: String) {
        guard let data = Data(base64Encoded: base64.trimmingCharacters(in: .whitespacesAndNewlines)), data.count == 32 else {
            return nil
        }
        self.init(bytes: data)
    }

    public init(bytes: Data) {
        key = SymmetricKey(data: bytes)
        let fingerprint = HMAC<SHA256>.authenticationCode(for: Data("engram-key-id".utf8), using: key)
        id = Data(fingerprint).prefix(4).map { String(format: "%02x", $0) }.joined()
    }

    public static func generate() -> MasterKey {
        MasterKey(bytes: SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) })
    }

    public var base64: String { key.withUnsafeBytes { Data($0).base64EncodedString() } }

    /// A purpose-bound key derived with HKDF, so one secret never serves two uses.
    public func derived(_ purpose: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Data(purpose.utf8), outputByteCount: 32)
    }
}
