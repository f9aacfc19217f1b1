import EngramCore
import Foundation
import NIOSSL
import PostgresNIO

/// Connection settings read from `postgres://user:password@host:port/database?sslmode=...&pool=N`.
///
/// `sslmode`: `disable`, `prefer` (the default: TLS when the server offers it) or `require`
/// (TLS with certificate verification against the system roots). `pool`: the most connections
/// this process opens (default 10).
public struct PostgresSettings: Sendable {
    public enum TLSMode: String, Sendable { case disable, prefer, require }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var tls: TLSMode
    public var maximumConnections: Int

    public static func parse(_ raw: String, variable: String = "ENGRAM_DATABASE_URL") throws -> PostgresSettings {
        guard let components = URLComponents(string: raw), components.scheme == "postgres" || components.scheme == "postgresql" else {
            throw ConfigurationError(variable: variable, reason: "expected postgres://user:password@host:port/database")
        }
        guard let host = components.host, !host.isEmpty else {
            throw ConfigurationError(variable: variable, reason: "the PostgreSQL URL has no host")
        }
        guard let user = components.user, !user.isEmpty else {
            throw ConfigurationError(variable: variable, reason: "the PostgreSQL URL has no user")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty else { throw ConfigurationError(variable: variable, reason: "the PostgreSQL URL has no database name") }
        var settings = PostgresSettings(
            host: host, port: components.port ?? 5432, username: user.removingPercentEncoding ?? user,
            password: components.password.map { $0.removingPercentEncoding ?? $0 }, database: database, tls: .prefer, maximumConnections: 10)
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let mode = TLSMode(rawValue: item.value ?? "") else {
                    throw ConfigurationError(variable: variable, reason: "sslmode must be disable, prefer or require")
                }
                settings.tls = mode
            case "pool":
                guard let n = Int(item.value ?? ""), (1...500).contains(n) else {
                    throw ConfigurationError(variable: variable, reason: "pool must be a number from 1 to 500")
                }
                settings.maximumConnections = n
            default:
                throw ConfigurationError(variable: variable, reason: "unknown parameter \(item.name) (known: sslmode, pool)")
            }
        }
        return settings
    }

    var clientConfiguration: PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS
        switch self.tls {
        case .disable: tls = .disable
        case .prefer: tls = .prefer(.makeClientConfiguration())
        case .require: tls = .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(host: host, port: port, username: username, password: password, database: database, tls: tls)
        configuration.options.maximumConnections = maximumConnections
        configuration.options.minimumConnections = 0
        // postgres-nio's default: a loaded machine can take more than 5 s to fork and start a backend.
        configuration.options.connectTimeout = .seconds(10)
        // postgres-nio 1.33.2's pool, once a connection attempt has failed (refused, timed out),
        // queues every lease until a new connection succeeds, even while an idle connection is
        // there; only a connection becoming available again serves the queue, and an idle one
        // does so when its keep-alive query ends. At the default 30 s every store call then
        // waited up to 30 s (issue 11 §2; `PostgresPoolTests` shows it). A keep-alive every 2 s
        // bounds that wait at 2 s for one `SELECT 1` per idle connection.
        configuration.options.keepAliveBehavior = .init(frequency: Self.keepAliveFrequency)
        return configuration
    }

    /// See `clientConfiguration`: how long a lease can wait behind a failed connection attempt.
    static let keepAliveFrequency: Duration = .seconds(2)

    /// The URL without its password, for logs and messages.
    public var redacted: String { "postgres://\(username)@\(host):\(port)/\(database)?sslmode=\(tls.rawValue)" }
}
