import Foundation

/// Redis address, from `ENGRAM_REDIS_URL`.
public struct RedisEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var database: Int
    public var password: String?
    /// A Redis 6 ACL user (`redis://user:password@host`); nil = the default user (`AUTH password`).
    public var username: String?

    public init(host: String = "127.0.0.1", port: Int = 6379, database: Int = 0, password: String? = nil, username: String? = nil) {
        self.host = host
        self.port = port
        self.database = database
        self.password = password
        self.username = username
    }

    /// The address for messages and logs: `redis://[user@]host:port/db`, never the password.
    public var redacted: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return "redis://\(username.map { "\($0)@" } ?? "")\(bracketed):\(port)/\(database)"
    }

    public static func parse(_ raw: String, variable: String = "ENGRAM_REDIS_URL") throws -> RedisEndpoint {
        if raw.hasPrefix("rediss://") {
            throw ConfigurationError(
                variable: variable,
                reason:
                    "rediss:// (TLS) is not supported by hiredis 0.14: run a TLS sidecar (stunnel) next to each Engram process and point this at it as redis://127.0.0.1:PORT (docs/operations.md, section Redis over TLS; deploy/compose.yaml and deploy/k8s/redis-tls-sidecar.yaml)"
            )
        }
        guard raw.hasPrefix("redis://"), let url = URLComponents(string: raw), let host = url.host, !host.isEmpty else {
            throw ConfigurationError(variable: variable, reason: "expected redis://[[user]:password@]host[:port][/db]")
        }
        var database = 0
        let path = url.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        if !path.isEmpty {
            guard let db = Int(path), db >= 0 else { throw ConfigurationError(variable: variable, reason: "database must be a number") }
            database = db
        }
        let password = url.password.flatMap { $0.isEmpty ? nil : $0 }
        let username = url.user.flatMap { $0.isEmpty ? nil : $0 }
        if username != nil, password == nil {
            throw ConfigurationError(variable: variable, reason: "an ACL user needs its password: redis://user:password@host")
        }
        let port = url.port ?? 6379
        guard (1...65_535).contains(port) else { throw ConfigurationError(variable: variable, reason: "port must be 1 to 65535") }
        return RedisEndpoint(host: host, port: port, database: database, password: password, username: username)
    }
}
