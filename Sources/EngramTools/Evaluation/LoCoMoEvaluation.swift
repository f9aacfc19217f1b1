import EngramApp
import EngramCore
import EngramProviders
import EngramStore
import Foundation
import GRDB
import Logging

/// Recall of Engram's whole write and read path on LoCoMo (`shared/eval/README.md`): each session
/// becomes a signed post-call webhook from one caller, goes through the real intake and
/// ingestion, and every question of categories 1–4 goes through hybrid search for that caller.
/// Self-contained: a temporary store, generated keys, an injected clock, no sweep, no reinforcement.
public struct LoCoMoEvaluation {
    public struct Report: Codable, Sendable {
        public struct Recall: Codable, Sendable {
            public var recallAt5: Double
            public var recallAt10: Double
            public var recallAt25: Double
            /// Recall of the answer cut at a character budget, keyed by the budget ("1000", "2000", "4000").
            public var recallWithinChars: [String: Double]
            /// The same walk stopped at the first memory that does not fit (the tool's answer passes over
            /// it and goes on with smaller ones): `shared/eval/README.md`'s walk read strictly.
            public var recallWithinCharsStrict: [String: Double]
            public var questions: Int
            enum CodingKeys: String, CodingKey {
                case recallAt5 = "recall_at_5"
                case recallAt10 = "recall_at_10"
                case recallAt25 = "recall_at_25"
                case recallWithinChars = "recall_within_chars"
                case recallWithinCharsStrict = "recall_within_chars_strict"
                case questions
            }
        }
        public var questions: Int
        public var overall: Recall
        public var byCategory: [String: Recall]
        public var meanCharsAt10: Double
        public var memoriesStored: Int
        public var seconds: Double
        enum CodingKeys: String, CodingKey {
            case questions, overall
            case byCategory = "by_category"
            case meanCharsAt10 = "mean_chars_at_10"
            case memoriesStored = "memories_stored"
            case seconds
        }
    }

    struct Sample: Decodable {
        var sampleID: String
        var conversation: [String: JSONAny]
        var qa: [Question]
        enum CodingKeys: String, CodingKey {
            case sampleID = "sample_id"
            case conversation, qa
        }
    }

    struct Question: Decodable {
        var question: String
        var evidence: [String]
        var category: Int
    }

    struct Turn: Decodable {
        var speaker: String
        var diaID: String
        var text: String
        var blipCaption: String?
        enum CodingKeys: String, CodingKey {
            case speaker
            case diaID = "dia_id"
            case text
            case blipCaption = "blip_caption"
        }
    }

