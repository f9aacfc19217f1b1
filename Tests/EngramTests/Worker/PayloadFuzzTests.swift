import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// Seeded mutations of the post-call fixture, fed in process through the gateway's
/// classification (`PostCallIntake.classify`) and the worker's reading and extraction
/// (`EventIngestor.readPostCall`, `Conversation`, the budget, `LocalExtractor`); one case in
/// `storeEvery` goes the whole way through `EventIngestor.ingest` into a real SQLite store.
/// Every case must end stored/ignored/refused/dead-lettered with a reason; a trap fails the run.
/// `ENGRAM_FUZZ_SEED` and `ENGRAM_FUZZ_CASES` override the defaults (to reproduce or go longer).
@Suite("Post-call payload fuzz", .timeLimit(.minutes(3)))
struct PayloadFuzzTests {
    static let defaultSeed: UInt64 = 0x0E16_2A11_F022
    static let defaultCases = 10_000
    static let storeEvery = 40

    enum Step: Hashable, CustomStringConvertible {
        case key(String)
        case index(Int)
        var description: String {
            switch self {
            case .key(let k): return k
            case .index(let i): return "[\(i)]"
            }
        }
    }

    /// Fields the code reads, aimed at first (every evil value for each), then at random.
    static let targets: [[Step]] = [
        [.key("type")], [.key("event_timestamp")], [.key("data")], [.key("data"), .key("conversation_id")], [.key("data"), .key("user_id")],
        [.key("data"), .key("agent_id")], [.key("data"), .key("transcript")], [.key("data"), .key("transcript"), .index(0)],
        [.key("data"), .key("transcript"), .index(1), .key("role")], [.key("data"), .key("transcript"), .index(1), .key("message")],
        [.key("data"), .key("transcript"), .index(2), .key("time_in_call_secs")],
        [.key("data"), .key("transcript"), .index(2), .key("image_caption")],
        [.key("data"), .key("metadata")], [.key("data"), .key("metadata"), .key("start_time_unix_secs")],
        [.key("data"), .key("metadata"), .key("call_duration_secs")], [.key("data"), .key("metadata"), .key("phone_call")],
        [.key("data"), .key("metadata"), .key("phone_call"), .key("external_number")], [.key("data"), .key("analysis")],
        [.key("data"), .key("analysis"), .key("transcript_summary")], [.key("data"), .key("analysis"), .key("data_collection_results")],
        [.key("data"), .key("analysis"), .key("data_collection_results"), .key("reason"), .key("value")],
        [.key("data"), .key("analysis"), .key("data_collection_results"), .key("memory_consent")],
        [.key("data"), .key("conversation_initiation_client_data")],
        [.key("data"), .key("conversation_initiation_client_data"), .key("dynamic_variables")],
        [.key("data"), .key("conversation_initiation_client_data"), .key("dynamic_variables"), .key("user_id")],
        [.key("data"), .key("conversation_initiation_client_data"), .key("dynamic_variables"), .key("system__caller_id")],
        [.key("data"), .key("conversation_initiation_client_data"), .key("dynamic_variables"), .key("caller_id")],
    ]

    /// A JSON value for building cases fast (Foundation's `[String: Any]` trees made the
    /// harness slower than the code under test). `raw` is a literal written as is.
    indirect enum Value: Decodable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral {
        case null
        case bool(Bool)
        case int(Int64)
        case uint(UInt64)
        case double(Double)
        case string(String)
        case array([Value])
        case object([(String, Value)])
        case raw(String)

        init(stringLiteral value: String) { self = .string(value) }
        init(integerLiteral value: Int64) { self = .int(value) }
        init(floatLiteral value: Double) { self = .double(value) }
        init(booleanLiteral value: Bool) { self = .bool(value) }

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() {
                self = .null
            } else if let b = try? c.decode(Bool.self) {
                self = .bool(b)
            } else if let i = try? c.decode(Int64.self) {
                self = .int(i)
            } else if let d = try? c.decode(Double.self) {
                self = .double(d)
            } else if let t = try? c.decode(String.self) {
                self = .string(t)
            } else if let a = try? c.decode([Value].self) {
                self = .array(a)
            } else {
                self = .object(try c.decode([String: Value].self).sorted { $0.key < $1.key })
            }
        }

