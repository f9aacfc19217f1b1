import Foundation
import Testing

@testable import EngramCore
@testable import EngramProviders

/// The OpenAI extractor and embedder against a local fake of the OpenAI HTTP API: wire format,
/// retries, `Retry-After`, timeouts, malformed answers and the circuit breaker.
@Suite("OpenAI providers", .timeLimit(.minutes(3)))
struct OpenAIProviderTests {
    static let apiKey = "sk-test-" + UUID().uuidString.prefix(8)
    static let model = "gpt-test"

    static func client(
        _ server: FakeOpenAIServer, timeout: Duration = .seconds(5), maxRetries: Int = 2,
        breaker: CircuitBreaker = CircuitBreaker(name: "test")
    ) -> OpenAIClient {
        OpenAIClient(baseURL: server.baseURL, apiKey: apiKey, timeout: timeout, maxRetries: maxRetries, breaker: breaker)
    }

    static func extractor(
        _ server: FakeOpenAIServer, timeout: Duration = .seconds(5), maxRetries: Int = 2, breaker: CircuitBreaker = CircuitBreaker(name: "test")
    ) -> OpenAIExtractor {
        OpenAIExtractor(client: client(server, timeout: timeout, maxRetries: maxRetries, breaker: breaker), model: model)
    }

    /// Turn 2 (a tool call) has no text, so it is not in the conversation.
    static let conversation = Conversation(
        conversationID: "conv_test", startedAt: Date(timeIntervalSince1970: 1_764_000_000),
        turns: [
            .init(index: 0, speaker: .agent, text: "Hi Dana, how can I help?"),
            .init(index: 1, speaker: .caller, text: "Please move my cleaning to Friday at 10."),
            .init(index: 3, speaker: .caller, text: "And call me in the mornings, please."),
            .init(index: 4, speaker: .agent, text: "Done: Friday 28 November at 10:00."),
        ])

    static let cannedExtraction = """
        {"memories": [
          {"content": "  The caller's cleaning moved to Friday 28 November 2025 at 10:00. ", "sector": "episodic", "slot": null,
           "importance": 0.8, "valid_from": "2025-11-28", "source_turns": [1, 2, 4, 99], "sensitive": false},
          {"content": "The caller prefers calls in the morning.", "sector": "procedural", "slot": "preferred_contact_time",
           "importance": 1.7, "valid_from": null, "source_turns": [3, -1], "sensitive": false}
        ],
        "summary": "Dana moved her cleaning to Friday.", "user_name": "Dana"}
        """

    // MARK: Extractor

    @Test("a valid extraction becomes memories with their sector, slot and only real source turns")
    func extractionParsesMemories() async throws {
        try await withFakeOpenAI { server in
            server.enqueue(.chatContent(Self.cannedExtraction))
            let extraction = try await Self.extractor(server).extract(Self.conversation)

            #expect(extraction.extractor == "openai:\(Self.model)")
            #expect(extraction.userName == "Dana")
            #expect(extraction.isFallback == false)
            try #require(extraction.memories.count == 3)
            let booking = extraction.memories[0]
            #expect(booking.content == "The caller's cleaning moved to Friday 28 November 2025 at 10:00.")
            #expect(booking.sector == .episodic)
            #expect(booking.slot == nil)
            #expect(booking.sourceTurns == [1, 4])
            #expect(booking.validFrom == OpenAIExtractor.parseDate("2025-11-28"))
            let preference = extraction.memories[1]
            #expect(preference.sector == .procedural)
            #expect(preference.slot == "preferred_contact_time")
            #expect(preference.importance == 1)
            #expect(preference.sourceTurns == [3])
            #expect(preference.validFrom == Self.conversation.startedAt)
            let summary = extraction.memories[2]
            #expect(summary.kind == "summary")
            #expect(summary.content.hasSuffix("Dana moved her cleaning to Friday."))
        }
    }

