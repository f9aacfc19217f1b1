import EngramApp
import EngramCore
import EngramObservability
import EngramQueue
import Foundation
import Hummingbird
import Logging

/// The management API (admin keys only): read, correct, export and erase a caller's memories,
/// record consent. Every action lands in the audit log (who, what, when, which user; never content).
struct ManagementController {
    typealias Context = AuthenticatedRequestContext
    let configuration: EngramConfiguration
    let vault: MemoryVault
    let erasure: ErasurePropagation
    let clock: WallClock

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
            case id, content, sector, slot, importance, salience, sensitive, status
            case validFrom = "valid_from"
            case validTo = "valid_to"
            case supersededBy = "superseded_by"
            case createdAt = "created_at"
            case lastRecalledAt = "last_recalled_at"
            case sources
            case needsReextraction = "needs_reextraction"
        }

        init(_ m: Memory, now: Date) {
            id = m.id
            content = m.content
            sector = m.sector.rawValue
            slot = m.slot
            importance = m.importance
            salience = (Salience.of(m, at: now) * 1000).rounded() / 1000
            sensitive = m.sensitive
            status = m.status.rawValue
            validFrom = m.validFrom
            validTo = m.validTo
            supersededBy = m.supersededBy
            createdAt = m.createdAt
            lastRecalledAt = m.lastRecalledAt
            sources = m.sources
            needsReextraction = m.needsReextraction
        }
    }

    struct Page: Encodable {
        var userID: String
        var memories: [MemoryView]
        var total: Int
        var limit: Int
        var offset: Int
        enum CodingKeys: String, CodingKey {
            case userID = "user_id"
            case memories, total, limit, offset
        }
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

    /// Behind `Authenticator` (admin scope) and `RateLimitMiddleware`.
    var endpoints: RouteCollection<Context> {
        let routes = RouteCollection(context: Context.self)
        routes.get("/v1/users/{user}/memories") { request, context in
            let (caller, user) = try resolve(context)
            let query = request.uri.queryParameters
            let limit = min(500, max(1, query.get("limit", as: Int.self) ?? 100))
            let offset = max(0, query.get("offset", as: Int.self) ?? 0)
            let history = query.get("include_history").map { ["1", "true", "yes"].contains($0.lowercased()) } ?? false
            var memories = try await vault.memories(tenant: caller.tenant.id, user: user, includeHistory: history || query.get("status") != nil)
            if let sector = query.get("sector") {
                guard let s = Sector(rawValue: sector) else {
                    throw APIError.badRequest("invalid_parameter", "sector must be one of \(Sector.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                memories = memories.filter { $0.sector == s }
            }
            if let status = query.get("status") {
                guard let s = MemoryStatus(rawValue: status) else {
                    throw APIError.badRequest("invalid_parameter", "status must be active or archived")
                }
                memories = memories.filter { $0.status == s }
            }
            try await audit(caller, "memories.list", user: user)
            let now = clock.now()
            let page = memories.dropFirst(offset).prefix(limit).map { MemoryView($0, now: now) }
            return try Response.json(Page(userID: user.rawValue, memories: Array(page), total: memories.count, limit: limit, offset: offset))
        }

        routes.post("/v1/users/{user}/memories/search") { request, context in
            let (caller, user) = try resolve(context)
            let body = try await request.decodeJSON(SearchRequest.self, limit: configuration.maxToolBodyBytes)
            guard !body.query.trimmingCharacters(in: .whitespaces).isEmpty, body.query.utf8.count <= 1_000 else {
                throw APIError.badRequest("invalid_parameter", "query must have 1 to 1000 bytes (UTF-8)")
            }
            let hits = try await vault.search(tenant: caller.tenant.id, user: user, query: body.query, limit: min(50, max(1, body.limit ?? 10)))
            try await audit(caller, "memories.search", user: user)
            struct Hit: Encodable {
                var memory: MemoryView
                var score: ScoreBreakdown
            }
            let now = clock.now()
            return try Response.json(["results": hits.map { Hit(memory: MemoryView($0.memory, now: now), score: $0.breakdown) }])
        }

        routes.get("/v1/users/{user}/export") { request, context in
            let (caller, user) = try resolve(context)
            let record = try await vault.user(tenant: caller.tenant.id, user: user)
            let memories = try await vault.memories(tenant: caller.tenant.id, user: user, includeHistory: true)
            let erasedAt = try await vault.erasedAt(tenant: caller.tenant.id, user: user)
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
                    case userID = "user_id"
                    case tenant, consent
                    case consentAt = "consent_at"
                    case createdAt = "created_at"
                    case lastCallAt = "last_call_at"
                    case erasedAt = "erased_at"
                    case memories
                }
            }
            let now = clock.now()
            return try Response.json(
                Export(
                    userID: user.rawValue, tenant: caller.tenant.id, consent: record?.consent, consentAt: record?.consentAt,
                    createdAt: record?.createdAt,
                    lastCallAt: record?.lastCallAt, erasedAt: erasedAt, memories: memories.map { MemoryView($0, now: now) }))
        }

        routes.delete("/v1/users/{user}") { request, context in
            let (caller, user) = try resolve(context)
            try await erasure.eraseUser(tenant: caller.tenant.id, user: user, actor: caller.keyID, action: "user.erase", logger: context.logger)
            return try Response.json(["status": "erased", "user_id": user.rawValue])
        }

        routes.get("/v1/users/{user}/consent") { request, context in
            let (caller, user) = try resolve(context)
            let record = try await vault.user(tenant: caller.tenant.id, user: user)
            try await audit(caller, "consent.read", user: user)
            struct ConsentView: Encodable {
                var userID: String
                var mode: String
                var granted: Bool?
                var at: Date?
                enum CodingKeys: String, CodingKey {
                    case userID = "user_id"
                    case mode, granted, at
                }
            }
            return try Response.json(
                ConsentView(userID: user.rawValue, mode: caller.tenant.record.consentMode.rawValue, granted: record?.consent, at: record?.consentAt))
        }

        routes.put("/v1/users/{user}/consent") { request, context in
            let (caller, user) = try resolve(context)
            let body = try await request.decodeJSON(ConsentBody.self, limit: 1024)
            try await vault.setConsent(tenant: caller.tenant.id, user: user, granted: body.granted, at: clock.now())
            try await audit(caller, body.granted ? "consent.grant" : "consent.withdraw", user: user)
            struct Recorded: Encodable {
                var userID: String
                var granted: Bool
                enum CodingKeys: String, CodingKey {
                    case userID = "user_id"
                    case granted
                }
            }
            return try Response.json(Recorded(userID: user.rawValue, granted: body.granted))
        }

        routes.get("/v1/memories/{id}") { request, context in
            let (caller, memory) = try await loadMemory(context)
            try await audit(caller, "memory.read", user: memory.user, memoryID: memory.id)
            return try Response.json(MemoryView(memory, now: clock.now()))
        }

        routes.patch("/v1/memories/{id}") { request, context in
            let (caller, memory) = try await loadMemory(context)
            let body = try await request.decodeJSON(PatchRequest.self, limit: configuration.maxToolBodyBytes)
            var updated = memory
            if let content = body.content?.trimmingCharacters(in: .whitespacesAndNewlines) {
                guard !content.isEmpty, content.utf8.count <= 2_000 else {
                    throw APIError.badRequest("invalid_parameter", "content must have 1 to 2000 bytes (UTF-8)")
                }
                updated.content = content
            }
            if let sensitive = body.sensitive { updated.sensitive = sensitive }
            if let status = body.status {
                guard let s = MemoryStatus(rawValue: status), s != .erased else {
                    throw APIError.badRequest("invalid_parameter", "status must be active or archived")
                }
                updated.status = s
            }
            try await vault.replace(updated)
            try await audit(caller, "memory.update", user: memory.user, memoryID: memory.id)
            return try Response.json(MemoryView(updated, now: clock.now()))
        }

        routes.delete("/v1/memories/{id}") { request, context in
            let (caller, memory) = try await loadMemory(context)
            _ = try await vault.deleteMemory(tenant: caller.tenant.id, id: memory.id)
            try await audit(caller, "memory.delete", user: memory.user, memoryID: memory.id)
            return try Response.json(["status": "deleted", "id": memory.id])
        }

        routes.get("/v1/audit") { request, context in
            let caller = context.caller
            let limit = min(1000, max(1, request.uri.queryParameters.get("limit", as: Int.self) ?? 100))
            return try Response.json(["entries": try await vault.auditEntries(tenant: caller.tenant.id, limit: limit)])
        }
        return routes
    }

    func resolve(_ context: Context) throws -> (Caller, UserKey) {
        let caller = context.caller
        guard let raw = context.parameters.get("user"), raw.utf8.count <= 300, let identity = CallerReference.parse(raw) else {
            throw APIError.badRequest("invalid_user", "user must be a u_ key, a +E.164 phone number or ext:<id>")
        }
        return (caller, caller.tenant.userKeys.key(for: identity))
    }

    func loadMemory(_ context: Context) async throws -> (Caller, Memory) {
        let caller = context.caller
        // Another tenant's memory is indistinguishable from a missing one.
        guard let id = context.parameters.get("id"), id.utf8.count <= 64,
            let memory = try await vault.memory(tenant: caller.tenant.id, id: id)
        else { throw APIError(status: .notFound, code: "not_found", message: "no such memory") }
        return (caller, memory)
    }

    func audit(_ caller: Caller, _ action: String, user: UserKey?, memoryID: String? = nil) async throws {
        try await vault.audit(tenant: caller.tenant.id, actor: caller.keyID, action: action, user: user, memoryID: memoryID)
    }
}
