import AsyncHTTPClient
import Foundation
import GRDB
import HummingbirdTesting
import NIOCore
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramQueue
@testable import EngramStore
@testable import Gateway
@testable import Worker

/// Issue 11 §3: after `forget-me`, nothing Engram keeps may decrypt into the caller's data with
/// the keys Engram holds. The check decrypts everything it can find, place by place.
@Suite("Erasure reaches every copy", .serialized, .timeLimit(.minutes(3)))
struct ErasurePropagationTests {
    struct Count: CustomStringConvertible, Equatable {
        var erased = 0
        var kept = 0
        var description: String { "erased caller \(erased), other caller \(kept)" }
    }

    @Test("an erasure leaves nothing of the caller decryptable: database, backups, Redis lists, AOF, RDB and spool", .timeLimit(.minutes(3)))
    func erasureReachesEveryCopy() async throws {
        let env = try TestEnvironment()
        let redisDirectory = env.directory.appendingPathComponent("redis")
        try FileManager.default.createDirectory(at: redisDirectory, withIntermediateDirectories: true)
        // AOF on (as `make run` and compose run it), RDB snapshots on (Redis' default), both
        // uncompressed so the check can read every byte of them.
        let redis = try OwnRedis(
            directory: redisDirectory, extraArguments: ["--aof-use-rdb-preamble", "no", "--save", "3600 1", "--rdbcompression", "no"])
        try await redis.start()
        var configuration = env.configuration()
        configuration.redis = redis.endpoint
        configuration.backupDirectory = env.directory.appendingPathComponent("backups").path
        let worker = try await buildWorker(configuration: configuration, logger: testLogger)
        let queue = RedisEventQueue(endpoint: redis.endpoint, timeout: .seconds(5), keys: env.keys)
        let store = try #require(worker.vault.store as? SQLiteMemoryStore)
        let keyRing = worker.vault.keyRing
        let tenant = try #require(try await worker.vault.tenant("default", create: true))
        let erasedPhone = "+14155550111"
        let keptPhone = "+14155550222"
        let erased = tenant.userKeys.key(for: .phone(erasedPhone))
        let kept = tenant.userKeys.key(for: .phone(keptPhone))

        func postCall(_ phone: String, tagged: Bool = true, at time: Date = Date()) throws -> Envelope {
            let body = try fixtureTranscript(phone: phone)
            return try Envelope.seal(
                body, tenant: "default", type: EventType.postCallTranscription, receivedAt: time, cipher: keyRing.envelopeCipher,
                userTags: tagged ? EventOwner.tags(body: body, type: EventType.postCallTranscription, tenant: tenant, keyRing: keyRing) : nil)
        }

        // Calls stored for both callers, then a backup.
        for phone in [erasedPhone, erasedPhone, keptPhone] { _ = try await queue.enqueue(try postCall(phone), dedupe: [], ttlSeconds: 60) }
        try await worker.drain()
        #expect(try await worker.vault.memories(tenant: "default", user: erased).count > 0)
        let backup = try SQLiteBackup.create(from: store.database, to: configuration.backupDirectory, keep: 24)
        let operatorCopy = env.directory.appendingPathComponent("pre-erasure.sqlite")
        try FileManager.default.copyItem(at: backup, to: operatorCopy)

        // Events of both callers in every place of the queue: in flight, retry, dead, pending
        // (tagged, untagged from before tags existed, and a remember-tool event).
        func park(_ envelope: Envelope, worker name: String) async throws -> Data {
            _ = try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60)
            return try #require(try await queue.take(worker: name, timeout: .seconds(1))).raw
        }
        let inFlightRaw = try await park(try postCall(erasedPhone), worker: "crashed")
        for (phone, name) in [(erasedPhone, "retrying-a"), (keptPhone, "retrying-b")] {
            let envelope = try postCall(phone)
            let raw = try await park(envelope, worker: name)
            var next = envelope
            next.attempt = 1
            try await queue.scheduleRetry(worker: name, raw: raw, next: next, dueAt: Date().addingTimeInterval(3600))
        }
        for (phone, tagged, name) in [(erasedPhone, true, "failing-a"), (erasedPhone, false, "failing-untagged"), (keptPhone, true, "failing-b")] {
            let envelope = try postCall(phone, tagged: tagged)
            let raw = try await park(envelope, worker: name)
            try await queue.deadLetter(
                worker: name, raw: raw,
                letter: DeadLetter(
                    id: envelope.id, envelope: String(decoding: raw, as: UTF8.self), errorClass: "Test", errorMessage: "test",
                    failedAt: Date().timeIntervalSince1970, worker: name))
        }
        let remember = try Envelope.seal(
            try JSONEncoder().encode(RememberEvent(user: erased, fact: "my locker code is 7731", conversationID: nil, saidAt: Date())),
            tenant: "default", type: EventType.remember, receivedAt: Date(), cipher: keyRing.envelopeCipher,
            userTags: [keyRing.userTag(tenant: "default", user: erased)])
        for envelope in [
            try postCall(erasedPhone), try postCall(erasedPhone, tagged: false), remember, try postCall(keptPhone),
            try postCall(keptPhone, tagged: false),
        ] {
            _ = try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60)
        }
        let spool = try Spool(directory: configuration.spoolDirectory, logger: testLogger)
        for envelope in [try postCall(erasedPhone), try postCall(erasedPhone, tagged: false), try postCall(keptPhone)] {
            try spool.append(SpoolRecord(envelope: envelope, dedupe: [], ttlSeconds: 60))
        }
        let lateSpooled = try postCall(erasedPhone, at: Date().addingTimeInterval(-1))
        _ = try await redis.endpointClient().command("SAVE")

        // Everything Engram keeps, decrypted with its master key.
        let audit = DecryptionAudit(keyRing: keyRing)
        func attribute(_ plaintexts: [String]) -> Count {
            var count = Count()
            for text in plaintexts {
                if text.contains(erasedPhone) || text.contains(erased.rawValue) { count.erased += 1 }
                if text.contains(keptPhone) || text.contains(kept.rawValue) { count.kept += 1 }
            }
            return count
        }
        func memories(_ paths: [String]) throws -> Count {
            var count = Count()
            for path in paths {
                let found = try audit.memories(inDatabase: path)
                count.erased += found[erased]?.count ?? 0
                count.kept += found[kept]?.count ?? 0
            }
            return count
        }
        func census() async throws -> [String: Count] {
            let client = redis.endpointClient()
            var values = Data()
            var listKeys = [env.keys.events, env.keys.dead]
            listKeys += try await queue.scan(env.keys.processingPattern)
            for key in listKeys {
                for item in try await client.command("LRANGE", RedisArgument(key), "0", "-1").array ?? [] { values.append(item.data ?? Data()) }
            }
            for item in try await client.command("ZRANGE", RedisArgument(env.keys.retry), "0", "-1").array ?? [] {
                values.append(item.data ?? Data())
            }
            let aof = DecryptionAudit.files(under: redisDirectory.appendingPathComponent("appendonlydir")).flatMap {
                audit.envelopePlaintexts(in: $0.1)
            }
            let rdb = FileManager.default.contents(atPath: redisDirectory.appendingPathComponent("dump.rdb").path).map(audit.envelopePlaintexts) ?? []
            let spoolFiles = DecryptionAudit.files(under: URL(fileURLWithPath: configuration.spoolDirectory)).flatMap {
                audit.envelopePlaintexts(in: $0.1)
            }
            return [
                "database": try memories([env.databasePath]),
                "backups": try memories(try SQLiteBackup.backupFiles(URL(fileURLWithPath: configuration.backupDirectory)).map(\.path)),
                "redis lists": attribute(audit.envelopePlaintexts(in: values)),
                "redis AOF": attribute(aof),
                "redis RDB": attribute(rdb),
                "spool": attribute(spoolFiles),
            ]
        }

        let before = try await census()
        print("erasure census before: \(before.sorted { $0.key < $1.key })")
        for (place, count) in before {
            #expect(count.kept > 0, "the check finds the other caller in \(place)")
            #expect(count.erased > 0, "the check finds the caller in \(place) before the erasure")
        }

        // forget-me: the live erasure, then what the worker and the gateway run afterwards.
        try await store.erase(tenant: "default", user: erased, at: Date())
        let purge = ErasurePurge(vault: worker.vault, queue: queue, backupDirectory: configuration.backupDirectory, deadLetterRetention: 7 * 86_400)
        let report = try await purge.run()
        let spoolRemoved = try await purge.purgeSpool(spool)
        #expect(report.queue.pending == 2)  // the tagged post-call and the remember event
        #expect(report.queue.processing == 1)
        #expect(report.queue.retry == 1)
        #expect(report.queue.dead == 1)
        #expect(report.untaggedRemoved == 2)  // pending and dead
        #expect(report.backups.scrubbed == 1)
        #expect(spoolRemoved == 2)
        // The crashed worker comes back and reschedules its event: it stays gone. A spool drained
        // late cannot bring one back either.
        var next = try Envelope.decode(inFlightRaw)
        next.attempt = 1
        try await queue.scheduleRetry(worker: "crashed", raw: inFlightRaw, next: next, dueAt: Date())
        #expect(try await queue.enqueue(lateSpooled, dedupe: [], ttlSeconds: 60) == false)

        var after: [String: Count] = [:]
        try await waitUntil(timeout: .seconds(60), "Redis has rewritten its files") {
            guard try await !queue.persistenceRewriteInProgress() else { return false }
            after = try await census()
            return after.values.allSatisfy { $0.erased == 0 }
        }
        print("erasure census after: \(after.sorted { $0.key < $1.key })")
        for (place, count) in after {
            #expect(count.erased == 0, "nothing of the erased caller decrypts from \(place)")
            #expect(count.kept == before[place]?.kept || place.hasPrefix("redis"), "the other caller is intact in \(place)")
            #expect(count.kept > 0, "the other caller is still in \(place)")
        }
        #expect(try await worker.vault.memories(tenant: "default", user: kept).count > 0)

        // A second run finds nothing more to do and completes the watermark.
        let second = try await purge.run()
        #expect(second.queue.total == 0 && second.untaggedRemoved == 0 && second.backups.scrubbed == 0)

        // Restoring the operator's pre-erasure copy into a fresh database (the live one lost)
        // re-applies the erasure from the retained backups' tombstones.
        let restoredPath = env.directory.appendingPathComponent("restored.sqlite").path
        let fresh = try await onOwnThread { try AppDatabase(path: restoredPath) }
        let restored = try await SQLiteBackup.restore(operatorCopy.path, into: fresh, backupDirectory: configuration.backupDirectory)
        #expect(restored.tombstonesReapplied == 1)
        let afterRestore = try audit.memories(inDatabase: fresh.path)
        #expect(afterRestore[erased] == nil)
        #expect((afterRestore[kept]?.count ?? 0) > 0)
        #expect(try await SQLiteMemoryStore(database: fresh).tombstone(tenant: "default", user: erased) != nil)

        await redis.stop()
        await env.cleanUp()
    }

    @Test("dead letters expire after the retention, newer ones stay", .timeLimit(.minutes(1)))
    func deadLettersExpire() async throws {
        let env = try TestEnvironment()
        let queue = env.queue()
        let now = Date()
        for (id, age) in [("old", 8.0 * 86_400), ("new", 3600.0)] {
            let letter = DeadLetter(
                id: id, envelope: "{}", errorClass: "Test", errorMessage: "test", failedAt: now.timeIntervalSince1970 - age, worker: "w")
            _ = try await env.redisClient().command("LPUSH", RedisArgument(env.keys.dead), RedisArgument(try JSONEncoder().encode(letter)))
        }
        #expect(try await queue.expireDeadLetters(failedBefore: now.addingTimeInterval(-7 * 86_400)) == 1)
        #expect(try await queue.deadLetters(limit: 10).map(\.id) == ["new"])
        await env.cleanUp()
    }

    @Test("the purge interval and dead-letter retention are read from the environment; a bad value names its variable", .timeLimit(.minutes(1)))
    func settings() throws {
        let defaults = try EngramConfiguration.fromEnvironment([:])
        #expect(defaults.erasurePurgeInterval == .seconds(60) && defaults.deadLetterRetentionDays == 7)
        let set = try EngramConfiguration.fromEnvironment(["ENGRAM_ERASURE_PURGE_INTERVAL_MS": "5000", "ENGRAM_DEAD_LETTER_RETENTION_DAYS": "30"])
        #expect(set.erasurePurgeInterval == .seconds(5) && set.deadLetterRetentionDays == 30)
        for (name, value) in [
            ("ENGRAM_ERASURE_PURGE_INTERVAL_MS", "0"), ("ENGRAM_DEAD_LETTER_RETENTION_DAYS", "0"), ("ENGRAM_DEAD_LETTER_RETENTION_DAYS", "soon"),
        ] {
            #expect { try EngramConfiguration.fromEnvironment([name: value]) } throws: { ($0 as? ConfigurationError)?.variable == name }
        }
    }

    @Test("a spool purge removes drained and pending records of the erased caller only", .timeLimit(.minutes(1)))
    func spoolPurge() async throws {
        let env = try TestEnvironment()
        let spool = try Spool(directory: env.directory.appendingPathComponent("spool").path, logger: testLogger)
        let cipher = KeyRing(master: env.masterKey).envelopeCipher
        func record(_ tag: String) throws -> SpoolRecord {
            SpoolRecord(
                envelope: try Envelope.seal(Data("body".utf8), tenant: "default", type: "t", receivedAt: Date(), cipher: cipher, userTags: [tag]),
                dedupe: [], ttlSeconds: 60)
        }
        try spool.append(try record("a"))
        try spool.append(try record("b"))
        // Drain the first only (the "Redis" refuses the second): it stays in the file, drained.
        var sent = 0
        _ = try? await spool.drain { _ in
            sent += 1
            if sent > 1 { throw SpoolError.io("redis down") }
        }
        try spool.append(try record("a"))
        try spool.append(try record("c"))
        #expect(spool.depth == 3)
        #expect(try spool.purge { $0.envelope.userTags == ["a"] } == 2)
        #expect(try spool.allRecords().map { $0.envelope.userTags ?? [] } == [["b"], ["c"]])
        #expect(spool.depth == 2)
        var drained: [[String]] = []
        #expect(try await spool.drain { drained.append($0.envelope.userTags ?? []) } == 2)
        #expect(drained == [["b"], ["c"]])
        await env.cleanUp()
    }

    @Test("tombstones are listed by erasure time on every backend", .timeLimit(.minutes(1)), arguments: Backend.available)
    func tombstonesListed(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let store = try await env.openStore()
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let tenant = try #require(try await vault.tenant("default", create: true))
        let first = tenant.userKeys.key(for: .phone("+14155550131"))
        let second = tenant.userKeys.key(for: .phone("+14155550132"))
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        try await store.erase(tenant: "default", user: first, at: t0)
        try await store.erase(tenant: "default", user: second, at: t0.addingTimeInterval(60))
        #expect(try await store.tombstones(erasedAfter: .distantPast).map(\.user) == [first, second])
        #expect(try await store.tombstones(erasedAfter: t0).map(\.user) == [second])
        await env.cleanUp()
    }
}

