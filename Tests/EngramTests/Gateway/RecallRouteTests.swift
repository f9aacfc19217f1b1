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

/// A real store that answers slowly: the pre-call budget must not wait for it.
struct StalledStore: MemoryStore {
    let base: any MemoryStore
    let delay: Duration
    func ping() async throws { try await base.ping() }
    func close() async { await base.close() }
    func ensureTenant(_ tenant: TenantRecord) async throws -> TenantRecord { try await base.ensureTenant(tenant) }
    func tenant(id: String) async throws -> TenantRecord? { try await base.tenant(id: id) }
    func tenants() async throws -> [TenantRecord] { try await base.tenants() }
    func ensureUser(_ user: UserRecord) async throws -> UserRecord { try await base.ensureUser(user) }
    func user(tenant: String, user: UserKey) async throws -> UserRecord? {
        try await Task.sleep(for: delay)
        return try await base.user(tenant: tenant, user: user)
    }
    func setConsent(tenant: String, user: UserKey, granted: Bool, at: Date) async throws {
        try await base.setConsent(tenant: tenant, user: user, granted: granted, at: at)
    }
    func isProcessed(tenant: String, idempotencyKey: String) async throws -> Bool {
        try await base.isProcessed(tenant: tenant, idempotencyKey: idempotencyKey)
    }
    func recordEvent(tenant: String, idempotencyKey: String, eventID: String, eventType: String, user: UserKey?, at: Date) async throws -> Bool {
        try await base.recordEvent(tenant: tenant, idempotencyKey: idempotencyKey, eventID: eventID, eventType: eventType, user: user, at: at)
    }
    func apply(_ batch: WriteBatch) async throws -> Bool { try await base.apply(batch) }
    func memoriesNeedingReextraction(tenant: String, user: UserKey?) async throws -> [MemoryRow] {
        try await base.memoriesNeedingReextraction(tenant: tenant, user: user)
    }
    func replaceExtraction(_ batch: WriteBatch, replacing ids: [String]) async throws -> Bool {
        try await base.replaceExtraction(batch, replacing: ids)
    }
    func memories(tenant: String, user: UserKey, includeHistory: Bool) async throws -> [MemoryRow] {
        try await base.memories(tenant: tenant, user: user, includeHistory: includeHistory)
    }
    func memories(tenant: String, user: UserKey, ids: [String]) async throws -> [MemoryRow] {
        try await base.memories(tenant: tenant, user: user, ids: ids)
    }
    func activeMemoryCount(tenant: String, user: UserKey) async throws -> Int { try await base.activeMemoryCount(tenant: tenant, user: user) }
    func memoryHeads(tenant: String, user: UserKey) async throws -> [MemoryHead] { try await base.memoryHeads(tenant: tenant, user: user) }
    func vectors(tenant: String, user: UserKey, embedder: String) async throws -> (ids: [String], flat: [Float]) {
        try await base.vectors(tenant: tenant, user: user, embedder: embedder)
    }
    func postings(tenant: String, user: UserKey, terms: [Data]) async throws -> [TermPosting] {
        try await base.postings(tenant: tenant, user: user, terms: terms)
    }
    func termStatistics(tenant: String, user: UserKey) async throws -> TermStatistics { try await base.termStatistics(tenant: tenant, user: user) }
    func termIndexRows(tenant: String, user: UserKey) async throws -> (documents: [(id: String, length: Int)], postings: [TermPosting]) {
        try await base.termIndexRows(tenant: tenant, user: user)
    }
    func reinforce(tenant: String, _ updates: [(id: String, salience0: Double, at: Date)]) async throws {
        try await base.reinforce(tenant: tenant, updates)
    }
    func archive(tenant: String, ids: [String]) async throws { try await base.archive(tenant: tenant, ids: ids) }
    func sweepCandidates(tenant: String, limit: Int, after: String?) async throws -> [MemoryRow] {
        try await base.sweepCandidates(tenant: tenant, limit: limit, after: after)
    }
    func tombstone(tenant: String, user: UserKey) async throws -> Date? { try await base.tombstone(tenant: tenant, user: user) }
    func memoryCountsByStatus() async throws -> [String: Int] { try await base.memoryCountsByStatus() }
    func memory(tenant: String, id: String) async throws -> MemoryRow? { try await base.memory(tenant: tenant, id: id) }
    func setRetention(tenant: String, days: Int?) async throws { try await base.setRetention(tenant: tenant, days: days) }
    func deleteMemories(tenant: String, olderThan cutoff: Date) async throws -> Int {
        try await base.deleteMemories(tenant: tenant, olderThan: cutoff)
    }
    func replaceMemory(_ row: MemoryRow, vectors: [VectorRow], postings: [TermPosting]) async throws {
        try await base.replaceMemory(row, vectors: vectors, postings: postings)
    }
    func deleteMemory(tenant: String, id: String) async throws -> Bool { try await base.deleteMemory(tenant: tenant, id: id) }
    func setTenantConsentMode(tenant: String, mode: ConsentMode, allowSensitivePrecall: Bool) async throws {
        try await base.setTenantConsentMode(tenant: tenant, mode: mode, allowSensitivePrecall: allowSensitivePrecall)
    }
    func setTenantWebhookSecrets(tenant: String, current: Data?, previous: Data?, keyID: String) async throws {
        try await base.setTenantWebhookSecrets(tenant: tenant, current: current, previous: previous, keyID: keyID)
    }
    func tenantWebhookSecrets(tenant: String) async throws -> (current: Data?, previous: Data?, keyID: String)? {
        try await base.tenantWebhookSecrets(tenant: tenant)
    }
    func insertAPIKey(_ key: APIKeyRecord) async throws { try await base.insertAPIKey(key) }
    func apiKey(hash: Data) async throws -> APIKeyRecord? { try await base.apiKey(hash: hash) }
    func apiKeys(tenant: String) async throws -> [APIKeyRecord] { try await base.apiKeys(tenant: tenant) }
    func revokeAPIKey(tenant: String, id: String, at: Date) async throws -> Bool { try await base.revokeAPIKey(tenant: tenant, id: id, at: at) }
    func audit(_ entry: AuditEntry) async throws { try await base.audit(entry) }
    func auditEntries(tenant: String, limit: Int) async throws -> [AuditEntry] { try await base.auditEntries(tenant: tenant, limit: limit) }
    func wrappedSecrets() async throws -> [WrappedSecret] { try await base.wrappedSecrets() }
    func replaceWrappedSecrets(_ secrets: [WrappedSecret]) async throws { try await base.replaceWrappedSecrets(secrets) }
    func erase(tenant: String, user: UserKey, at: Date) async throws { try await base.erase(tenant: tenant, user: user, at: at) }
    func tombstones(erasedAfter: Date) async throws -> [Tombstone] { try await base.tombstones(erasedAfter: erasedAfter) }
    func setTrustClientUserIDs(tenant: String, trusted: Bool) async throws { try await base.setTrustClientUserIDs(tenant: tenant, trusted: trusted) }
}

