import Foundation
import Hummingbird
import Logging
import Shared

/// ElevenLabs server tools, called by the agent's LLM mid-call. Answers are short and plain: the
/// LLM reads them verbatim.
struct ToolsController {
    let services: GatewayServices

    struct SearchRequest: Decodable {
        var query: String
        var callerID: String?
        var userID: String?
        var conversationID: String?
        var limit: Int?
        var explain: Bool?
        enum CodingKeys: String, CodingKey {
            case query, callerID = "caller_id", userID = "user_id", conversationID = "conversation_id", limit, explain
        }
    }

    struct SearchResult: Encodable {
        var text: String
        var when: String
        var sector: String
        var id: String?
        var score: ScoreBreakdown?
    }

    struct RememberRequest: Decodable {
        var fact: String
        var callerID: String?
        var userID: String?
        var conversationID: String?
        enum CodingKeys: String, CodingKey { case fact, callerID = "caller_id", userID = "user_id", conversationID = "conversation_id" }
    }

    struct CallerRequest: Decodable {
        var callerID: String?
        var userID: String?
        var conversationID: String?
        enum CodingKeys: String, CodingKey { case callerID = "caller_id", userID = "user_id", conversationID = "conversation_id" }
    }

    struct ConsentRequest: Decodable {
        var granted: Bool
        var callerID: String?
        var userID: String?
        enum CodingKeys: String, CodingKey { case granted, callerID = "caller_id", userID = "user_id" }
    }

    /// Limits in UTF-8 bytes: a "character" (grapheme cluster) can hold thousands of code points.
    static let maxQueryBytes = 1_000
    static let maxFactBytes = 2_000

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.post("/v1/tools/search-memory") { request, context in
            let caller = try await services.authenticator.authorize(request, scope: .tool)
            let body = try await request.decodeJSON(SearchRequest.self, limit: services.configuration.maxToolBodyBytes)
            let query = body.query.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !query.isEmpty else { throw APIError.badRequest("missing_field", "query must not be empty") }
            guard query.utf8.count <= Self.maxQueryBytes else { throw APIError.badRequest("field_too_long", "query is longer than \(Self.maxQueryBytes) bytes (UTF-8)") }
            // `limit` caps the entries of the answer; without it, the character budget alone does.
            let maxItems = body.limit.map { min(20, max(1, $0)) }
            let tenant = caller.tenant
            guard let user = services.userKey(tenant: tenant, userID: body.userID, callerID: body.callerID) else {
                return try Response.json(["memories": [SearchResult]()])
            }
            // Like pre-call, a tool answer can reach a spoofed caller id: sensitive memories stay
            // out unless the tenant allows them (operators still see them in the management API).
            let includeSensitive = services.includeSensitive(tenant)
            let hits = try await services.vault.search(
                tenant: tenant.id, user: user, query: query, limit: AnswerPacker.searchCandidates, includeSensitive: includeSensitive)
            // One answer, within the budget, no turn twice (AnswerPacker; the LoCoMo figure measures exactly this).
            let answer = AnswerPacker.pack(hits.map(\.memory), budget: services.configuration.searchAnswerChars, maxItems: maxItems)
            let breakdowns = Dictionary(hits.map { ($0.memory.id, $0.breakdown) }, uniquingKeysWith: { first, _ in first })
            await services.reinforcement.reinforce(answer.items.flatMap(\.memories), at: services.clock.now())
            let explain = body.explain ?? false
            let results = answer.items.map { item in
                SearchResult(
                    text: item.text, when: Self.day(item.first.validFrom), sector: item.first.sector.rawValue,
                    id: explain ? item.first.id : nil, score: explain ? breakdowns[item.first.id] : nil)
            }
            return try Response.json(["memories": results])
        }

