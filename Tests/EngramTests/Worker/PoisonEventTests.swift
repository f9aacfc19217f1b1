import Foundation
import Testing

@testable import EngramCore
@testable import EngramProviders
@testable import EngramQueue
@testable import Worker

@Suite("Poison events: no payload stops ingestion", .timeLimit(.minutes(2)))
struct PoisonEventTests {
    func seal(_ body: Data, _ env: TestEnvironment) throws -> Envelope {
        try Envelope.seal(
            body, tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(), cipher: KeyRing(master: env.masterKey).envelopeCipher)
    }

    @Test("each poison call of issue 11 is processed by the worker in process, and a normal call after them is stored")
    func poisonInProcess() async throws {
        let env = try TestEnvironment()
        let runtime = try await buildWorker(configuration: env.configuration(), logger: testLogger)
        for variant in PoisonPayloads.variants {
            #expect(try await runtime.queue.enqueue(try seal(try fixtureTranscript(mutate: variant.mutate), env), dedupe: [], ttlSeconds: 60))
        }
        #expect(try await runtime.queue.enqueue(try seal(try fixtureTranscript(phone: "+14155550177"), env), dedupe: [], ttlSeconds: 60))
        try await runtime.drain()
        let stats = try await runtime.queue.stats()
        #expect(stats.pending == 0 && stats.processing == 0 && stats.retry == 0 && stats.dead == 0)
        #expect(try await !runtime.vault.memories(tenant: "default", user: runtime.userKey(phone: "+14155550177")).isEmpty)
        await env.cleanUp()
    }

    @Test(
        "a worker restarted in place after dying counts its in-flight event as a death, and dead-letters it as worker_died after ENGRAM_MAX_ATTEMPTS"
    )
    func restartedInPlace() async throws {
        let env = try TestEnvironment()
        var configuration = env.configuration()
        configuration.maxAttempts = 3
        let queue = env.queue()
        let envelope = try seal(try fixtureTranscript(), env)
        #expect(try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
        // The same worker id dies holding the event on every attempt (a container restarted in place).
        for death in 0..<configuration.maxAttempts {
            let taken = try #require(try await queue.take(worker: configuration.workerID, timeout: .seconds(1)))
            #expect((taken.envelope?.deaths ?? 0) == death)
            #expect(taken.envelope?.attempt == 0, "a death is not a processing attempt")
            let returned = try await queue.requeueInFlight(worker: configuration.workerID, maxAttempts: configuration.maxAttempts)
            #expect(returned == (death < configuration.maxAttempts - 1 ? InFlightReturn(requeued: 1) : InFlightReturn(deadLettered: 1)))
        }
        let stats = try await queue.stats()
        #expect(stats.pending == 0 && stats.processing == 0 && stats.dead == 1)
        let letter = try #require(try await queue.deadLetters(limit: 5).first)
        #expect(letter.errorClass == workerDiedErrorClass && letter.id == envelope.id)
        // The letter keeps the envelope: a replay (after the fix) starts it again from attempt 0.
        #expect(try await queue.replayDead(id: envelope.id) == 1)
        let runtime = try await buildWorker(configuration: configuration, logger: testLogger)
        try await runtime.drain()
        #expect(try await !runtime.vault.memories(tenant: "default", user: runtime.userKey(phone: Fixtures.fixturePhone)).isEmpty)
        await env.cleanUp()
    }

    @Test(
        "a worker that dies holding an event which used its processing attempts (an LLM outage) returns it to the queue: only deaths count toward worker_died"
    )
    func deathsApartFromAttempts() async throws {
        let env = try TestEnvironment()
        var configuration = env.configuration()
        configuration.maxAttempts = 3
        let queue = env.queue()
        var envelope = try seal(try fixtureTranscript(), env)
        // Its last processing attempt (the earlier ones failed on the LLM), and one death already.
        envelope.attempt = configuration.maxAttempts - 1
        envelope.deaths = 1
        #expect(try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
        _ = try #require(try await queue.take(worker: "doomed", timeout: .seconds(1)))
        #expect(try await queue.reap(maxAttempts: configuration.maxAttempts) == InFlightReturn(requeued: 1))
        let again = try #require(try await queue.take(worker: "doomed-too", timeout: .seconds(1)))
        #expect(again.envelope?.attempt == configuration.maxAttempts - 1 && again.envelope?.deaths == 2)
        // A third death is the limit: a poison event still stops in the dead letters.
        #expect(try await queue.reap(maxAttempts: configuration.maxAttempts) == InFlightReturn(deadLettered: 1))
        let letter = try #require(try await queue.deadLetters(limit: 5).first)
        #expect(letter.errorClass == workerDiedErrorClass)
        // A replay starts it afresh (no attempts, no deaths), and a worker stores it.
        #expect(try await queue.replayDead(id: envelope.id) == 1)
        let runtime = try await buildWorker(configuration: configuration, logger: testLogger)
        try await runtime.drain()
        #expect(try await runtime.queue.stats().dead == 0)
        #expect(try await !runtime.vault.memories(tenant: "default", user: runtime.userKey(phone: Fixtures.fixturePhone)).isEmpty)
        await env.cleanUp()
    }