@Suite("Pre-call webhook and memory tools", .timeLimit(.minutes(2)))
struct RecallRouteTests {
    /// Ingests signed fixtures through the real gateway and worker, then runs `body` against the gateway.
    func withIngested(
        _ bodies: [Data], backend: Backend = .sqlite, store: (@Sendable (TestEnvironment) async throws -> any MemoryStore)? = nil,
        configure: (inout EngramConfiguration) -> Void = { _ in },
        _ body: @Sendable (any TestClientProtocol, TestEnvironment, WorkerRuntime) async throws -> Void
    ) async throws {
        let env = try await TestEnvironment.make(backend)
        var configuration = env.configuration()
        configure(&configuration)
        let worker = try await buildWorker(configuration: configuration, logger: testLogger)
        let app = try await buildApplication(configuration: configuration, store: try await store?(env), logger: testLogger)
        try await app.test(.router) { client in
            for data in bodies {
                try await client.execute(
                    uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(data, secret: env.webhookSecret),
                    body: ByteBuffer(data: data)
                ) {
                    #expect($0.status == .ok)
                }
            }
            try await worker.drain()
            try await body(client, env, worker)
        }
        await env.cleanUp()
    }

    func json(_ object: [String: Any]) -> ByteBuffer { ByteBuffer(data: try! JSONSerialization.data(withJSONObject: object)) }

