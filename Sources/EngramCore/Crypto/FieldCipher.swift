@preconcurrency import Crypto
import Foundation

/// Decryption failed: wrong key, or the bytes were tampered with.
public struct CipherError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// AES-256-GCM sealing of one field: `nonce | ciphertext | tag`, with optional associated data
/// that binds the ciphertext to its row (so a value cannot be moved to another user).
public struct FieldCipher: Sendable {
    public let key: SymmetricKey

    public init(key: SymmetricKey) { self.key = key }

    public func seal(_ plaintext: Data, context: String = "") throws -> Data {
        let box = try AES.GCM.seal(plaintext, using: key, authenticating: Data(context.utf8))
        guard let combined = box.combined else { throw CipherError(description: "AES-GCM produced no combined form") }
        return combined
    }

    public func open(_ sealed: Data, context: String = "") throws -> Data {
        do {
            let box = try AES.GCM.SealedBox(combined: sealed)
            return try AES.GCM.open(box, using: key, authenticating: Data(context.utf8))
        } catch {
            throw CipherError(description: "cannot decrypt: wrong key or damaged data")
        }
    }

    public func sealString(_ text: String, context: String = "") throws -> Data {
        try seal(Data(text.utf8), context: context)
    }

    public func openString(_ sealed: Data, context: String = "") throws -> String {
        guard let text = String(data: try open(sealed, context: context), encoding: .utf8) else {
            throw CipherError(description: "decrypted field is not UTF-8")
        }
        return text
    }
}
