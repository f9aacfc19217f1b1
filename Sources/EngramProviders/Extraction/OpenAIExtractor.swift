import EngramCore
import Foundation

/// Extraction with an OpenAI-compatible chat model: one call per conversation, JSON-schema
/// response format, validated before anything is stored.
public struct OpenAIExtractor: Extractor {
    public let client: OpenAIClient
    public let model: String
    public var id: String { "openai:\(model)" }

    public init(client: OpenAIClient, model: String) {
        self.client = client
        self.model = model
    }

    struct ChatRequest: Encodable {
        struct Message: Encodable {
            var role: String
            var content: String
        }
        var model: String
        var temperature = 0.0
        var messages: [Message]
        var responseFormat: ResponseFormat
        enum CodingKeys: String, CodingKey {
            case model, temperature, messages
            case responseFormat = "response_format"
        }
    }

    struct ResponseFormat: Encodable {
        var type = "json_schema"
        var jsonSchema: JSONSchemaSpec
        enum CodingKeys: String, CodingKey {
            case type
            case jsonSchema = "json_schema"
        }
    }

    struct JSONSchemaSpec: Encodable {
        var name = "engram_extraction"
        var strict = true
        var schema: JSONValue
    }

    struct ChatReply: Decodable {
        struct Choice: Decodable {
            struct Message: Decodable { var content: String? }
            var message: Message
        }
        var choices: [Choice]
    }

    struct Payload: Decodable {
        struct Item: Decodable {
            var content: String
            var sector: String
            var slot: String?
            var importance: Double
            var validFrom: String?
            var sourceTurns: [Int]
            var sensitive: Bool?
            enum CodingKeys: String, CodingKey {
                case content, sector, slot, importance
                case validFrom = "valid_from"
                case sourceTurns = "source_turns"
                case sensitive
            }
        }
        var memories: [Item]
        var summary: String?
        var userName: String?
        enum CodingKeys: String, CodingKey {
            case memories, summary
            case userName = "user_name"
        }
    }

    static let systemPrompt = """
        You extract long-term memories about a phone caller from a call transcript, for a voice agent that will talk to \
        the same caller again. Return JSON only, matching the schema. Each memory is one self-contained sentence in the \
        third person ("The caller's cleaning moved to Friday 28 November 2025 at 10:00"), with absolute dates resolved \
        against the call's start time. Sectors: episodic (what happened), semantic (facts, preferences), procedural (how \
        the caller likes things done), emotional (feelings, frustrations), reflective (insights). Use slot for single-valued \
        facts (name, preferred_contact_time, address.city). importance 0..1. sensitive = health, finances or legal matters. \
        source_turns = the transcript turn indices the memory comes from. Keep facts the agent confirmed (bookings, answers). \
        Skip pleasantries. summary: one or two sentences about the call. user_name: the caller's first name if said.
        """

    public func extract(_ conversation: Conversation) async throws -> Extraction {
        var transcript = "Call started at \(ISO8601DateFormatter().string(from: conversation.startedAt)).\n"
        for turn in conversation.turns {
            transcript += "[\(turn.index)] \(turn.speaker == .caller ? "caller" : "agent"): \(turn.text)\n"
        }
        let request = ChatRequest(
            model: model,
            messages: [.init(role: "system", content: Self.systemPrompt), .init(role: "user", content: transcript)],
            responseFormat: ResponseFormat(jsonSchema: JSONSchemaSpec(schema: Self.schema)))
        let reply = try await client.post("/chat/completions", body: request, as: ChatReply.self)
        guard let content = reply.choices.first?.message.content, let data = content.data(using: .utf8) else {
            throw ExtractionError.malformedResponse("no message content")
        }
        let payload: Payload
        do {
            payload = try JSONDecoder().decode(Payload.self, from: data)
        } catch {
            throw ExtractionError.malformedResponse("content is not the extraction schema")
        }
        let validTurns = Set(conversation.turns.map(\.index))
        var memories: [ExtractedMemory] = []
        for item in payload.memories {
            let text = item.content.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !text.isEmpty, text.utf8.count <= 4_000, let sector = Sector(rawValue: item.sector) else {
                throw ExtractionError.malformedResponse("a memory has no content or an unknown sector")
            }
            memories.append(
                ExtractedMemory(
                    content: text, sector: sector, slot: item.slot?.isEmpty == false ? item.slot : nil,
                    importance: min(1, max(0, item.importance)),
                    validFrom: item.validFrom.flatMap(Self.parseDate) ?? conversation.startedAt,
                    sourceTurns: item.sourceTurns.filter(validTurns.contains), sensitive: item.sensitive ?? false))
        }
        if let summary = payload.summary?.trimmingCharacters(in: .whitespacesAndNewlines), !summary.isEmpty {
            let day = LocalExtractor.dayFormatter.string(from: conversation.startedAt)
            memories.append(
                ExtractedMemory(
                    content: "Call on \(day): \(summary)", sector: .episodic, importance: 0.7, validFrom: conversation.startedAt, sourceTurns: [],
                    kind: "summary"))
        }
        return Extraction(memories: memories, summary: payload.summary, userName: payload.userName, extractor: id)
    }

    static func parseDate(_ text: String) -> Date? {
        let iso = ISO8601DateFormatter()
        if let date = iso.date(from: text) { return date }
        iso.formatOptions = [.withFullDate]
        return iso.date(from: text)
    }

    static let schema: JSONValue = .object([
        "type": "object", "additionalProperties": false, "required": ["memories", "summary", "user_name"],
        "properties": .object([
            "summary": .object(["type": ["string", "null"]]),
            "user_name": .object(["type": ["string", "null"]]),
            "memories": .object([
                "type": "array",
                "items": .object([
                    "type": "object", "additionalProperties": false,
                    "required": ["content", "sector", "slot", "importance", "valid_from", "source_turns", "sensitive"],
                    "properties": .object([
                        "content": .object(["type": "string"]),
                        "sector": .object(["type": "string", "enum": ["episodic", "semantic", "procedural", "emotional", "reflective"]]),
                        "slot": .object(["type": ["string", "null"]]),
                        "importance": .object(["type": "number"]),
                        "valid_from": .object(["type": ["string", "null"]]),
                        "source_turns": .object(["type": "array", "items": .object(["type": "integer"])]),
                        "sensitive": .object(["type": "boolean"]),
                    ]),
                ]),
            ]),
        ]),
    ])
}

/// A JSON value for request bodies whose shape is data (schemas).
public enum JSONValue: Encodable, Sendable, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByBooleanLiteral {
    case string(String)
    case bool(Bool)
    case number(Double)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}