    func precall(_ client: any TestClientProtocol, _ env: TestEnvironment, caller: Any, key: String? = nil) async throws -> (
        HTTPResponse.Status, [String: Any]
    ) {
        try await client.execute(
            uri: "/v1/elevenlabs/conversation-init", method: .post, headers: bearer(key ?? env.apiKey),
            body: json(["caller_id": caller, "agent_id": "agent_1", "called_number": "+12018774358", "call_sid": "CA1"])
        ) { ($0.status, $0.body.json) }
    }

    func search(
        _ client: any TestClientProtocol, _ env: TestEnvironment, _ query: String, caller: String = Fixtures.fixturePhone, extra: [String: Any] = [:]
    ) async throws -> [[String: Any]] {
        var body: [String: Any] = ["query": query, "caller_id": caller, "conversation_id": "conv_x"]
        body.merge(extra) { $1 }
        return try await client.execute(uri: "/v1/tools/search-memory", method: .post, headers: bearer(env.apiKey), body: json(body)) { response in
            #expect(response.status == .ok)
            return response.body.json["memories"] as? [[String: Any]] ?? []
        }
    }

    @Test("a returning caller gets non-empty context; a new caller the neutral set", arguments: Backend.available)
    func precallReturningAndNew(backend: Backend) async throws {
        try await withIngested([try fixtureTranscript()], backend: backend) { client, env, _ in
            let (status, answer) = try await precall(client, env, caller: Fixtures.fixturePhone)
            #expect(status == .ok)
            #expect(answer["type"] as? String == "conversation_initiation_client_data")
            let variables = try #require(answer["dynamic_variables"] as? [String: Any])
            let context = try #require(variables["memory_context"] as? String)
            #expect(!context.isEmpty)
            // The booking is a dated fact, and no turn is given twice (issue 13).
            #expect(context.contains("the caller confirmed a cleaning on Friday (28 November 2025) at 10 a.m."))
            let lines = context.split(separator: "\n").filter { $0.hasPrefix("caller: ") || $0.hasPrefix("agent: ") }
            #expect(!lines.isEmpty && lines.count == Set(lines).count)
            #expect(context.count <= env.configuration().precallContextChars)
            #expect(variables["is_returning_caller"] as? Bool == true)
            #expect(variables["user_name"] as? String == "Dana")
            #expect((variables["last_call_summary"] as? String)?.contains("Friday") == true)
            #expect((variables["memory_count"] as? Int ?? 0) > 0)
            #expect((variables["days_since_last_call"] as? Int ?? -1) >= 0)
            #expect((answer["user_id"] as? String)?.hasPrefix("u_") == true)

            let (newStatus, fresh) = try await precall(client, env, caller: "+14155550123")
            #expect(newStatus == .ok)
            let neutral = try #require(fresh["dynamic_variables"] as? [String: Any])
            #expect(neutral["memory_context"] as? String == "")
            #expect(neutral["user_name"] as? String == "")
            #expect(neutral["is_returning_caller"] as? Bool == false)
            #expect(neutral["last_call_summary"] as? String == "")
            #expect(neutral["days_since_last_call"] as? Int == -1)
            #expect(neutral["memory_count"] as? Int == 0)
        }
    }

