import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// No tenant enumeration on the post-call URL, against the real gateway process: an unknown
/// tenant, a tenant without a webhook secret and an existing tenant with a wrong signature get
/// byte-identical answers after the same steps (one tenant read, one secrets read, two unwraps),
/// as `engram_postcall_tenant_steps_total` on the gateway's own metrics port counts them. The
/// steps, not the time, are asserted: the time is measured by `scripts/bench-tenant-timing.sh`.
@Suite("Post-call tenant lookup: the same answer after the same steps for unknown and known tenants", .timeLimit(.minutes(1)))
struct PostCallTenantLookupTests {
    static let steps = ["tenant_read", "secrets_read", "unwrap"]

    func scrapeSteps(_ url: String) async throws -> [String: Double] {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
        let text = String(buffer: try await response.body.collect(upTo: 4 << 20))
        var values: [String: Double] = [:]
        for step in Self.steps {
            let prefix = "engram_postcall_tenant_steps_total{step=\"\(step)\"} "
            values[step] = text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) } ?? 0
        }
        return values
    }

    /// Posts `body` signed with `secret` to the tenant's URL: the status, the headers that matter and the body bytes.
    func post(port: Int, tenant: String, body: Data, secret: String) async throws -> String {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/elevenlabs/\(tenant)/post-call")
        request.method = .POST
        request.headers.add(name: "ElevenLabs-Signature", value: signedHeader(body, secret: secret))
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let answer = String(buffer: try await response.body.collect(upTo: 1 << 20))
        let headers = ["content-type", "www-authenticate", "content-length"].map { "\($0)=\(response.headers[$0].joined(separator: ","))" }
        return "\(response.status.code) \(headers.joined(separator: " ")) \(answer)"
    }

    @Test(
        "unknown tenant, tenant without secret, wrong signature: byte-identical 401s after one tenant read, one secrets read and two unwraps",
        arguments: Backend.available)
    func sameStepsSameAnswer(backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let port = try freePort()
        let environment = serviceEnvironment(env, port: port)
        let acmeSecret = "wsec_acme_" + UUID().uuidString
        for arguments in [["tenant", "create", "acme"], ["tenant", "create", "quiet"]] {
            let run = try await runEngram(arguments, environment: environment, directory: env.directory)
            #expect(run.status == 0, "stderr: \(run.stderr)")
        }
        let stored = try await runEngram(
            ["tenant", "set-webhook-secret", "acme"], environment: environment, directory: env.directory, input: acmeSecret + "\n")
        #expect(stored.status == 0, "stderr: \(stored.stderr)")

        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        do {
            try await waitForGatewayReady(port: port)
            let metrics = "http://127.0.0.1:\(environment["ENGRAM_GATEWAY_METRICS_PORT"]!)/metrics"
            let body = try fixtureTranscript()
            let expectedSteps: [String: Double] = ["tenant_read": 1, "secrets_read": 1, "unwrap": 2]
            var answers: [String: String] = [:]
            for (tenant, secret) in [
                ("acme", "wsec_wrong_0123456789"), ("nosuchtenant", "wsec_wrong_0123456789"), ("quiet", "wsec_wrong_0123456789"),
                ("nosuchtenant", env.webhookSecret), ("quiet", env.webhookSecret),
            ] {
                let before = try await scrapeSteps(metrics)
                let answer = try await post(port: port, tenant: tenant, body: body, secret: secret)
                let after = try await scrapeSteps(metrics)
                let steps = Dictionary(uniqueKeysWithValues: Self.steps.map { ($0, after[$0, default: 0] - before[$0, default: 0]) })
                #expect(steps == expectedSteps, "\(tenant): \(steps)")
                #expect(answer.hasPrefix("401 "), "\(tenant): \(answer)")
                answers["\(tenant) \(secret == env.webhookSecret ? "environment secret" : "wrong secret")"] = answer
            }
            #expect(Set(answers.values).count == 1, "\(answers)")

            // The right secret still works, after the same steps.
            let before = try await scrapeSteps(metrics)
            let accepted = try await post(port: port, tenant: "acme", body: body, secret: acmeSecret)
            let after = try await scrapeSteps(metrics)
            #expect(accepted.hasPrefix("200 "), "\(accepted)")
            #expect(Self.steps.map { after[$0, default: 0] - before[$0, default: 0] } == [1, 1, 2])
        } catch {
            Issue.record("gateway log: \(gateway.output.suffix(2000))")
            _ = await gateway.terminate()
            await env.cleanUp()
            throw error
        }
        _ = await gateway.terminate()
        await env.cleanUp()
    }
}
