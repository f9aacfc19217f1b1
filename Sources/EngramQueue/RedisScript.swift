import CHiredis
@preconcurrency import Crypto
import EngramCore
import Foundation

/// A Lua script sent by its SHA-1 (`EVALSHA`): its text crosses the wire only when Redis does
/// not hold it yet (`NOSCRIPT`: first use, a restarted Redis, `SCRIPT FLUSH`), then `EVAL` runs
/// it and caches it for the next calls. The hot path (the post-call enqueue) sends 40 bytes
/// instead of the script, and Redis skips hashing it on every call.
public struct RedisScript: Sendable {
    public let text: String
    public let sha1: String

    public init(_ text: String) {
        self.text = text
        sha1 = Insecure.SHA1.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Runs the script with `keys` and `arguments` (EVALSHA, then EVAL on NOSCRIPT).
    public func run(on client: RedisClient, keys: [RedisArgument], arguments: [RedisArgument]) async throws -> RedisReply {
        let tail = [RedisArgument(String(keys.count))] + keys + arguments
        do {
            return try await client.command(["EVALSHA", RedisArgument(sha1)] + tail)
        } catch RedisError.server(let message) where message.hasPrefix("NOSCRIPT") {
            return try await client.command(["EVAL", RedisArgument(text)] + tail)
        }
    }
}