    @Test("withheld or malformed caller ids get 200 and the neutral set; only a wrong key gets 401")
    func precallWithheld() async throws {
        try await withIngested([]) { client, env, _ in
            for caller in ["anonymous", "Restricted", "", 12345] as [Any] {
                let (status, answer) = try await precall(client, env, caller: caller)
                #expect(status == .ok)
                #expect((answer["dynamic_variables"] as? [String: Any])?["is_returning_caller"] as? Bool == false)
                #expect(answer["user_id"] == nil)
            }
            try await client.execute(
                uri: "/v1/elevenlabs/conversation-init", method: .post, headers: bearer(env.apiKey), body: ByteBuffer(string: "{broken")
            ) { response in
                #expect(response.status == .ok)
            }
            let (status, _) = try await precall(client, env, caller: Fixtures.fixturePhone, key: "wrong")
            #expect(status == .unauthorized)
        }
    }

    @Test("a stalled store answers the neutral set within the budget")
    func precallStalled() async throws {
        try await withIngested(
            [try fixtureTranscript()], store: { env in StalledStore(base: try await openSQLiteStore(path: env.databasePath), delay: .seconds(3)) },
            configure: { $0.precallBudget = .milliseconds(200) }
        ) { client, env, _ in
            let started = ContinuousClock.now
            let (status, answer) = try await precall(client, env, caller: Fixtures.fixturePhone)
            #expect(status == .ok)
            #expect((answer["dynamic_variables"] as? [String: Any])?["is_returning_caller"] as? Bool == false)
            #expect(ContinuousClock.now - started < .seconds(3))  // did not wait for the store
        }
    }

    @Test("a store call past its deadline answers 503 store_unavailable with Retry-After, not 500, and the route works again once the store does")
    func storeTimeoutIs503() async throws {
        let opened = Locked<SQLiteMemoryStore?>(nil)
        try await withIngested(
            [try fixtureTranscript()],
            store: { env in
                // Long enough for the setup calls while the whole suite starts at once on two cores
                // (5 s was not, on a clean-clone run); the stall below outlasts it.
                let store = try await openSQLiteStore(path: env.databasePath, callTimeout: .seconds(15))
                opened.withLock { $0 = store }
                return store
            }
        ) { client, env, _ in
            let store = try #require(opened.withLock { $0 })
            let body = json(["caller_id": Fixtures.fixturePhone, "granted": true])
            let stall = try await Stall.begin(on: store)
            let stalled = try await client.execute(uri: "/v1/tools/set-consent", method: .post, headers: bearer(env.apiKey), body: body) { $0 }
            await stall.end()
            #expect(stalled.status == .serviceUnavailable)
            #expect(stalled.headers[.retryAfter] != nil)
            #expect((stalled.body.json["error"] as? [String: Any])?["code"] as? String == "store_unavailable")
            try await client.execute(uri: "/v1/tools/set-consent", method: .post, headers: bearer(env.apiKey), body: body) {
                #expect($0.status == .ok)
            }
        }
    }

    @Test("the user id returned before the call and sent back in data.user_id lands on the same caller")
    func userIDClosesTheLoop() async throws {
        try await withIngested([try fixtureTranscript()]) { client, env, worker in
            let (_, answer) = try await precall(client, env, caller: Fixtures.fixturePhone)
            let key = try #require(answer["user_id"] as? String)
            // A later call whose post-call payload carries the key and no phone number.
            let later = try fixtureTranscript(phone: nil) { object in
                var data = object["data"] as! [String: Any]
                data["user_id"] = key
                data["transcript"] = [["role": "user", "message": "Please remember my dog is called Biscuit and I prefer afternoon slots."]]
                object["data"] = data
            }
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(later, secret: env.webhookSecret),
                body: ByteBuffer(data: later)
            ) { #expect($0.status == .ok) }
            try await worker.drain()
            let memories = try await worker.vault.memories(tenant: "default", user: try await worker.userKey(phone: Fixtures.fixturePhone))
            #expect(memories.contains { $0.content.contains("Biscuit") })
        }
    }

