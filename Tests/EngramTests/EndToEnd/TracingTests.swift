import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramObservability

/// OTLP/HTTP tracing through the real executables: one trace from the webhook request, through
/// the Redis envelope, to the worker's LLM call and store write; and nothing at all when off.
@Suite("Traces over OTLP/HTTP", .timeLimit(.minutes(3)))
struct TracingTests {
    /// Everything a span must never carry: the fixture's number (any form), words of its
    /// transcript, the webhook secret, the keys.
    func forbiddenText(_ env: TestEnvironment) -> [String] {
        ["2523960448", "Friday slot", env.webhookSecret, env.apiKey, env.adminKey, env.masterKey.base64, "sk-test-otel"]
    }

    /// Starts a gateway and a worker with `extra` on top of the test environment, and waits
    /// until the gateway is ready.
    func startServices(_ env: TestEnvironment, extra: [String: String]) async throws -> (port: Int, gateway: ServiceProcess, worker: ServiceProcess) {
        let port = try freePort()
        let environment = serviceEnvironment(env, port: port).merging(extra, uniquingKeysWith: { $1 })
        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
        do {
            try await waitForGatewayReady(port: port)
        } catch {
            gateway.kill9()
            worker.kill9()
            throw error
        }
        return (port, gateway, worker)
    }

