import Foundation
import Logging
import PostgresNIO
import Testing

@testable import EngramStore

/// The store backends a test can run on: SQLite always; PostgreSQL whenever the test setup has
/// one (`make test` starts one and sets ENGRAM_TEST_POSTGRES_URL).
enum Backend: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case sqlite, postgres

    static var available: [Backend] { TestPostgres.serverURL == nil ? [.sqlite] : [.sqlite, .postgres] }
    var testDescription: String { rawValue }
}

/// One fresh database per test on the shared test server, dropped at clean-up.
enum TestPostgres {
    static var serverURL: String? {
        guard let url = ProcessInfo.processInfo.environment["ENGRAM_TEST_POSTGRES_URL"], !url.isEmpty else { return nil }
        return url
    }

    /// Creates `engram_t_<random>` and returns its URL.
    static func createDatabase() async throws -> (name: String, url: String) {
        guard let server = serverURL else { throw TestSetupError.missingPostgres }
        let name = "engram_t_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        try await admin(server) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: testLogger)
        }
        var components = URLComponents(string: server)!
        components.path = "/" + name
        return (name, components.string!)
    }

    static func dropDatabase(_ name: String) async {
        guard let server = serverURL else { return }
        try? await admin(server) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: testLogger)
        }
    }

    /// Runs `body` on a short-lived connection to the server's `postgres` database.
    static func admin(_ url: String, _ body: (PostgresConnection) async throws -> Void) async throws {
        let settings = try PostgresSettings.parse(url)
        let client = PostgresClient(configuration: settings.clientConfiguration, backgroundLogger: testLogger)
        // As the store runs its pool: started before the first lease, closed (and awaited) after.
        let runner = await PostgresClientRunner(client)
        do {
            try await client.withConnection { connection in try await body(connection) }
        } catch {
            await runner.close()
            throw error
        }
        await runner.close()
    }
}
