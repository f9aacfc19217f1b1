import EngramApp
import EngramCore
import EngramProviders
import Foundation

/// Deterministic bulk seeding for `engram bench`: N callers × M memories plus one heavy caller,
/// written exactly as the worker writes them (sealed content, keyed term postings, vectors from
/// the configured embedder, initial salience, one processed-event row per batch) through
/// `MemoryVault.prepareBulkInsert` and `MemoryStore.apply`, without the conflict pass: the
/// generator never repeats a slot or a sentence within a caller.
public struct BenchSeeder: Sendable {
    public struct Profile: Sendable, Codable {
        public var callers: Int
        public var memoriesPerCaller: Int
        public var heavyMemories: Int
        public var seed: UInt64
        public var chunkSize: Int

        public init(callers: Int = 1_000, memoriesPerCaller: Int = 100, heavyMemories: Int = 20_000, seed: UInt64 = 42, chunkSize: Int = 500) {
            self.callers = callers
            self.memoriesPerCaller = memoriesPerCaller
            self.heavyMemories = heavyMemories
            self.seed = seed
            self.chunkSize = chunkSize
        }

        public var totalMemories: Int { callers * memoriesPerCaller + heavyMemories }
    }

    public struct Report: Sendable, Codable {
        public var memoriesWritten: Int
        public var batchesWritten: Int
        public var batchesSkipped: Int
        public var seconds: Double
        enum CodingKeys: String, CodingKey {
            case memoriesWritten = "memories_written"
            case batchesWritten = "batches_written"
            case batchesSkipped = "batches_skipped"
            case seconds
        }
    }

    /// The processed-event type of seeded batches.
    public static let eventType = "bench_seed"