    @Test(
        "a signed post-call is one trace: the gateway's request and enqueue spans, then the worker's process, extract (LLM client span), embed and store write spans, with no caller data on any of them"
    )
    func postCallIsOneTrace() async throws {
        let env = try TestEnvironment()
        let collector = try await FakeOTLPCollector.start()
        let openAI = try await FakeOpenAIServer.start(embeddingDimension: 8)
        let (port, gateway, worker) = try await startServices(
            env,
            extra: [
                "ENGRAM_OTEL_ENDPOINT": collector.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "100",  // export within 100 ms instead of 5 s
                "OPENAI_API_KEY": "sk-test-otel",
                "ENGRAM_LLM_BASE_URL": openAI.baseURL,
                "ENGRAM_EXTRACTOR": "openai",
                "ENGRAM_EMBEDDER": "openai",
                "ENGRAM_EMBEDDING_DIMENSIONS": "8",
                "ENGRAM_ADMIN_KEY": env.adminKey,
            ])
        defer {
            gateway.kill9()
            worker.kill9()
        }

        try await postFixtureAndWaitForMemories(env, port: port)
        // A management read whose path and query hold the caller's number, with a malformed
        // traceparent: swift-otel's warning about it must not dump the headers (the admin key).
        var read = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/users/%2B12523960448/memories?limit=5&q=2523960448")
        read.headers.add(name: "Authorization", value: "Bearer \(env.adminKey)")
        read.headers.add(name: "traceparent", value: "not-a-traceparent")
        #expect(try await HTTPClient.shared.execute(read, timeout: .seconds(5)).status == .ok)
        try await waitUntil(timeout: .seconds(10), "the gateway's and the worker's spans at the collector") {
            let names = Set(collector.spans.map(\.name))
            return names.isSuperset(of: [
                "/v1/elevenlabs/post-call", "enqueue event", "process event", "extract", "embed", "store write", "/v1/users/{user}/memories",
            ])
        }
        #expect(await gateway.terminate() == 0)
        #expect(await worker.terminate() == 0)

        let spans = collector.spans
        #expect(collector.contentTypes.allSatisfy { $0 == "application/x-protobuf" })
        func one(_ name: String, service: String) throws -> FakeOTLPCollector.CollectedSpan {
            let matching = spans.filter { $0.name == name && $0.service == service }
            try #require(matching.count == 1, "exactly one \(name) span of \(service): \(spans)")
            return matching[0]
        }
        let request = try one("/v1/elevenlabs/post-call", service: "engram-gateway")
        let enqueue = try one("enqueue event", service: "engram-gateway")
        let process = try one("process event", service: "engram-worker")
        let extract = try one("extract", service: "engram-worker")
        let chat = try one("POST /chat/completions", service: "engram-worker")
        let embed = try one("embed", service: "engram-worker")
        let store = try one("store write", service: "engram-worker")

        // One trace, parented end to end across the queue.
        let trace = request.traceID
        #expect(trace.count == 32 && trace != String(repeating: "0", count: 32))
        for span in [enqueue, process, extract, chat, embed, store] { #expect(span.traceID == trace, "\(span)") }
        #expect(request.kind == 2 && request.parentSpanID.isEmpty)
        #expect(enqueue.kind == 4 && enqueue.parentSpanID == request.spanID)
        #expect(process.kind == 5 && process.parentSpanID == enqueue.spanID, "the worker's span continues the gateway's")
        #expect(extract.parentSpanID == process.spanID)
        #expect(chat.kind == 3 && chat.parentSpanID == extract.spanID)
        #expect(embed.parentSpanID == process.spanID)
        #expect(store.parentSpanID == process.spanID)
        // Embedding calls are client spans under "embed".
        #expect(spans.contains { $0.name == "POST /embeddings" && $0.kind == 3 && $0.parentSpanID == embed.spanID })

        // Route, status and outcome attributes; the raw path is never recorded.
        #expect(request.attributes["http.route"] == "/v1/elevenlabs/post-call")
        #expect(request.attributes["url.path"] == "/v1/elevenlabs/post-call")
        #expect(request.attributes["http.response.status_code"] == "200")
        #expect(request.attributes["http.request.method"] == "POST")
        #expect(enqueue.attributes["engram.outcome"] == "queued")
        #expect(process.attributes["engram.outcome"] == "stored")
        #expect(process.attributes["engram.tenant"] == "default")
        #expect(process.attributes["messaging.message.id"] == enqueue.attributes["messaging.message.id"])
        #expect(Int(process.attributes["engram.memories.stored"] ?? "") ?? 0 > 0)
        #expect(extract.attributes["engram.extractor"] == "openai:gpt-4o-mini")
        #expect(embed.attributes["engram.embedder"] == "openai:text-embedding-3-small:8")
        #expect(chat.attributes["http.request.method"] == "POST")
        #expect(chat.attributes["http.response.status_code"] == "200")
        #expect(chat.attributes["server.address"] == "127.0.0.1")
        #expect(chat.attributes["url.path"] == "/v1/chat/completions")
        #expect(Int(store.attributes["engram.memories.inserted"] ?? "") ?? 0 > 0)
        #expect(spans.allSatisfy { $0.statusCode != 2 }, "no span failed")
        // The management read is traced by its route template, without its path or query; probes are not traced.
        let management = try one("/v1/users/{user}/memories", service: "engram-gateway")
        #expect(management.attributes["url.path"] == "/v1/users/{user}/memories")
        #expect(management.attributes["url.query"] == nil)
        #expect(management.attributes["http.response.status_code"] == "200")
        #expect(!spans.contains { $0.name.hasPrefix("/health") })

        // Nothing of the caller or the call, and no secret, on any span or anywhere in the export.
        for text in forbiddenText(env) {
            for span in spans { #expect(!span.allText.contains { $0.contains(text) }, "\(span.name) carries \(text)") }
            #expect(!collector.bodies.contains { $0.range(of: Data(text.utf8)) != nil }, "an export carries \(text)")
        }
        // The log lines written inside a span carry its trace id (and still no caller data).
        #expect(gateway.output.contains("\"trace_id\":\"\(trace)\""), "gateway log: \(gateway.output)")
        #expect(worker.output.contains("\"trace_id\":\"\(trace)\""), "worker log: \(worker.output)")
        #expect(gateway.output.contains("Failed to extract span context"))
        for text in forbiddenText(env) { #expect(!gateway.output.contains(text) && !worker.output.contains(text), "a log line carries \(text)") }

        await openAI.stop()
        await collector.stop()
        await env.cleanUp()
    }

    @Test("without ENGRAM_OTEL_ENDPOINT nothing is exported, even with the standard OTEL_ variables set, and the services store the call as before")
    func offByDefault() async throws {
        let env = try TestEnvironment()
        let collector = try await FakeOTLPCollector.start()
        let (port, gateway, worker) = try await startServices(
            env,
            extra: [
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            ])
        defer {
            gateway.kill9()
            worker.kill9()
        }

        try await postFixtureAndWaitForMemories(env, port: port)
        #expect(await gateway.terminate() == 0)
        #expect(await worker.terminate() == 0)
        // The exporters would have flushed at shutdown at the latest.
        try await Task.sleep(for: .milliseconds(300))
        #expect(collector.bodies.isEmpty)
        #expect(!gateway.output.contains("trace_id") && !worker.output.contains("trace_id"))
        await collector.stop()
        await env.cleanUp()
    }

    @Test("ENGRAM_OTEL_SAMPLE_RATIO=0 samples nothing, and the worker follows the gateway's decision")
    func ratioZeroSamplesNothing() async throws {
        let env = try TestEnvironment()
        let collector = try await FakeOTLPCollector.start()
        let (port, gateway, worker) = try await startServices(
            env,
            extra: [
                "ENGRAM_OTEL_ENDPOINT": collector.endpoint,
                "ENGRAM_OTEL_SAMPLE_RATIO": "0",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            ])
        defer {
            gateway.kill9()
            worker.kill9()
        }

        try await postFixtureAndWaitForMemories(env, port: port)
        #expect(await gateway.terminate() == 0)
        #expect(await worker.terminate() == 0)
        try await Task.sleep(for: .milliseconds(300))
        #expect(collector.spans.isEmpty, "\(collector.spans)")
        await collector.stop()
        await env.cleanUp()
    }
}

@Suite("Trace context on the queue", .timeLimit(.minutes(3)))
struct TraceContextTests {
    @Test("an envelope without trace fields (tracing off, or queued by an older gateway) decodes, and encodes without them")
    func envelopeWithoutTraceFields() throws {
        let old = #"{"id":"e1","tenant":"default","type":"post_call_transcription","received_at":1700000000.5,"attempt":2,"body":"AAAA"}"#
        let envelope = try Envelope.decode(Data(old.utf8))
        #expect(envelope.id == "e1" && envelope.attempt == 2 && envelope.trace == nil && envelope.traceState == nil)
        let encoded = String(decoding: try envelope.encoded(), as: UTF8.self)
        #expect(!encoded.contains("trace"))
        // With tracing off there is no context to attach.
        var attached = envelope
        attached.attachTraceContext()
        #expect(attached.trace == nil)
        #expect(attached.traceContext.isEmpty)
    }

    @Test("trace fields round-trip through the envelope's JSON")
    func envelopeWithTraceFields() throws {
        var envelope = Envelope(tenant: "default", type: EventType.remember, receivedAt: Date(), body: "AAAA")
        envelope.trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        envelope.traceState = "vendor=value"
        let decoded = try Envelope.decode(try envelope.encoded())
        #expect(decoded == envelope)
        #expect(String(decoding: try envelope.encoded(), as: UTF8.self).contains(#""trace_state":"vendor=value""#))
    }

    @Test("tracing settings: endpoint URL, service name and sample ratio are read and checked at start")
    func configuration() throws {
        let off = try EngramConfiguration.fromEnvironment([:])
        #expect(off.otelEndpoint == nil && off.otelServiceName == nil && off.otelSampleRatio == 1.0)
        let on = try EngramConfiguration.fromEnvironment([
            "ENGRAM_OTEL_ENDPOINT": "http://127.0.0.1:4318", "ENGRAM_OTEL_SERVICE_NAME": "engram-eu", "ENGRAM_OTEL_SAMPLE_RATIO": "0.25",
        ])
        #expect(on.otelEndpoint == "http://127.0.0.1:4318" && on.otelServiceName == "engram-eu" && on.otelSampleRatio == 0.25)
        #expect(EngramTracing.tracesURL("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces")
        #expect(EngramTracing.tracesURL("https://otel.example.com/") == "https://otel.example.com/v1/traces")
        #expect(EngramTracing.tracesURL("https://otel.example.com/v1/traces") == "https://otel.example.com/v1/traces")
        for (variable, value) in [
            ("ENGRAM_OTEL_ENDPOINT", "127.0.0.1:4318"), ("ENGRAM_OTEL_ENDPOINT", "grpc://x:4317"),
            ("ENGRAM_OTEL_SAMPLE_RATIO", "1.5"), ("ENGRAM_OTEL_SAMPLE_RATIO", "half"),
        ] {
            let error = #expect(throws: ConfigurationError.self) { try EngramConfiguration.fromEnvironment([variable: value]) }
            #expect(error?.variable == variable)
        }
    }
}
