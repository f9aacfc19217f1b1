import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramQueue

/// ENGRAM_REDIS_URL: ACL users, refusals that say what to do, and connections as an ACL user
/// against the real Redis that `make test` starts.
@Suite("Redis URL and ACL users", .timeLimit(.minutes(1)))
struct RedisEndpointTests {
    @Test("redis:// URLs parse the ACL user, password and database; the redacted form has no password")
    func parsing() throws {
        let acl = try RedisEndpoint.parse("redis://engram:p%40ss@redis.internal:6380/2")
        #expect(acl == RedisEndpoint(host: "redis.internal", port: 6380, database: 2, password: "p@ss", username: "engram"))
        #expect(acl.redacted == "redis://engram@redis.internal:6380/2")
        let legacy = try RedisEndpoint.parse("redis://:only-password@127.0.0.1")
        #expect(legacy.username == nil && legacy.password == "only-password")
        #expect(try RedisEndpoint.parse("redis://127.0.0.1").redacted == "redis://127.0.0.1:6379/0")
    }

    @Test("rediss:// and a user without a password are refused at start, naming the variable; rediss points to the TLS sidecar")
    func refusals() {
        for (raw, words) in [
            ("rediss://redis.example.com:6380", ["ENGRAM_REDIS_URL", "stunnel", "sidecar"]),
            ("redis://engram@127.0.0.1", ["ENGRAM_REDIS_URL", "password"]),
        ] {
            do {
                _ = try RedisEndpoint.parse(raw)
                Issue.record("\(raw) was accepted")
            } catch {
                for word in words { #expect("\(error)".contains(word), "\(error) names \(word)") }
            }
        }
        #expect(throws: ConfigurationError.self) { try EngramConfiguration.fromEnvironment(["ENGRAM_REDIS_URL": "rediss://x:1"]) }
    }

    @Test("an ACL user (AUTH user password) can run the queue; a wrong password fails naming the address and never the password")
    func aclUser() async throws {
        let env = try TestEnvironment()
        let admin = RedisClient(endpoint: env.redis, timeout: .seconds(2), connections: 1)
        let user = "engram-acl-\(UUID().uuidString.prefix(8).lowercased())"
        let password = "acl-pass-\(UUID().uuidString)"
        // Allowed only this test's keys and the commands the queue uses.
        let created = try await admin.command([
            "ACL", "SETUSER", RedisArgument(user), "on", RedisArgument(">" + password), RedisArgument("~\(env.prefix)*"), "+@all",
        ])
        #expect(created == .status("OK"), "ACL SETUSER: \(created)")
        do {
            var endpoint = env.redis
            endpoint.username = user
            endpoint.password = password
            let queue = RedisEventQueue(endpoint: endpoint, timeout: .seconds(2), keys: QueueKeys(prefix: env.prefix))
            try await queue.ping()
            let cipher = KeyRing(master: env.masterKey).envelopeCipher
            let envelope = try Envelope.seal(
                Data("{}".utf8), tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(), cipher: cipher)
            #expect(try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
            #expect(try await queue.stats().pending == 1)

            var wrong = endpoint
            wrong.password = "not-the-password"
            do {
                try await RedisEventQueue(endpoint: wrong, timeout: .seconds(2), keys: QueueKeys(prefix: env.prefix)).ping()
                Issue.record("a wrong ACL password was accepted")
            } catch {
                let text = "\(error)"
                #expect(text.contains("authentication refused"), "\(text)")
                #expect(text.contains("\(user)@\(env.redis.host):\(env.redis.port)"), "names the user and address: \(text)")
                #expect(!text.contains("not-the-password") && !text.contains(password))
            }
        } catch {
            _ = try? await admin.command(["ACL", "DELUSER", RedisArgument(user)])
            throw error
        }
        _ = try await admin.command(["ACL", "DELUSER", RedisArgument(user)])
        await env.cleanUp()
    }
}
