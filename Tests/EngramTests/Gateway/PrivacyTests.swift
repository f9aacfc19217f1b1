import Crypto
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
@testable import Worker

@Suite("Tenants, keys, consent, erasure, encryption at rest, rate limits", .timeLimit(.minutes(3)))
struct PrivacyTests {
    struct Harness {
        let env: TestEnvironment
        let worker: WorkerRuntime
        let store: SQLiteMemoryStore
    }

    func json(_ object: [String: Any]) -> ByteBuffer { ByteBuffer(data: try! JSONSerialization.data(withJSONObject: object)) }

    /// A second tenant with its own keys, straight through the store (what `engram tenant create` does).
    func makeTenant(_ id: String, vault: MemoryVault, consent: ConsentMode = .implicit) async throws -> (tool: String, admin: String) {
        _ = try await vault.tenant(id, create: true, consentMode: consent)
        var keys: [String] = []
        for scope in [APIKeyRecord.Scope.tool, .admin] {
            let key = "k_\(scope.rawValue)_\(UUID().uuidString)"
            try await vault.store.insertAPIKey(
                APIKeyRecord(
                    id: "key_\(UUID().uuidString.prefix(8))", tenant: id, scope: scope, keyHash: Data(SHA256.hash(data: Data(key.utf8))),
                    createdAt: Date()))
            keys.append(key)
        }
        return (keys[0], keys[1])
    }

    func run(configure: (inout EngramConfiguration) -> Void = { _ in }, _ body: @Sendable (any TestClientProtocol, Harness) async throws -> Void)
        async throws
    {
        let env = try TestEnvironment()
        var configuration = env.configuration()
        configure(&configuration)
        let worker = try await buildWorker(configuration: configuration, logger: testLogger)
        let app = try await buildApplication(configuration: configuration, logger: testLogger)
        let harness = Harness(env: env, worker: worker, store: worker.vault.store as! SQLiteMemoryStore)
        try await app.test(.router) { client in try await body(client, harness) }
        await env.cleanUp()
    }

