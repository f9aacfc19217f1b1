@preconcurrency import Crypto
import Foundation

/// A pseudonymous caller key: `u_` + 26 base32 characters. Never a phone number.
public struct UserKey: Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String

    public init?(_ raw: String) {
        let body = raw.dropFirst(2)
        guard raw.hasPrefix("u_"), raw.utf8.count == 28, body.count == 26, body.allSatisfy({ UserKey.alphabet.contains($0) }) else { return nil }
        rawValue = raw
    }

    package init(unchecked raw: String) { rawValue = raw }

    public var description: String { rawValue }

    public init(from decoder: Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let key = UserKey(raw) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a user key"))
        }
        self = key
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
}

/// Who is calling, before pseudonymisation: never stored, never logged.
public enum CallerIdentity: Sendable, Equatable {
    case key(UserKey)
    case phone(String)
    case external(String)
}

/// Derives user keys for one tenant: HMAC(tenant secret, "phone:" + E.164 / "ext:" + id).
public struct UserKeyDeriver: Sendable {
    private let secret: SymmetricKey

    public init(tenantSecret: Data) { secret = SymmetricKey(data: tenantSecret) }

    public func key(for identity: CallerIdentity) -> UserKey {
        switch identity {
        case .key(let key): return key
        case .phone(let e164): return derive("phone:" + e164)
        case .external(let id): return derive("ext:" + id)
        }
    }

    private func derive(_ input: String) -> UserKey {
        let mac = Data(HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: secret))
        // 26 base32 characters carry 130 bits; take them from the first 17 bytes.
        var bits: UInt32 = 0
        var bitCount = 0
        var out = ""
        for byte in mac {
            bits = (bits << 8) | UInt32(byte)
            bitCount += 8
            while bitCount >= 5, out.count < 26 {
                out.append(UserKey.alphabet[Int((bits >> UInt32(bitCount - 5)) & 31)])
                bitCount -= 5
            }
            if out.count == 26 { break }
        }
        return UserKey(unchecked: "u_" + out)
    }
}

/// Phone numbers to E.164; withheld or invalid numbers give nil (never a shared user).
public enum PhoneNumber {
    public static func normalize(_ raw: String?) -> String? {
        guard var text = raw.map(trimmedWhitespaceAndNewlines), !text.isEmpty else { return nil }
        if text.lowercased().hasPrefix("tel:") { text = String(text.dropFirst(4)) }
        var digits = ""
        var hasPlus = false
        for (index, character) in text.enumerated() {
            if character == "+", index == 0 {
                hasPlus = true
                continue
            }
            if character.isASCII, character.isNumber {
                digits.append(character)
                continue
            }
            if " -().\u{00A0}/".contains(character) { continue }
            return nil  // letters ("anonymous", "Restricted"), SIP URIs and the like
        }
        if !hasPlus, digits.hasPrefix("00") {
            digits.removeFirst(2)
            hasPlus = true
        }
        if !hasPlus, digits.count < 11 { return nil }  // national format: the country is unknown
        guard (8...15).contains(digits.count), digits.first != "0" else { return nil }
        if Set(digits).count == 1 { return nil }  // "0000000", "+1111..." placeholders of withheld numbers
        return "+" + digits
    }
}

/// Resolves `{user}` path parameters and tool arguments: `u_` key, `+phone` or `ext:<id>`.
public enum CallerReference {
    public static func parse(_ raw: String) -> CallerIdentity? {
        let text = raw.removingPercentEncoding ?? raw
        if let key = UserKey(text) { return .key(key) }
        if text.hasPrefix("ext:") {
            let id = String(text.dropFirst(4))
            return id.isEmpty || id.utf8.count > 256 ? nil : .external(id)
        }
        return PhoneNumber.normalize(text).map { .phone($0) }
    }

    /// A `user_id` field: a `u_` key as is, anything else an external id (a CRM id).
    public static func fromUserID(_ raw: String?) -> CallerIdentity? {
        guard let raw = raw?.trimmingCharacters(in: .whitespaces), !raw.isEmpty, raw.utf8.count <= 256 else { return nil }
        if let key = UserKey(raw) { return .key(key) }
        return .external(raw)
    }
}
