import Foundation
import GRDB
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramQueue
@testable import EngramStore
@testable import Worker

@Suite("Backups and dead-letter replay", .timeLimit(.minutes(3)))
struct OperationsTests {
    func ingest(_ env: TestEnvironment, _ worker: WorkerRuntime, _ body: Data) async throws {
        let envelope = try Envelope.seal(
            body, tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(), cipher: KeyRing(master: env.masterKey).envelopeCipher)
        _ = try await worker.queue.enqueue(envelope, dedupe: [], ttlSeconds: 60)
        try await worker.drain()
    }

    @Test("backup → wipe → restore gives the same memories and answers; an erasure after the backup stays erased")
    func backupRestore() async throws {
        let env = try TestEnvironment()
        let worker = try await buildWorker(configuration: env.configuration(), logger: testLogger)
        let store = worker.vault.store as! SQLiteMemoryStore
        try await ingest(env, worker, try fixtureTranscript())
        try await ingest(env, worker, try fixtureTranscript(phone: "+14155550188"))
        let dana = try await worker.userKey(phone: Fixtures.fixturePhone)
        let other = try await worker.userKey(phone: "+14155550188")
        let before = try await worker.vault.memories(tenant: "default", user: dana).map(\.content).sorted()
        let answer = try await worker.vault.search(tenant: "default", user: dana, query: "Friday slot", limit: 3).map(\.memory.id)

        let backup = try SQLiteBackup.create(from: store.database, to: env.directory.appendingPathComponent("backups").path, keep: 2)
        try SQLiteBackup.verify(backup.path)

        // After the backup: one caller is erased, and the rest is wiped.
        try await store.erase(tenant: "default", user: other, at: Date())
        try await store.database.pool.write { db in try db.execute(sql: "DELETE FROM memories WHERE user_key = ?", arguments: [dana.rawValue]) }
        #expect(try await worker.vault.memories(tenant: "default", user: dana).isEmpty)

        let result = try await SQLiteBackup.restore(backup.path, into: store.database)
        #expect(result.tombstonesReapplied == 1)
        await worker.vault.vectorCache.invalidate(tenant: "default", user: dana)
        #expect(try await worker.vault.memories(tenant: "default", user: dana).map(\.content).sorted() == before)
        #expect(try await worker.vault.search(tenant: "default", user: dana, query: "Friday slot", limit: 3).map(\.memory.id) == answer)
        #expect(try await worker.vault.memories(tenant: "default", user: other, includeHistory: true).isEmpty)

        // Corrupt file: verify refuses it.
        let broken = env.directory.appendingPathComponent("broken.sqlite")
        try Data("not a database".utf8).write(to: broken)
        #expect(throws: (any Error).self) { try SQLiteBackup.verify(broken.path) }
        await env.cleanUp()
    }

    @Test("a replayed dead letter is processed again, and one for an erased caller stores nothing")
    func deadLetterReplay() async throws {
        let env = try TestEnvironment()
        var configuration = env.configuration()
        configuration.maxAttempts = 1
        let queue = env.queue()
        // An extractor that always fails sends both events to the dead letters.
        struct Broken: Extractor {
            let id = "broken"
            func extract(_ conversation: Conversation) async throws -> Extraction { throw ExtractionError.server(status: 500) }
        }
        var failing = configuration
        failing.llmFailurePolicy = .retry
        let broken = try await buildWorker(configuration: failing, extractor: Broken(), logger: testLogger)
        let bodies = [try fixtureTranscript(), try fixtureTranscript(phone: "+14155550177")]
        for body in bodies { try await ingest(env, broken, body) }
        #expect(try await queue.stats().dead == 2)

        let healthy = try await buildWorker(configuration: configuration, logger: testLogger)
        let erased = try await healthy.userKey(phone: "+14155550177")
        try await healthy.vault.store.erase(tenant: "default", user: erased, at: Date())
        #expect(try await queue.replayDead(id: nil) == 2)
        try await healthy.drain()
        #expect(try await queue.stats() == QueueStats(pending: 0, processing: 0, retry: 0, dead: 0))
        #expect(try await healthy.vault.memories(tenant: "default", user: try await healthy.userKey(phone: Fixtures.fixturePhone)).count > 0)
        #expect(try await healthy.vault.memories(tenant: "default", user: erased, includeHistory: true).isEmpty)
        await env.cleanUp()
    }
}