    @Test("the chat request carries the bearer key, the model, a JSON schema response format and the indexed transcript")
    func chatRequestWireFormat() async throws {
        try await withFakeOpenAI { server in
            _ = try await Self.extractor(server).extract(Self.conversation)

            let request = try #require(server.requests.first)
            #expect(server.requestCount == 1)
            #expect(request.method == "POST")
            #expect(request.path == "/v1/chat/completions")
            #expect(request.authorization == "Bearer \(Self.apiKey)")
            #expect(request.contentType == "application/json")
            #expect(request.model == Self.model)
            #expect(request.responseFormatType == "json_schema")
            let format = try #require(request.json?["response_format"] as? [String: Any])
            let schema = try #require(format["json_schema"] as? [String: Any])
            #expect(schema["strict"] as? Bool == true)
            #expect(schema["schema"] is [String: Any])
            let transcript = try #require(request.messageContents.last)
            #expect(transcript.contains("[1] caller: Please move my cleaning to Friday at 10."))
            #expect(transcript.contains("[4] agent: Done: Friday 28 November at 10:00."))
        }
    }

    @Test("the default fake reply cites each caller turn")
    func defaultReplyCitesCallerTurns() async throws {
        try await withFakeOpenAI { server in
            let extraction = try await Self.extractor(server).extract(Self.conversation)
            let cited = extraction.memories.filter { $0.kind == "conversation" }.map(\.sourceTurns)
            #expect(cited == [[1], [3]])
        }
    }

    @Test("a 500 is retried and the second answer is used")
    func serverErrorThenSuccess() async throws {
        try await withFakeOpenAI { server in
            server.enqueue(.status(500))
            let extraction = try await Self.extractor(server).extract(Self.conversation)
            #expect(extraction.memories.isEmpty == false)
            #expect(server.requestCount == 2)
        }
    }

    @Test("a 429 with Retry-After 0 is retried")
    func rateLimitedWithShortRetryAfterIsRetried() async throws {
        try await withFakeOpenAI { server in
            server.enqueue(.status(429, retryAfter: "0"))
            let extraction = try await Self.extractor(server).extract(Self.conversation)
            #expect(extraction.memories.isEmpty == false)
            #expect(server.requestCount == 2)
        }
    }

