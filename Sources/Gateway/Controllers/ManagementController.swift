import Foundation
import Hummingbird
import Logging
import Shared

/// The management API (admin keys only): read, correct, export and erase a caller's memories,
/// record consent. Every action lands in the audit log (who, what, when, which user; never content).
struct ManagementController {
    let services: GatewayServices

    struct MemoryView: Encodable {
        var id: String
        var content: String
        var sector: String
        var slot: String?
        var importance: Double
        var salience: Double
        var sensitive: Bool
        var status: String
        var validFrom: Date
        var validTo: Date?
        var supersededBy: String?
        var createdAt: Date
        var lastRecalledAt: Date?
        var sources: [MemorySource]
        var needsReextraction: Bool
        enum CodingKeys: String, CodingKey {
            case id, content, sector, slot, importance, salience, sensitive, status, validFrom = "valid_from", validTo = "valid_to"
            case supersededBy = "superseded_by", createdAt = "created_at", lastRecalledAt = "last_recalled_at", sources
            case needsReextraction = "needs_reextraction"
        }

        init(_ m: Memory, now: Date) {
            id = m.id; content = m.content; sector = m.sector.rawValue; slot = m.slot; importance = m.importance
            salience = (Salience.of(m, at: now) * 1000).rounded() / 1000; sensitive = m.sensitive; status = m.status.rawValue
            validFrom = m.validFrom; validTo = m.validTo; supersededBy = m.supersededBy; createdAt = m.createdAt
            lastRecalledAt = m.lastRecalledAt; sources = m.sources; needsReextraction = m.needsReextraction
        }
    }

    struct Page: Encodable {
        var userID: String
        var memories: [MemoryView]
        var total: Int
        var limit: Int
        var offset: Int
        enum CodingKeys: String, CodingKey { case userID = "user_id", memories, total, limit, offset }
    }

    struct PatchRequest: Decodable {
        var content: String?
        var sensitive: Bool?
        var status: String?
    }

    struct SearchRequest: Decodable {
        var query: String
        var limit: Int?
        var explain: Bool?
    }