        router.post("/v1/tools/remember") { request, context in
            let caller = try await services.authenticator.authorize(request, scope: .tool)
            let body = try await request.decodeJSON(RememberRequest.self, limit: services.configuration.maxToolBodyBytes)
            let fact = body.fact.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !fact.isEmpty else { throw APIError.badRequest("missing_field", "fact must not be empty") }
            guard fact.utf8.count <= Self.maxFactBytes else { throw APIError.badRequest("field_too_long", "fact is longer than \(Self.maxFactBytes) bytes (UTF-8)") }
            let tenant = caller.tenant
            guard let user = services.userKey(tenant: tenant, userID: body.userID, callerID: body.callerID) else {
                return try Response.json(["status": "skipped", "message": "The caller is unknown, so this was not remembered."])
            }
            let event = RememberEvent(user: user, fact: fact, conversationID: body.conversationID, saidAt: services.clock.now())
            let envelope = try Envelope.seal(
                try JSONEncoder().encode(event), tenant: tenant.id, type: EventType.remember, receivedAt: services.clock.now(),
                cipher: services.vault.keyRing.envelopeCipher, userTags: [services.vault.keyRing.userTag(tenant: tenant.id, user: user)])
            do {
                _ = try await services.ingest.accept(envelope, dedupe: [], logger: context.logger)
            } catch {
                context.logger.error("enqueue failed", metadata: ["error_class": "\(type(of: error))"])
                throw APIError(status: .serviceUnavailable, code: "queue_unavailable", message: "cannot store the fact right now", headers: [.retryAfter: "5"])
            }
            return try Response.json(["status": "remembered", "message": "Noted. I will remember that."])
        }

        router.post("/v1/tools/forget-me") { request, context in
            let caller = try await services.authenticator.authorize(request, scope: .tool)
            let body = try await request.decodeJSON(CallerRequest.self, limit: services.configuration.maxToolBodyBytes)
            let tenant = caller.tenant
            guard let user = services.userKey(tenant: tenant, userID: body.userID, callerID: body.callerID) else {
                return try Response.json(["status": "skipped", "message": "I could not identify the caller, so nothing was erased."])
            }
            try await services.vault.store.erase(tenant: tenant.id, user: user, at: services.clock.now())
            await services.vault.forgetCached(tenant: tenant.id, user: user)
            await services.propagateErasure(tenant: tenant.id, user: user, logger: context.logger)
            try await services.vault.store.audit(AuditEntry(tenant: tenant.id, actor: caller.keyID, action: "tool.forget_me", user: user, at: services.clock.now()))
            context.logger.info("caller erased by tool", metadata: ["tenant": "\(tenant.id)"])
            return try Response.json(["status": "erased", "message": "Everything remembered about this caller has been erased."])
        }

        router.post("/v1/tools/set-consent") { request, context in
            let caller = try await services.authenticator.authorize(request, scope: .tool)
            let body = try await request.decodeJSON(ConsentRequest.self, limit: services.configuration.maxToolBodyBytes)
            let tenant = caller.tenant
            guard let user = services.userKey(tenant: tenant, userID: body.userID, callerID: body.callerID) else {
                return try Response.json(["status": "skipped", "message": "I could not identify the caller, so their choice was not recorded."])
            }
            _ = try await services.vault.userForWriting(tenant: tenant.id, user: user)
            try await services.vault.store.setConsent(tenant: tenant.id, user: user, granted: body.granted, at: services.clock.now())
            try await services.vault.store.audit(AuditEntry(tenant: tenant.id, actor: caller.keyID, action: body.granted ? "tool.consent_granted" : "tool.consent_withdrawn", user: user, at: services.clock.now()))
            return try Response.json(body.granted
                ? ["status": "granted", "message": "Thanks, I will remember what we talk about for next time."]
                : ["status": "withdrawn", "message": "Understood, I will not keep anything from our calls."])
        }
    }

    static let dayFormatter: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd"
        return f
    }()

    static func day(_ date: Date) -> String { dayFormatter.string(from: date) }
}