    @Test("search finds the Friday appointment; another caller never sees it", arguments: Backend.available)
    func searchScoped(backend: Backend) async throws {
        try await withIngested(
            [
                try fixtureTranscript(),
                try fixtureTranscript(phone: "+14155550199") { object in
                    var data = object["data"] as! [String: Any]
                    data["transcript"] = [["role": "user", "message": "I need a plumber for my kitchen sink on Monday."]]
                    data["analysis"] = NSNull()
                    object["data"] = data
                },
            ], backend: backend
        ) { client, env, _ in
            let cleaning = try await search(client, env, "when is my cleaning")
            #expect(cleaning.first.map { ($0["text"] as? String ?? "").contains("Friday") } == true)
            let slot = try await search(client, env, "Friday slot")
            #expect(slot.contains { ($0["text"] as? String ?? "").contains("Friday") })
            // One answer within the budget: overlapping episodes merged, no turn twice.
            let lines = slot.flatMap { ($0["text"] as? String ?? "").split(separator: "\n") }.filter {
                $0.hasPrefix("caller: ") || $0.hasPrefix("agent: ")
            }
            #expect(!lines.isEmpty && lines.count == Set(lines).count)
            #expect(slot.reduce(0) { $0 + ($1["text"] as? String ?? "").count } <= env.configuration().searchAnswerChars)
            #expect(slot.allSatisfy { Set($0.keys) == ["text", "when", "sector"] })

            let other = try await search(client, env, "Friday slot cleaning", caller: "+14155550199")
            #expect(other.allSatisfy { !($0["text"] as? String ?? "").contains("Friday") })
            #expect(try await search(client, env, "Friday", caller: "+14155550100").isEmpty)  // unknown caller: empty, not an error
            #expect(try await search(client, env, "Friday", caller: "anonymous").isEmpty)

            let explained = try await search(client, env, "Friday slot", extra: ["explain": true, "limit": 50])
            #expect(explained.count <= 20)
            let score = try #require(explained.first?["score"] as? [String: Any])
            #expect(score["cosine"] != nil && score["bm25"] != nil && score["salience"] != nil && score["recency"] != nil && score["score"] != nil)
            #expect(explained.first?["id"] != nil)
        }
    }

    @Test("a new value for the same slot supersedes the old one; history keeps it, closed at the second call", arguments: Backend.available)
    func favouriteColour(backend: Backend) async throws {
        let first = try fixtureTranscript { object in
            var data = object["data"] as! [String: Any]
            data["transcript"] = [["role": "user", "message": "My favourite colour is blue."]]
            data["analysis"] = NSNull()
            var metadata = data["metadata"] as! [String: Any]
            metadata["start_time_unix_secs"] = 1_763_000_000
            data["metadata"] = metadata
            object["data"] = data
        }
        let second = try fixtureTranscript { object in
            var data = object["data"] as! [String: Any]
            data["transcript"] = [["role": "user", "message": "Oh and my favourite colour is green now."]]
            data["analysis"] = NSNull()
            var metadata = data["metadata"] as! [String: Any]
            metadata["start_time_unix_secs"] = 1_763_600_000
            data["metadata"] = metadata
            object["data"] = data
        }
        try await withIngested([first, second], backend: backend) { client, env, worker in
            let answer = try await search(client, env, "favourite colour")
            let texts = answer.compactMap { $0["text"] as? String }
            // The current fact comes first; the blue one is closed (the raw turn that said it stays as an episode).
            #expect(texts.first?.contains("favourite colour is green") == true)
            #expect(!texts.contains { $0 == "The caller's favourite colour is blue." })
            let user = try await worker.userKey(phone: Fixtures.fixturePhone)
            let history = try await worker.vault.memories(tenant: "default", user: user, includeHistory: true).filter {
                $0.slot == "favourite.colour"
            }
            let blue = try #require(history.first { $0.content.contains("blue") })
            let green = try #require(history.first { $0.content.contains("green") })
            #expect(blue.validTo == Date(timeIntervalSince1970: 1_763_600_000))
            #expect(blue.supersededBy == green.id)
            #expect(green.validTo == nil)
        }
    }

