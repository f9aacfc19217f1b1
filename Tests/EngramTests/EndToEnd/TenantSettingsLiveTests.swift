import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders

/// A tenant setting changed with the `engram` CLI while the gateway runs reaches it without a
/// restart, for the default tenant (the environment's keys, held since the start and re-read at
/// most a second after the last read: `RecentValue`) as for a tenant with stored keys (read per
/// request): trust of client ids on the pre-call route, the consent mode on the management API,
/// and a webhook secret stored for the default tenant. Real gateway process, real CLI; polled
/// with a deadline.
@Suite("Tenant settings changed with the CLI reach a running gateway", .timeLimit(.minutes(1)))
struct TenantSettingsLiveTests {
    static let phone = "+14155550123"

    func send(_ url: String, method: HTTPMethod = .GET, key: String, body: [String: String]? = nil) async throws -> (UInt, [String: Any]) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(key)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: body)))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let data = Data(buffer: try await response.body.collect(upTo: 1 << 20))
        return (response.status.code, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
    }

    @Test(
        "trust-client-ids, consent mode and a stored webhook secret of the default tenant (and trust of another) apply without a restart",
        arguments: Backend.available)
    func settingsApplyWithoutRestart(backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let port = try freePort()
        var environment = serviceEnvironment(env, port: port)
        environment["ENGRAM_ADMIN_KEY"] = env.adminKey
        // Polling must never meet the rate limit (over it, a pre-call goes on without the caller).
        environment["ENGRAM_RATE_LIMIT_PER_MINUTE"] = "100000"
        environment["ENGRAM_RATE_LIMIT_BURST"] = "10000"
        // Another tenant with its own tool key (`engram tenant create` prints it once).
        let created = try await runEngram(["tenant", "create", "acme"], environment: environment, directory: env.directory)
        #expect(created.status == 0, "stderr: \(created.stderr)")
        let acmeKey = try #require(
            (try JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any])?["api_key"] as? String)

        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        let store = try await env.openStore()
        do {
            try await waitForGatewayReady(port: port)
            let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
            let base = "http://127.0.0.1:\(port)"

            // Pre-call: whose profile a caller id sent with a phone number picks, as each setting says.
            for (tenant, key) in [("default", env.apiKey), ("acme", acmeKey)] {
                let context = try #require(try await vault.tenant(tenant))
                let phoneKey = context.userKeys.key(for: .phone(Self.phone)).rawValue
                let victimKey = context.userKeys.key(for: .external("ext:victim")).rawValue
                func profile() async throws -> String? {
                    let (status, json) = try await send(
                        "\(base)/v1/elevenlabs/conversation-init", method: .POST, key: key, body: ["caller_id": Self.phone, "user_id": "ext:victim"])
                    #expect(status == 200)
                    return json["user_id"] as? String
                }
                #expect(try await profile() == phoneKey, "\(tenant): the phone number decides by default")
                for (setting, expected) in [("on", victimKey), ("off", phoneKey)] {
                    let run = try await runEngram(
                        ["tenant", "trust-client-ids", tenant, setting], environment: environment, directory: env.directory)
                    #expect(run.status == 0, "stderr: \(run.stderr)")
                    try await waitUntil(timeout: .seconds(15), "\(tenant): trust-client-ids \(setting) reaches the gateway") {
                        try await profile() == expected
                    }
                }
            }

            // Management API with the environment's admin key: the default tenant's consent mode.
            func mode() async throws -> String? { try await send("\(base)/v1/users/ext:someone/consent", key: env.adminKey).1["mode"] as? String }
            #expect(try await mode() == "implicit")
            let consent = try await runEngram(
                ["tenant", "set-consent-mode", "default", "explicit"], environment: environment, directory: env.directory)
            #expect(consent.status == 0, "stderr: \(consent.stderr)")
            try await waitUntil(timeout: .seconds(15), "the consent mode reaches the gateway") { try await mode() == "explicit" }

            // A webhook secret stored for the default tenant after the start: accepted on the post-call path.
            let secret = "wsec_default_" + UUID().uuidString
            func postCall() async throws -> UInt {
                let body = try fixtureTranscript()
                var request = HTTPClientRequest(url: "\(base)/v1/elevenlabs/post-call")
                request.method = .POST
                request.headers.add(name: "ElevenLabs-Signature", value: signedHeader(body, secret: secret))
                request.body = .bytes(ByteBuffer(bytes: body))
                return try await HTTPClient.shared.execute(request, timeout: .seconds(10)).status.code
            }
            #expect(try await postCall() == 401, "not stored yet")
            let stored = try await runEngram(
                ["tenant", "set-webhook-secret", "default"], environment: environment, directory: env.directory, input: secret + "\n")
            #expect(stored.status == 0, "stderr: \(stored.stderr)")
            try await waitUntil(timeout: .seconds(15), "the stored secret reaches the gateway") { try await postCall() == 200 }
        } catch {
            Issue.record("gateway log: \(gateway.output.suffix(2000))")
            _ = await gateway.terminate()
            await store.close()
            await env.cleanUp()
            throw error
        }
        _ = await gateway.terminate()
        await store.close()
        await env.cleanUp()
    }
}
