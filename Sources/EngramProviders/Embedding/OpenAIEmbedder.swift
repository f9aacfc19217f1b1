import EngramCore

/// Embeddings from an OpenAI-compatible `/embeddings` endpoint, batched.
public struct OpenAIEmbedder: Embedder {
    public let client: OpenAIClient
    public let model: String
    public let dimension: Int
    public let batchSize: Int
    public var id: String { "openai:\(model):\(dimension)" }
    // text-embedding-3 models put paraphrases of one fact around 0.9; the specifics check
    // (numbers, dates, names) guards the merge.
    public let duplicateThreshold: Float = 0.90
    public let collapseThreshold: Float = 0.95

    public init(client: OpenAIClient, model: String, dimension: Int = 1536, batchSize: Int = 96) {
        self.client = client
        self.model = model
        self.dimension = dimension
        self.batchSize = batchSize
    }

    struct Request: Encodable {
        var model: String
        var input: [String]
    }
    struct Reply: Decodable {
        struct Item: Decodable {
            var index: Int
            var embedding: [Float]
        }
        var data: [Item]
    }

    public func embed(_ texts: [String]) async throws -> [[Float]] {
        var out: [[Float]] = []
        out.reserveCapacity(texts.count)
        var start = 0
        while start < texts.count {
            let batch = Array(texts[start..<min(texts.count, start + batchSize)])
            let reply = try await client.post("/embeddings", body: Request(model: model, input: batch), as: Reply.self)
            let sorted = reply.data.sorted { $0.index < $1.index }
            guard sorted.map(\.index) == Array(0..<batch.count), sorted.allSatisfy({ $0.embedding.count == dimension }) else {
                throw ExtractionError.malformedResponse("embedding count or dimension does not match")
            }
            out.append(contentsOf: sorted.map { VectorMath.normalized($0.embedding) })
            start += batchSize
        }
        return out
    }
}
