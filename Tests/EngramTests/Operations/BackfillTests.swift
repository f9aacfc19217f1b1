import Foundation
import GRDB
import HummingbirdTesting
import NIOCore
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramQueue
@testable import Gateway
@testable import Worker

/// `engram backfill` against a fake ElevenLabs Conversations API, a real Redis queue and a real
/// SQLite store; the worker processes what it queues.
@Suite("Backfill from the ElevenLabs Conversations API", .timeLimit(.minutes(3)))
struct BackfillTests {
    /// 2025-11-21 00:00 UTC and the callers of the conversations below.
    static let base: Int64 = 1_763_683_200
    static let agent = "agent_test"
    static let phones = ["+14155550101", "+14155550102", "+14155550103", "+14155550104"]

    struct Harness {
        let env: TestEnvironment
        let server: FakeElevenLabsServer
        let worker: WorkerRuntime
        let queue: RedisEventQueue

        func client(apiKey: String? = nil) -> ElevenLabsClient {
            ElevenLabsClient(baseURL: server.baseURL, apiKey: apiKey ?? server.apiKey, timeout: .seconds(5), retryBase: .milliseconds(10))
        }

        func backfill(apiKey: String? = nil) -> ConversationBackfill {
            ConversationBackfill(
                client: client(apiKey: apiKey), store: worker.vault.store, queue: queue,
                envelopeCipher: KeyRing(master: env.masterKey).envelopeCipher, dedupeTTLSeconds: 600)
        }

        func run(since: Int64 = BackfillTests.base, until: Int64? = nil, dryRun: Bool = false, apiKey: String? = nil) async throws -> [BackfillItem] {
            let tenant = try #require(try await worker.vault.tenant("default", create: true))
            return try await backfill(apiKey: apiKey).run(
                tenant: tenant, agentID: BackfillTests.agent, since: Date(timeIntervalSince1970: TimeInterval(since)),
                until: until.map { Date(timeIntervalSince1970: TimeInterval($0)) }, dryRun: dryRun)
        }

        /// Queues a webhook body as the gateway would (no dedupe marks) and processes the queue.
        func ingestDirectly(_ body: Data) async throws {
            let envelope = try Envelope.seal(
                body, tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(),
                cipher: KeyRing(master: env.masterKey).envelopeCipher)
            _ = try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60)
            try await worker.drain()
        }

        func memories(_ phone: String) async throws -> [Memory] {
            try await worker.vault.memories(tenant: "default", user: try await worker.userKey(phone: phone), includeHistory: true)
        }

