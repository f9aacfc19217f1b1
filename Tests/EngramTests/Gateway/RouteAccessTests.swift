import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore
@testable import Gateway

/// Authentication is middleware on route groups (`buildRouter`). These tests ask every route of
/// the production router who may call it, so a route added outside its group, or in the wrong
/// one, fails here rather than in production.
@Suite("Every gateway route is behind its group's authentication", .timeLimit(.minutes(2)))
struct RouteAccessTests {
    enum Access: Equatable {
        case open
        /// `ENGRAM_METRICS_KEY` as a bearer token.
        case metricsKey
        /// The ElevenLabs HMAC signature, with the secrets of the tenant the path names (or the default tenant's).
        case webhookSignature
        /// A bearer key of this scope; `rateLimited`: a key over its budget gets 429 (else the route answers without memory).
        case key(APIKeyRecord.Scope, rateLimited: Bool)
    }

    /// Every route of the gateway and who may call it. A route the router has and this table has
    /// not fails `everyRouteIsDeclared`: declare it here, and put it behind the right group.
    static let routes: [String: Access] = [
        "GET /health/live": .open,
        "GET /health/ready": .open,
        "GET /metrics": .metricsKey,
        "POST /v1/elevenlabs/post-call": .webhookSignature,
        "POST /v1/elevenlabs/{tenant}/post-call": .webhookSignature,
        "POST /v1/elevenlabs/conversation-init": .key(.tool, rateLimited: false),
        "POST /v1/llm/chat/completions": .key(.tool, rateLimited: false),
        "GET /v1/users/{user}/variables": .key(.tool, rateLimited: true),
        "POST /v1/tools/search-memory": .key(.tool, rateLimited: true),
        "POST /v1/tools/remember": .key(.tool, rateLimited: true),
        "POST /v1/tools/forget-me": .key(.tool, rateLimited: true),
        "POST /v1/tools/set-consent": .key(.tool, rateLimited: true),
        // MCP: the key on every method; only `tools/call` counts against the rate (MCPTests).
        "POST /mcp": .key(.tool, rateLimited: false),
        "GET /mcp": .key(.tool, rateLimited: false),
        "DELETE /mcp": .key(.tool, rateLimited: false),
        "GET /v1/users/{user}/memories": .key(.admin, rateLimited: true),
        "POST /v1/users/{user}/memories/search": .key(.admin, rateLimited: true),
        "GET /v1/users/{user}/export": .key(.admin, rateLimited: true),
        "DELETE /v1/users/{user}": .key(.admin, rateLimited: true),
        "GET /v1/users/{user}/consent": .key(.admin, rateLimited: true),
        "PUT /v1/users/{user}/consent": .key(.admin, rateLimited: true),
        "GET /v1/memories/{id}": .key(.admin, rateLimited: true),
        "PATCH /v1/memories/{id}": .key(.admin, rateLimited: true),
        "DELETE /v1/memories/{id}": .key(.admin, rateLimited: true),
        "GET /v1/audit": .key(.admin, rateLimited: true),
    ]

    /// A second tenant ("acme") with keys of both scopes, a revoked key of each, and a stored webhook secret.
    struct OtherTenant {
        let tool: String
        let admin: String
        let revokedTool: String
        let revokedAdmin: String
        let webhookSecret = "wsec_acme_\(UUID().uuidString)"

        func key(_ scope: APIKeyRecord.Scope) -> String { scope == .tool ? tool : admin }
        func revoked(_ scope: APIKeyRecord.Scope) -> String { scope == .tool ? revokedTool : revokedAdmin }
    }

    struct Gateway {
        let env: TestEnvironment
        let metricsKey: String
        let acme: OtherTenant
        let vault: MemoryVault

        func envKey(_ scope: APIKeyRecord.Scope) -> String { scope == .tool ? env.apiKey : env.adminKey }

        /// A fresh key of `scope` for acme (a rate-limit bucket of its own).
        func freshKey(_ scope: APIKeyRecord.Scope) async throws -> String {
            try await insertKey(scope, tenant: "acme", store: vault.store)
        }
    }