    public static let categories = [1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"]

    /// Character budgets of `recall_within_chars` (shared/eval/README.md: what a voice agent's prompt can afford).
    public static let characterBudgets = [1000, 2000, 4000]
    /// Hits read per question: as many as the search tool reads before packing its answer.
    static let hitsRead = AnswerPacker.searchCandidates

    public let dataURL: URL
    public let limitConversations: Int?
    /// Conversations passed over before the first one evaluated (to report a held-out part apart).
    public let skipConversations: Int

    public init(dataURL: URL, limitConversations: Int? = nil, skipConversations: Int = 0) {
        self.dataURL = dataURL
        self.limitConversations = limitConversations
        self.skipConversations = max(0, skipConversations)
    }

    /// `progress`: conversations done and their total, after each one.
    public func run(logger: Logger, progress: (@Sendable (_ done: Int, _ total: Int) -> Void)? = nil) async throws -> Report {
        let started = ContinuousClock.now
        var samples = try JSONDecoder().decode([Sample].self, from: Data(contentsOf: dataURL))
        samples = Array(samples.dropFirst(skipConversations))
        if let limitConversations { samples = Array(samples.prefix(max(0, limitConversations))) }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("engram-eval-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteMemoryStore(path: directory.appendingPathComponent("eval.sqlite").path)
        let clock = SettableClock(Date(timeIntervalSince1970: 0))
        let keyRing = KeyRing(master: .generate())
        let vault = MemoryVault(store: store, keyRing: keyRing, embedder: LocalEmbedder(), clock: clock.wallClock)
        let secret = "wsec_eval_" + UUID().uuidString
        let intake = PostCallIntake(
            secrets: [secret], tolerancePast: .seconds(1800), toleranceFuture: .seconds(300), maxBodyBytes: 2 << 20,
            cipher: keyRing.envelopeCipher, clock: clock.wallClock)
        let ingestor = EventIngestor(
            vault: vault, extractor: LocalExtractor(), policy: .retryThenLocal, maxAttempts: 1, envelopeCipher: keyRing.envelopeCipher)
        guard let tenant = try await vault.tenant("default", create: true) else { throw StoreError.notFound("tenant") }

        var sums: [Int: Sums] = [:]
        var chars = 0.0
        var counted = 0
        for (index, sample) in samples.enumerated() {
            let phone = "+1555010\(String(format: "%04d", index))"
            let user = tenant.userKeys.key(for: .phone(phone))
            var turnIDs: [String: String] = [:]  // "<conversation id>#<turn index>" → dia_id
            var lastDate = Date(timeIntervalSince1970: 0)
            for (session, date, turns) in sessions(of: sample) {
                let conversationID = "\(sample.sampleID)-s\(session)"
                for (i, turn) in turns.enumerated() { turnIDs["\(conversationID)#\(i)"] = turn.diaID }
                let body = try webhookBody(
                    conversationID: conversationID, phone: phone, date: date, turns: turns, speakerA: sample.conversation["speaker_a"]?.string ?? "")
                clock.set(date)
                lastDate = date
                let header = WebhookSigner.header(body: body, secret: secret, timestamp: Int64(date.timeIntervalSince1970))
                var verifier = try intake.begin(header: header)
                verifier.update(body)
                try verifier.finish()
                guard case .enqueue(let envelope, _) = try intake.classify(kept: body, oversize: false, tenant: "default", signatureHeader: header)
                else {
                    throw StoreError.corrupt("the evaluation's webhook was not accepted")
                }
                _ = try await ingestor.ingest(envelope, logger: logger)
            }
            clock.set(lastDate.addingTimeInterval(86_400))
            for question in sample.qa where Self.categories[question.category] != nil {
                let evidence = Set(question.evidence.flatMap(Self.cleanEvidence)).intersection(Set(turnIDs.values))
                guard !evidence.isEmpty else { continue }
                let hits = try await vault.search(tenant: "default", user: user, query: question.question, limit: Self.hitsRead)
                func recall(_ answer: ArraySlice<SearchHit>) -> Double {
                    var cited = Set<String>()
                    for hit in answer {
                        for source in hit.memory.sources {
                            for turn in source.turns { if let id = turnIDs["\(source.conversationID ?? "")#\(turn)"] { cited.insert(id) } }
                        }
                    }
                    return Double(evidence.intersection(cited).count) / Double(evidence.count)
                }
                var sum = sums[question.category] ?? Sums()
                sum.r5 += recall(hits.prefix(5))
                sum.r10 += recall(hits.prefix(10))
                sum.r25 += recall(hits.prefix(25))
                // Within a budget: exactly the answer the search tool gives the agent (AnswerPacker).
                let memories = hits.map(\.memory)
                for budget in Self.characterBudgets {
                    let answer = AnswerPacker.pack(memories, budget: budget)
                    let cited = Set(answer.citedTurns.compactMap { turnIDs["\($0.conversationID ?? "")#\($0.turn)"] })
                    sum.withinChars[budget, default: 0] += Double(evidence.intersection(cited).count) / Double(evidence.count)
                    var strict = AnswerPacker(budget: budget)
                    for memory in memories where strict.add(memory) == .overBudget { break }
                    let strictCited = Set(strict.citedTurns.compactMap { turnIDs["\($0.conversationID ?? "")#\($0.turn)"] })
                    sum.withinCharsStrict[budget, default: 0] += Double(evidence.intersection(strictCited).count) / Double(evidence.count)
                }
                sum.n += 1
                sums[question.category] = sum
                chars += Double(hits.prefix(10).reduce(0) { $0 + $1.memory.content.count })
                counted += 1
            }
            logger.info("conversation evaluated", metadata: ["sample": "\(sample.sampleID)"])
            progress?(index + 1, samples.count)
        }
        func recall(_ s: Sums) -> Report.Recall {
            let n = Double(max(1, s.n))
            var within: [String: Double] = [:]
            var strict: [String: Double] = [:]
            for budget in Self.characterBudgets {
                within[String(budget)] = 100 * (s.withinChars[budget] ?? 0) / n
                strict[String(budget)] = 100 * (s.withinCharsStrict[budget] ?? 0) / n
            }
            return Report.Recall(
                recallAt5: 100 * s.r5 / n, recallAt10: 100 * s.r10 / n, recallAt25: 100 * s.r25 / n, recallWithinChars: within,
                recallWithinCharsStrict: strict, questions: s.n)
        }
        let total = sums.values.reduce(Sums()) { $0.adding($1) }
        var byCategory: [String: Report.Recall] = [:]
        for (category, name) in Self.categories { byCategory[name] = recall(sums[category] ?? Sums()) }
        let stored = try await store.database.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM memories") ?? 0 }
        return Report(
            questions: counted, overall: recall(total), byCategory: byCategory, meanCharsAt10: counted == 0 ? 0 : chars / Double(counted),
            memoriesStored: stored, seconds: (ContinuousClock.now - started).seconds)
    }

    /// Sums of per-question recall for one category.
    struct Sums {
        var r5 = 0.0, r10 = 0.0, r25 = 0.0
        var withinChars: [Int: Double] = [:]
        var withinCharsStrict: [Int: Double] = [:]
        var n = 0

        func adding(_ other: Sums) -> Sums {
            var sum = Sums(
                r5: r5 + other.r5, r10: r10 + other.r10, r25: r25 + other.r25, withinChars: withinChars, withinCharsStrict: withinCharsStrict,
                n: n + other.n)
            for (budget, value) in other.withinChars { sum.withinChars[budget, default: 0] += value }
            for (budget, value) in other.withinCharsStrict { sum.withinCharsStrict[budget, default: 0] += value }
            return sum
        }
    }

    /// `D30:05` → `D30:5`; `D1:3; D1:4` → both.
    static func cleanEvidence(_ raw: String) -> [String] {
        raw.split(whereSeparator: { $0 == ";" || $0 == "," || $0 == " " }).compactMap { part in
            let pieces = part.split(separator: ":")
            guard pieces.count == 2, let turn = Int(pieces[1]) else { return nil }
            return "\(pieces[0]):\(turn)"
        }
    }

    func sessions(of sample: Sample) -> [(Int, Date, [Turn])] {
        var out: [(Int, Date, [Turn])] = []
        for n in 1...200 {
            guard let raw = sample.conversation["session_\(n)"],
                let date = sample.conversation["session_\(n)_date_time"]?.string.flatMap(Self.parseDate)
            else { continue }
            guard let turns = try? JSONDecoder().decode([Turn].self, from: JSONSerialization.data(withJSONObject: raw.value)) else { continue }
            out.append(
                (
                    n, date,
                    turns.map {
                        var t = $0
                        t.diaID = Self.cleanEvidence(t.diaID).first ?? t.diaID
                        return t
                    }
                ))
        }
        return out
    }

    static func parseDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "h:mm a 'on' d MMMM, yyyy"
        return formatter.date(from: text)
    }

    /// A post-call webhook as ElevenLabs would send it: speaker A is the caller, B the agent,
    /// image captions on their turn, the session's date as the call time, `analysis` empty.
    func webhookBody(conversationID: String, phone: String, date: Date, turns: [Turn], speakerA: String) throws -> Data {
        let transcript: [[String: Any]] = turns.enumerated().map { i, turn in
            var entry: [String: Any] = ["role": turn.speaker == speakerA ? "user" : "agent", "message": turn.text, "time_in_call_secs": i * 10]
            if let caption = turn.blipCaption { entry["image_caption"] = caption }
            return entry
        }
        let object: [String: Any] = [
            "type": "post_call_transcription", "event_timestamp": Int(date.timeIntervalSince1970),
            "data": [
                "agent_id": "agent_eval", "conversation_id": conversationID, "status": "done", "user_id": NSNull(), "transcript": transcript,
                "metadata": [
                    "start_time_unix_secs": Int(date.timeIntervalSince1970), "phone_call": ["external_number": phone, "direction": "inbound"],
                ],
                "analysis": [String: Any](),
            ] as [String: Any],
        ]
        return try JSONSerialization.data(withJSONObject: object)
    }
}

/// A clock the evaluation moves by hand.
final class SettableClock: @unchecked Sendable {
    private let lock = NSLock()
    private var date: Date
    init(_ date: Date) { self.date = date }
    func set(_ new: Date) {
        lock.lock()
        date = new
        lock.unlock()
    }
    var wallClock: WallClock {
        WallClock { [self] in
            lock.lock()
            defer { lock.unlock() }
            return date
        }
    }
}

/// Any JSON value, kept as Foundation objects (LoCoMo's conversation mixes strings and lists).
struct JSONAny: Decodable {
    let value: Any
    var string: String? { value as? String }

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            value = s
            return
        }
        if let n = try? c.decode(Double.self) {
            value = n
            return
        }
        if let b = try? c.decode(Bool.self) {
            value = b
            return
        }
        if let a = try? c.decode([JSONAny].self) {
            value = a.map(\.value)
            return
        }
        if let o = try? c.decode([String: JSONAny].self) {
            value = o.mapValues(\.value)
            return
        }
        value = NSNull()
    }
}
