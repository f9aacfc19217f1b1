import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramObservability
@testable import EngramProviders
@testable import EngramQueue
@testable import Worker

/// The LLM down for every request, end to end through the worker: real Redis queue and retry
/// schedule, real SQLite, the production `OpenAIClient` and `CircuitBreaker` (with a short
/// cool-down) pointed at the fake OpenAI server.
@Suite("LLM outage: the circuit breaker end to end", .timeLimit(.minutes(5)))
struct LLMOutageTests {
    static let model = "gpt-outage"
    static let coolDown: Duration = .milliseconds(400)

    /// Runs the worker, promoting retries only when they are due (so the breaker's cool-down
    /// passes in real time), until nothing is pending, in flight or scheduled.
    static func drain(_ runtime: WorkerRuntime, _ queue: RedisEventQueue) async throws {
        // Generous: the whole suite and other builds can share the two cores (seen over 30 s).
        try await waitUntil(timeout: .seconds(75), "the queue is empty") {
            _ = try await queue.promoteDueRetries(now: Date(), limit: 100)
            _ = await runtime.processor.processNext(wait: .milliseconds(50))
            let stats = try await queue.stats()
            return stats.pending == 0 && stats.processing == 0 && stats.retry == 0
        }
    }

    /// The value of the breaker's `state="open"` series.
    static func breakerGauge(_ name: String) -> String? {
        MetricsExport.render().split(separator: "\n")
            .first { $0.hasPrefix("engram_circuit_breaker_state{") && $0.contains("name=\"\(name)\"") && $0.contains("state=\"open\"") }
            .map { String($0.split(separator: " ").last ?? "") }
    }

    @Test(
        "an LLM failing every request opens the breaker; events follow the policy; the breaker closes once the LLM is back",
        arguments: [LLMFailurePolicy.retryThenLocal, .retry])
    func outageAndRecovery(policy: LLMFailurePolicy) async throws {
        MetricsExport.bootstrap()
        let env = try TestEnvironment()
        do {
            try await withFakeOpenAI { server in
                server.setDefault(.status(500))
                let breakerName = "llm-outage-\(UUID().uuidString.prefix(8))"
                let breaker = CircuitBreaker(name: breakerName, window: 10, minimumCalls: 3, failureRate: 0.5, coolDown: Self.coolDown)
                let client = OpenAIClient(baseURL: server.baseURL, apiKey: "sk-test", timeout: .seconds(2), maxRetries: 0, breaker: breaker)
                var configuration = env.configuration()
                configuration.llmFailurePolicy = policy
                // 4 attempts, 0.1–0.8 s apart: each event's schedule outlasts one cool-down.
                configuration.maxAttempts = 4
                configuration.retryBase = .milliseconds(200)
                configuration.retryMax = .seconds(1)
                let runtime = try await buildWorker(
                    configuration: configuration, extractor: OpenAIExtractor(client: client, model: Self.model), logger: testLogger)
                let queue = env.queue()
                let cipher = KeyRing(master: env.masterKey).envelopeCipher
                func send(_ index: Int) async throws -> String {
                    let conversation = "conv_outage_\(index)_\(UUID().uuidString.prefix(8))"
                    let body = try fixtureTranscript(conversationID: conversation, phone: "+1555010\(String(format: "%04d", index))")
                    let envelope = try Envelope.seal(
                        body, tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(), cipher: cipher)
                    #expect(try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
                    return conversation
                }
                func memories(_ index: Int) async throws -> [Memory] {
                    try await runtime.vault.memories(
                        tenant: "default", user: try await runtime.userKey(phone: "+1555010\(String(format: "%04d", index))"), includeHistory: true)
                }
                func processed(_ conversation: String) async throws -> Bool {
                    try await runtime.vault.store.isProcessed(tenant: "default", idempotencyKey: "post_call_transcription:\(conversation)")
                }

                // The outage: six calls while every LLM request fails.
                var outage: [String] = []
                for i in 0..<6 { outage.append(try await send(i)) }
                try await Self.drain(runtime, queue)
                let drainedAt = ContinuousClock.now

                #expect(await breaker.state == .open)
                #expect(Self.breakerGauge(breakerName).flatMap { Double($0) } == 1, "the breaker's open series is 1")
                // 6 events × 4 attempts, but the open breaker answered most of them without a request.
                #expect(server.requestCount < outage.count * configuration.maxAttempts)
                let letters = try await queue.deadLetters()
                switch policy {
                case .retryThenLocal:
                    #expect(letters.isEmpty)
                    for (i, conversation) in outage.enumerated() {
                        #expect(try await processed(conversation))
                        let stored = try await memories(i)
                        #expect(!stored.isEmpty)
                        #expect(stored.allSatisfy { $0.needsReextraction && $0.sources.allSatisfy { $0.extractor == "local-v1-fallback" } })
                    }
                case .retry:
                    // The events waited through every attempt and were parked, with the error class only.
                    #expect(letters.count == outage.count)
                    #expect(letters.allSatisfy { $0.errorClass == "ExtractionError" })
                    for (i, conversation) in outage.enumerated() {
                        #expect(try await !processed(conversation))
                        #expect(try await memories(i).isEmpty)
                    }
                }

                // The LLM recovers. Once the cool-down has passed, the next event is the probe that closes the breaker.
                server.setDefault(.ok)
                try await waitUntil("the breaker's cool-down has passed") { ContinuousClock.now - drainedAt > Self.coolDown + .milliseconds(50) }
                let afterwards = try await send(6)
                try await Self.drain(runtime, queue)
                #expect(await breaker.state == .closed)
                #expect(Self.breakerGauge(breakerName).flatMap { Double($0) } == 0, "the breaker's open series is 0 once closed")
                #expect(try await processed(afterwards))
                let recovered = try await memories(6)
                #expect(!recovered.isEmpty)
                #expect(recovered.allSatisfy { !$0.needsReextraction && $0.sources.allSatisfy { $0.extractor == "openai:\(Self.model)" } })

                if policy == .retry {
                    // The operator's step after an outage: replay the dead letters; the LLM extracts them now.
                    #expect(try await queue.replayDead(id: nil) == outage.count)
                    try await Self.drain(runtime, queue)
                    #expect(try await queue.deadLetters().isEmpty)
                    for (i, conversation) in outage.enumerated() {
                        #expect(try await processed(conversation))
                        let stored = try await memories(i)
                        #expect(!stored.isEmpty)
                        #expect(stored.allSatisfy { $0.sources.allSatisfy { $0.extractor == "openai:\(Self.model)" } })
                    }
                    #expect(await breaker.state == .closed)
                }
            }
        } catch {
            await env.cleanUp()
            throw error
        }
        await env.cleanUp()
    }
}
