import Foundation

/// Where the memories live, from `ENGRAM_DATABASE_URL`.
public enum DatabaseLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(url: String)

    public static func parse(_ raw: String, variable: String = "ENGRAM_DATABASE_URL") throws -> DatabaseLocation {
        if raw.hasPrefix("sqlite://") {
            // sqlite://./rel/path and sqlite:///abs/path
            let path = String(raw.dropFirst("sqlite://".count))
            guard !path.isEmpty else { throw ConfigurationError(variable: variable, reason: "sqlite URL has no path") }
            return .sqlite(path: path)
        }
        if raw.hasPrefix("postgres://") || raw.hasPrefix("postgresql://") {
            return .postgres(url: raw)
        }
        throw ConfigurationError(variable: variable, reason: "expected sqlite://PATH or postgres://user:pw@host:port/db")
    }
}
