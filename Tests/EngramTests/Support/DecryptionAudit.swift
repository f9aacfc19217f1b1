import Foundation
import GRDB

@testable import EngramCore

/// What an attacker holding Engram's master key could read back, place by place: every queue
/// envelope found in any bytes (Redis values, AOF and RDB files, the spool) and every memory in
/// any SQLite file (the live database, backups), decrypted with the keys Engram holds.
struct DecryptionAudit {
    let keyRing: KeyRing

    /// Plaintexts of every envelope found anywhere in `bytes`: bare envelopes, envelopes inside
    /// spool records, and dead letters (whose envelope is a JSON string).
    func envelopePlaintexts(in bytes: Data) -> [String] {
        envelopes(in: bytes).compactMap { envelope in
            keyRing.envelopeCiphers.lazy.compactMap { try? envelope.openBody(cipher: $0) }.first.map { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// Every JSON object in the bytes (a scan for `{"` with string-aware brace matching) that is,
    /// or holds, an envelope.
    func envelopes(in bytes: Data) -> [Envelope] {
        let b = [UInt8](bytes)
        var found: [Envelope] = []
        var i = 0
        while i + 1 < b.count {
            guard b[i] == UInt8(ascii: "{"), b[i + 1] == UInt8(ascii: "\"") else {
                i += 1
                continue
            }
            var depth = 0
            var inString = false
            var escaped = false
            var end: Int?
            var j = i
            while j < b.count {
                let c = b[j]
                if inString {
                    if escaped {
                        escaped = false
                    } else if c == UInt8(ascii: "\\") {
                        escaped = true
                    } else if c == UInt8(ascii: "\"") {
                        inString = false
                    }
                } else if c == UInt8(ascii: "\"") {
                    inString = true
                } else if c == UInt8(ascii: "{") {
                    depth += 1
                } else if c == UInt8(ascii: "}") {
                    depth -= 1
                    if depth == 0 {
                        end = j
                        break
                    }
                }
                j += 1
            }
            if let end, let object = try? JSONSerialization.jsonObject(with: Data(b[i...end])) {
                let inside = walk(object)
                if !inside.isEmpty {
                    found += inside
                    i = end + 1
                    continue
                }
            }
            i += 1
        }
        return found
    }

    private func walk(_ value: Any) -> [Envelope] {
        if let dictionary = value as? [String: Any] {
            if dictionary["body"] is String, dictionary["tenant"] is String, dictionary["type"] is String,
                let data = try? JSONSerialization.data(withJSONObject: dictionary), let envelope = try? Envelope.decode(data)
            {
                return [envelope]
            }
            return dictionary.values.flatMap(walk)
        }
        if let array = value as? [Any] { return array.flatMap(walk) }
        if let text = value as? String, text.hasPrefix("{"), let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) {
            return walk(object)
        }
        return []
    }

    /// Every memory in a SQLite file that decrypts: user key → contents.
    func memories(inDatabase path: String) throws -> [UserKey: [String]] {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        return try queue.read { db in
            var out: [UserKey: [String]] = [:]
            for user in try Row.fetchAll(db, sql: "SELECT tenant_id, user_key, data_key_wrapped, key_id FROM users") {
                let tenant: String = user["tenant_id"]
                let key = UserKey(unchecked: user["user_key"])
                guard let dataKey = try? keyRing.unwrapDataKey(user["data_key_wrapped"], keyID: user["key_id"], tenant: tenant, user: key.rawValue)
                else { continue }
                for row in try Row.fetchAll(
                    db, sql: "SELECT id, content FROM memories WHERE tenant_id = ? AND user_key = ?", arguments: [tenant, key.rawValue])
                {
                    let id: String = row["id"]
                    if let text = try? dataKey.cipher.openString(row["content"], context: "memory:\(tenant):\(key.rawValue):\(id)") {
                        out[key, default: []].append(text)
                    }
                }
            }
            return out
        }
    }

    /// Every file's bytes under a directory (recursively).
    static func files(under directory: URL) -> [(URL, Data)] {
        guard let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil) else { return [] }
        var out: [(URL, Data)] = []
        for case let url as URL in enumerator {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue,
                let data = FileManager.default.contents(atPath: url.path)
            {
                out.append((url, data))
            }
        }
        return out
    }
}
