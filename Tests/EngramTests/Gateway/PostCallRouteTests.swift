import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramObservability
@testable import EngramQueue
@testable import Gateway

@Suite("POST /v1/elevenlabs/post-call", .timeLimit(.minutes(3)))
struct PostCallRouteTests {
    func withGateway(
        _ configure: (inout EngramConfiguration) -> Void = { _ in }, clock: WallClock = .system,
        _ body: @Sendable (any TestClientProtocol, TestEnvironment) async throws -> Void
    ) async throws {
        let env = try TestEnvironment()
        var configuration = env.configuration()
        configure(&configuration)
        let app = try await buildApplication(configuration: configuration, clock: clock, logger: testLogger)
        try await app.test(.router) { client in try await body(client, env) }
        await env.cleanUp()
    }

    func pending(_ env: TestEnvironment) async throws -> Int { try await env.queue().stats().pending }

    @Test("a signed transcript is accepted with 200 and queued once")
    func accepted() async throws {
        try await withGateway { client, env in
            let body = try fixtureTranscript()
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(body, secret: env.webhookSecret),
                body: ByteBuffer(data: body)
            ) { response in
                #expect(response.status == .ok)
                #expect(response.body.json["status"] as? String == "accepted")
            }
            #expect(try await pending(env) == 1)
            // ElevenLabs' byte-identical retry: 200 again, nothing new queued.
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(body, secret: env.webhookSecret),
                body: ByteBuffer(data: body)
            ) { response in
                #expect(response.status == .ok)
            }
            #expect(try await pending(env) == 1)
        }
    }

    @Test("the queued envelope is encrypted: no transcript text or phone number in Redis")
    func envelopeEncrypted() async throws {
        try await withGateway { client, env in
            let body = try fixtureTranscript()
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(body, secret: env.webhookSecret),
                body: ByteBuffer(data: body)
            ) { #expect($0.status == .ok) }
            let raw = try await env.redisClient().command("LRANGE", RedisArgument(env.keys.events), "0", "-1")
            let text = (raw.array ?? []).compactMap { $0.data.map { String(decoding: $0, as: UTF8.self) } }.joined()
            #expect(!text.isEmpty)
            #expect(!text.contains("Friday"))
            #expect(!text.contains("2523960448"))
        }
    }

    @Test("bad signatures get 401 and queue nothing", arguments: ["wrong", "tampered", "missing", "stale", "future"])
    func badSignature(_ kind: String) async throws {
        try await withGateway { client, env in
            let body = try fixtureTranscript()
            var headers = postCallHeaders(body, secret: env.webhookSecret)
            var sent = body
            switch kind {
            case "wrong": headers = postCallHeaders(body, secret: "wsec_not_it")
            case "tampered": sent = body + Data(" ".utf8)
            case "missing": headers[HTTPField.Name("ElevenLabs-Signature")!] = nil
            case "stale": headers = postCallHeaders(body, secret: env.webhookSecret, at: Date().addingTimeInterval(-31 * 60))
            default: headers = postCallHeaders(body, secret: env.webhookSecret, at: Date().addingTimeInterval(6 * 60))
            }
            try await client.execute(uri: "/v1/elevenlabs/post-call", method: .post, headers: headers, body: ByteBuffer(data: sent)) { response in
                #expect(response.status == .unauthorized)
                let error = response.body.json["error"] as? [String: Any]
                #expect(
                    error?["code"] as? String == (kind == "stale" ? "timestamp_expired" : kind == "future" ? "timestamp_in_future" : "unauthorized"))
            }
            #expect(try await pending(env) == 0)
        }
    }

    @Test("malformed JSON after a valid signature is 400")
    func malformed() async throws {
        try await withGateway { client, env in
            for body in [
                Data("{not json".utf8), Data("[1,2]".utf8), Data(#"{"data":{}}"#.utf8), Data(#"{"type":"post_call_transcription","data":{}}"#.utf8),
            ] {
                try await client.execute(
                    uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(body, secret: env.webhookSecret),
                    body: ByteBuffer(data: body)
                ) { response in
                    #expect(response.status == .badRequest)
                    #expect((response.body.json["error"] as? [String: Any])?["code"] != nil)
                }
            }
            #expect(try await pending(env) == 0)
        }
    }

    @Test("unknown event types and small audio are acknowledged and ignored")
    func unknownType() async throws {
        try await withGateway { client, env in
            for body in [
                Data(#"{"type":"post_call_something_new","event_timestamp":1,"data":{"conversation_id":"c"}}"#.utf8),
                try Fixtures.elevenLabs("post_call_audio.json"),
            ] {
                try await client.execute(
                    uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(body, secret: env.webhookSecret),
                    body: ByteBuffer(data: body)
                ) { #expect($0.status == .ok) }
            }
            #expect(try await pending(env) == 0)
        }
    }

    @Test("an oversized audio webhook with a valid signature is 200 and dropped; any other oversized body is 413")
    func oversize() async throws {
        try await withGateway({ $0.maxBodyBytes = 4096 }) { client, env in
            let audio =
                Data(#"{"type":"post_call_audio","event_timestamp":1,"data":{"conversation_id":"c","full_audio":""#.utf8)
                + Data(String(repeating: "QUFB", count: 4000).utf8) + Data(#""}}"#.utf8)
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(audio, secret: env.webhookSecret),
                body: ByteBuffer(data: audio)
            ) { #expect($0.status == .ok) }
            let big = try fixtureTranscript { object in
                var data = object["data"] as! [String: Any]
                data["padding"] = String(repeating: "x", count: 8000)
                object["data"] = data
            }
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(big, secret: env.webhookSecret), body: ByteBuffer(data: big)
            ) { response in
                #expect(response.status == .contentTooLarge)
            }
            // An oversized body with a bad signature is refused as unauthorized, audio or not.
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(audio, secret: "wsec_wrong"), body: ByteBuffer(data: audio)
            ) { #expect($0.status == .unauthorized) }
            #expect(try await pending(env) == 0)
        }
    }

    @Test(
        "/metrics on the public port, with ENGRAM_METRICS_KEY, exposes request, acknowledgement and spool series after a small run; without the key it is 401"
    )
    func metrics() async throws {
        MetricsExport.bootstrap()
        let metricsKey = "metrics-key-0123456789"
        try await withGateway({ $0.metricsKey = metricsKey }) { client, env in
            let body = try fixtureTranscript()
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(body, secret: env.webhookSecret),
                body: ByteBuffer(data: body)
            ) { #expect($0.status == .ok) }
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(metricsKey)"]) { response in
                let text = String(buffer: response.body)
                #expect(text.contains("engram_http_requests_total"))
                #expect(text.contains(#"route="/v1/elevenlabs/post-call""#))
                #expect(text.contains("engram_postcall_ack_seconds_bucket"))
                #expect(text.contains("engram_spool_depth"))
                #expect(!text.contains("2523960448"))
                #expect(!text.contains(#"route="/metrics""#), "scrapes are not counted as requests")
            }
        }
        // Without a metrics key the public port has no /metrics at all.
        try await withGateway { client, _ in
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .notFound) }
        }
    }

    @Test("liveness and readiness answer")
    func health() async throws {
        try await withGateway { client, _ in
            try await client.execute(uri: "/health/live", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/health/ready", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.body.json["redis"] as? String == "ok")
            }
        }
    }
}