    static func insertKey(_ scope: APIKeyRecord.Scope, tenant: String, store: any MemoryStore, revoked: Bool = false) async throws -> String {
        let key = "k_\(scope.rawValue)_\(UUID().uuidString)"
        let id = "key_\(UUID().uuidString.prefix(12))"
        let hash = Data(SHA256.hash(data: Data(key.utf8)))
        try await store.insertAPIKey(APIKeyRecord(id: id, tenant: tenant, scope: scope, keyHash: hash, createdAt: Date()))
        if revoked { #expect(try await store.revokeAPIKey(tenant: tenant, id: id, at: Date())) }
        return key
    }

    /// The production router (`buildGateway`) behind the router test client, its routes as "METHOD /path", and acme set up.
    func withGateway(
        configure: (inout EngramConfiguration) -> Void = { _ in },
        _ body: @Sendable (any TestClientProtocol, _ routes: [String], Gateway) async throws -> Void
    ) async throws {
        let env = try TestEnvironment()
        let metricsKey = "emk_test_\(UUID().uuidString)"
        var configuration = env.configuration()
        configuration.metricsKey = metricsKey
        configuration.rateLimitPerMinute = 100_000
        configuration.rateLimitBurst = 100_000
        configure(&configuration)
        let (router, services) = try await buildGateway(configuration: configuration, logger: testLogger)
        let keyRing = KeyRing(master: env.masterKey)
        let vault = MemoryVault(store: try await env.openStore(), keyRing: keyRing, embedder: LocalEmbedder())
        _ = try #require(try await vault.tenant("acme", create: true))
        let acme = OtherTenant(
            tool: try await Self.insertKey(.tool, tenant: "acme", store: vault.store),
            admin: try await Self.insertKey(.admin, tenant: "acme", store: vault.store),
            revokedTool: try await Self.insertKey(.tool, tenant: "acme", store: vault.store, revoked: true),
            revokedAdmin: try await Self.insertKey(.admin, tenant: "acme", store: vault.store, revoked: true))
        let wrapped = try keyRing.wrap(Data(acme.webhookSecret.utf8), context: "webhook:acme")
        try await vault.store.setTenantWebhookSecrets(tenant: "acme", current: wrapped.wrapped, previous: nil, keyID: wrapped.keyID)
        let gateway = Gateway(env: env, metricsKey: metricsKey, acme: acme, vault: vault)
        let routes = router.routes.map(\.description)
        try await Application(router: router, services: services, logger: testLogger).test(.router) { client in
            try await body(client, routes, gateway)
        }
        await env.cleanUp()
    }

    /// A concrete URI for a route template (`{user}`: a phone number; `{id}`: a memory nobody has).
    static func uri(_ path: String, tenant: String = "acme") -> String {
        path.replacingOccurrences(of: "{user}", with: "%2B12523960448")
            .replacingOccurrences(of: "{id}", with: "mem_nobody")
            .replacingOccurrences(of: "{tenant}", with: tenant)
    }

    static func split(_ route: String) -> (method: HTTPRequest.Method, path: String) {
        let parts = route.split(separator: " ", maxSplits: 1).map(String.init)
        return (HTTPRequest.Method(rawValue: parts[0])!, parts[1])
    }

    static func headers(authorization: String?) -> HTTPFields {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if let authorization { headers[.authorization] = authorization }
        return headers
    }

    /// Status, WWW-Authenticate and the error object of an answer, as one comparable string.
    static func answer(_ response: TestResponse) -> String {
        let error = (response.body.json["error"] as? [String: String])?.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } ?? []
        return "\(response.status.code) \(response.headers[.wwwAuthenticate] ?? "-") \(error)"
    }

    /// A 401 `unauthorized` with its message, as `answer` writes it.
    static func refused(_ message: String) -> String { "401 Bearer [\"code=unauthorized\", \"message=\(message)\"]" }

    static let refusedKey = refused("missing or invalid credentials")

    @Test("every route of the router has a declared access, and every declared route exists")
    func everyRouteIsDeclared() async throws {
        try await withGateway { _, routes, _ in
            let actual = Set(routes)
            let undeclared = actual.subtracting(Self.routes.keys)
            let missing = Set(Self.routes.keys).subtracting(actual)
            #expect(undeclared.isEmpty, "routes without a declared access (declare them in RouteAccessTests.routes): \(undeclared.sorted())")
            #expect(missing.isEmpty, "declared routes the router does not have: \(missing.sorted())")
        }
    }

