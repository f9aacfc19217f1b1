import ArgumentParser
import Crypto
import EngramApp
import EngramCore
import EngramStore
import Foundation

/// Tenants: one business each, with its own keys, webhook secret and pseudonym secret.
struct TenantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenant",
        abstract: "Create, list and configure tenants: webhook secrets, consent mode, retention, trust of client ids, re-embedding.",
        subcommands: [
            Create.self, SetWebhookSecret.self, SetConsentMode.self, SetRetention.self, TrustClientIDs.self, Reembed.self, TenantList.self,
            TenantShow.self,
        ])

    struct Reembed: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-embed a tenant's memories with its current embedder (once, after upgrading to the keyed local embedder).",
            discussion: """
                Vectors stored by the unkeyed local embedder (local-hash-384-v1) no longer match queries, which use the \
                tenant-keyed one (local-keyed-384-v2): until this runs, search finds those memories by keywords only. \
                Safe to repeat and to run while services are up.
                """)
        @Argument(help: "The tenant's name.") var name: String
        func run() async throws {
            let context = try await CLIContext()
            guard try await context.vault.tenantRecord(id: name) != nil else { throw CLIError.unknownTenant(name) }
            let count = try await context.vault.reembed(tenant: name)
            print("tenant \(name): \(count) memories re-embedded")
        }
    }

    struct TrustClientIDs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "trust-client-ids",
            abstract: "Whether a caller id the client supplies (user_id) is trusted before the phone number (default off).",
            discussion: """
                off: the phone number decides whenever it is a valid E.164 number; user_id (a u_ key or an external id) \
                is used only for calls without one (web and SDK calls). on: user_id first, then the phone number. \
                Turn it on only if every user_id reaching Engram is set by your own server, never by the end user.
                """)
        @Argument(help: "The tenant's name.") var name: String
        @Argument(help: "Trust client-supplied user ids before the phone number.") var setting: Switch
        func run() async throws {
            let context = try await CLIContext()
            guard try await context.vault.tenantRecord(id: name) != nil else { throw CLIError.unknownTenant(name) }
            try await context.vault.setTrustClientUserIDs(tenant: name, trusted: setting == .on)
            print(
                setting == .on
                    ? "tenant \(name): client-supplied user ids are trusted before the phone number"
                    : "tenant \(name): the phone number decides; client-supplied user ids only for calls without one")
        }
    }

    struct SetRetention: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-retention", abstract: "Delete a tenant's memories for good once older than DAYS (0 = keep forever).")
        @Argument(help: "Tenant id.") var name: String
        @Argument(help: "Days a memory is kept (0 = until erased).") var days: Int
        func run() async throws {
            guard days >= 0, days <= 36_500 else { throw ValidationError("days must be 0...36500") }
            let context = try await CLIContext()
            guard try await context.vault.tenantRecord(id: name) != nil else { throw CLIError.unknownTenant(name) }
            try await context.vault.setRetention(tenant: name, days: days == 0 ? nil : days)
            print(
                days == 0 ? "tenant \(name): memories kept until erased" : "tenant \(name): memories deleted after \(days) days by the worker's sweep"
            )
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a tenant and print its API key, admin key and post-call URL (shown once).")
        @Argument(help: "Tenant id: lowercase letters, digits and dashes.") var name: String
        @Option(help: "Consent mode.") var consent = ConsentMode.implicit

        func validate() throws {
            guard name.range(of: "^[a-z0-9][a-z0-9-]{0,62}$", options: .regularExpression) != nil else {
                throw ValidationError("tenant id must be lowercase letters, digits and dashes (max 63)")
            }
        }

        func run() async throws {
            let context = try await CLIContext()
            if try await context.vault.tenantRecord(id: name) != nil { throw ValidationError("tenant \(name) exists already") }
            guard let tenant = try await context.vault.tenant(name, create: true, consentMode: consent) else { throw CLIError.unknownTenant(name) }
            let tool = try await KeysCommand.issue(context: context, tenant: tenant.id, scope: .tool)
            let admin = try await KeysCommand.issue(context: context, tenant: tenant.id, scope: .admin)
            var base = context.configuration.publicBaseURL
            while base.hasSuffix("/") { base.removeLast() }
            PublicBaseURLCheck.warn(base: base)
            try printJSON([
                "tenant": tenant.id, "api_key": tool.key, "api_key_id": tool.id, "admin_key": admin.key, "admin_key_id": admin.id,
                "post_call_url": "\(base)/v1/elevenlabs/\(tenant.id)/post-call",
                "next_step": "engram tenant set-webhook-secret \(tenant.id) < secret.txt  (the HMAC secret ElevenLabs shows for this webhook)",
            ])
        }
    }

    struct SetWebhookSecret: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-webhook-secret",
            abstract: "Store a tenant's ElevenLabs HMAC secret, read from standard input; the old one stays valid as the previous secret.")
        @Argument(help: "Tenant id.") var name: String
        @Flag(help: "Drop the previous secret (end of a rotation).") var dropPrevious = false

        func run() async throws {
            let context = try await CLIContext()
            guard try await context.vault.tenantRecord(id: name) != nil else { throw CLIError.unknownTenant(name) }
            let secret = (readLine(strippingNewline: true) ?? "").trimmingCharacters(in: .whitespaces)
            guard secret.utf8.count >= 16, secret.utf8.count <= 256 else {
                throw ValidationError("the secret on standard input must be 16 to 256 bytes")
            }
            let keptPrevious = try await context.vault.setWebhookSecret(tenant: name, secret: secret, dropPrevious: dropPrevious)
            print("webhook secret stored for \(name)\(keptPrevious ? " (the previous one stays valid until --drop-previous)" : "")")
        }
    }

    struct SetConsentMode: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-consent-mode", abstract: "Set a tenant's consent mode and whether pre-call context may include sensitive memories.")
        @Argument(help: "Tenant id.") var name: String
        @Argument(help: "Consent mode.") var mode: ConsentMode
        @Flag(help: "Allow sensitive memories in pre-call context (a spoofed caller id could hear them).") var allowSensitivePrecall = false

        func run() async throws {
            let consent = mode
            let context = try await CLIContext()
            guard try await context.vault.tenantRecord(id: name) != nil else { throw CLIError.unknownTenant(name) }
            try await context.vault.setTenantConsentMode(tenant: name, mode: consent, allowSensitivePrecall: allowSensitivePrecall)
            print("tenant \(name): consent \(consent.rawValue), sensitive pre-call \(allowSensitivePrecall ? "allowed" : "excluded")")
        }
    }
}

