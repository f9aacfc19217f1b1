import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramQueue
@testable import EngramStore

/// Scripts on the enqueue path run by their SHA-1 (EVALSHA); Redis without the script (first
/// use, restart, SCRIPT FLUSH) gets the text once (EVAL) and the call still succeeds.
@Suite("Redis scripts", .serialized, .timeLimit(.minutes(1)))
struct RedisScriptTests {
    @Test("a script runs by its SHA-1, also after Redis lost its script cache")
    func evalsha() async throws {
        let env = try TestEnvironment()
        let client = env.redisClient()
        let script = RedisScript("redis.call('INCR', KEYS[1]) return tonumber(ARGV[1]) + redis.call('GET', KEYS[1])")
        #expect(script.sha1.count == 40)
        let key = RedisArgument(env.prefix + "script-counter")
        try await client.command("SCRIPT", "FLUSH")
        #expect(try await script.run(on: client, keys: [key], arguments: ["10"]).int == 11)
        #expect(try await client.command("SCRIPT", "EXISTS", RedisArgument(script.sha1)) == .array([.integer(1)]))
        #expect(try await script.run(on: client, keys: [key], arguments: ["10"]).int == 12)
        try await client.command("SCRIPT", "FLUSH")
        #expect(try await script.run(on: client, keys: [key], arguments: ["100"]).int == 103)
        try await client.command("DEL", key)
        await env.cleanUp()
    }

    @Test("the enqueue script still keeps its dedupe marks and drops a duplicate")
    func enqueueBySha() async throws {
        let env = try TestEnvironment()
        let queue = env.queue()
        try await queue.client.command("SCRIPT", "FLUSH")
        let cipher = KeyRing(master: env.masterKey).envelopeCipher
        let envelope = try Envelope.seal(Data("{}".utf8), tenant: "default", type: EventType.remember, receivedAt: Date(), cipher: cipher)
        #expect(try await queue.enqueue(envelope, dedupe: ["mark-1"], ttlSeconds: 60))
        #expect(try await queue.enqueue(envelope, dedupe: ["mark-1"], ttlSeconds: 60) == false)
        #expect(try await queue.stats().pending == 1)
        await env.cleanUp()
    }
}