    @Test("every key route refuses no key, a wrong key, a revoked key and the other scope's keys with the same 401; its own scope gets in")
    func keyRoutesRefuseWrongCredentials() async throws {
        try await withGateway { client, _, g in
            for (route, access) in Self.routes.sorted(by: { $0.key < $1.key }) {
                guard case .key(let scope, _) = access else { continue }
                let (method, path) = Self.split(route)
                let other: APIKeyRecord.Scope = scope == .tool ? .admin : .tool
                let refused: [(String, String?)] = [
                    ("no key", nil),
                    ("an empty bearer", "Bearer "),
                    ("not a bearer", "Basic \(g.envKey(scope))"),
                    ("an unknown key", "Bearer k_\(UUID().uuidString)"),
                    ("a key over 512 bytes", "Bearer " + String(repeating: "k", count: 600)),
                    ("the environment's \(other.rawValue) key", "Bearer \(g.envKey(other))"),
                    ("another tenant's \(other.rawValue) key", "Bearer \(g.acme.key(other))"),
                    ("a revoked \(scope.rawValue) key", "Bearer \(g.acme.revoked(scope))"),
                ]
                for (what, authorization) in refused {
                    let headers = Self.headers(authorization: authorization)
                    let answer = try await client.execute(uri: Self.uri(path), method: method, headers: headers) { Self.answer($0) }
                    #expect(answer == Self.refusedKey, "\(route) with \(what)")
                }
                // Its own scope gets through authentication, for the default tenant and another
                // one (which then only sees its own callers: PrivacyTests.tenantIsolation).
                for (what, key) in [("the environment's", g.envKey(scope)), ("another tenant's", g.acme.key(scope))] {
                    let headers = Self.headers(authorization: "Bearer \(key)")
                    let status = try await client.execute(uri: Self.uri(path), method: method, headers: headers) { $0.status }
                    #expect(status != .unauthorized, "\(route) with \(what) \(scope.rawValue) key")
                    #expect(status.code < 500, "\(route) with \(what) \(scope.rawValue) key: \(status)")
                }
            }
        }
    }

    @Test("routes of rate-limited groups answer 429 to a key over its budget; pre-call and the LLM proxy never do")
    func rateLimitedGroups() async throws {
        // One request a minute, no burst: a key's second request is over its budget.
        try await withGateway(configure: {
            $0.rateLimitPerMinute = 1
            $0.rateLimitBurst = 0
        }) { client, _, g in
            for (route, access) in Self.routes.sorted(by: { $0.key < $1.key }) {
                guard case .key(let scope, let rateLimited) = access else { continue }
                let (method, path) = Self.split(route)
                let key = try await g.freshKey(scope)
                var statuses: [HTTPResponse.Status] = []
                let headers = Self.headers(authorization: "Bearer \(key)")
                for _ in 0..<2 {
                    statuses.append(
                        try await client.execute(uri: Self.uri(path), method: method, headers: headers) { response in
                            if response.status == .tooManyRequests {
                                #expect(response.headers[.retryAfter] != nil, "\(route)")
                                #expect((response.body.json["error"] as? [String: Any])?["code"] as? String == "rate_limited", "\(route)")
                            }
                            return response.status
                        })
                }
                #expect(statuses[0] != .tooManyRequests, "\(route): a key's first request")
                #expect((statuses[1] == .tooManyRequests) == rateLimited, "\(route): a key's second request answered \(statuses[1])")
            }
        }
    }

