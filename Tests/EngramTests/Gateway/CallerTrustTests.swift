import Crypto
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore
@testable import Gateway
@testable import Worker

/// Issue 11 §4: a client-supplied `user_id` must not outrank the phone number unless the tenant
/// trusts its clients' ids (`engram tenant trust-client-ids`).
@Suite("Client-supplied caller ids and the tenant's trust setting", .timeLimit(.minutes(3)))
struct CallerTrustTests {
    let phone = "+14155550141"

    @Test("the rule: phone first unless trusted; a client id alone is used either way", .timeLimit(.minutes(1)))
    func rule() {
        let both: [String?] = ["ext:victim"]
        #expect(CallerResolution.resolve(clientIDs: both, phone: phone, trustClientIDs: false) == .phone(phone))
        #expect(CallerResolution.resolve(clientIDs: both, phone: phone, trustClientIDs: true) == .external("ext:victim"))
        #expect(CallerResolution.resolve(clientIDs: both, phone: nil, trustClientIDs: false) == .external("ext:victim"))
        #expect(CallerResolution.resolve(clientIDs: both, phone: "anonymous", trustClientIDs: false) == .external("ext:victim"))
        #expect(CallerResolution.resolve(clientIDs: [nil, "  "], phone: nil, trustClientIDs: true) == nil)
        #expect(CallerResolution.candidates(clientIDs: both, phone: phone) == [.external("ext:victim"), .phone(phone)])
    }

    @Test("the setting is stored with the tenant, off by default, on every backend", .timeLimit(.minutes(1)), arguments: Backend.available)
    func stored(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let store = try await env.openStore()
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        _ = try await vault.tenant("acme", create: true)
        #expect(try await store.tenant(id: "acme")?.trustClientUserIDs == false)
        try await store.setTrustClientUserIDs(tenant: "acme", trusted: true)
        #expect(try await store.tenant(id: "acme")?.trustClientUserIDs == true)
        try await store.setTrustClientUserIDs(tenant: "acme", trusted: false)
        #expect(try await store.tenant(id: "acme")?.trustClientUserIDs == false)
        await #expect(throws: StoreError.self) { try await store.setTrustClientUserIDs(tenant: "nobody", trusted: true) }
        await env.cleanUp()
    }

    @Test("pre-call: an ext: id sent with a phone number cannot pick the profile unless the tenant trusts it", .timeLimit(.minutes(1)))
    func precall() async throws {
        let env = try TestEnvironment()
        let configuration = env.configuration()
        let worker = try await buildWorker(configuration: configuration, logger: testLogger)
        let app = try await buildApplication(configuration: configuration, logger: testLogger)
        let tenant = try #require(try await worker.vault.tenant("acme", create: true))
        let key = "k_tool_\(UUID().uuidString)"
        try await worker.vault.store.insertAPIKey(
            APIKeyRecord(
                id: "key_\(UUID().uuidString.prefix(8))", tenant: "acme", scope: .tool, keyHash: Data(SHA256.hash(data: Data(key.utf8))),
                createdAt: Date()))
        let phoneKey = tenant.userKeys.key(for: .phone(phone)).rawValue
        let victimKey = tenant.userKeys.key(for: .external("ext:victim")).rawValue
        try await app.test(.router) { client in
            func answer(_ body: [String: String]) async throws -> String? {
                try await client.execute(
                    uri: "/v1/elevenlabs/conversation-init", method: .post, headers: bearer(key),
                    body: ByteBuffer(data: try JSONSerialization.data(withJSONObject: body))
                ) { $0.body.json["user_id"] as? String }
            }
            #expect(try await answer(["caller_id": phone, "user_id": "ext:victim"]) == phoneKey)
            #expect(try await answer(["user_id": "ext:victim"]) == victimKey)
            try await worker.vault.store.setTrustClientUserIDs(tenant: "acme", trusted: true)
            #expect(try await answer(["caller_id": phone, "user_id": "ext:victim"]) == victimKey)
        }
        await env.cleanUp()
    }

    @Test(
        "post-call: data.user_id does not move a phone caller's memories into another profile by default; the envelope carries both tags",
        .timeLimit(.minutes(1)))
    func postCall() async throws {
        let env = try TestEnvironment()
        let configuration = env.configuration()
        let worker = try await buildWorker(configuration: configuration, logger: testLogger)
        let app = try await buildApplication(configuration: configuration, logger: testLogger)
        let body = try fixtureTranscript(phone: phone) { object in
            var data = object["data"] as! [String: Any]
            data["user_id"] = "ext:victim"
            object["data"] = data
        }
        try await app.test(.router) { client in
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(body, secret: env.webhookSecret),
                body: ByteBuffer(data: body)
            ) {
                #expect($0.status == .ok)
            }
        }
        let tenant = try #require(try await worker.vault.tenant("default"))
        let phoneUser = tenant.userKeys.key(for: .phone(phone))
        let victim = tenant.userKeys.key(for: .external("ext:victim"))
        let queued = try #require(try await env.queue().peek(1).first)
        let keyRing = worker.vault.keyRing
        #expect(
            Set(queued.userTags ?? []) == [keyRing.userTag(tenant: "default", user: phoneUser), keyRing.userTag(tenant: "default", user: victim)])
        try await worker.drain()
        #expect(try await worker.vault.memories(tenant: "default", user: phoneUser).count > 0)
        #expect(try await worker.vault.memories(tenant: "default", user: victim).isEmpty)
        await env.cleanUp()
    }
}
