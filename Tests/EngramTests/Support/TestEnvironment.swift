import Foundation
import Logging
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramQueue
@testable import EngramStore

/// The real services a test talks to, started by `make test`, and a fresh namespace per test:
/// its own Redis key prefix, its own SQLite file, its own keys.
struct TestEnvironment {
    let redis: RedisEndpoint
    let prefix: String
    let directory: URL
    let masterKey: MasterKey
    let webhookSecret = "wsec_test_" + UUID().uuidString.prefix(8)
    let apiKey = "ek_test_" + UUID().uuidString
    let adminKey = "eka_test_" + UUID().uuidString
    let backend: Backend
    /// The PostgreSQL database of this test (nil on SQLite), and its URL.
    private(set) var postgres: (name: String, url: String)?

    /// An environment on `backend`; PostgreSQL gets a database of its own.
    static func make(_ backend: Backend) async throws -> TestEnvironment {
        var env = try TestEnvironment(backend: backend)
        if backend == .postgres { env.postgres = try await TestPostgres.createDatabase() }
        return env
    }

    init(backend: Backend = .sqlite) throws {
        self.backend = backend
        guard let url = ProcessInfo.processInfo.environment["ENGRAM_TEST_REDIS_URL"] else {
            Issue.record("ENGRAM_TEST_REDIS_URL is not set: run the tests with `make test`, which starts a throwaway Redis")
            throw TestSetupError.missingRedis
        }
        redis = try RedisEndpoint.parse(url)
        prefix = "engram-test:\(UUID().uuidString.prefix(12)):"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("engram-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        masterKey = MasterKey.generate()
    }

    var databasePath: String { directory.appendingPathComponent("engram.sqlite").path }

    var databaseLocation: DatabaseLocation {
        if let postgres { return .postgres(url: postgres.url) }
        return .sqlite(path: databasePath)
    }

    /// Opens this test's store on its backend (migrations applied).
    func openStore() async throws -> any MemoryStore {
        try await StoreFactory.open(databaseLocation, embeddingDimension: 384, logger: testLogger)
    }

    /// A configuration pointing at this environment; tweak fields per test.
    func configuration() -> EngramConfiguration {
        var c = EngramConfiguration()
        c.httpPort = 0
        c.gatewayMetricsPort = 0
        c.database = databaseLocation
        c.redis = redis
        c.queuePrefix = prefix
        c.webhookSecret = webhookSecret
        c.apiKey = apiKey
        c.adminKey = adminKey
        c.masterKey = masterKey
        c.extractor = .local
        c.embedder = .local
        c.retryBase = .milliseconds(20)
        c.retryMax = .milliseconds(200)
        c.heartbeatTTL = .milliseconds(500)
        c.workerID = "test-worker-\(UUID().uuidString.prefix(6))"
        c.spoolDirectory = directory.appendingPathComponent("spool").path
        // Tests run in parallel on two cores: a store call may wait its turn for seconds. Tests of
        // the deadline itself set a short one explicitly.
        c.storeTimeout = .seconds(60)
        // Likewise the pre-call budget (800 ms in production): under that load a returning caller
        // got the neutral set (reason "budget") in two full runs. Tests of the budget set a short one.
        c.precallBudget = .seconds(60)
        return c
    }

    var keys: QueueKeys { QueueKeys(prefix: prefix) }

    func queue() -> RedisEventQueue { RedisEventQueue(endpoint: redis, timeout: .seconds(2), keys: keys) }

    func redisClient() -> RedisClient { RedisClient(endpoint: redis, timeout: .seconds(2), connections: 1) }

    /// Deletes every key of this test's prefix.
    func cleanUp() async {
        let client = redisClient()
        if let keys = try? await RedisEventQueue(client: client, keys: keys).scan(prefix + "*") {
            for key in keys { _ = try? await client.command("DEL", RedisArgument(key)) }
        }
        try? FileManager.default.removeItem(at: directory)
        if let postgres { await TestPostgres.dropDatabase(postgres.name) }
    }
}

enum TestSetupError: Error {
    case missingRedis, missingPostgres
    case missingFixture(String)
    case timeout(String)
}

/// Files of `Tests/Fixtures`, inside the repository (the docs' examples use the same files).
enum Fixtures {
    static var directory: URL {
        URL(fileURLWithPath: #filePath)  // Tests/EngramTests/Support/TestEnvironment.swift
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures")
    }

    static func data(_ relativePath: String) throws -> Data {
        let url = directory.appendingPathComponent(relativePath)
        guard let data = FileManager.default.contents(atPath: url.path) else { throw TestSetupError.missingFixture(url.path) }
        return data
    }

    static func elevenLabs(_ name: String) throws -> Data { try data("elevenlabs/\(name)") }

    /// The fixture's phone number and its distinctive content, for privacy assertions.
    static let fixturePhone = "+12523960448"
    static let fixtureConversation = "conv_1301kam4jyjeeqs8gwzmt62k2e3e"
}

/// Polls `condition` until it holds or the deadline passes (never a bare sleep).
func waitUntil(timeout: Duration = .seconds(10), _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(25))
    }
    throw TestSetupError.timeout(what)
}

/// Signs a body as ElevenLabs would, at `time`.
func signedHeader(_ body: Data, secret: String, at time: Date = Date()) -> String {
    WebhookSigner.header(body: body, secret: secret, timestamp: Int64(time.timeIntervalSince1970))
}

let testLogger = Logger(label: "engram-tests")