    func post(_ client: any TestClientProtocol, _ env: TestEnvironment, _ body: Data, uri: String = "/v1/elevenlabs/post-call", secret: String? = nil)
        async throws
    {
        try await client.execute(
            uri: uri, method: .post, headers: postCallHeaders(body, secret: secret ?? env.webhookSecret), body: ByteBuffer(data: body)
        ) { #expect($0.status == .ok) }
    }

    func fileBytes(_ path: String) -> Data {
        [path, path + "-wal"].compactMap { FileManager.default.contents(atPath: $0) }.reduce(Data(), +)
    }

    @Test("one tenant's keys can neither read nor erase another tenant's callers, through every route")
    func tenantIsolation() async throws {
        try await run { client, h in
            try await post(client, h.env, try fixtureTranscript())
            try await h.worker.drain()
            let other = try await makeTenant("acme", vault: h.worker.vault)
            let user = try await h.worker.userKey(phone: Fixtures.fixturePhone)
            let memoryID = try #require(try await h.worker.vault.memories(tenant: "default", user: user).first?.id)

            try await client.execute(
                uri: "/v1/tools/search-memory", method: .post, headers: bearer(other.tool),
                body: json(["query": "Friday", "caller_id": Fixtures.fixturePhone])
            ) { response in
                #expect(response.status == .ok)
                #expect((response.body.json["memories"] as? [Any])?.isEmpty == true)
            }
            try await client.execute(uri: "/v1/users/%2B12523960448/memories", method: .get, headers: bearer(other.admin)) { response in
                #expect(response.status == .ok)
                #expect(response.body.json["total"] as? Int == 0)
            }
            try await client.execute(uri: "/v1/memories/\(memoryID)", method: .get, headers: bearer(other.admin)) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/v1/memories/\(memoryID)", method: .delete, headers: bearer(other.admin)) {
                #expect($0.status == .notFound)
            }
            try await client.execute(uri: "/v1/users/\(user.rawValue)", method: .delete, headers: bearer(other.admin)) { #expect($0.status == .ok) }
            try await client.execute(
                uri: "/v1/tools/forget-me", method: .post, headers: bearer(other.tool), body: json(["caller_id": Fixtures.fixturePhone])
            ) { #expect($0.status == .ok) }
            #expect(try await h.worker.vault.memories(tenant: "default", user: user).count > 0)  // untouched

            // Scopes: a tool key cannot manage, an admin key cannot call tools.
            try await client.execute(uri: "/v1/users/%2B12523960448/memories", method: .get, headers: bearer(h.env.apiKey)) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/tools/search-memory", method: .post, headers: bearer(h.env.adminKey), body: json(["query": "x"])) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/users/%2B12523960448/memories", method: .get, headers: bearer(h.env.adminKey)) { response in
                #expect(response.status == .ok)
                #expect((response.body.json["total"] as? Int ?? 0) > 0)
            }
        }
    }

    @Test("after erasure nothing remains: not in search, export, pre-call, nor in the database file's bytes; a re-delivery stores nothing")
    func erasure() async throws {
        try await run { client, h in
            let body = try fixtureTranscript()
            try await post(client, h.env, body)
            try await h.worker.drain()
            let user = try await h.worker.userKey(phone: Fixtures.fixturePhone)
            let record = try #require(try await h.store.user(tenant: "default", user: user))
            let dataKey = try h.worker.vault.dataKey(of: record).rawBytes
            #expect(fileBytes(h.env.databasePath).range(of: record.dataKeyWrapped) != nil)

            try await client.execute(uri: "/v1/users/%2B12523960448", method: .delete, headers: bearer(h.env.adminKey)) { #expect($0.status == .ok) }

            try await client.execute(uri: "/v1/users/%2B12523960448/export", method: .get, headers: bearer(h.env.adminKey)) { response in
                #expect(response.status == .ok)
                #expect((response.body.json["memories"] as? [Any])?.isEmpty == true)
                #expect(response.body.json["erased_at"] != nil)
                // Management API dates are ISO 8601, not seconds since 2001.
                let erasedAt = try #require(response.body.json["erased_at"] as? String)
                #expect(ISO8601DateFormatter().date(from: erasedAt) != nil, "erased_at \(erasedAt) is ISO 8601")
            }
            try await client.execute(
                uri: "/v1/tools/search-memory", method: .post, headers: bearer(h.env.apiKey),
                body: json(["query": "Friday", "caller_id": Fixtures.fixturePhone])
            ) { response in
                #expect((response.body.json["memories"] as? [Any])?.isEmpty == true)
            }
            try await client.execute(
                uri: "/v1/elevenlabs/conversation-init", method: .post, headers: bearer(h.env.apiKey),
                body: json(["caller_id": Fixtures.fixturePhone])
            ) { response in
                #expect((response.body.json["dynamic_variables"] as? [String: Any])?["is_returning_caller"] as? Bool == false)
            }
            let bytes = fileBytes(h.env.databasePath)
            #expect(bytes.range(of: record.dataKeyWrapped) == nil)
            #expect(bytes.range(of: dataKey) == nil)

            // ElevenLabs retries the same conversation, past the dedupe marks: nothing comes back.
            let envelope = try Envelope.seal(
                body, tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(),
                cipher: KeyRing(master: h.env.masterKey).envelopeCipher)
            _ = try await h.worker.queue.enqueue(envelope, dedupe: [], ttlSeconds: 60)
            try await h.worker.drain()
            #expect(try await h.worker.vault.memories(tenant: "default", user: user, includeHistory: true).isEmpty)
            let audit = try await h.store.auditEntries(tenant: "default", limit: 10)
            #expect(audit.contains { $0.action == "user.erase" && $0.user == user.rawValue && $0.actor == "env:admin" })
        }
    }

    @Test("sensitive memories stay out of tool answers (a spoofed caller id must not hear them); operators still see them")
    func sensitiveOutOfTools() async throws {
        try await run { client, h in
            try await client.execute(
                uri: "/v1/tools/remember", method: .post, headers: bearer(h.env.apiKey),
                body: json(["fact": "The caller is allergic to penicillin.", "caller_id": Fixtures.fixturePhone])
            ) { #expect($0.status == .ok) }
            try await h.worker.drain()
            try await client.execute(
                uri: "/v1/tools/search-memory", method: .post, headers: bearer(h.env.apiKey),
                body: json(["query": "allergic penicillin", "caller_id": Fixtures.fixturePhone])
            ) { response in
                #expect(response.status == .ok)
                #expect(!String(buffer: response.body).contains("penicillin"))
            }
            try await client.execute(
                uri: "/v1/users/%2B12523960448/memories/search", method: .post, headers: bearer(h.env.adminKey),
                body: json(["query": "allergic penicillin"])
            ) { response in
                #expect(String(buffer: response.body).contains("penicillin"))
            }
        }
    }

    @Test("the raw database never holds the caller's number or a phrase of the transcript")
    func encryptedAtRest() async throws {
        try await run { client, h in
            try await post(client, h.env, try fixtureTranscript())
            try await h.worker.drain()
            #expect(try await h.worker.vault.memories(tenant: "default", user: try await h.worker.userKey(phone: Fixtures.fixturePhone)).count > 3)
            let bytes = fileBytes(h.env.databasePath)
            for phrase in ["2523960448", "Friday slot", "booked for Friday", "Dana", "cleaning"] {
                #expect(bytes.range(of: Data(phrase.utf8)) == nil, "found \(phrase)")
            }
        }
    }

    @Test("explicit consent: nothing is stored until consent is recorded, then it is")
    func explicitConsent() async throws {
        try await run(configure: { $0.consentMode = .explicit }) { client, h in
            try await post(client, h.env, try fixtureTranscript())
            try await h.worker.drain()
            let user = try await h.worker.userKey(phone: Fixtures.fixturePhone)
            #expect(try await h.worker.vault.memories(tenant: "default", user: user).isEmpty)

            try await client.execute(
                uri: "/v1/tools/set-consent", method: .post, headers: bearer(h.env.apiKey),
                body: json(["granted": true, "caller_id": Fixtures.fixturePhone])
            ) { response in
                #expect(response.status == .ok)
                #expect(response.body.json["status"] as? String == "granted")
            }
            try await post(client, h.env, try fixtureTranscript())
            try await h.worker.drain()
            #expect(try await h.worker.vault.memories(tenant: "default", user: user).count > 0)

            try await client.execute(uri: "/v1/users/%2B12523960448/consent", method: .get, headers: bearer(h.env.adminKey)) { response in
                #expect(response.body.json["mode"] as? String == "explicit")
                #expect(response.body.json["granted"] as? Bool == true)
            }
        }
    }

    @Test("a data-collection result memory_consent: true in the call records consent")
    func consentFromCall() async throws {
        try await run(configure: { $0.consentMode = .explicit }) { client, h in
            let body = try fixtureTranscript { object in
                var data = object["data"] as! [String: Any]
                var analysis = data["analysis"] as! [String: Any]
                analysis["data_collection_results"] = ["memory_consent": ["data_collection_id": "memory_consent", "value": true]]
                data["analysis"] = analysis
                object["data"] = data
            }
            try await post(client, h.env, body)
            try await h.worker.drain()
            #expect(try await h.worker.vault.memories(tenant: "default", user: try await h.worker.userKey(phone: Fixtures.fixturePhone)).count > 0)
        }
    }

    @Test("master-key rotation keeps all data readable; a revoked key gets 401")
    func keyRotation() async throws {
        try await run { client, h in
            try await post(client, h.env, try fixtureTranscript())
            try await h.worker.drain()
            let user = try await h.worker.userKey(phone: Fixtures.fixturePhone)
            // Keys: a second key works alongside, and a revoked one gets 401.
            let keys = try await makeTenant("rotating", vault: h.worker.vault)
            try await client.execute(uri: "/v1/tools/search-memory", method: .post, headers: bearer(keys.tool), body: json(["query": "x"])) {
                #expect($0.status == .ok)
            }
            let id = try #require(try await h.store.apiKeys(tenant: "rotating").first { $0.scope == .tool }?.id)
            #expect(try await h.store.revokeAPIKey(tenant: "rotating", id: id, at: Date()))
            try await client.execute(uri: "/v1/tools/search-memory", method: .post, headers: bearer(keys.tool), body: json(["query": "x"])) {
                #expect($0.status == .unauthorized)
            }
            let before = try await h.worker.vault.memories(tenant: "default", user: user).map(\.content).sorted()
            let newKey = MasterKey.generate()
            let count = try await MasterKeyRotation.rotate(store: h.store, from: KeyRing(master: h.env.masterKey), to: newKey)
            #expect(count >= 2)
            let rotated = MemoryVault(store: h.store, keyRing: KeyRing(master: newKey), embedder: LocalEmbedder())
            let tenant = try #require(try await rotated.tenant("default"))
            #expect(tenant.userKeys.key(for: .phone(Fixtures.fixturePhone)) == user)  // user keys survive rotation
            #expect(try await rotated.memories(tenant: "default", user: user).map(\.content).sorted() == before)

        }
    }

    @Test("tools answer 429 with Retry-After past the budget and recover; pre-call never gets 429")
    func rateLimit() async throws {
        // One request per 20 s past a burst of 3: the fourth of six back-to-back requests is refused
        // unless it comes 20 s after the first. (At 120 a minute, a loaded machine spent the 0.5 s
        // refill between two requests and all six passed.)
        try await run(configure: {
            $0.rateLimitPerMinute = 3
            $0.rateLimitBurst = 2
        }) { client, h in
            var statuses: [Int] = []
            for _ in 0..<6 {
                try await client.execute(uri: "/v1/tools/search-memory", method: .post, headers: bearer(h.env.apiKey), body: json(["query": "x"])) {
                    response in
                    statuses.append(Int(response.status.code))
                    if response.status == .tooManyRequests {
                        #expect(response.headers[.retryAfter] != nil)
                        #expect((response.body.json["error"] as? [String: Any])?["code"] as? String == "rate_limited")
                    }
                }
            }
            #expect(statuses.contains(429))
            #expect(statuses.prefix(3).allSatisfy { $0 == 200 })
            for _ in 0..<3 {
                try await client.execute(
                    uri: "/v1/elevenlabs/conversation-init", method: .post, headers: bearer(h.env.apiKey),
                    body: json(["caller_id": Fixtures.fixturePhone])
                ) { #expect($0.status == .ok) }
            }
            try await waitUntil(timeout: .seconds(45), "the bucket refills") {
                try await client.execute(uri: "/v1/tools/search-memory", method: .post, headers: bearer(h.env.apiKey), body: json(["query": "x"])) {
                    $0.status == .ok
                }
            }
        }
    }

    @Test("a tenant's own post-call URL verifies with that tenant's stored secret only")
    func tenantPostCall() async throws {
        try await run { client, h in
            _ = try await makeTenant("clinic", vault: h.worker.vault)
            let secret = "wsec_clinic_\(UUID().uuidString)"
            let keyRing = h.worker.vault.keyRing
            let wrapped = try keyRing.wrap(Data(secret.utf8), context: "webhook:clinic")
            try await h.store.setTenantWebhookSecrets(tenant: "clinic", current: wrapped.wrapped, previous: nil, keyID: wrapped.keyID)
            let body = try fixtureTranscript()
            try await client.execute(
                uri: "/v1/elevenlabs/clinic/post-call", method: .post, headers: postCallHeaders(body, secret: h.env.webhookSecret),
                body: ByteBuffer(data: body)
            ) {
                #expect($0.status == .unauthorized)
            }
            try await post(client, h.env, body, uri: "/v1/elevenlabs/clinic/post-call", secret: secret)
            try await client.execute(
                uri: "/v1/elevenlabs/nobody/post-call", method: .post, headers: postCallHeaders(body, secret: secret), body: ByteBuffer(data: body)
            ) {
                #expect($0.status == .unauthorized)
            }
            try await h.worker.drain()
            let clinic = try #require(try await h.worker.vault.tenant("clinic"))
            let user = clinic.userKeys.key(for: .phone(Fixtures.fixturePhone))
            #expect(try await h.worker.vault.memories(tenant: "clinic", user: user).count > 0)
            #expect(try await h.worker.vault.memories(tenant: "default", user: try await h.worker.userKey(phone: Fixtures.fixturePhone)).isEmpty)
        }
    }

    @Test("operators can correct and delete a memory; every action is audited without content")
    func managementEdits() async throws {
        try await run { client, h in
            try await post(client, h.env, try fixtureTranscript())
            try await h.worker.drain()
            let user = try await h.worker.userKey(phone: Fixtures.fixturePhone)
            let memory = try #require(try await h.worker.vault.memories(tenant: "default", user: user).first { $0.slot == nil })
            try await client.execute(
                uri: "/v1/memories/\(memory.id)", method: .patch, headers: bearer(h.env.adminKey),
                body: json(["content": "The caller's cleaning is on Monday at 9:00.", "sensitive": true])
            ) { response in
                #expect(response.status == .ok)
                #expect(response.body.json["content"] as? String == "The caller's cleaning is on Monday at 9:00.")
            }
            try await client.execute(
                uri: "/v1/users/%2B12523960448/memories/search", method: .post, headers: bearer(h.env.adminKey),
                body: json(["query": "Monday cleaning"])
            ) { response in
                let first = (response.body.json["results"] as? [[String: Any]])?.first?["memory"] as? [String: Any]
                #expect(first?["id"] as? String == memory.id)
            }
            try await client.execute(
                uri: "/v1/memories/\(memory.id)", method: .patch, headers: bearer(h.env.adminKey), body: json(["status": "erased"])
            ) { #expect($0.status == .badRequest) }
            try await client.execute(uri: "/v1/memories/\(memory.id)", method: .delete, headers: bearer(h.env.adminKey)) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/memories/\(memory.id)", method: .get, headers: bearer(h.env.adminKey)) {
                #expect($0.status == .notFound)
            }
            try await client.execute(uri: "/v1/users/%2B12523960448/memories?sector=nonsense", method: .get, headers: bearer(h.env.adminKey)) {
                #expect($0.status == .badRequest)
            }
            try await client.execute(uri: "/v1/audit", method: .get, headers: bearer(h.env.adminKey)) { response in
                let text = String(buffer: response.body)
                #expect(text.contains("memory.update") && text.contains("memory.delete"))
                #expect(!text.contains("Monday") && !text.contains("2523960448"))
            }
        }
    }
}
