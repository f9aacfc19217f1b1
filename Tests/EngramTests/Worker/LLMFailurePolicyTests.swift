import Foundation
import Testing

@testable import EngramCore
@testable import EngramProviders
@testable import EngramQueue
@testable import Worker

/// `ENGRAM_LLM_FAILURE_POLICY` end to end through the worker: real Redis queue (retry schedule,
/// dead letters), real SQLite, and an `OpenAIExtractor` pointed at the fake OpenAI server.
@Suite("LLM failure policy", .timeLimit(.minutes(3)))
struct LLMFailurePolicyTests {
    static let model = "gpt-test"
    static let maxAttempts = 3

    /// One test's world: its Redis prefix and database, the fake server, the worker.
    struct Harness {
        let env: TestEnvironment
        let server: FakeOpenAIServer
        let runtime: WorkerRuntime
        let queue: RedisEventQueue

        /// Enqueues the post-call fixture, sealed with `cipher` (the worker's own by default).
        func enqueueFixture(cipher: FieldCipher? = nil) async throws {
            let envelope = try Envelope.seal(
                try Fixtures.elevenLabs("post_call_transcription.json"), tenant: "default", type: EventType.postCallTranscription,
                receivedAt: Date(), cipher: cipher ?? KeyRing(master: env.masterKey).envelopeCipher)
            let enqueued = try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60)
            #expect(enqueued)
        }

        /// Runs the worker until the queue holds nothing pending, in flight or scheduled, promoting
        /// retries as soon as they are scheduled. Returns whether a retry was ever scheduled.
        func drain() async throws -> (handled: Int, sawRetry: Bool) {
            var handled = 0
            var sawRetry = false
            try await waitUntil(timeout: .seconds(30), "the event is done") {
                _ = try await queue.promoteDueRetries(now: Date().addingTimeInterval(60), limit: 10)
                if await runtime.processor.processNext(wait: .milliseconds(200)) { handled += 1 }
                let stats = try await queue.stats()
                if stats.retry > 0 { sawRetry = true }
                return stats.pending == 0 && stats.processing == 0 && stats.retry == 0
            }
            return (handled, sawRetry)
        }

        /// Everything stored about the fixture's caller, history included.
        func callerMemories() async throws -> [Memory] {
            let tenant = try #require(try await runtime.vault.tenant("default", create: true))
            let user = tenant.userKeys.key(for: .phone(Fixtures.fixturePhone))
            return try await runtime.vault.memories(tenant: "default", user: user, includeHistory: true)
        }
    }

    static func withHarness(policy: LLMFailurePolicy = .retryThenLocal, _ body: (Harness) async throws -> Void) async throws {
        let env = try TestEnvironment()
        do {
            try await withFakeOpenAI { server in
                var configuration = env.configuration()
                configuration.llmFailurePolicy = policy
                configuration.maxAttempts = maxAttempts
                configuration.retryBase = .milliseconds(20)
                let client = OpenAIClient(
                    baseURL: server.baseURL, apiKey: "sk-test", timeout: .seconds(2), maxRetries: 0,
                    breaker: CircuitBreaker(name: "test", minimumCalls: 1_000))
                let runtime = try await buildWorker(
                    configuration: configuration, extractor: OpenAIExtractor(client: client, model: model), logger: testLogger)
                try await body(Harness(env: env, server: server, runtime: runtime, queue: env.queue()))
            }
        } catch {
            await env.cleanUp()
            throw error
        }
        await env.cleanUp()
    }

    @Test("a 500 then a valid answer stores the LLM's memories after one queue retry")
    func serverErrorThenSuccess() async throws {
        try await Self.withHarness { h in
            h.server.enqueue(.status(500))
            try await h.enqueueFixture()
            let run = try await h.drain()

            #expect(run.sawRetry)
            #expect(h.server.requestCount == 2)
            let memories = try await h.callerMemories()
            #expect(!memories.isEmpty)
            #expect(memories.allSatisfy { $0.sources.allSatisfy { $0.extractor == "openai:\(Self.model)" } })
            #expect(memories.allSatisfy { !$0.needsReextraction })
            #expect(memories.contains { $0.sourceTurns == [1] && $0.content.contains("Friday slot") })
            let letters = try await h.queue.deadLetters()
            #expect(letters.isEmpty)
        }
    }

    @Test("an LLM answering garbage every time is replaced by the local extractor on the last attempt")
    func malformedEveryTimeFallsBackToLocal() async throws {
        try await Self.withHarness { h in
            h.server.setDefault(.malformed(.contentNotSchema))
            try await h.enqueueFixture()
            let run = try await h.drain()

            #expect(run.sawRetry)
            #expect(run.handled == Self.maxAttempts)
            #expect(h.server.requestCount == Self.maxAttempts)
            let memories = try await h.callerMemories()
            #expect(!memories.isEmpty)
            #expect(memories.allSatisfy { $0.needsReextraction })
            #expect(memories.allSatisfy { $0.sources.allSatisfy { $0.extractor == "local-v1-fallback" } })
            let letters = try await h.queue.deadLetters()
            #expect(letters.isEmpty)
        }
    }

    @Test("with policy retry, an LLM that keeps failing dead-letters the event with its error class and no transcript")
    func retryPolicyDeadLetters() async throws {
        try await Self.withHarness(policy: .retry) { h in
            h.server.setDefault(.status(500))
            try await h.enqueueFixture()
            let run = try await h.drain()

            #expect(run.sawRetry)
            #expect(h.server.requestCount == Self.maxAttempts)
            let letters = try await h.queue.deadLetters()
            try #require(letters.count == 1)
            let letter = letters[0]
            #expect(letter.errorClass == "ExtractionError")
            #expect(!letter.errorMessage.isEmpty)
            for secret in ["Friday", "Dana", "slot", "FAKE-BODY-MARKER", Fixtures.fixturePhone] {
                #expect(!letter.errorMessage.contains(secret), "dead letter message leaks \(secret)")
                #expect(!letter.errorClass.contains(secret))
            }
            let dead = try Envelope.decode(Data(letter.envelope.utf8))
            #expect(dead.attempt == Self.maxAttempts - 1)
            let stored = try await h.callerMemories()
            #expect(stored.isEmpty)
        }
    }

    @Test("an envelope sealed with another master key is dead-lettered at once as a DecryptionError")
    func foreignKeyIsDeadLetteredAtOnce() async throws {
        try await Self.withHarness { h in
            try await h.enqueueFixture(cipher: KeyRing(master: MasterKey.generate()).envelopeCipher)
            let run = try await h.drain()

            #expect(run.handled == 1)
            #expect(!run.sawRetry)
            #expect(h.server.requestCount == 0)
            let letters = try await h.queue.deadLetters()
            try #require(letters.count == 1)
            #expect(letters[0].errorClass == "DecryptionError")
            let stored = try await h.callerMemories()
            #expect(stored.isEmpty)
        }
    }
}