        func outcomes(_ items: [BackfillItem]) -> [String: BackfillOutcome] {
            Dictionary(items.map { ($0.conversationID, $0.outcome) }, uniquingKeysWith: { first, _ in first })
        }
    }

    static func withHarness(_ body: (Harness) async throws -> Void) async throws {
        let env = try TestEnvironment()
        do {
            try await withFakeElevenLabs(maxPageSize: 2) { server in
                let worker = try await buildWorker(configuration: env.configuration(), logger: testLogger)
                try await body(Harness(env: env, server: server, worker: worker, queue: env.queue()))
            }
        } catch {
            await env.cleanUp()
            throw error
        }
        await env.cleanUp()
    }

    @Test("backfill pages through the list and queues only finished, unprocessed conversations with a caller")
    func queuesOnlyWhatIsMissing() async throws {
        try await Self.withHarness { h in
            typealias Stored = FakeElevenLabsServer.StoredConversation
            let processed = try Stored.fixture(id: "conv_processed", start: Self.base + 100, phone: Self.phones[0])
            let missedA = try Stored.fixture(id: "conv_missed_a", start: Self.base + 200, phone: Self.phones[1])
            let missedB = try Stored.fixture(id: "conv_missed_b", start: Self.base + 300, phone: Self.phones[2])
            let running = try Stored.fixture(id: "conv_running", start: Self.base + 400, status: "in-progress", phone: Self.phones[3])
            let anonymous = try Stored.fixture(id: "conv_anonymous", start: Self.base + 450, phone: nil)
            let tooOld = try Stored.fixture(id: "conv_too_old", start: Self.base - 1_000, phone: Self.phones[3])
            let otherAgent = try Stored.fixture(id: "conv_other_agent", agentID: "agent_other", start: Self.base + 500, phone: Self.phones[3])
            for conversation in [processed, missedA, missedB, running, anonymous, tooOld, otherAgent] { h.server.add(conversation) }
            // The webhook of one call did arrive and was processed.
            try await h.ingestDirectly(processed.webhookBody)
            let processedMemories = try await h.memories(Self.phones[0]).map(\.id)
            #expect(!processedMemories.isEmpty)

            let items = try await h.run()

            #expect(
                h.outcomes(items) == [
                    "conv_processed": .alreadyProcessed, "conv_missed_a": .enqueued, "conv_missed_b": .enqueued,
                    "conv_running": .skippedNotDone, "conv_anonymous": .skippedNoCaller,
                ])
            #expect(items.map(\.conversationID) == ["conv_anonymous", "conv_running", "conv_missed_b", "conv_missed_a", "conv_processed"])
            // Five conversations in range, two per page: three pages, each asked with the filters.
            let lists = h.server.listRequests
            #expect(lists.count == 3)
            #expect(lists.map { $0.query["cursor"] } == [nil, "cur_2", "cur_4"])
            #expect(lists.allSatisfy { $0.query["agent_id"] == Self.agent && $0.query["call_start_after_unix"] == String(Self.base - 1) })
            #expect(h.server.requests.allSatisfy { $0.apiKey == h.server.apiKey })
            // Details are fetched only for finished calls Engram has not processed.
            #expect(
                Set(h.server.detailRequests.map(\.path))
                    == Set(["conv_missed_a", "conv_missed_b", "conv_anonymous"].map { "/v1/convai/conversations/\($0)" }))
            #expect(try await h.queue.stats().pending == 2)

            // The worker processes them like webhooks: the missed callers now have memories.
            try await h.worker.drain()
            #expect(try await h.queue.stats() == QueueStats(pending: 0, processing: 0, retry: 0, dead: 0))
            #expect(try await !h.memories(Self.phones[1]).isEmpty)
            #expect(try await !h.memories(Self.phones[2]).isEmpty)
            #expect(try await h.memories(Self.phones[3]).isEmpty)
            #expect(try await h.memories(Self.phones[0]).map(\.id) == processedMemories)
            #expect(try await h.worker.vault.store.isProcessed(tenant: "default", idempotencyKey: "post_call_transcription:conv_missed_a"))

            // The report holds ids, times and outcomes: no numbers, no words of the call.
            let report = String(decoding: try JSONEncoder().encode(items), as: UTF8.self)
            for secret in Self.phones + ["2523960448", "Friday", "Dana"] { #expect(!report.contains(secret), "report leaks \(secret)") }
        }
    }

    @Test("a second backfill queues nothing, and the webhook arriving afterwards is a duplicate")
    func idempotentWithWebhook() async throws {
        try await Self.withHarness { h in
            typealias Stored = FakeElevenLabsServer.StoredConversation
            let a = try Stored.fixture(id: "conv_a", start: Self.base + 10, phone: Self.phones[0])
            let b = try Stored.fixture(id: "conv_b", start: Self.base + 20, phone: Self.phones[1])
            h.server.add(a)
            h.server.add(b)

            #expect(h.outcomes(try await h.run()) == ["conv_a": .enqueued, "conv_b": .enqueued])
            // Queued but not yet processed: the dedupe marks stop a second enqueue.
            #expect(h.outcomes(try await h.run()) == ["conv_a": .alreadyQueued, "conv_b": .alreadyQueued])
            #expect(try await h.queue.stats().pending == 2)

            try await h.worker.drain()
            let stored = try await h.memories(Self.phones[0])
            #expect(!stored.isEmpty)
            let detailsFetched = h.server.detailRequests.count
            #expect(h.outcomes(try await h.run()) == ["conv_a": .alreadyProcessed, "conv_b": .alreadyProcessed])
            #expect(h.server.detailRequests.count == detailsFetched)
            #expect(try await h.queue.stats().pending == 0)

            // ElevenLabs' webhook for conv_a arrives late: the gateway accepts it and queues nothing.
            let app = try await buildApplication(configuration: h.env.configuration(), logger: testLogger)
            let body = a.webhookBody
            try await app.test(.router) { client in
                try await client.execute(
                    uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(body, secret: h.env.webhookSecret),
                    body: ByteBuffer(data: body)
                ) { response in
                    #expect(response.status == .ok)
                }
            }
            #expect(try await h.queue.stats().pending == 0)

            // Even once the dedupe marks have expired, the store's idempotency key stops it.
            let redis = h.env.redisClient()
            for key in try await RedisEventQueue(client: redis, keys: h.env.keys).scan(h.env.prefix + "seen:*") {
                _ = try await redis.command("DEL", RedisArgument(key))
            }
            try await h.ingestDirectly(body)
            #expect(try await h.memories(Self.phones[0]) == stored)
        }
    }

    @Test("a call from before the caller's erasure is not queued, even after the caller consented again")
    func erasedCallerStaysErased() async throws {
        try await Self.withHarness { h in
            h.server.add(try .fixture(id: "conv_before_erasure", start: Self.base + 10, phone: Self.phones[0]))
            let user = try await h.worker.userKey(phone: Self.phones[0])
            let store = h.worker.vault.store
            // Erased (forget-me) after that call, then consent given again: later calls are welcome,
            // but the erased one must not come back through the backfill.
            try await store.erase(tenant: "default", user: user, at: Date(timeIntervalSince1970: TimeInterval(Self.base + 3_600)))
            _ = try await h.worker.vault.userForWriting(tenant: "default", user: user)
            try await store.setConsent(tenant: "default", user: user, granted: true, at: Date())
            h.server.add(try .fixture(id: "conv_after_consent", start: Self.base + 7_200, phone: Self.phones[0]))

            let items = try await h.run()
            #expect(h.outcomes(items) == ["conv_before_erasure": .skippedErased, "conv_after_consent": .enqueued])
            try await h.worker.drain()
            let memories = try await h.memories(Self.phones[0])
            #expect(!memories.isEmpty)
            #expect(memories.allSatisfy { $0.sources.allSatisfy { $0.conversationID == "conv_after_consent" } })
        }
    }

    @Test("a dry run reports what it would queue and queues nothing")
    func dryRun() async throws {
        try await Self.withHarness { h in
            h.server.add(try .fixture(id: "conv_dry", start: Self.base + 10, phone: Self.phones[0]))
            let items = try await h.run(dryRun: true)
            #expect(h.outcomes(items) == ["conv_dry": .wouldEnqueue])
            #expect(try await h.queue.stats().pending == 0)
            // Nothing was marked either: the real run still queues it.
            #expect(h.outcomes(try await h.run()) == ["conv_dry": .enqueued])
        }
    }

    @Test("--until bounds the range: later calls are left out")
    func untilBound() async throws {
        try await Self.withHarness { h in
            h.server.add(try .fixture(id: "conv_early", start: Self.base + 10, phone: Self.phones[0]))
            h.server.add(try .fixture(id: "conv_late", start: Self.base + 5_000, phone: Self.phones[1]))
            let items = try await h.run(until: Self.base + 1_000)
            #expect(h.outcomes(items) == ["conv_early": .enqueued])
            #expect(h.server.listRequests.first?.query["call_start_before_unix"] == String(Self.base + 1_000))
        }
    }

    @Test("429 with Retry-After and a 503 are retried with backoff, then the run succeeds")
    func retriesRateLimitsAndServerErrors() async throws {
        try await Self.withHarness { h in
            h.server.add(try .fixture(id: "conv_retry", start: Self.base + 10, phone: Self.phones[0]))
            h.server.enqueue(.status(429, retryAfter: "1"), .status(503), .pass, .status(429))
            let started = ContinuousClock.now
            let items = try await h.run()
            #expect(h.outcomes(items) == ["conv_retry": .enqueued])
            // list: 429, 503, 200; details: 429, 200.
            #expect(h.server.listRequests.count == 3)
            #expect(h.server.detailRequests.count == 2)
            #expect(ContinuousClock.now - started >= .milliseconds(900), "Retry-After: 1 was not honoured")
            #expect(try await h.queue.stats().pending == 1)
        }
    }

    @Test("details that keep failing are reported failed with the status only; the other conversations go on")
    func persistentDetailFailure() async throws {
        try await Self.withHarness { h in
            h.server.add(try .fixture(id: "conv_ok", start: Self.base + 10, phone: Self.phones[0]))
            h.server.add(try .fixture(id: "conv_broken", start: Self.base + 20, phone: Self.phones[1]))
            // The list passes; conv_broken (newest, so fetched first) answers 500 to every attempt (1 + 5 retries).
            h.server.enqueue(.pass, .status(500), .status(500), .status(500), .status(500), .status(500), .status(500))
            let items = try await h.run()
            #expect(h.outcomes(items) == ["conv_broken": .failed, "conv_ok": .enqueued])
            let error = try #require(items.first { $0.conversationID == "conv_broken" }?.error)
            #expect(error.contains("500"))
            #expect(!error.contains(FakeElevenLabsServer.bodyMarker))
            #expect(h.server.detailRequests.count == 7)
            #expect(try await h.queue.stats().pending == 1)
        }
    }

    @Test("a refused API key stops the run at once with a message naming ELEVENLABS_API_KEY")
    func unauthorized() async throws {
        try await Self.withHarness { h in
            h.server.add(try .fixture(id: "conv_x", start: Self.base + 10, phone: Self.phones[0]))
            do {
                _ = try await h.run(apiKey: "xi_wrong")
                Issue.record("a wrong key did not fail the run")
            } catch let error as ElevenLabsAPIError {
                #expect(error == .unauthorized(status: 401))
                #expect(error.description.contains("ELEVENLABS_API_KEY"))
                #expect(!error.description.contains("xi_wrong"))
            }
            #expect(h.server.requests.count == 1, "a 401 must not be retried")
            #expect(try await h.queue.stats().pending == 0)
        }
    }

    @Test("without ELEVENLABS_API_KEY the client cannot be built, and the error names the variable")
    func missingKey() throws {
        let configuration = try EngramConfiguration.fromEnvironment(["ELEVENLABS_API_BASE_URL": "http://127.0.0.1:1"])
        #expect(configuration.elevenLabsBaseURL == "http://127.0.0.1:1")
        do {
            _ = try configuration.elevenLabsClient()
            Issue.record("a missing key was accepted")
        } catch let error as ConfigurationError {
            #expect(error.variable == "ELEVENLABS_API_KEY")
        }
        #expect(throws: ConfigurationError.self) { try EngramConfiguration.fromEnvironment(["ELEVENLABS_API_BASE_URL": "api.elevenlabs.io"]) }
        #expect(try EngramConfiguration.fromEnvironment([:]).elevenLabsBaseURL == "https://api.elevenlabs.io")
    }
}