    @Test(
        "tools refuse a missing or wrong key on every route",
        arguments: [
            ("/v1/tools/search-memory", HTTPRequest.Method.post), ("/v1/tools/remember", .post), ("/v1/tools/forget-me", .post),
            ("/v1/elevenlabs/conversation-init", .post), ("/v1/users/%2B12523960448/variables", .get),
        ])
    func authFailures(_ route: String, _ method: HTTPRequest.Method) async throws {
        try await withIngested([]) { client, env, _ in
            for headers in [HTTPFields(), bearer("not-the-key"), bearer(env.webhookSecret)] {
                try await client.execute(
                    uri: route, method: method, headers: headers, body: json(["query": "x", "fact": "x", "caller_id": Fixtures.fixturePhone])
                ) { response in
                    #expect(response.status == .unauthorized)
                    #expect((response.body.json["error"] as? [String: Any])?["code"] as? String == "unauthorized")
                }
            }
        }
    }

    @Test(
        "bad tool input gets a clear 4xx",
        arguments: [
            (#"{"caller_id":"+12523960448"}"#, 400), (#"{"query":"","caller_id":"+12523960448"}"#, 400), ("{nope", 400),
            (#"{"query":"\#(String(repeating: "a", count: 1500))"}"#, 400), (String(repeating: " ", count: 70000) + "{}", 413),
        ])
    func badToolInput(_ body: String, _ status: Int) async throws {
        try await withIngested([]) { client, env, _ in
            try await client.execute(uri: "/v1/tools/search-memory", method: .post, headers: bearer(env.apiKey), body: ByteBuffer(string: body)) {
                response in
                #expect(response.status.code == status)
                #expect((response.body.json["error"] as? [String: Any])?["code"] != nil)
            }
        }
    }

    @Test("JSON nested deeper than the limit is 400; brackets inside strings do not count")
    func nestingDepth() async throws {
        try await withIngested([]) { client, env, _ in
            let deep = #"{"query":"x","extra":"# + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "}"
            try await client.execute(uri: "/v1/tools/search-memory", method: .post, headers: bearer(env.apiKey), body: ByteBuffer(string: deep)) {
                response in
                #expect(response.status == .badRequest)
                #expect((response.body.json["error"] as? [String: Any])?["code"] as? String == "json_too_deep")
            }
            let quoted = #"{"query":"[[[[[[[[[[[[[[[[[[[[[[[[ {{{{ in a \" string","caller_id":"+14155550100"}"#
            try await client.execute(uri: "/v1/tools/search-memory", method: .post, headers: bearer(env.apiKey), body: ByteBuffer(string: quoted)) {
                response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test("remember is written by the worker with provenance tool; forget-me erases the caller", arguments: Backend.available)
    func rememberAndForget(backend: Backend) async throws {
        try await withIngested([try fixtureTranscript()], backend: backend) { client, env, worker in
            try await client.execute(
                uri: "/v1/tools/remember", method: .post, headers: bearer(env.apiKey),
                body: json(["fact": "The caller's parking spot is B12.", "caller_id": Fixtures.fixturePhone, "conversation_id": "conv_r"])
            ) { response in
                #expect(response.status == .ok)
                #expect(response.body.json["status"] as? String == "remembered")
            }
            try await worker.drain()
            let user = try await worker.userKey(phone: Fixtures.fixturePhone)
            let remembered = try await worker.vault.memories(tenant: "default", user: user).filter { $0.content.contains("B12") }
            #expect(remembered.count == 1)
            #expect(remembered.first?.sources.first?.kind == "tool")
            #expect(remembered.first?.sources.first?.conversationID == "conv_r")

            try await client.execute(
                uri: "/v1/tools/forget-me", method: .post, headers: bearer(env.apiKey), body: json(["caller_id": Fixtures.fixturePhone])
            ) { response in
                #expect(response.status == .ok)
                #expect(response.body.json["status"] as? String == "erased")
            }
            #expect(try await search(client, env, "Friday").isEmpty)
            let (_, answer) = try await precall(client, env, caller: Fixtures.fixturePhone)
            #expect((answer["dynamic_variables"] as? [String: Any])?["is_returning_caller"] as? Bool == false)
            // The same conversation re-delivered after "forget me" brings nothing back.
            let replay = try fixtureTranscript(conversationID: "conv_after_erasure")
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(replay, secret: env.webhookSecret),
                body: ByteBuffer(data: replay)
            ) { #expect($0.status == .ok) }
            try await worker.drain()
            #expect(try await worker.vault.memories(tenant: "default", user: user, includeHistory: true).isEmpty)
        }
    }

    @Test("outbound calls get the same variables by phone number")
    func outboundVariables() async throws {
        try await withIngested([try fixtureTranscript()]) { client, env, _ in
            try await client.execute(uri: "/v1/users/%2B12523960448/variables", method: .get, headers: bearer(env.apiKey)) { response in
                #expect(response.status == .ok)
                #expect((response.body.json["dynamic_variables"] as? [String: Any])?["is_returning_caller"] as? Bool == true)
            }
            try await client.execute(uri: "/v1/users/not-a-user/variables", method: .get, headers: bearer(env.apiKey)) {
                #expect($0.status == .badRequest)
            }
        }
    }
}

@Suite("The archival sweep", .timeLimit(.minutes(2)))
struct SweepTests {
    @Test("archives exactly the memories that faded and sat idle, and nothing else")
    func archival() async throws {
        let env = try TestEnvironment()
        let t0 = Date(timeIntervalSince1970: 1_700_000_000)
        let store = try await openSQLiteStore(path: env.databasePath)
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder(), clock: .fixed(t0))
        let tenant = try #require(try await vault.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+12523960448"))
        let extraction = Extraction(
            memories: [
                ExtractedMemory(content: "The caller mentioned the weather in Lisbon.", sector: .episodic, importance: 0.5, sourceTurns: [0]),
                ExtractedMemory(content: "The caller is vegetarian.", sector: .semantic, importance: 0.5, sourceTurns: [1]),
            ], summary: nil, userName: nil, extractor: "test")
        let batch = try await vault.prepareWrite(
            tenant: "default", user: user, extraction: extraction, conversationID: "c", callAt: t0, idempotencyKey: "k", eventID: "e", eventType: "t")
        #expect(try await store.apply(batch))
        // 200 days on: nothing idle long enough and faded enough yet for semantic; episodic 0.05 + 0.55 e^-3 = 0.077 < 0.08.
        #expect(try await vault.sweep(now: t0.addingTimeInterval(100 * 86_400)) == 0)
        #expect(try await vault.sweep(now: t0.addingTimeInterval(200 * 86_400)) == 1)
        let all = try await store.memories(tenant: "default", user: user, includeHistory: true)
        #expect(all.first { $0.sector == .episodic }?.status == .archived)
        #expect(all.first { $0.sector == .semantic }?.status == .active)
        #expect(try await store.memories(tenant: "default", user: user, includeHistory: false).count == 1)

        // Retention: with 30 days set, the sweep deletes for good what is older.
        try await store.setRetention(tenant: "default", days: 30)
        _ = try await vault.sweep(now: t0.addingTimeInterval(31 * 86_400))
        #expect(try await store.memories(tenant: "default", user: user, includeHistory: true).isEmpty)
        await env.cleanUp()
    }
}