    @Test("every webhook route refuses a missing, malformed or wrong signature and another tenant's secret; an unknown tenant gets the same")
    func webhookRoutesRefuseWrongSignatures() async throws {
        try await withGateway { client, _, g in
            let body = try fixtureTranscript()
            func post(_ uri: String, signature: String?) async throws -> String {
                var headers = Self.headers(authorization: nil)
                if let signature { headers[HTTPField.Name("ElevenLabs-Signature")!] = signature }
                return try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(data: body)) { Self.answer($0) }
            }
            let mismatch = Self.refused("signature does not match")
            let missing = Self.refused("missing ElevenLabs-Signature header")
            let malformed = Self.refused("malformed ElevenLabs-Signature header")
            for (route, access) in Self.routes.sorted(by: { $0.key < $1.key }) where access == .webhookSignature {
                let (method, path) = Self.split(route)
                #expect(method == .post)
                let tenantPath = path.contains("{tenant}")
                let uri = Self.uri(path)
                // The tenant's own secret, and the one of the other tenant (default ↔ acme).
                let (own, others) = tenantPath ? (g.acme.webhookSecret, g.env.webhookSecret) : (g.env.webhookSecret, g.acme.webhookSecret)
                #expect(try await post(uri, signature: nil) == missing, "\(route)")
                #expect(try await post(uri, signature: "v0=abc") == malformed, "\(route)")
                #expect(try await post(uri, signature: signedHeader(body, secret: "wsec_wrong")) == mismatch, "\(route) with a wrong secret")
                #expect(try await post(uri, signature: signedHeader(body, secret: others)) == mismatch, "\(route) with another tenant's secret")
                if tenantPath {
                    for unknown in ["nosuchtenant", String(repeating: "x", count: 65)] {
                        let answer = try await post(Self.uri(path, tenant: unknown), signature: signedHeader(body, secret: own))
                        #expect(answer == mismatch, "\(route) for an unknown tenant")
                    }
                }
                let signed = postCallHeaders(body, secret: own)
                let accepted = try await client.execute(uri: uri, method: .post, headers: signed, body: ByteBuffer(data: body)) { $0.status }
                #expect(accepted == .ok, "\(route) with its tenant's secret")
            }
        }
    }

    @Test("open routes answer without a key; the public metrics route wants its own key")
    func openAndMetricsRoutes() async throws {
        try await withGateway { client, _, g in
            for (route, access) in Self.routes.sorted(by: { $0.key < $1.key }) {
                let (method, path) = Self.split(route)
                switch access {
                case .open:
                    let status = try await client.execute(uri: path, method: method) { $0.status }
                    #expect(status != .unauthorized, "\(route)")
                case .metricsKey:
                    for authorization in [nil, "Bearer \(g.env.apiKey)", "Bearer \(g.env.adminKey)", "Bearer wrong"] {
                        let headers = Self.headers(authorization: authorization)
                        let status = try await client.execute(uri: path, method: method, headers: headers) { $0.status }
                        #expect(status == .unauthorized, "\(route) with \(authorization == nil ? "no key" : "a wrong key")")
                    }
                    let headers = Self.headers(authorization: "Bearer \(g.metricsKey)")
                    let status = try await client.execute(uri: path, method: method, headers: headers) { $0.status }
                    #expect(status == .ok, "\(route) with the metrics key")
                default:
                    continue
                }
            }
        }
    }

    @Test("without a metrics key the public port has no /metrics route (404)")
    func noMetricsKeyNoRoute() async throws {
        try await withGateway(configure: { $0.metricsKey = nil }) { client, routes, g in
            #expect(!routes.contains("GET /metrics"))
            for authorization in [nil, "Bearer \(g.metricsKey)", "Bearer \(g.env.adminKey)"] {
                let status = try await client.execute(uri: "/metrics", method: .get, headers: Self.headers(authorization: authorization)) {
                    $0.status
                }
                #expect(status == .notFound)
            }
        }
    }

    @Test("a route grouped without its authentication middleware is refused, never served")
    func groupWithoutMiddlewareRefuses() async throws {
        let router = Router(context: GatewayRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        router.group(context: AuthenticatedRequestContext.self).get("/unguarded/key") { _, context in context.caller.tenant.id }
        router.group(context: WebhookRequestContext.self).post("/unguarded/webhook") { _, context in context.webhook.tenant.id }
        try await Application(router: router, logger: testLogger).test(.router) { client in
            try await client.execute(uri: "/unguarded/key", method: .get) { response in
                #expect(Self.answer(response) == Self.refusedKey)
            }
            try await client.execute(uri: "/unguarded/webhook", method: .post) { response in
                #expect(Self.answer(response) == Self.refused("signature does not match"))
            }
        }
    }
}