        func write(to out: inout [UInt8]) {
            switch self {
            case .null: out += Array("null".utf8)
            case .bool(let b): out += Array((b ? "true" : "false").utf8)
            case .int(let i): out += Array(String(i).utf8)
            case .uint(let u): out += Array(String(u).utf8)
            case .double(let d): out += Array("\(d)".utf8)
            case .raw(let text): out += Array(text.utf8)
            case .string(let text): Self.write(string: text, to: &out)
            case .array(let items):
                out.append(UInt8(ascii: "["))
                for (i, item) in items.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    item.write(to: &out)
                }
                out.append(UInt8(ascii: "]"))
            case .object(let pairs):
                out.append(UInt8(ascii: "{"))
                for (i, pair) in pairs.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    Self.write(string: pair.0, to: &out)
                    out.append(UInt8(ascii: ":"))
                    pair.1.write(to: &out)
                }
                out.append(UInt8(ascii: "}"))
            }
        }

        static func write(string: String, to out: inout [UInt8]) {
            out.append(UInt8(ascii: "\""))
            for byte in string.utf8 {
                switch byte {
                case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
                case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
                case 0..<0x20: out += Array(String(format: "\\u%04x", byte).utf8)
                default: out.append(byte)
                }
            }
            out.append(UInt8(ascii: "\""))
        }

        var data: Data {
            var out: [UInt8] = []
            write(to: &out)
            return Data(out)
        }
    }

    /// Values at and past every limit, wrong types, and text edge cases. `nil` removes the field.
    static let evilValues: [Value?] = {
        var values: [Value?] = [
            nil, .null, true, false, 0, -1, 1, .int(.max), .int(.min), .uint(.max), 1e19, -1e19, 1e20, 1e300, -1e300,
            .double(.greatestFiniteMagnitude), .double(-.greatestFiniteMagnitude), .double(.leastNonzeroMagnitude), 9_007_199_254_740_993.0,
            -0.0, 0.5, 1_763_759_979, 253_402_300_800, "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", "1e300", "-1",
            "9223372036854775808", "", " ", "\u{0}", "😀", "\u{202E}evil", "e\u{301}", "+12523960448", "anonymous",
            "u_abcdefghijklmnopqrstuvwxyz", "u_aaaaaaaaaaaaaaaaaaaaaaaaaa", "true", "yes", "0",
            .string(String(repeating: "a", count: 20_000)), .string("a" + String(repeating: "\u{301}", count: 12_000)),
            .string(String(repeating: "Hi Dana, I'm allergic to peanuts and I live in Paris. ", count: 100)),
            .array([]), .array([1, 2, 3]), .array(["x"]), .array([.null]), .object([]), .object([("x", 1)]), .object([("value", 1e19)]),
            .object([("role", 5), ("message", .array(["a"]))]),
            .raw("1e400"), .raw("-1e400"), .raw("123456789012345678901234567890"), .raw("1E+999"), .raw("18446744073709551616"), .raw("-0"),
        ]
        // Deep nesting within the accepted depth (the field sits at depth ≤ 5).
        var deep: Value = 1
        for _ in 0..<50 { deep = .array([deep]) }
        values.append(deep)
        return values
    }()

    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// `root` with the value at `path` replaced (nil: removed); missing objects are created.
    static func setting(_ value: Value?, at path: ArraySlice<Step>, in root: Value?) -> Value? {
        guard let step = path.first else { return value }
        switch step {
        case .key(let key):
            var pairs: [(String, Value)] = []
            if case .object(let existing)? = root { pairs = existing }
            let index = pairs.firstIndex { $0.0 == key }
            let child = setting(value, at: path.dropFirst(), in: index.map { pairs[$0].1 })
            switch (index, child) {
            case (let i?, let c?): pairs[i].1 = c
            case (let i?, nil): pairs.remove(at: i)
            case (nil, let c?): pairs.append((key, c))
            case (nil, nil): break
            }
            return .object(pairs)
        case .index(let index):
            guard case .array(var items)? = root, items.indices.contains(index) else { return root }
            if let replaced = setting(value, at: path.dropFirst(), in: items[index]) { items[index] = replaced } else { items.remove(at: index) }
            return .array(items)
        }
    }

    /// Every path in the tree, containers included.
    static func paths(of value: Value, prefix: [Step] = []) -> [[Step]] {
        var found: [[Step]] = prefix.isEmpty ? [] : [prefix]
        switch value {
        case .object(let pairs): for (key, child) in pairs { found += paths(of: child, prefix: prefix + [.key(key)]) }
        case .array(let items): for (index, child) in items.enumerated() { found += paths(of: child, prefix: prefix + [.index(index)]) }
        default: break
        }
        return found
    }

    /// Mutations on the serialized text: what a tree cannot express.
    static func textMutation(_ body: Data, _ rng: inout SplitMix) -> Data {
        var text = String(decoding: body, as: UTF8.self)
        switch Int.random(in: 0..<9, using: &rng) {
        case 0: text = text.replacingOccurrences(of: #""type":"#, with: #""type":"x","type":"#)  // duplicate key
        case 1: text = text.replacingOccurrences(of: #""conversation_id":"#, with: #""conversation_id":"conv_dup","conversation_id":"#)
        case 2:  // truncated
            return body.prefix(Int.random(in: 0..<max(1, body.count), using: &rng))
        case 3:  // raw number literals that no Double/Int64 holds
            let literal =
                ["1e400", "-1e400", "123456789012345678901234567890", "-0", "1E+999", "0.0000000000000000000000001e-400", "18446744073709551616"]
                .randomElement(using: &rng) ?? "1e400"
            text = text.replacingOccurrences(of: "1763759979", with: literal)
            text = text.replacingOccurrences(of: #""call_duration_secs":41"#, with: #""call_duration_secs":\#(literal)"#)
        case 4:  // invalid UTF-8 inside a string
            var bytes = Array(body)
            if let quote = bytes.indices.randomElement(using: &rng), bytes[quote] == UInt8(ascii: "a") { bytes[quote] = 0xFF }
            bytes.insert(0xC3, at: min(bytes.count, 30))
            return Data(bytes)
        case 5:  // too deep
            let depth = Int.random(in: 60...200, using: &rng)
            text = text.replacingOccurrences(
                of: #""agent_name":"#, with: #""deep":\#(String(repeating: "[", count: depth))\#(String(repeating: "]", count: depth)),"agent_name":"#
            )
        case 6: text = "[" + text + "]"  // not an object
        case 7: text = text.replacingOccurrences(of: #""type":"post_call_transcription""#, with: #""type":"post_call_audio""#)
        default: text = text.replacingOccurrences(of: #""role":"user""#, with: #""role":"user","role":"agent""#)
        }
        return Data(text.utf8)
    }

    @Test("10,000 seeded mutations of the fixture end stored, ignored, or refused/dead-lettered with a reason; none crashes")
    func fuzz() async throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["ENGRAM_FUZZ_SEED"].flatMap { UInt64($0) } ?? Self.defaultSeed
        let cases = environment["ENGRAM_FUZZ_CASES"].flatMap { Int($0) }.map { max(1, $0) } ?? Self.defaultCases

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("engram-fuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let keyRing = KeyRing(master: MasterKey.generate())
        let store = try await openSQLiteStore(path: directory.appendingPathComponent("fuzz.sqlite").path)
        let vault = MemoryVault(store: store, keyRing: keyRing, embedder: LocalEmbedder())
        var ingestor = EventIngestor(
            vault: vault, extractor: LocalExtractor(), policy: .retryThenLocal, maxAttempts: 5, envelopeCipher: keyRing.envelopeCipher)
        // A small budget, so long calls exercise the cuts without making the run slow.
        ingestor.budget = ExtractionBudget(maxMemories: 40, maxTurns: 100)
        let intake = PostCallIntake(
            secrets: ["fuzz"], tolerancePast: .seconds(60), toleranceFuture: .seconds(60), maxBodyBytes: 2 * 1024 * 1024,
            cipher: keyRing.envelopeCipher, clock: .system)
        let base = try JSONDecoder().decode(Value.self, from: try Fixtures.elevenLabs("post_call_transcription.json"))
        let allPaths = Self.paths(of: base)
        let systematic = Self.targets.count * Self.evilValues.count

        // Two lanes (the machine's cores), each its own cases and random stream, one store.
        let lanes = 2
        let clock = ContinuousClock()
        let started = clock.now
        let context = Context(ingestor: ingestor, intake: intake, base: base, allPaths: allPaths, seed: seed, cases: cases, systematic: systematic)
        let tallies = try await withThrowingTaskGroup(of: Tally.self) { group in
            for lane in 0..<lanes { group.addTask { try await Self.run(lane: lane, of: lanes, context) } }
            return try await group.reduce(into: [Tally]()) { $0.append($1) }
        }
        var counts: [String: Int] = [:]
        var spent: [String: Duration] = [:]
        var memoriesExtracted = 0
        for tally in tallies {
            counts.merge(tally.counts, uniquingKeysWith: +)
            spent.merge(tally.spent, uniquingKeysWith: +)
            memoriesExtracted += tally.memories
        }
        let elapsed = clock.now - started
        #expect(counts.values.reduce(0, +) == cases)
        #expect(counts.keys.contains { $0.hasPrefix("refused") })
        #expect(counts.keys.contains { $0.hasPrefix("ignored") })
        #expect(counts["ingested: stored", default: 0] > 0)
        let lines = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "  \($0.value)\t\($0.key)" }
        print(
            """
            payload fuzz: seed \(seed), \(cases) cases (\(systematic) systematic: \(Self.targets.count) fields × \(Self.evilValues.count) values), \
            \(String(format: "%.1f", elapsed.seconds)) s on \(lanes) lanes (summed: \(spent.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1f", $0.value.seconds)) s" }.joined(separator: ", "))), \
            \(memoriesExtracted) memories extracted, 1 case in \(Self.storeEvery) stored through SQLite
            \(lines.joined(separator: "\n"))
            """)
    }

    struct Context: Sendable {
        let ingestor: EventIngestor
        let intake: PostCallIntake
        let base: Value
        let allPaths: [[Step]]
        let seed: UInt64
        let cases: Int
        let systematic: Int
    }

    /// What one lane saw: outcomes by kind, memories extracted, time per phase (summed over lanes).
    struct Tally: Sendable {
        var counts: [String: Int] = [:]
        var memories = 0
        var spent: [String: Duration] = [:]
    }

    /// The cases `lane, lane + lanes, …`.
    static func run(lane: Int, of lanes: Int, _ context: Context) async throws -> Tally {
        let (ingestor, intake, base, allPaths, seed, cases, systematic) =
            (context.ingestor, context.intake, context.base, context.allPaths, context.seed, context.cases, context.systematic)
        var rng = SplitMix(state: seed &+ UInt64(lane))
        var tally = Tally()
        let clock = ContinuousClock()
        for number in stride(from: lane, to: cases, by: lanes) {
            // The cases are synchronous work: give the shared executor back between them, so tests
            // running beside this one are not starved of threads (their deadlines are wall-clock).
            await Task.yield()
            var mark = clock.now
            func lap(_ phase: String) {
                let now = clock.now
                tally.spent[phase, default: .zero] += now - mark
                mark = now
            }
            // Each case its own conversation and caller, so stored cases never collide.
            var tree: Value? = base
            tree = Self.setting(.string("conv_fuzz_\(seed)_\(number)"), at: [.key("data"), .key("conversation_id")], in: tree)
            let phone = String(format: "+1415%07d", number % 10_000_000)
            tree = Self.setting(.string(phone), at: [.key("data"), .key("metadata"), .key("phone_call"), .key("external_number")], in: tree)
            if number < systematic {
                // Every evil value in every field the code reads.
                let target = Self.targets[number / Self.evilValues.count]
                tree = Self.setting(Self.evilValues[number % Self.evilValues.count], at: target[...], in: tree)
            } else {
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    let path =
                        Bool.random(using: &rng) ? (Self.targets.randomElement(using: &rng) ?? []) : (allPaths.randomElement(using: &rng) ?? [])
                    switch Int.random(in: 0..<100, using: &rng) {
                    case 0..<10: tree = Self.setting(nil, at: path[...], in: tree)  // missing field
                    case 10..<20:
                        tree = Self.setting(Self.evilValues.randomElement(using: &rng) ?? nil, at: (path + [.key("extra_\(number)")])[...], in: tree)
                    case 20:  // many turns (the budget)
                        let turn = Value.object([("role", "user"), ("message", "I'm allergic to peanuts and I live in Paris.")])
                        tree = Self.setting(
                            .array(Array(repeating: turn, count: Int.random(in: 50...600, using: &rng))), at: [.key("data"), .key("transcript")],
                            in: tree)
                    default: tree = Self.setting(Self.evilValues.randomElement(using: &rng) ?? nil, at: path[...], in: tree)
                    }
                }
            }
            var body = (tree ?? .null).data
            if number >= systematic, Int.random(in: 0..<6, using: &rng) == 0 { body = Self.textMutation(body, &rng) }
            lap("mutate")

            // The gateway.
            let decision: IntakeDecision
            do {
                decision = try intake.classify(
                    kept: body, oversize: body.count > intake.maxBodyBytes, tenant: "default", signatureHeader: "fuzz-\(number)")
            } catch let error as IntakeError {
                tally.counts["refused (400): \(Self.reason(error))", default: 0] += 1
                lap("gateway")
                continue
            }
            lap("gateway")
            guard case .enqueue(let envelope, _) = decision else {
                if case .ignore(let reason) = decision { tally.counts["ignored: \(reason)", default: 0] += 1 }
                continue
            }
            // The worker.
            if number % Self.storeEvery == 0 {
                do {
                    let outcome = try await ingestor.ingest(envelope, logger: testLogger)
                    tally.counts["ingested: \(Self.label(outcome))", default: 0] += 1
                } catch let error as PermanentEventError {
                    tally.counts["dead-lettered: \(error.message)", default: 0] += 1
                }
                lap("worker ingest (SQLite)")
                continue
            }
            defer { lap("worker read + extract") }
            do {
                let (_, data, _) = try EventIngestor.readPostCall(body)
                // Both settings of the tenant's trust of client-supplied ids read the same fields.
                _ = EventIngestor.identity(of: data, trustClientIDs: false)
                _ = EventIngestor.identity(of: data, trustClientIDs: true)
                var cuts = ExtractionBudget.Cuts()
                let conversation = ingestor.budget.bound(Conversation(data, fallbackStart: Date()), cuts: &cuts)
                let extraction = ingestor.budget.cap(LocalExtractor().extractNow(conversation), cuts: &cuts)
                #expect(extraction.memories.count <= ingestor.budget.maxMemories)
                tally.memories += extraction.memories.count
                tally.counts[
                    envelope.type == EventType.callInitiationFailure
                        ? "extracted: call_initiation_failure" : (cuts.isEmpty ? "extracted" : "extracted within the budget (cut)"), default: 0] += 1
            } catch let error as PermanentEventError {
                tally.counts["dead-lettered: \(error.message)", default: 0] += 1
            }
        }
        return tally
    }

    static func reason(_ error: IntakeError) -> String {
        switch error {
        case .malformedJSON: return "invalid_json"
        case .missingField(let field): return "missing_field \(field)"
        case .tooLarge: return "too_large"
        case .duplicateKey: return "duplicate_key"
        case .tooDeep: return "json_too_deep"
        case .fieldTooLong(let field, _): return "field_too_long \(field)"
        }
    }

    static func label(_ outcome: IngestOutcome) -> String {
        switch outcome {
        case .stored: return "stored"
        case .duplicate: return "duplicate"
        case .noUser: return "no_user (recorded)"
        case .noConsent: return "no_consent (recorded)"
        case .tombstoned: return "tombstoned"
        case .recorded: return "recorded"
        case .ignored: return "ignored"
        }
    }
}
