import Foundation
import GRDB
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore
@testable import Worker

/// `engram reextract`: fallback memories (stored by the local extractor after the LLM failed)
/// are replaced with the LLM's, from the conversation fetched again from ElevenLabs. Real Redis
/// and SQLite; fake OpenAI and ElevenLabs servers.
@Suite("Re-extraction of fallback memories", .timeLimit(.minutes(3)))
struct ReextractTests {
    static let model = "gpt-test"
    static let phone = "+14155550142"
    static let base: Int64 = 1_763_683_200  // 2025-11-21 00:00 UTC

    struct Harness {
        let env: TestEnvironment
        let openAI: FakeOpenAIServer
        let elevenLabs: FakeElevenLabsServer
        /// Local extractor: what a deployment without an LLM stored earlier.
        let localWorker: WorkerRuntime
        /// LLM extractor with one attempt: a failing LLM makes it fall back to local at once.
        let llmWorker: WorkerRuntime
        /// An earlier call, extracted locally (not marked): its `reason` slot is "confirmation".
        let earlier: FakeElevenLabsServer.StoredConversation
        /// The call whose LLM extraction failed: stored by the fallback, `reason` "reschedule".
        let failed: FakeElevenLabsServer.StoredConversation

        var store: SQLiteMemoryStore { llmWorker.vault.store as! SQLiteMemoryStore }

        func reextractor() -> Reextractor {
            Reextractor(
                vault: llmWorker.vault, extractor: ReextractTests.extractor(openAI),
                client: ElevenLabsClient(baseURL: elevenLabs.baseURL, apiKey: elevenLabs.apiKey, timeout: .seconds(5), retryBase: .milliseconds(10)))
        }

        func run(user: UserKey? = nil, dryRun: Bool = false) async throws -> [ReextractItem] {
            let tenant = try #require(try await llmWorker.vault.tenant("default", create: true))
            return try await reextractor().run(tenant: tenant, user: user, dryRun: dryRun, logger: testLogger)
        }

        func user() async throws -> UserKey { try await llmWorker.userKey(phone: ReextractTests.phone) }

        func memories() async throws -> [Memory] {
            try await llmWorker.vault.memories(tenant: "default", user: try await user(), includeHistory: true)
        }

        func ingest(_ conversation: FakeElevenLabsServer.StoredConversation, with worker: WorkerRuntime) async throws {
            let envelope = try Envelope.seal(
                conversation.webhookBody, tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(),
                cipher: KeyRing(master: env.masterKey).envelopeCipher)
            _ = try await worker.queue.enqueue(envelope, dedupe: [], ttlSeconds: 60)
            try await worker.drain()
        }

        /// Rows left in the vector and term tables for these memory ids.
        func indexRows(_ ids: [String]) async throws -> Int {
            try await store.database.pool.read { db in
                let marks = Array(repeating: "?", count: ids.count).joined(separator: ",")
                let vectors =
                    try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM memory_vectors WHERE memory_id IN (\(marks))", arguments: StatementArguments(ids))
                    ?? 0
                let terms =
                    try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM memory_terms WHERE memory_id IN (\(marks))", arguments: StatementArguments(ids))
                    ?? 0
                return vectors + terms
            }
        }
    }

    /// The LLM extractor on the fake server, without in-process retries.
    static func extractor(_ openAI: FakeOpenAIServer) -> OpenAIExtractor {
        OpenAIExtractor(
            client: OpenAIClient(
                baseURL: openAI.baseURL, apiKey: "sk-test", timeout: .seconds(2), maxRetries: 0,
                breaker: CircuitBreaker(name: "test", minimumCalls: 1_000)),
            model: model)
    }