    struct ConsentBody: Decodable { var granted: Bool }

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/v1/users/{user}/memories") { request, context in
            let (caller, user) = try await resolve(request, context)
            let query = request.uri.queryParameters
            let limit = min(500, max(1, query.get("limit", as: Int.self) ?? 100))
            let offset = max(0, query.get("offset", as: Int.self) ?? 0)
            let history = query.get("include_history").map { ["1", "true", "yes"].contains($0.lowercased()) } ?? false
            var memories = try await services.vault.memories(tenant: caller.tenant.id, user: user, includeHistory: history || query.get("status") != nil)
            if let sector = query.get("sector") {
                guard let s = Sector(rawValue: sector) else { throw APIError.badRequest("invalid_parameter", "sector must be one of \(Sector.allCases.map(\.rawValue).joined(separator: ", "))") }
                memories = memories.filter { $0.sector == s }
            }
            if let status = query.get("status") {
                guard let s = MemoryStatus(rawValue: status) else { throw APIError.badRequest("invalid_parameter", "status must be active or archived") }
                memories = memories.filter { $0.status == s }
            }
            try await audit(caller, "memories.list", user: user)
            let now = services.clock.now()
            let page = memories.dropFirst(offset).prefix(limit).map { MemoryView($0, now: now) }
            return try Response.json(Page(userID: user.rawValue, memories: Array(page), total: memories.count, limit: limit, offset: offset))
        }

        router.post("/v1/users/{user}/memories/search") { request, context in
            let (caller, user) = try await resolve(request, context)
            let body = try await request.decodeJSON(SearchRequest.self, limit: services.configuration.maxToolBodyBytes)
            guard !body.query.trimmingCharacters(in: .whitespaces).isEmpty, body.query.utf8.count <= 1_000 else {
                throw APIError.badRequest("invalid_parameter", "query must have 1 to 1000 bytes (UTF-8)")
            }
            let hits = try await services.vault.search(tenant: caller.tenant.id, user: user, query: body.query, limit: min(50, max(1, body.limit ?? 10)))
            try await audit(caller, "memories.search", user: user)
            struct Hit: Encodable { var memory: MemoryView; var score: ScoreBreakdown }
            let now = services.clock.now()
            return try Response.json(["results": hits.map { Hit(memory: MemoryView($0.memory, now: now), score: $0.breakdown) }])
        }

        router.get("/v1/users/{user}/export") { request, context in
            let (caller, user) = try await resolve(request, context)
            let record = try await services.vault.store.user(tenant: caller.tenant.id, user: user)
            let memories = try await services.vault.memories(tenant: caller.tenant.id, user: user, includeHistory: true)
            let erasedAt = try await services.vault.store.tombstone(tenant: caller.tenant.id, user: user)
            try await audit(caller, "user.export", user: user)
            struct Export: Encodable {
                var userID: String
                var tenant: String
                var consent: Bool?
                var consentAt: Date?
                var createdAt: Date?
                var lastCallAt: Date?
                var erasedAt: Date?
                var memories: [MemoryView]
                enum CodingKeys: String, CodingKey {
                    case userID = "user_id", tenant, consent, consentAt = "consent_at", createdAt = "created_at", lastCallAt = "last_call_at", erasedAt = "erased_at", memories
                }
            }
            let now = services.clock.now()
            return try Response.json(Export(
                userID: user.rawValue, tenant: caller.tenant.id, consent: record?.consent, consentAt: record?.consentAt, createdAt: record?.createdAt,
                lastCallAt: record?.lastCallAt, erasedAt: erasedAt, memories: memories.map { MemoryView($0, now: now) }))
        }

        router.delete("/v1/users/{user}") { request, context in
            let (caller, user) = try await resolve(request, context)
            try await services.vault.store.erase(tenant: caller.tenant.id, user: user, at: services.clock.now())
            await services.vault.forgetCached(tenant: caller.tenant.id, user: user)
            await services.propagateErasure(tenant: caller.tenant.id, user: user, logger: context.logger)
            try await audit(caller, "user.erase", user: user)
            return try Response.json(["status": "erased", "user_id": user.rawValue])
        }

        router.get("/v1/users/{user}/consent") { request, context in
            let (caller, user) = try await resolve(request, context)
            let record = try await services.vault.store.user(tenant: caller.tenant.id, user: user)
            try await audit(caller, "consent.read", user: user)
            struct ConsentView: Encodable { var userID: String; var mode: String; var granted: Bool?; var at: Date?
                enum CodingKeys: String, CodingKey { case userID = "user_id", mode, granted, at } }
            return try Response.json(ConsentView(userID: user.rawValue, mode: caller.tenant.record.consentMode.rawValue, granted: record?.consent, at: record?.consentAt))
        }

        router.put("/v1/users/{user}/consent") { request, context in
            let (caller, user) = try await resolve(request, context)
            let body = try await request.decodeJSON(ConsentBody.self, limit: 1024)
            _ = try await services.vault.userForWriting(tenant: caller.tenant.id, user: user)
            try await services.vault.store.setConsent(tenant: caller.tenant.id, user: user, granted: body.granted, at: services.clock.now())
            try await audit(caller, body.granted ? "consent.grant" : "consent.withdraw", user: user)
            struct Recorded: Encodable { var userID: String; var granted: Bool
                enum CodingKeys: String, CodingKey { case userID = "user_id", granted } }
            return try Response.json(Recorded(userID: user.rawValue, granted: body.granted))
        }

        router.get("/v1/memories/{id}") { request, context in
            let (caller, memory) = try await loadMemory(request, context)
            try await audit(caller, "memory.read", user: memory.user, memoryID: memory.id)
            return try Response.json(MemoryView(memory, now: services.clock.now()))
        }

        router.patch("/v1/memories/{id}") { request, context in
            let (caller, memory) = try await loadMemory(request, context)
            let body = try await request.decodeJSON(PatchRequest.self, limit: services.configuration.maxToolBodyBytes)
            var updated = memory
            if let content = body.content?.trimmingCharacters(in: .whitespacesAndNewlines) {
                guard !content.isEmpty, content.utf8.count <= 2_000 else { throw APIError.badRequest("invalid_parameter", "content must have 1 to 2000 bytes (UTF-8)") }
                updated.content = content
            }
            if let sensitive = body.sensitive { updated.sensitive = sensitive }
            if let status = body.status {
                guard let s = MemoryStatus(rawValue: status), s != .erased else { throw APIError.badRequest("invalid_parameter", "status must be active or archived") }
                updated.status = s
            }
            try await services.vault.replace(updated)
            try await audit(caller, "memory.update", user: memory.user, memoryID: memory.id)
            return try Response.json(MemoryView(updated, now: services.clock.now()))
        }

        router.delete("/v1/memories/{id}") { request, context in
            let (caller, memory) = try await loadMemory(request, context)
            _ = try await services.vault.store.deleteMemory(tenant: caller.tenant.id, id: memory.id)
            try await audit(caller, "memory.delete", user: memory.user, memoryID: memory.id)
            return try Response.json(["status": "deleted", "id": memory.id])
        }

        router.get("/v1/audit") { request, context in
            let caller = try await services.authenticator.authorize(request, scope: .admin)
            let limit = min(1000, max(1, request.uri.queryParameters.get("limit", as: Int.self) ?? 100))
            return try Response.json(["entries": try await services.vault.store.auditEntries(tenant: caller.tenant.id, limit: limit)])
        }
    }

    func resolve(_ request: Request, _ context: BasicRequestContext) async throws -> (Caller, UserKey) {
        let caller = try await services.authenticator.authorize(request, scope: .admin)
        guard let raw = context.parameters.get("user"), raw.utf8.count <= 300, let identity = CallerReference.parse(raw) else {
            throw APIError.badRequest("invalid_user", "user must be a u_ key, a +E.164 phone number or ext:<id>")
        }
        return (caller, caller.tenant.userKeys.key(for: identity))
    }

    func loadMemory(_ request: Request, _ context: BasicRequestContext) async throws -> (Caller, Memory) {
        let caller = try await services.authenticator.authorize(request, scope: .admin)
        // Another tenant's memory is indistinguishable from a missing one.
        guard let id = context.parameters.get("id"), id.utf8.count <= 64,
              let row = try await services.vault.store.memory(tenant: caller.tenant.id, id: id),
              let user = try await services.vault.store.user(tenant: caller.tenant.id, user: row.user)
        else { throw APIError(status: .notFound, code: "not_found", message: "no such memory") }
        return (caller, try services.vault.decrypt(row, key: try services.vault.dataKey(of: user)))
    }

    func audit(_ caller: Caller, _ action: String, user: UserKey?, memoryID: String? = nil) async throws {
        try await services.vault.store.audit(AuditEntry(tenant: caller.tenant.id, actor: caller.keyID, action: action, user: user, memoryID: memoryID, at: services.clock.now()))
    }
}