extension OwnRedis {
    /// A client of this server.
    func endpointClient() -> RedisClient { RedisClient(endpoint: endpoint, timeout: .seconds(5), connections: 1) }
}

/// The gateway's own part: forget-me drops the caller's queued events and spooled records at once.
@Suite("forget-me propagates at once", .timeLimit(.minutes(3)))
struct ForgetMePropagationTests {
    @Test("forget-me removes the caller's pending event and spooled record before it answers", .timeLimit(.minutes(1)))
    func forgetMe() async throws {
        let env = try TestEnvironment()
        let configuration = env.configuration()
        let worker = try await buildWorker(configuration: configuration, logger: testLogger)
        let app = try await buildApplication(configuration: configuration, logger: testLogger)
        let phone = "+14155550171"
        let other = "+14155550172"
        let tenant = try #require(try await worker.vault.tenant("default", create: true))
        let keyRing = worker.vault.keyRing
        func postCall(_ phone: String) throws -> Envelope {
            let body = try fixtureTranscript(phone: phone)
            return try Envelope.seal(
                body, tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(), cipher: keyRing.envelopeCipher,
                userTags: EventOwner.tags(body: body, type: EventType.postCallTranscription, tenant: tenant, keyRing: keyRing))
        }
        let queue = env.queue()
        _ = try await queue.enqueue(try postCall(phone), dedupe: [], ttlSeconds: 60)
        _ = try await queue.enqueue(try postCall(other), dedupe: [], ttlSeconds: 60)
        // The gateway's spool is a second handle on the same directory.
        let spool = try Spool(directory: configuration.spoolDirectory, logger: testLogger)
        try spool.append(SpoolRecord(envelope: try postCall(phone), dedupe: [], ttlSeconds: 60))
        try await app.test(.router) { client in
            let body = try JSONSerialization.data(withJSONObject: ["caller_id": phone])
            try await client.execute(uri: "/v1/tools/forget-me", method: .post, headers: bearer(env.apiKey), body: ByteBuffer(data: body)) {
                #expect($0.status == .ok)
            }
        }
        let erasedUser = tenant.userKeys.key(for: .phone(phone))
        let erasedTag = keyRing.userTag(tenant: "default", user: erasedUser)
        let pending = try await queue.peek(10)
        #expect(pending.count == 1)
        #expect(pending.allSatisfy { !($0.userTags ?? []).contains(erasedTag) })
        #expect(try spool.allRecords().isEmpty)
        await env.cleanUp()
    }
}