    /// Stores `earlier` locally, then `failed` through the LLM worker with the LLM answering 500.
    static func withHarness(_ body: (Harness) async throws -> Void) async throws {
        let env = try TestEnvironment()
        do {
            try await withFakeOpenAI { openAI in
                try await withFakeElevenLabs { elevenLabs in
                    let earlier = try FakeElevenLabsServer.StoredConversation.fixture(
                        id: "conv_earlier", start: base, phone: phone, callerLine: "I need my teeth cleaned, is there anything this month?",
                        reason: "confirmation")
                    let failed = try FakeElevenLabsServer.StoredConversation.fixture(
                        id: "conv_failed", start: base + 86_400 * 3, phone: phone, callerLine: "Please move my cleaning to Tuesday morning instead.",
                        reason: "reschedule")
                    elevenLabs.add(earlier)
                    elevenLabs.add(failed)
                    var configuration = env.configuration()
                    configuration.maxAttempts = 1
                    configuration.llmFailurePolicy = .retryThenLocal
                    let localWorker = try await buildWorker(configuration: configuration, logger: testLogger)
                    let llmWorker = try await buildWorker(configuration: configuration, extractor: extractor(openAI), logger: testLogger)
                    let h = Harness(
                        env: env, openAI: openAI, elevenLabs: elevenLabs, localWorker: localWorker, llmWorker: llmWorker, earlier: earlier,
                        failed: failed)

                    try await h.ingest(earlier, with: localWorker)
                    openAI.setDefault(.status(500))
                    try await h.ingest(failed, with: llmWorker)
                    #expect(openAI.requestCount == 1)
                    let stored = try await h.memories()
                    #expect(stored.contains { $0.needsReextraction }, "the failed call was not stored by the fallback")
                    try await body(h)
                }
            }
        } catch {
            await env.cleanUp()
            throw error
        }
        await env.cleanUp()
    }

    @Test("reextract replaces a conversation's fallback memories with the LLM's, and a second run changes nothing")
    func replacesThenNoOp() async throws {
        try await Self.withHarness { h in
            let before = try await h.memories()
            let flagged = before.filter(\.needsReextraction)
            let kept = before.filter { !$0.needsReextraction }
            #expect(flagged.allSatisfy { $0.sources.contains { $0.conversationID == "conv_failed" && $0.extractor == "local-v1-fallback" } })
            h.openAI.setDefault(.ok)
            let llmCallsBefore = h.openAI.requestCount

            let items = try await h.run()

            try #require(items.count == 1)
            #expect(items[0].conversationID == "conv_failed")
            #expect(items[0].outcome == .replaced)
            #expect(items[0].flagged == flagged.count)
            #expect(h.openAI.requestCount == llmCallsBefore + 1)
            #expect(h.elevenLabs.detailRequests.map(\.path) == ["/v1/convai/conversations/conv_failed"])
            #expect(h.elevenLabs.detailRequests.allSatisfy { $0.apiKey == h.elevenLabs.apiKey })

            let after = try await h.memories()
            #expect(!after.contains { $0.needsReextraction })
            // The fallback rows are gone, with their vectors and term hashes.
            let afterIDs = Set(after.map(\.id))
            #expect(flagged.allSatisfy { !afterIDs.contains($0.id) })
            #expect(try await h.indexRows(flagged.map(\.id)) == 0)
            // The LLM's memories of that call are stored and searchable.
            let fresh = after.filter { memory in
                memory.sources.contains { $0.conversationID == "conv_failed" && $0.extractor == "openai:\(Self.model)" }
            }
            #expect(fresh.contains { $0.content == "The caller said: Please move my cleaning to Tuesday morning instead." && $0.sourceTurns == [1] })
            let keptIDs = Set(kept.map(\.id))
            #expect(items[0].stored == fresh.filter { !keptIDs.contains($0.id) }.count)
            let hits = try await h.llmWorker.vault.search(
                tenant: "default", user: try await h.user(), query: "move cleaning Tuesday morning", limit: 3)
            #expect(hits.first?.memory.sources.contains { $0.extractor == "openai:\(Self.model)" } == true)
            // The earlier call's memories are still there.
            #expect(kept.allSatisfy { afterIDs.contains($0.id) })
            #expect(try await h.store.isProcessed(tenant: "default", idempotencyKey: "reextract:conv_failed"))

            // Second run: nothing is marked any more, so nothing is fetched, extracted or written.
            let again = try await h.run()
            #expect(again.isEmpty)
            #expect(try await h.memories() == after)
            #expect(h.openAI.requestCount == llmCallsBefore + 1)
            #expect(h.elevenLabs.detailRequests.count == 1)
            // And the write itself is idempotent under its own key.
            let replay = WriteBatch(
                tenant: "default", user: try await h.user(), idempotencyKey: "reextract:conv_failed", eventID: UUIDv7.make(),
                eventType: Reextractor.eventType, processedAt: Date(), callAt: nil)
            #expect(try await h.store.replaceExtraction(replay, replacing: after.map(\.id)) == false)
            #expect(try await h.memories() == after)
        }
    }

