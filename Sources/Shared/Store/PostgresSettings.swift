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
        guard let host = components.host, !host.isEmpty else { throw ConfigurationError(variable: variable, reason: "the PostgreSQL URL has no host") }
        guard let user = components.user, !user.isEmpty else { throw ConfigurationError(variable: variable, reason: "the PostgreSQL URL has no user") }
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
        configuration.options.connectTimeout = .seconds(5)
        return configuration
    }

    /// The URL without its password, for logs and messages.
    public var redacted: String { "postgres://\(username)@\(host):\(port)/\(database)?sslmode=\(tls.rawValue)" }
}