/// The report's own setting (`make run`: real gateway and worker, Redis with AOF): after
/// forget-me, the worker's scheduled purge leaves nothing of the caller in the AOF or the backups.
@Suite("Erasure through the real executables", .timeLimit(.minutes(3)))
struct ErasureProcessTests {
    @Test(
        "forget-me through the gateway process: within the purge interval the AOF, the backups and the database hold nothing of the caller",
        .timeLimit(.minutes(2)))
    func throughProcesses() async throws {
        let env = try TestEnvironment()
        let redisDirectory = env.directory.appendingPathComponent("redis")
        try FileManager.default.createDirectory(at: redisDirectory, withIntermediateDirectories: true)
        let redis = try OwnRedis(directory: redisDirectory, extraArguments: ["--aof-use-rdb-preamble", "no", "--rdbcompression", "no"])
        try await redis.start()
        let port = try freePort()
        let backups = env.directory.appendingPathComponent("backups")
        var environment = env.processEnvironment(httpPort: port)
        environment["ENGRAM_REDIS_URL"] = "redis://127.0.0.1:\(redis.port)/0"
        environment["ENGRAM_BACKUP_DIR"] = backups.path
        environment["ENGRAM_BACKUP_INTERVAL_MS"] = "0"
        environment["ENGRAM_ERASURE_PURGE_INTERVAL_MS"] = "300"
        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
        defer {
            gateway.kill9()
            worker.kill9()
        }
        try await waitForGatewayReady(port: port)

        let erasedPhone = "+14155550181"
        let keptPhone = "+14155550182"
        for phone in [erasedPhone, erasedPhone, keptPhone] {
            let body = try fixtureTranscript(phone: phone)
            var post = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/elevenlabs/post-call")
            post.method = .POST
            post.headers.add(name: "ElevenLabs-Signature", value: signedHeader(body, secret: env.webhookSecret))
            post.body = .bytes(ByteBuffer(bytes: body))
            #expect(try await HTTPClient.shared.execute(post, timeout: .seconds(5)).status == .ok)
        }
        let keyRing = KeyRing(master: env.masterKey)
        let databasePath = env.databasePath
        let database = try await onOwnThread { try AppDatabase(path: databasePath) }
        let vault = MemoryVault(store: SQLiteMemoryStore(database: database), keyRing: keyRing, embedder: LocalEmbedder())
        try await waitUntil(timeout: .seconds(30), "the worker process stored both callers' calls") {
            guard let tenant = try await vault.tenant("default") else { return false }
            let erased = try await vault.memories(tenant: "default", user: tenant.userKeys.key(for: .phone(erasedPhone)))
            let kept = try await vault.memories(tenant: "default", user: tenant.userKeys.key(for: .phone(keptPhone)))
            let pending = try await RedisEventQueue(endpoint: redis.endpoint, timeout: .seconds(2), keys: env.keys).stats().pending
            return !erased.isEmpty && !kept.isEmpty && pending == 0
        }
        _ = try SQLiteBackup.create(from: database, to: backups.path, keep: 24)
        let tenant = try #require(try await vault.tenant("default"))
        let erased = tenant.userKeys.key(for: .phone(erasedPhone))
        let kept = tenant.userKeys.key(for: .phone(keptPhone))

        let audit = DecryptionAudit(keyRing: keyRing)
        func census() throws -> (aof: Int, backups: (erased: Int, kept: Int), database: (erased: Int, kept: Int)) {
            let aof = DecryptionAudit.files(under: redisDirectory.appendingPathComponent("appendonlydir"))
                .flatMap { audit.envelopePlaintexts(in: $0.1) }.filter { $0.contains(erasedPhone) }.count
            var inBackups = (erased: 0, kept: 0)
            for file in try SQLiteBackup.backupFiles(backups) {
                let found = try audit.memories(inDatabase: file.path)
                inBackups.erased += found[erased]?.count ?? 0
                inBackups.kept += found[kept]?.count ?? 0
            }
            let live = try audit.memories(inDatabase: env.databasePath)
            return (aof, inBackups, (live[erased]?.count ?? 0, live[kept]?.count ?? 0))
        }
        let before = try census()
        print(
            "erasure through processes, before: AOF envelopes of the caller \(before.aof), backup memories \(before.backups), database memories \(before.database)"
        )
        #expect(before.aof > 0 && before.backups.erased > 0 && before.database.erased > 0)

        var forget = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/tools/forget-me")
        forget.method = .POST
        forget.headers.add(name: "Authorization", value: "Bearer \(env.apiKey)")
        forget.headers.add(name: "Content-Type", value: "application/json")
        forget.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: ["caller_id": erasedPhone])))
        #expect(try await HTTPClient.shared.execute(forget, timeout: .seconds(5)).status == .ok)

        var after = before
        try await waitUntil(timeout: .seconds(60), "the worker's purge reached the AOF and the backups") {
            after = try census()
            return after.aof == 0 && after.backups.erased == 0 && after.database.erased == 0
        }
        print(
            "erasure through processes, after: AOF envelopes of the caller \(after.aof), backup memories \(after.backups), database memories \(after.database)"
        )
        #expect(after.aof == 0 && after.backups.erased == 0 && after.database.erased == 0)
        #expect(after.backups.kept == before.backups.kept && after.database.kept == before.database.kept)
        #expect(await gateway.terminate() == 0)
        #expect(await worker.terminate() == 0)
        await redis.stop()
        await env.cleanUp()
    }
}
