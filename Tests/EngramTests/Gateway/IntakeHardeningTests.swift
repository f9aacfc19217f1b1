import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore
@testable import Gateway

@Suite("Gateway intake: duplicate keys, tenant enumeration, byte limits", .timeLimit(.minutes(1)))
struct IntakeHardeningTests {
    func withGateway(_ body: @Sendable (any TestClientProtocol, TestEnvironment) async throws -> Void) async throws {
        let env = try TestEnvironment()
        let app = try await buildApplication(configuration: env.configuration(), logger: testLogger)
        try await app.test(.router) { client in try await body(client, env) }
        await env.cleanUp()
    }

    @Test("a signed post-call body with a duplicate key is refused with 400 and queues nothing")
    func duplicateKey() async throws {
        try await withGateway { client, env in
            var text = String(decoding: try fixtureTranscript(conversationID: "conv_a"), as: UTF8.self)
            text = text.replacingOccurrences(of: #""conversation_id":"conv_a""#, with: #""conversation_id":"conv_a","conversation_id":"conv_b""#)
            let body = Data(text.utf8)
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(body, secret: env.webhookSecret),
                body: ByteBuffer(data: body)
            ) { response in
                #expect(response.status == .badRequest)
                #expect((response.body.json["error"] as? [String: Any])?["code"] as? String == "duplicate_key")
            }
            #expect(try await env.queue().stats().pending == 0)
        }
    }

    @Test("an unknown tenant gets exactly the answer a wrong signature gets for an existing tenant")
    func noTenantEnumeration() async throws {
        try await withGateway { client, env in
            // An existing tenant with its own webhook secret.
            let keyRing = KeyRing(master: env.masterKey)
            let vault = MemoryVault(store: try await openSQLiteStore(path: env.databasePath), keyRing: keyRing, embedder: LocalEmbedder())
            _ = try #require(try await vault.tenant("acme", create: true))
            let wrapped = try keyRing.wrap(Data("wsec_acme_0123456789".utf8), context: "webhook:acme")
            try await vault.store.setTenantWebhookSecrets(tenant: "acme", current: wrapped.wrapped, previous: nil, keyID: wrapped.keyID)

            let body = try fixtureTranscript()
            var answers: [String] = []
            for (tenant, secret) in [
                ("acme", "wsec_wrong"), ("nosuchtenant", "wsec_wrong"), ("nosuchtenant", env.webhookSecret),
                (String(repeating: "x", count: 65), "wsec_wrong"),
            ] {
                let answer = try await client.execute(
                    uri: "/v1/elevenlabs/\(tenant)/post-call", method: .post, headers: postCallHeaders(body, secret: secret),
                    body: ByteBuffer(data: body)
                ) { response in
                    // The error object compared as JSON (its key order is not fixed).
                    let error = (response.body.json["error"] as? [String: String])?.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } ?? []
                    return "\(response.status.code) \(response.headers[.wwwAuthenticate] ?? "") \(error)"
                }
                #expect(answer.hasPrefix("401"))
                answers.append(answer)
            }
            #expect(Set(answers).count == 1, "\(answers)")
            // The right secret still works for the existing tenant.
            try await client.execute(
                uri: "/v1/elevenlabs/acme/post-call", method: .post, headers: postCallHeaders(body, secret: "wsec_acme_0123456789"),
                body: ByteBuffer(data: body)
            ) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test("length limits count UTF-8 bytes: a one-character query of 12,001 code points is refused")
    func byteLimits() async throws {
        try await withGateway { client, env in
            let heavy = "a" + String(repeating: "\u{301}", count: 12_000)
            #expect(heavy.count == 1)
            for (uri, field) in [("/v1/tools/search-memory", "query"), ("/v1/tools/remember", "fact")] {
                let body = try JSONSerialization.data(withJSONObject: [field: heavy, "caller_id": Fixtures.fixturePhone])
                try await client.execute(uri: uri, method: .post, headers: bearer(env.apiKey), body: ByteBuffer(data: body)) { response in
                    #expect(response.status == .badRequest, "\(uri)")
                    #expect((response.body.json["error"] as? [String: Any])?["code"] as? String == "field_too_long")
                }
            }
        }
    }

    @Test("a tool body with a duplicate key is refused with 400")
    func toolDuplicateKey() async throws {
        try await withGateway { client, env in
            let body = Data(#"{"query":"peanuts","query":"other","caller_id":"+12523960448"}"#.utf8)
            try await client.execute(uri: "/v1/tools/search-memory", method: .post, headers: bearer(env.apiKey), body: ByteBuffer(data: body)) {
                response in
                #expect(response.status == .badRequest)
                #expect((response.body.json["error"] as? [String: Any])?["code"] as? String == "duplicate_key")
            }
        }
    }
}