/// API keys: stored as SHA-256 only; two valid keys per scope during a rotation; revocable.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "API keys and the master key.", subcommands: [Create.self, List.self, Revoke.self, RotateMaster.self])

    static func issue(context: CLIContext, tenant: String, scope: APIKeyRecord.Scope) async throws -> (id: String, key: String) {
        let raw = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.hexString
        let key = (scope == .admin ? "eka_" : "ek_") + raw
        let id = "key_" + String(UUIDv7.make().replacingOccurrences(of: "-", with: "").suffix(16))
        try await context.vault.insertAPIKey(
            APIKeyRecord(
                id: id, tenant: tenant, scope: scope, keyHash: Data(SHA256.hash(data: Data(key.utf8))), createdAt: Date()))
        return (id, key)
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a key (printed once). The old key keeps working until revoked: rotation with overlap.")
        @OptionGroup var tenant: TenantOption
        @Option(help: "tool (pre-call and tools) or admin (management API).") var scope = APIKeyRecord.Scope.tool
        func run() async throws {
            let context = try await CLIContext()
            _ = try await context.tenant(tenant.tenant)
            let issued = try await KeysCommand.issue(context: context, tenant: tenant.tenant, scope: scope)
            try printJSON(["tenant": tenant.tenant, "scope": scope.rawValue, "id": issued.id, "key": issued.key])
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a tenant's keys (ids and state, never the keys).")
        @OptionGroup var tenant: TenantOption
        @Flag(help: "One JSON array.") var json = false
        func run() async throws {
            let context = try await CLIContext()
            try await KeysListing.print(context: context, tenant: tenant.tenant, json: json)
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key by id: it gets 401 from then on.")
        @OptionGroup var tenant: TenantOption
        @Argument(help: "Key id, as `engram keys list` shows it (key_...).") var id: String
        func run() async throws {
            let context = try await CLIContext()
            guard try await context.vault.revokeAPIKey(tenant: tenant.tenant, id: id, at: Date()) else {
                throw ValidationError("no active key \(id) for tenant \(tenant.tenant)")
            }
            print("revoked \(id)")
        }
    }

    struct RotateMaster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-master",
            abstract: "Re-wrap every data key and tenant secret under the key in ENGRAM_MASTER_KEY_NEW; content is not touched.",
            discussion:
                "Then set ENGRAM_MASTER_KEY to the new key and ENGRAM_MASTER_KEY_PREVIOUS to the old one, restart, and drop PREVIOUS once the queue holds no envelope from before the switch."
        )
        func run() async throws {
            let context = try await CLIContext()
            guard let raw = EngramConfiguration.environmentWithDevFile()["ENGRAM_MASTER_KEY_NEW"], let newKey = MasterKey(base64: raw) else {
                throw ConfigurationError(variable: "ENGRAM_MASTER_KEY_NEW", reason: "required: 32 bytes, base64-encoded")
            }
            let count = try await context.vault.rotateMasterKey(to: newKey)
            print("re-wrapped \(count) secrets under master key \(newKey.id)")
        }
    }
}