    @Test("the slot fact a fallback memory had superseded is current again once the fallback memory is replaced")
    func supersessionUndone() async throws {
        try await Self.withHarness { h in
            let before = try await h.memories()
            // The fallback's `reason` = reschedule closed the earlier `reason` = confirmation.
            let earlierReason = try #require(before.first { $0.slot == "reason" && !$0.needsReextraction })
            let fallbackReason = try #require(before.first { $0.slot == "reason" && $0.needsReextraction })
            #expect(earlierReason.supersededBy == fallbackReason.id)
            #expect(earlierReason.validTo != nil)

            h.openAI.setDefault(.ok)  // the fake LLM returns no slot facts
            #expect(try await h.run().map(\.outcome) == [.replaced])

            let after = try await h.memories()
            let reopened = try #require(after.first { $0.id == earlierReason.id })
            #expect(reopened.supersededBy == nil)
            #expect(reopened.validTo == nil)
            #expect(reopened.isCurrent(at: Date()))
            #expect(!after.contains { $0.id == fallbackReason.id })
        }
    }

    @Test("when the LLM still fails, the fallback memories stay exactly as they were and the failure is reported")
    func llmStillFailing() async throws {
        try await Self.withHarness { h in
            let before = try await h.memories()
            h.openAI.setDefault(.status(500))

            let items = try await h.run()

            try #require(items.count == 1)
            #expect(items[0].outcome == .extractionFailed)
            let error = try #require(items[0].error)
            #expect(error.contains("500"))
            for secret in [FakeOpenAIServer.bodyMarker, "Tuesday", Self.phone] { #expect(!error.contains(secret)) }
            #expect(try await h.memories() == before)
            #expect(try await !h.store.isProcessed(tenant: "default", idempotencyKey: "reextract:conv_failed"))

            // Once the LLM is back, the same command succeeds.
            h.openAI.setDefault(.ok)
            #expect(try await h.run().map(\.outcome) == [.replaced])
        }
    }

    @Test("a conversation ElevenLabs no longer has, or has without transcript, is reported and its memories are kept")
    func conversationGone() async throws {
        try await Self.withHarness { h in
            let before = try await h.memories()
            h.openAI.setDefault(.ok)
            h.elevenLabs.update("conv_failed") { $0.id = "conv_deleted" }
            #expect(try await h.run().map(\.outcome) == [.fetchFailed])
            #expect(try await h.memories() == before)

            // Transcript deleted (PII removal): nothing to extract from, nothing replaced.
            h.elevenLabs.update("conv_deleted") { conversation in
                conversation.id = "conv_failed"
                var details = try! JSONSerialization.jsonObject(with: conversation.details) as! [String: Any]
                details["transcript"] = [[String: Any]]()
                conversation.details = try! JSONSerialization.data(withJSONObject: details)
            }
            #expect(try await h.run().map(\.outcome) == [.transcriptUnavailable])
            #expect(try await h.memories() == before)
            #expect(h.openAI.requestCount == 1, "nothing was sent to the LLM")
        }
    }

    @Test("a caller who withdrew consent is not sent to the LLM again; the memories stay")
    func withdrawnConsent() async throws {
        try await Self.withHarness { h in
            let before = try await h.memories()
            h.openAI.setDefault(.ok)
            try await h.store.setConsent(tenant: "default", user: try await h.user(), granted: false, at: Date())
            #expect(try await h.run().map(\.outcome) == [.skippedNoConsent])
            #expect(h.elevenLabs.requests.isEmpty)
            #expect(h.openAI.requestCount == 1)
            #expect(try await h.memories() == before)
        }
    }

    @Test("--user limits the run to that caller, and a dry run fetches and changes nothing")
    func userFilterAndDryRun() async throws {
        try await Self.withHarness { h in
            let before = try await h.memories()
            let stranger = try await h.llmWorker.userKey(phone: "+14155550999")
            #expect(try await h.run(user: stranger).isEmpty)

            let planned = try await h.run(user: try await h.user(), dryRun: true)
            #expect(planned.map(\.outcome) == [.wouldReextract])
            #expect(planned.map(\.conversationID) == ["conv_failed"])
            #expect(h.elevenLabs.requests.isEmpty)
            #expect(try await h.memories() == before)
        }
    }
}