    /// Regular caller `index` (0-based): +1555200xxxx.
    public static func phone(caller index: Int) -> String {
        let digits = String(index)
        return "+1555200" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
    /// The heavy caller, outside the regular range.
    public static let heavyPhone = "+15552019999"

    public let vault: MemoryVault
    public let tenant: TenantContext
    public let profile: Profile
    /// Seeding starts from this instant; every memory dates from the year before it.
    public let now: Date

    public init(vault: MemoryVault, tenant: TenantContext, profile: Profile, now: Date = Date()) {
        self.vault = vault
        self.tenant = tenant
        self.profile = profile
        self.now = now
    }

    public func user(caller index: Int) -> UserKey { tenant.userKeys.key(for: .phone(Self.phone(caller: index))) }
    public var heavyUser: UserKey { tenant.userKeys.key(for: .phone(Self.heavyPhone)) }

    /// True when the heavy caller (seeded last) already holds its memories.
    public func isSeeded() async throws -> Bool {
        guard profile.heavyMemories > 0 else {
            guard profile.callers > 0 else { return true }
            return try await vault.activeMemoryCount(tenant: tenant.id, user: user(caller: profile.callers - 1)) >= profile.memoriesPerCaller
        }
        return try await vault.activeMemoryCount(tenant: tenant.id, user: heavyUser) >= profile.heavyMemories
    }

    struct Job: Sendable {
        var label: String  // `c<index>` or `heavy`: never the phone number (idempotency keys are stored)
        var phone: String
        var callerSeed: UInt64
        var chunk: Int
        var range: Range<Int>
    }

    func jobs() -> [Job] {
        var jobs: [Job] = []
        func add(label: String, phone: String, callerSeed: UInt64, count: Int) {
            var start = 0
            var chunk = 0
            while start < count {
                let end = min(count, start + profile.chunkSize)
                jobs.append(Job(label: label, phone: phone, callerSeed: callerSeed, chunk: chunk, range: start..<end))
                start = end
                chunk += 1
            }
        }
        for index in 0..<profile.callers {
            add(label: "c\(index)", phone: Self.phone(caller: index), callerSeed: UInt64(index), count: profile.memoriesPerCaller)
        }
        add(label: "heavy", phone: Self.heavyPhone, callerSeed: UInt64.max, count: profile.heavyMemories)
        return jobs
    }

    /// Seeds what is missing (batches already recorded are skipped), `parallelism` batches at a
    /// time: building rows runs in parallel, the store serialises the writes.
    public func seed(parallelism: Int = max(2, ProcessInfo.processInfo.activeProcessorCount), progress: @escaping @Sendable (String) -> Void)
        async throws -> Report
    {
        let started = ContinuousClock.now
        let jobs = jobs()
        let total = profile.totalMemories
        let counter = SeedCounter()
        try await withThrowingTaskGroup(of: (written: Int, skipped: Bool).self) { group in
            var next = 0
            var running = 0
            var lastReport = ContinuousClock.now
            func report(force: Bool = false) async {
                let (done, _, _) = await counter.snapshot()
                guard force || ContinuousClock.now - lastReport >= .seconds(2) else { return }
                lastReport = ContinuousClock.now
                let seconds = max(0.001, (ContinuousClock.now - started).seconds)
                let rate = Double(done) / seconds
                let left = rate > 0 ? " about \(SafeNumber.clampedInt((Double(max(0, total - done)) / rate).rounded())) s left" : ""
                progress("seeded \(done)/\(total) memories (\(SafeNumber.clampedInt(rate))/s,\(left))")
            }
            while next < jobs.count || running > 0 {
                while running < parallelism, next < jobs.count {
                    let job = jobs[next]
                    next += 1
                    running += 1
                    group.addTask { try await self.run(job) }
                }
                if let result = try await group.next() {
                    running -= 1
                    await counter.add(result.written, skipped: result.skipped)
                    await report()
                }
            }
            await report(force: true)
        }
        let (written, batches, skipped) = await counter.snapshot()
        return Report(memoriesWritten: written, batchesWritten: batches, batchesSkipped: skipped, seconds: (ContinuousClock.now - started).seconds)
    }

    func run(_ job: Job) async throws -> (written: Int, skipped: Bool) {
        let key = "bench:\(job.label):\(job.chunk)"
        if try await vault.isProcessed(tenant: tenant.id, idempotencyKey: key) { return (0, true) }
        let user = tenant.userKeys.key(for: .phone(job.phone))
        let memories = Self.memories(seed: profile.seed, caller: job.callerSeed, chunk: job.chunk, count: job.range.count, now: now)
        let extraction = Extraction(memories: memories, summary: nil, userName: nil, extractor: "bench-v1")
        let batch = try await vault.prepareBulkInsert(
            tenant: tenant.id, user: user, extraction: extraction, conversationID: "bench-seed-\(job.label)-\(job.chunk)",
            callAt: memories.compactMap(\.validFrom).max(), idempotencyKey: key, eventID: "bench-\(job.label)-\(job.chunk)",
            eventType: Self.eventType)
        return try await vault.write(batch) ? (batch.inserts.count, false) : (0, true)
    }

    // MARK: generated memories

    /// The memories of one chunk of one caller: chunk 0 opens with the caller's profile (one
    /// memory per slot), then call summaries and a mix of sectors; never a repeated sentence
    /// within the chunk, and a distinguishing detail in each so chunks do not repeat each other.
    public static func memories(seed: UInt64, caller: UInt64, chunk: Int, count: Int, now: Date) -> [ExtractedMemory] {
        var rng = SplitMix64.derived(seed, caller, UInt64(chunk))
        var out: [ExtractedMemory] = []
        var seen = Set<String>()
        out.reserveCapacity(count)
        func append(_ memory: ExtractedMemory) {
            guard out.count < count, seen.insert(memory.content).inserted else { return }
            out.append(memory)
        }
        if chunk == 0 {
            typealias V = BenchVocabulary
            let relation = rng.pick(V.relations)
            let facts: [(String, Sector, String, Double)] = [
                ("The caller's name is \(rng.pick(V.names)).", .semantic, "name", 0.9),
                ("The caller lives in \(rng.pick(V.cities)).", .semantic, "home.city", 0.6),
                ("The caller works at \(rng.pick(V.workplaces)).", .semantic, "work", 0.6),
                ("The caller's favourite food is \(rng.pick(V.foods)).", .semantic, "favourite.food", 0.6),
                ("The caller prefers to be contacted \(rng.pick(V.contactTimes)).", .procedural, "preferred_contact_time", 0.7),
                ("The caller's \(relation) is called \(rng.pick(V.names)).", .semantic, "family.\(relation)", 0.7),
            ]
            for (index, fact) in facts.enumerated() {
                let when = date(now, daysAgo: 30 + rng.below(330), &rng)
                append(
                    ExtractedMemory(content: fact.0, sector: fact.1, slot: fact.2, importance: fact.3, validFrom: when, sourceTurns: [2 * index + 1]))
            }
        }
        var attempts = 0
        while out.count < count, attempts < count * 20 {
            attempts += 1
            append(generated(&rng, now: now))
        }
        return out
    }

    static func date(_ now: Date, daysAgo: Int, _ rng: inout SplitMix64) -> Date {
        now.addingTimeInterval(-Double(daysAgo) * 86_400 - Double(rng.below(86_400)))
    }

    static func generated(_ rng: inout SplitMix64, now: Date) -> ExtractedMemory {
        typealias V = BenchVocabulary
        let when = date(now, daysAgo: rng.below(365), &rng)
        let turns = [rng.below(30), rng.below(30) + 1].sorted()
        let roll = rng.unit()
        switch roll {
        case ..<0.08:
            let stamp = ISO8601DateFormatter.string(from: when, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
            return ExtractedMemory(
                content:
                    "Call on \(stamp): The caller asked about the \(rng.pick(V.adjectives)) \(rng.pick(V.nouns)) and \(rng.pick(V.topics)); the agent \(rng.pick(V.agentActions)) (reference \(1000 + rng.below(9000))).",
                sector: .episodic, importance: 0.7, validFrom: when, sourceTurns: [], kind: "summary")
        case ..<0.55:
            return ExtractedMemory(
                content:
                    "The caller said the \(rng.pick(V.adjectives)) \(rng.pick(V.nouns)) from \(rng.pick(V.places)) \(rng.pick(V.verbPhrases)) on \(rng.pick(V.weekdays)) (order \(10_000 + rng.below(90_000))).",
                sector: .episodic, importance: 0.4 + 0.2 * rng.unit(), validFrom: when, sourceTurns: turns)
        case ..<0.72:
            return ExtractedMemory(
                content:
                    "The caller likes \(rng.pick(V.adjectives)) \(rng.pick(V.nouns)) from \(rng.pick(V.places)), especially on \(rng.pick(V.weekdays))s.",
                sector: .semantic, importance: 0.55, validFrom: when, sourceTurns: [turns[0]])
        case ..<0.82:
            return ExtractedMemory(
                content: "The caller prefers \(rng.pick(V.channels)) \(rng.pick(V.contactTimes)) when discussing \(rng.pick(V.topics)).",
                sector: .procedural, importance: 0.6, validFrom: when, sourceTurns: [turns[0]])
        case ..<0.92:
            return ExtractedMemory(
                content:
                    "The caller felt \(rng.pick(V.emotions)) about the \(rng.pick(V.nouns)) and \(rng.pick(V.topics)) after the \(rng.pick(V.weekdays)) call.",
                sector: .emotional, importance: 0.5, validFrom: when, sourceTurns: turns)
        case ..<0.97:
            return ExtractedMemory(
                content:
                    "Across calls, the caller keeps returning to \(rng.pick(V.topics)) and the \(rng.pick(V.adjectives)) \(rng.pick(V.nouns)) from \(rng.pick(V.places)).",
                sector: .reflective, importance: 0.6, validFrom: when, sourceTurns: [], kind: "summary")
        default:
            return ExtractedMemory(
                content: "The caller is allergic to \(rng.pick(V.allergens)) and mentioned \(rng.pick(V.topics)).",
                sector: .semantic, importance: 0.9, validFrom: when, sourceTurns: [turns[0]], sensitive: true)
        }
    }
}

/// Counts what the seeder wrote, across its parallel batches.
actor SeedCounter {
    var memories = 0
    var batches = 0
    var skipped = 0
    func add(_ written: Int, skipped wasSkipped: Bool) {
        memories += written
        if wasSkipped { skipped += 1 } else { batches += 1 }
    }
    func snapshot() -> (Int, Int, Int) { (memories, batches, skipped) }
}

/// The fixed vocabulary of the benchmark's memories, transcripts and queries.
public enum BenchVocabulary {
    public static let names = [
        "Dana", "Marco", "Aisha", "Kenji", "Lucia", "Omar", "Greta", "Tomas", "Priya", "Noah", "Elena", "Samir",
        "Ingrid", "Felix", "Maya", "Jonas", "Leila", "Pedro", "Hanna", "Victor", "Zoe", "Ravi", "Clara", "Emil",
    ]
    public static let cities = [
        "Lyon", "Porto", "Denver", "Osaka", "Leeds", "Austin", "Turin", "Bergen", "Quebec", "Dublin", "Tucson", "Graz",
        "Malmo", "Seville", "Boise", "Utrecht",
    ]
    public static let workplaces = [
        "the bakery on Main Street", "a dental clinic", "the city library", "a logistics company", "the regional hospital",
        "a software startup", "the high school", "a bicycle shop", "the airport", "a law firm", "a hotel", "the post office",
    ]
    public static let foods = ["lasagne", "ramen", "tacos", "paella", "curry", "dumplings", "risotto", "falafel", "pho", "gnocchi"]
    public static let contactTimes = [
        "in the mornings", "in the evenings", "after 6 pm", "before 10 am", "on weekends", "on weekdays", "at lunchtime",
    ]
    public static let relations = ["dog", "cat", "sister", "son", "daughter", "brother", "partner"]
    public static let adjectives = [
        "blue", "wireless", "refurbished", "annual", "premium", "broken", "new", "spare", "quiet", "heavy", "compact", "organic",
        "vintage", "digital", "leather", "waterproof", "monthly", "express", "family", "electric",
    ]
    public static let nouns = [
        "subscription", "router", "invoice", "kettle", "bicycle", "headset", "mattress", "delivery", "voucher", "thermostat",
        "printer", "backpack", "warranty", "camera", "charger", "suitcase", "blender", "lamp", "jacket", "membership",
        "phone plan", "gift card", "coffee machine", "dishwasher", "insurance policy",
    ]
    public static let places = [
        "the downtown store", "the online shop", "the airport kiosk", "the warehouse", "the outlet", "the pop-up market",
        "the partner site", "the north branch", "the catalogue", "the app",
    ]
    public static let verbPhrases = [
        "arrived late", "stopped working", "was charged twice", "needs a refund", "was the wrong size", "arrived damaged",
        "works well now", "was never delivered", "needs an upgrade", "was a gift", "should be cancelled", "was replaced",
    ]
    public static let weekdays = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    public static let topics = [
        "billing", "the loyalty points", "a late delivery", "the return policy", "a price match", "the installation",
        "a missing part", "the cancellation fee", "the upgrade offer", "an address change", "the warranty claim", "a discount",
    ]
    public static let agentActions = [
        "issued a refund", "booked a technician", "sent a replacement", "escalated the ticket", "applied a discount",
        "updated the address", "explained the policy", "scheduled a callback",
    ]
    public static let channels = ["email", "text messages", "phone calls", "a callback", "the app chat"]
    public static let emotions = ["frustrated", "relieved", "delighted", "anxious", "annoyed", "grateful", "confused"]
    public static let allergens = ["peanuts", "penicillin", "shellfish", "latex", "pollen", "gluten"]

    /// A search-memory query an agent's LLM might send.
    public static func query(_ rng: inout SplitMix64) -> String {
        switch rng.below(4) {
        case 0: return "what happened with the \(rng.pick(adjectives)) \(rng.pick(nouns))"
        case 1: return "\(rng.pick(topics)) \(rng.pick(nouns))"
        case 2: return "does the caller like \(rng.pick(nouns)) from \(rng.pick(places))"
        default: return "how does the caller prefer to be contacted about \(rng.pick(topics))"
        }
    }

    /// A short phone-call transcript: (role, message) turns, ElevenLabs' roles.
    public static func transcript(_ rng: inout SplitMix64) -> [(role: String, message: String)] {
        let turns = [
            ("agent", "Hi \(rng.pick(names)), thanks for calling. How can I help today?"),
            ("user", "I'm calling about the \(rng.pick(adjectives)) \(rng.pick(nouns)) from \(rng.pick(places)); it \(rng.pick(verbPhrases))."),
            ("agent", "I'm sorry to hear that. I can help with \(rng.pick(topics))."),
            ("user", "I really like \(rng.pick(foods)) and I live in \(rng.pick(cities)). Please call me \(rng.pick(contactTimes))."),
            ("agent", "Noted. I have \(rng.pick(agentActions)) and will follow up."),
        ]
        return turns.map { (role: $0.0, message: $0.1) }
    }
}