    @Test(
        "after a worker dies holding a batch, each of its events is handled alone: a batch stops before the first of them, which the next take handles by itself"
    )
    func suspectsHandledAlone() async throws {
        let env = try TestEnvironment()
        let runtime = try await buildWorker(configuration: env.configuration(), logger: testLogger)
        let queue = env.queue()
        let phones = (0..<5).map { "+1415555020\($0)" }
        // A worker takes all five as one batch and dies holding them: each comes back with one death.
        for phone in phones { #expect(try await queue.enqueue(try seal(try fixtureTranscript(phone: phone), env), dedupe: [], ttlSeconds: 60)) }
        _ = try #require(try await queue.take(worker: "doomed", timeout: .seconds(1)))
        #expect(try await queue.takeReady(worker: "doomed", limit: 10).count == 4)
        #expect(try await queue.reap(maxAttempts: 5) == InFlightReturn(requeued: 5))
        // An operator sees the death on each of them (`engram queue peek`).
        var cli = env.processEnvironment(httpPort: 0)
        cli["ENGRAM_HTTP_PORT"] = nil
        let peek = try await runEngram(["queue", "peek", "5"], environment: cli, directory: env.directory)
        #expect(peek.status == 0, "\(peek.stderr)")
        #expect(peek.stdout.split(separator: "\n").filter { $0.contains("attempt 0  deaths 1") }.count == 5, "\(peek.stdout)")
        // Two new events behind them, never held by a dying worker.
        for phone in ["+14155550210", "+14155550211"] {
            #expect(try await queue.enqueue(try seal(try fixtureTranscript(phone: phone), env), dedupe: [], ttlSeconds: 60))
        }
        // Each of the five is taken and handled alone (its batch stops at once), then the two together.
        for remaining in [6, 5, 4, 3, 2] {
            #expect(await runtime.processor.processNext(wait: .seconds(1)))
            let stats = try await queue.stats()
            #expect(stats.pending == remaining && stats.processing == 0, "after one suspect: \(stats)")
        }
        #expect(await runtime.processor.processNext(wait: .seconds(1)))
        let stats = try await queue.stats()
        #expect(stats.pending == 0 && stats.processing == 0 && stats.dead == 0)
        for phone in phones + ["+14155550210", "+14155550211"] {
            #expect(try await !runtime.vault.memories(tenant: "default", user: runtime.userKey(phone: phone)).isEmpty, "\(phone)")
        }
        await env.cleanUp()
    }

    @Test("an envelope from Redis with an absurd attempt count, death count or receive time is handled, not trapped")
    func absurdEnvelopeFields() async throws {
        let env = try TestEnvironment()
        let runtime = try await buildWorker(configuration: env.configuration(), logger: testLogger)
        let client = env.redisClient()
        for (attempt, receivedAt) in [(Int.max, 1e300), (Int.min, -1e300), (0, 1.7976931348623157e308)] {
            var envelope = try seal(try fixtureTranscript(phone: "+1415555\(String(format: "%04d", abs(attempt % 9000))))"), env)
            envelope.attempt = attempt
            envelope.deaths = attempt
            envelope.receivedAt = receivedAt
            try await client.command("LPUSH", RedisArgument(env.keys.events), RedisArgument(try envelope.encoded()))
        }
        try await runtime.drain()
        let stats = try await runtime.queue.stats()
        #expect(stats.pending == 0 && stats.processing == 0)
        await env.cleanUp()
    }

    @Test("a 30,000-turn call is cut to the work budget: at most ENGRAM_MAX_MEMORIES_PER_EVENT memories, and the cut is counted")
    func budget() async throws {
        let env = try TestEnvironment()
        let runtime = try await buildWorker(configuration: env.configuration(), logger: testLogger)
        let body = try fixtureTranscript(phone: "+14155550188") { object in
            let turns = (0..<30_000).map { i -> [String: Any] in
                i % 2 == 0
                    ? ["role": "user", "message": "I'm allergic to peanuts number \(i) and I live in Paris."]
                    : ["role": "agent", "message": "Noted, \(i) is on file."]
            }
            PoisonPayloads.edit(&object, ["data"]) { $0["transcript"] = turns }
        }
        #expect(body.count < 2 * 1024 * 1024)
        #expect(try await runtime.queue.enqueue(try seal(body, env), dedupe: [], ttlSeconds: 60))
        let started = ContinuousClock.now
        try await runtime.drain()
        let elapsed = ContinuousClock.now - started
        let memories = try await runtime.vault.memories(tenant: "default", user: runtime.userKey(phone: "+14155550188"), includeHistory: true)
        #expect(!memories.isEmpty && memories.count <= ExtractionBudget.defaultMaxMemories)
        print(
            "work budget: a 30,000-turn call (\(body.count) bytes) stored \(memories.count) memories in \(String(format: "%.1f", elapsed.seconds)) s (debug build)"
        )
        await env.cleanUp()
    }

    @Test("the budget keeps the most important memories and clips turns by UTF-8 bytes at a character boundary")
    func budgetUnits() {
        let budget = ExtractionBudget(maxMemories: 2, maxTurns: 2, maxTurnBytes: 64)
        var cuts = ExtractionBudget.Cuts()
        let turns = (0..<5).map { Conversation.Turn(index: $0, speaker: .caller, text: String(repeating: "é", count: 100)) }
        let bounded = budget.bound(Conversation(conversationID: "c", startedAt: Date(), turns: turns), cuts: &cuts)
        #expect(bounded.turns.count == 2 && cuts.turns == 3 && cuts.clippedTurns == 2)
        #expect(bounded.turns.allSatisfy { $0.text.utf8.count <= 64 && $0.text.utf8.count >= 62 })
        let memories = [0.3, 0.9, .nan, 0.5].map { ExtractedMemory(content: "m\($0)", sector: .semantic, importance: $0, sourceTurns: []) }
        let capped = budget.cap(Extraction(memories: memories, summary: nil, userName: nil, extractor: "t"), cuts: &cuts)
        #expect(capped.memories.map(\.importance) == [0.9, 0.5])
        #expect(cuts.memories == 2)
        #expect(ExtractionBudget.clip("a" + String(repeating: "\u{301}", count: 12_000), bytes: 100) == "")
    }
}