    @Test("a 429 with a long Retry-After is handed back to the queue at once, not waited for")
    func rateLimitedWithLongRetryAfterThrows() async throws {
        try await withFakeOpenAI { server in
            server.setDefault(.status(429, retryAfter: "120"))
            let error = await #expect(throws: ExtractionError.self) {
                try await Self.extractor(server).extract(Self.conversation)
            }
            guard case .rateLimited(let after)? = error else {
                Issue.record("expected rateLimited, got \(String(describing: error))")
                return
            }
            #expect(after == 120)
            #expect(server.requestCount == 1)
        }
    }

    @Test("an answer slower than the client timeout is a timeout")
    func slowAnswerTimesOut() async throws {
        try await withFakeOpenAI { server in
            server.setDefault(.slow(.seconds(5)))
            let error = await #expect(throws: ExtractionError.self) {
                try await Self.extractor(server, timeout: .seconds(1), maxRetries: 0).extract(Self.conversation)
            }
            #expect(error?.kind == "timeout")
            // Not retried. (Under a loaded test run the request may not even reach the handler
            // within the timeout, so 0 is possible; a retry would make it 2.)
            #expect(server.requestCount <= 1)
        }
    }

    @Test(
        "a malformed answer is malformedResponse and its message never repeats the body",
        arguments: [
            FakeOpenAIServer.Malformed.notJSON, .wrongShape, .contentNotSchema,
        ])
    func malformedAnswer(_ kind: FakeOpenAIServer.Malformed) async throws {
        try await withFakeOpenAI { server in
            server.setDefault(.malformed(kind))
            let error = await #expect(throws: ExtractionError.self) {
                try await Self.extractor(server, maxRetries: 0).extract(Self.conversation)
            }
            #expect(error?.kind == "malformedResponse")
            let description = try #require(error?.description)
            #expect(!description.contains("FAKE-BODY-MARKER"))
            #expect(!description.contains("Friday"))
            #expect(!String(describing: error).contains("FAKE-BODY-MARKER"))
        }
    }

    @Test("a sector outside the schema is malformedResponse")
    func unknownSectorIsMalformed() async throws {
        try await withFakeOpenAI { server in
            server.enqueue(
                .chatContent(
                    #"{"memories":[{"content":"x","sector":"gossip","slot":null,"importance":0.5,"valid_from":null,"source_turns":[1],"sensitive":false}],"summary":null,"user_name":null}"#
                ))
            let error = await #expect(throws: ExtractionError.self) {
                try await Self.extractor(server, maxRetries: 0).extract(Self.conversation)
            }
            #expect(error?.kind == "malformedResponse")
        }
    }

    @Test("a 400 is a client error and is not retried")
    func badRequestIsNotRetried() async throws {
        try await withFakeOpenAI { server in
            server.setDefault(.status(400))
            let error = await #expect(throws: ExtractionError.self) {
                try await Self.extractor(server).extract(Self.conversation)
            }
            guard case .client(let status)? = error else {
                Issue.record("expected client, got \(String(describing: error))")
                return
            }
            #expect(status == 400)
            #expect(error?.isTransient == false)
            #expect(server.requestCount == 1)
            #expect(!(error?.description.contains("FAKE-BODY-MARKER") ?? true))
        }
    }

    @Test("a 500 that persists past the retries is a server error without the body")
    func persistentServerError() async throws {
        try await withFakeOpenAI { server in
            server.setDefault(.status(503))
            let error = await #expect(throws: ExtractionError.self) {
                try await Self.extractor(server, maxRetries: 1).extract(Self.conversation)
            }
            guard case .server(let status)? = error else {
                Issue.record("expected server, got \(String(describing: error))")
                return
            }
            #expect(status == 503)
            #expect(server.requestCount == 2)
            #expect(!(error?.description.contains("FAKE-BODY-MARKER") ?? true))
        }
    }

    @Test("a provider that does not answer at all is a transport error")
    func unreachableProviderIsTransportError() async throws {
        let server = try await FakeOpenAIServer.start()
        // The client's connection pool retries a refused connection until its deadline.
        let extractor = Self.extractor(server, timeout: .milliseconds(300), maxRetries: 0)
        await server.stop()
        let error = await #expect(throws: ExtractionError.self) { try await extractor.extract(Self.conversation) }
        #expect(error?.kind == "transport")
    }

    // MARK: Embedder

    @Test("the embedder batches its inputs and returns unit vectors in input order")
    func embedderBatchesInOrder() async throws {
        try await withFakeOpenAI(embeddingDimension: 8) { server in
            let embedder = OpenAIEmbedder(client: Self.client(server), model: "embed-test", dimension: 8, batchSize: 2)
            let texts = ["alpha", "bravo", "charlie", "delta", "echo"]
            let vectors = try await embedder.embed(texts)

            try #require(vectors.count == texts.count)
            for (text, vector) in zip(texts, vectors) {
                let expected = FakeOpenAIServer.vector(for: text, dimension: 8)
                #expect(vector.count == 8)
                #expect(abs(VectorMath.dot(vector, vector) - 1) < 1e-4)
                #expect(zip(vector, expected).allSatisfy { abs($0 - $1) < 1e-5 }, "vector of \(text)")
            }
            #expect(VectorMath.dot(vectors[0], vectors[1]) < 0.99)
            let requests = server.requests
            #expect(requests.count == 3)
            #expect(requests.map(\.inputs) == [["alpha", "bravo"], ["charlie", "delta"], ["echo"]])
            #expect(requests.allSatisfy { $0.path == "/v1/embeddings" && $0.model == "embed-test" })
            #expect(requests.allSatisfy { $0.authorization == "Bearer \(Self.apiKey)" })
        }
    }

    @Test("embeddings of another dimension are malformedResponse")
    func embedderDimensionMismatch() async throws {
        try await withFakeOpenAI(embeddingDimension: 8) { server in
            let embedder = OpenAIEmbedder(client: Self.client(server, maxRetries: 0), model: "embed-test", dimension: 16, batchSize: 4)
            let error = await #expect(throws: ExtractionError.self) {
                try await embedder.embed(["alpha", "bravo"])
            }
            #expect(error?.kind == "malformedResponse")
        }
    }

    @Test("the embedder needs no round trip for no texts")
    func embedderEmptyInput() async throws {
        try await withFakeOpenAI { server in
            let embedder = OpenAIEmbedder(client: Self.client(server), model: "embed-test", dimension: 8)
            let vectors = try await embedder.embed([])
            #expect(vectors.isEmpty)
            #expect(server.requestCount == 0)
        }
    }

    // MARK: Circuit breaker

    @Test("repeated 500s open the breaker, calls then fail fast, and a probe after the cool-down closes it")
    func circuitBreakerOpensAndRecovers() async throws {
        try await withFakeOpenAI { server in
            let breaker = CircuitBreaker(name: "test", window: 5, minimumCalls: 3, coolDown: .milliseconds(300))
            let extractor = Self.extractor(server, maxRetries: 0, breaker: breaker)
            server.enqueue(.status(500), .status(500), .status(500))
            for _ in 0..<3 {
                let error = await #expect(throws: ExtractionError.self) { try await extractor.extract(Self.conversation) }
                #expect(error?.kind == "server")
            }
            #expect(await breaker.state == .open)

            let error = await #expect(throws: ExtractionError.self) { try await extractor.extract(Self.conversation) }
            #expect(error?.kind == "circuitOpen")
            #expect(server.requestCount == 3)

            // The server answers again; calls fail fast until the cool-down lets one probe through.
            try await waitUntil(timeout: .seconds(10), "a probe succeeds after the cool-down") {
                do {
                    _ = try await extractor.extract(Self.conversation)
                    return true
                } catch ExtractionError.circuitOpen {
                    return false
                }
            }
            #expect(await breaker.state == .closed)
            #expect(server.requestCount == 4)
        }
    }

    @Test("a failed probe opens the breaker again")
    func failedProbeReopens() async throws {
        try await withFakeOpenAI { server in
            let breaker = CircuitBreaker(name: "test", window: 5, minimumCalls: 3, coolDown: .milliseconds(300))
            let extractor = Self.extractor(server, maxRetries: 0, breaker: breaker)
            server.setDefault(.status(500))
            for _ in 0..<3 { _ = try? await extractor.extract(Self.conversation) }
            #expect(await breaker.state == .open)

            try await waitUntil(timeout: .seconds(10), "a probe reaches the server after the cool-down") {
                _ = try? await extractor.extract(Self.conversation)
                return server.requestCount == 4
            }
            #expect(await breaker.state == .open)
        }
    }

    @Test("client errors do not open the breaker")
    func clientErrorsDoNotOpenTheBreaker() async throws {
        try await withFakeOpenAI { server in
            let breaker = CircuitBreaker(name: "test", window: 5, minimumCalls: 3, coolDown: .seconds(30))
            let extractor = Self.extractor(server, maxRetries: 0, breaker: breaker)
            server.setDefault(.status(400))
            for _ in 0..<5 { _ = try? await extractor.extract(Self.conversation) }
            #expect(await breaker.state == .closed)
            #expect(server.requestCount == 5)
        }
    }
}

extension ExtractionError {
    /// The case's name, for readable expectations.
    var kind: String {
        switch self {
        case .rateLimited: return "rateLimited"
        case .server: return "server"
        case .client: return "client"
        case .malformedResponse: return "malformedResponse"
        case .timeout: return "timeout"
        case .transport: return "transport"
        case .circuitOpen: return "circuitOpen"
        }
    }
}
