import ArgumentParser
import Crypto
import EngramStore
import Foundation

/// `engram tenant list`: every tenant, one line each (or one JSON array).
struct TenantList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List tenants: consent mode, retention, keys and whether a webhook secret is set.")
    @Flag(help: "One JSON array.") var json = false

    func run() async throws {
        let context = try await CLIContext()
        var summaries: [TenantSummary] = []
        for record in try await context.vault.tenants().sorted(by: { $0.id < $1.id }) {
            summaries.append(try await TenantSummary.make(record, context: context))
        }
        if json { return try printJSON(summaries) }
        if summaries.isEmpty {
            print("no tenants (the default tenant is created on first use)")
            return
        }
        print(
            TextTable(
                header: ["TENANT", "CONSENT", "RETENTION", "ACTIVE KEYS", "WEBHOOK SECRET", "CREATED"],
                rows: summaries.map { s in
                    [
                        s.id, s.consentMode, s.retentionDays.map { "\($0) days" } ?? "forever",
                        "\(s.activeKeys.filter { $0.scope == "tool" }.count) tool, \(s.activeKeys.filter { $0.scope == "admin" }.count) admin",
                        s.webhookSecret, s.createdAt,
                    ]
                }
            ).rendered)
    }
}

/// `engram tenant show NAME`: one tenant's settings and key ids (never keys or secrets).
struct TenantShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show one tenant's settings, key ids and webhook-secret state (never the keys or secrets).")
    @Argument(help: "Tenant id.") var name: String
    @Flag(help: "One JSON object.") var json = false

    func run() async throws {
        let context = try await CLIContext()
        guard let record = try await context.vault.tenantRecord(id: name) else { throw CLIError.unknownTenant(name) }
        let summary = try await TenantSummary.make(record, context: context)
        if json { return try printJSON(summary) }
        print("tenant              \(summary.id)")
        print("created             \(summary.createdAt)")
        print("consent mode        \(summary.consentMode)")
        print("sensitive pre-call  \(summary.allowSensitivePrecall ? "allowed" : "excluded")")
        print("retention           \(summary.retentionDays.map { "\($0) days" } ?? "kept until erased")")
        print("webhook secret      \(summary.webhookSecret)")
        print("active keys         \(summary.activeKeys.isEmpty ? "none" : "")")
        for key in summary.activeKeys { print("  \(key.id)  \(key.scope)  \(key.source)") }
    }
}

/// What `tenant list` and `tenant show` print about a tenant; no key or secret material.
struct TenantSummary: Encodable {
    var id: String
    var createdAt: String
    var consentMode: String
    var allowSensitivePrecall: Bool
    var retentionDays: Int?
    /// `none`, `set`, `set (rotation: previous still valid)`; for the default tenant also `environment`.
    var webhookSecret: String
    var activeKeys: [KeyRow]

    enum CodingKeys: String, CodingKey {
        case id
        case createdAt = "created_at"
        case consentMode = "consent_mode"
        case allowSensitivePrecall = "allow_sensitive_precall"
        case retentionDays = "retention_days"
        case webhookSecret = "webhook_secret"
        case activeKeys = "active_keys"
    }

    static func make(_ record: TenantRecord, context: CLIContext) async throws -> TenantSummary {
        let secrets = try await context.vault.webhookSecretsStored(tenant: record.id)
        var webhook = !secrets.current ? "none" : (!secrets.previous ? "set" : "set (rotation: previous still valid)")
        if webhook == "none", record.id == "default", context.configuration.webhookSecret != nil { webhook = "environment (ENGRAM_WEBHOOK_SECRET)" }
        let keys = try await KeysListing.rows(context: context, tenant: record.id).filter { $0.state == "active" }
        return TenantSummary(
            id: record.id, createdAt: isoDay.string(from: record.createdAt), consentMode: record.consentMode.rawValue,
            allowSensitivePrecall: record.allowSensitivePrecall, retentionDays: record.retentionDays, webhookSecret: webhook, activeKeys: keys)
    }
}

/// One API key as the CLI shows it: id, scope, state and where it comes from.
struct KeyRow: Encodable {
    var id: String
    var scope: String
    var state: String
    /// `store` (issued by `engram keys create`) or the environment variable holding it.
    var source: String
    var createdAt: String?
    var revokedAt: String?
    enum CodingKeys: String, CodingKey {
        case id, scope, state, source
        case createdAt = "created_at"
        case revokedAt = "revoked_at"
    }
}

/// `engram keys list`: stored keys and, for the default tenant, the keys set in the environment.
enum KeysListing {
    static func rows(context: CLIContext, tenant: String) async throws -> [KeyRow] {
        var rows = try await context.vault.apiKeys(tenant: tenant).map { key in
            KeyRow(
                id: key.id, scope: key.scope.rawValue, state: key.revokedAt == nil ? "active" : "revoked", source: "store",
                createdAt: isoDay.string(from: key.createdAt), revokedAt: key.revokedAt.map(isoDay.string))
        }
        if tenant == "default" {
            // The environment's keys serve the default tenant; shown by a fingerprint, never the key.
            for (variable, scope, key) in [
                ("ENGRAM_API_KEY", "tool", context.configuration.apiKey), ("ENGRAM_ADMIN_KEY", "admin", context.configuration.adminKey),
            ] {
                guard let key, !key.isEmpty else { continue }
                let fingerprint = SHA256.hash(data: Data(key.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
                rows.append(KeyRow(id: "env:\(fingerprint)", scope: scope, state: "active", source: variable, createdAt: nil, revokedAt: nil))
            }
        }
        return rows
    }

    static func print(context: CLIContext, tenant: String, json: Bool) async throws {
        guard try await context.vault.tenantRecord(id: tenant) != nil || tenant == "default" else { throw CLIError.unknownTenant(tenant) }
        let rows = try await rows(context: context, tenant: tenant)
        if json { return try printJSON(rows) }
        if rows.isEmpty {
            Swift.print("tenant \(tenant): no keys (issue one with `engram keys create --tenant \(tenant)`)")
            return
        }
        Swift.print(
            TextTable(
                header: ["ID", "SCOPE", "STATE", "SOURCE", "CREATED", "REVOKED"],
                rows: rows.map { [$0.id, $0.scope, $0.state, $0.source, $0.createdAt ?? "-", $0.revokedAt ?? "-"] }
            ).rendered)
    }
}
