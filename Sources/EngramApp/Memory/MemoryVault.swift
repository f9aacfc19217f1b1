@preconcurrency import Crypto
import EngramCore
import EngramObservability
import EngramProviders
import EngramStore
import Foundation

/// One search result, decrypted, with the parts of its score.
public struct SearchHit: Sendable {
    public var memory: Memory
    public var breakdown: ScoreBreakdown
}

/// A tenant as the services use it: its record and the deriver of its user keys.
public struct TenantContext: Sendable {
    public let record: TenantRecord
    public let userKeys: UserKeyDeriver
    public var id: String { record.id }
}

/// Encrypts, indexes and finds memories over any `MemoryStore`: the part of the store layer that
/// is the same for every backend (per-user data keys, keyed term hashes, hybrid search, the
/// conflict rules applied to a write).
public struct MemoryVault: Sendable {
    /// Internal: outside EngramApp the data is reached through the vault's operations only.
    let store: any MemoryStore
    let keyRing: KeyRing
    public let embedder: any Embedder
    public let vectorCache: VectorCache
    /// Per-user keyword indexes, so a search reads no posting from the store (`TermIndex`).
    public let termIndexCache: TermIndexCache
    public let clock: WallClock
    /// The local embedder keyed per tenant, made once per tenant.
    let tenantEmbedders = TenantEmbedders()
    /// Slots and ids of each user's current memories, for conflict resolution (write path).
    public let conflictIndexes = ConflictIndexCache()
    /// Recent pre-call orders, shared by the copies of this vault (PrecallContextBuilder).
    let precallRankings = PrecallRankingCache()

    public init(
        store: any MemoryStore, keyRing: KeyRing, embedder: any Embedder, vectorCache: VectorCache = VectorCache(),
        termIndexCache: TermIndexCache = TermIndexCache(), clock: WallClock = .system
    ) {
        self.store = store
        self.keyRing = keyRing
        self.embedder = embedder
        self.vectorCache = vectorCache
        self.termIndexCache = termIndexCache
        self.clock = clock
    }

    /// The embedder for a tenant's texts: the local embedder keyed with the tenant's own key
    /// (`LocalEmbedder.tenantKey`), so vectors reveal no words and differ across tenants; any
    /// other embedder as configured.
    public func embedder(forTenant tenant: String) async throws -> any Embedder {
        guard let local = embedder as? LocalEmbedder, !local.isKeyed else { return embedder }
        if let cached = tenantEmbedders.get(tenant) { return cached }
        guard let record = try await store.tenant(id: tenant) else { throw StoreError.notFound("tenant") }
        let secret = try keyRing.unwrap(record.pseudonymSecretWrapped, keyID: record.keyID, context: "tenant:\(tenant)")
        let keyed = LocalEmbedder(key: LocalEmbedder.tenantKey(tenantSecret: secret))
        tenantEmbedders.set(tenant, keyed)
        return keyed
    }

    // MARK: tenants and users

    /// Loads a tenant, creating it (with a fresh pseudonym secret) if `create` and missing.
    public func tenant(_ id: String, create: Bool = false, consentMode: ConsentMode = .implicit) async throws -> TenantContext? {
        var record = try await store.tenant(id: id)
        if record == nil, create {
            let secret = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
            let wrapped = try keyRing.wrap(secret, context: "tenant:\(id)")
            record = try await store.ensureTenant(
                TenantRecord(
                    id: id, name: id, pseudonymSecretWrapped: wrapped.wrapped, keyID: wrapped.keyID, consentMode: consentMode,
                    allowSensitivePrecall: false, createdAt: clock.now()))
        }
        guard let record else { return nil }
        let secret = try keyRing.unwrap(record.pseudonymSecretWrapped, keyID: record.keyID, context: "tenant:\(id)")
        return TenantContext(record: record, userKeys: UserKeyDeriver(tenantSecret: secret))
    }

    /// The default tenant, created on first start; its consent mode follows `ENGRAM_CONSENT_MODE`.
    public func defaultTenant(consentMode: ConsentMode) async throws -> TenantContext? {
        guard let tenant = try await tenant("default", create: true, consentMode: consentMode) else { return nil }
        if tenant.record.consentMode != consentMode {
            try await store.setTenantConsentMode(tenant: "default", mode: consentMode, allowSensitivePrecall: tenant.record.allowSensitivePrecall)
            return try await self.tenant("default")
        }
        return tenant
    }

    public func dataKey(of user: UserRecord) throws -> UserDataKey {
        try keyRing.unwrapDataKey(user.dataKeyWrapped, keyID: user.keyID, tenant: user.tenant, user: user.user.rawValue)
    }

    /// The user's row and key, creating both on first write.
    public func userForWriting(tenant: String, user: UserKey) async throws -> (UserRecord, UserDataKey) {
        if let existing = try await store.user(tenant: tenant, user: user) { return (existing, try dataKey(of: existing)) }
        let key = UserDataKey.generate()
        let wrapped = try keyRing.wrapDataKey(key, tenant: tenant, user: user.rawValue)
        let record = try await store.ensureUser(
            UserRecord(tenant: tenant, user: user, dataKeyWrapped: wrapped.wrapped, keyID: wrapped.keyID, createdAt: clock.now()))
        return (record, try dataKey(of: record))
    }

    // MARK: crypto helpers

    static func contentContext(_ tenant: String, _ user: UserKey, _ id: String) -> String { "memory:\(tenant):\(user.rawValue):\(id)" }

    public func decrypt(_ row: MemoryRow, key: UserDataKey) throws -> Memory {
        let content = try key.cipher.openString(row.sealedContent, context: Self.contentContext(row.tenant, row.user, row.id))
        return Memory(
            id: row.id, tenant: row.tenant, user: row.user, sector: row.sector, content: content, slot: row.slot,
            importance: row.importance, salience0: row.salience0, reinforcedAt: row.reinforcedAt, sensitive: row.sensitive,
            validFrom: row.validFrom, validTo: row.validTo, supersededBy: row.supersededBy, status: row.status,
            sources: row.sources, createdAt: row.createdAt, lastRecalledAt: row.lastRecalledAt, needsReextraction: row.needsReextraction)
    }

    /// Keyed hashes of normalised terms with their frequencies: the index never holds words.
    public static func termHashes(_ text: String, key: UserDataKey) -> [Data: Int] {
        let hasher = TermHasher(key: key)
        var counts: [Data: Int] = [:]
        for term in TextNormalizer.terms(text) { counts[hasher.hash(term), default: 0] += 1 }
        return counts
    }

    // MARK: reads

    /// Current memories of a user, decrypted (or all, with history).
    public func memories(tenant: String, user: UserKey, includeHistory: Bool = false) async throws -> [Memory] {
        guard let record = try await store.user(tenant: tenant, user: user) else { return [] }
        let key = try dataKey(of: record)
        return try await store.memories(tenant: tenant, user: user, includeHistory: includeHistory).map { try decrypt($0, key: key) }
    }

    /// Hybrid search: top vector and top BM25 candidates fused by the scoring formula, near-duplicates collapsed.
    public func search(tenant: String, user: UserKey, query: String, limit: Int, includeSensitive: Bool = true) async throws -> [SearchHit] {
        guard let record = try await store.user(tenant: tenant, user: user) else { return [] }
        let key = try dataKey(of: record)
        let now = clock.now()

        // The vector, keyword and head reads do not depend on each other: issued together. All
        // come from per-user caches of the record's version (read from the store only when it changed).
        let queryTerms = Array(Self.termHashes(query, key: key).keys)
        let embedder = try await self.embedder(forTenant: tenant)
        async let vectorRead = vectorEntry(record, embedder: embedder)
        async let keywordRead = keywordCandidates(record, terms: queryTerms)
        async let headsRead = headIndex(record)
        async let queryVectorRead = try? embedder.embed([query]).first

        // Vector candidates; an unavailable query embedding falls back to keywords only.
        var cosine: [String: Double] = [:]
        let entry = try await vectorRead
        if let queryVector = await queryVectorRead {
            for (id, similarity) in entry.nearest(queryVector, k: MemoryModelConstants.vectorCandidates) {
                cosine[id] = Double(similarity)
            }
        }

        // Keyword candidates over keyed term hashes (MemoryVault+Keywords), best first.
        var bm25: [String: Double] = [:]
        let top = try await keywordRead
        let best = top.first?.score ?? 1
        for (id, score) in top { bm25[id] = best > 0 ? score / best : 0 }

        // Every candidate scored from its head; rows are read for the first hits and the answer
        // only (MemoryVault+Ranking).
        let heads = try await headsRead
        var ranked = Self.rank(
            Array(cosine.keys) + top.map(\.id), heads: heads, cosine: cosine, bm25: bm25, includeSensitive: includeSensitive, now: now,
            weights: embedder.scoringWeights)
        var memories: [String: Memory] = [:]
        let leading = collapse(ranked, entry: entry, limit: MemoryModelConstants.feedbackHits)
        // The first step's answer is read with them: the second step mostly reorders it, so the
        // read after it has little or nothing left to fetch (one store round trip, not two).
        let firstAnswer = limit > leading.count ? collapse(ranked, entry: entry, limit: limit) : leading
        try await read(
            Array(Set(leading.map(\.id) + firstAnswer.map(\.id))), into: &memories, record: record, key: key, includeSensitive: includeSensitive)

        // Second step: the first hits' rare terms as a second keyword query (MemoryVault+Feedback).
        let first = FirstStep(
            query: query, queryTermHashes: queryTerms, record: record, key: key, ranked: ranked,
            leadingTexts: leading.compactMap { memories[$0.id]?.content }, cosine: cosine,
            bestBM25: top.first?.score ?? 0, heads: heads, includeSensitive: includeSensitive, now: now, weights: embedder.scoringWeights)
        if let second = try await feedback(first) { ranked = second }
        let answer = collapse(ranked, entry: entry, limit: limit)
        try await read(answer.map(\.id), into: &memories, record: record, key: key, includeSensitive: includeSensitive)
        return answer.compactMap { item in memories[item.id].map { SearchHit(memory: $0, breakdown: item.breakdown) } }
    }

    /// The cache version of a user: changes whenever the searchable set does, in any process.
    static func cacheVersion(_ record: UserRecord) -> String { "\(record.createdAt.timeIntervalSince1970):\(record.memoryVersion)" }

    /// The user's current memories without content, cached per version (pre-call ranking). Recall
    /// reinforcement does not bump the version, so cached salience can lag until the next write.
    public func heads(_ record: UserRecord) async throws -> [MemoryHead] {
        let store = self.store
        return try await vectorCache.heads(tenant: record.tenant, user: record.user, version: Self.cacheVersion(record)) {
            try await store.memoryHeads(tenant: record.tenant, user: record.user)
        }
    }

    func vectorEntry(_ record: UserRecord, embedder: any Embedder) async throws -> VectorCache.Entry {
        let store = self.store
        let embedderID = embedder.id
        return try await vectorCache.entry(
            tenant: record.tenant, user: record.user, embedder: embedderID, dimension: embedder.dimension, version: Self.cacheVersion(record)
        ) {
            try await store.vectors(tenant: record.tenant, user: record.user, embedder: embedderID)
        }
    }

    /// Writes an operator's correction: re-seals content and rebuilds its term hashes and vector.
    public func replace(_ memory: Memory) async throws {
        guard let record = try await store.user(tenant: memory.tenant, user: memory.user) else { throw StoreError.notFound("user") }
        let key = try dataKey(of: record)
        let sealed = try key.cipher.sealString(memory.content, context: Self.contentContext(memory.tenant, memory.user, memory.id))
        let terms = Self.termHashes(memory.content, key: key)
        let embedder = try await self.embedder(forTenant: memory.tenant)
        let vector = try await embedder.embed([memory.content]).first ?? []
        let row = MemoryRow(
            id: memory.id, tenant: memory.tenant, user: memory.user, sector: memory.sector, sealedContent: sealed, slot: memory.slot,
            importance: memory.importance, salience0: memory.salience0, reinforcedAt: memory.reinforcedAt, sensitive: memory.sensitive,
            validFrom: memory.validFrom, validTo: memory.validTo, supersededBy: memory.supersededBy, status: memory.status,
            sources: memory.sources, createdAt: memory.createdAt, lastRecalledAt: memory.lastRecalledAt,
            needsReextraction: memory.needsReextraction, termCount: terms.values.reduce(0, +))
        try await store.replaceMemory(
            row, vectors: [VectorRow(memoryID: memory.id, embedder: embedder.id, vector: vector)],
            postings: terms.map { TermPosting(term: $0.key, memoryID: memory.id, frequency: $0.value) })
    }

    // MARK: writes

    /// Builds the write for one extraction: embeds, applies the conflict rules against the
    /// user's current memories, seals content and hashes terms. The caller applies it.
    /// `replacing`: memories the write will delete (`MemoryStore.replaceExtraction`); the rules
    /// then run against the memories as they will be without them.
    public func prepareWrite(
        tenant: String, user: UserKey, extraction: Extraction, conversationID: String?, callAt: Date?,
        idempotencyKey: String, eventID: String, eventType: String, replacing: Set<String> = []
    ) async throws -> WriteBatch {
        let now = clock.now()
        let (record, key) = try await userForWriting(tenant: tenant, user: user)
        var batch = WriteBatch(
            tenant: tenant, user: user, idempotencyKey: idempotencyKey, eventID: eventID, eventType: eventType, processedAt: now, callAt: callAt)
        batch.preparedAgainst = record
        guard !extraction.memories.isEmpty else { return batch }
        let embedder = try await self.embedder(forTenant: tenant)

        // All of the event's texts in one call to the embedder.
        let vectors = try await EngramTracing.withSpan("embed") { span in
            span.attributes["engram.embedder"] = embedder.id
            span.attributes["engram.texts"] = extraction.memories.count
            return try await embedder.embed(extraction.memories.map(\.content))
        }
        let entry = try await vectorEntry(record, embedder: embedder)
        // Only the memories the rules could pick (same slot, a similar vector, or no vector), found
        // through the caches; every current memory (decrypted) when that cannot be decided.
        let found: WriteCandidates
        if replacing.isEmpty,
            let narrowed = try await conflictCandidates(
                record, key: key, entry: entry, extraction: extraction, vectors: vectors, duplicateThreshold: embedder.duplicateThreshold)
        {
            found = narrowed
        } else {
            found = try await allCandidates(record, key: key, entry: entry, replacing: replacing)
        }
        var candidates = found.candidates
        let existingByID = found.existing
        var pendingIndex: [String: Int] = [:]  // new memory id → index in batch.inserts
        var reinforcedNow: [String: Double] = [:]
        for (extracted, vector) in zip(extraction.memories, vectors) {
            let id = UUIDv7.make(at: now)
            let source = MemorySource(
                conversationID: conversationID, turns: extracted.sourceTurns, kind: extracted.kind, extractor: extraction.extractor)
            let candidate = ResolutionCandidate(id: id, sector: extracted.sector, slot: extracted.slot, content: extracted.content, vector: vector)
            switch ConflictResolution.resolve(candidate, against: candidates, duplicateThreshold: embedder.duplicateThreshold) {
            case .reinforce(let existingID):
                if let index = pendingIndex[existingID] {
                    if !batch.inserts[index].sources.contains(source) { batch.inserts[index].sources.append(source) }
                } else if let memory = existingByID[existingID] {
                    var current = memory
                    if let s = reinforcedNow[existingID] {
                        current.salience0 = s
                        current.reinforcedAt = now
                    }
                    let salience = Salience.reinforced(current, at: now)
                    reinforcedNow[existingID] = salience
                    batch.reinforcements.append((existingID, salience, source))
                }
                continue
            case .supersede(let existingID):
                let validFrom = extracted.validFrom ?? callAt ?? now
                if let index = pendingIndex[existingID] {
                    batch.inserts[index].validTo = validFrom
                    batch.inserts[index].supersededBy = id
                } else {
                    batch.supersessions.append((existingID, validFrom, id))
                }
                candidates.removeAll { $0.id == existingID }
            case .insert:
                break
            }
            try appendInsert(
                extracted, id: id, source: source, vector: vector, embedderID: embedder.id, key: key, fallback: extraction.isFallback, callAt: callAt,
                now: now, to: &batch)
            pendingIndex[id] = batch.inserts.count - 1
            candidates.append(candidate)
        }
        // A memory superseded within this batch is not current either.
        batch.inserts = batch.inserts.map { row in
            var row = row
            if let validTo = row.validTo, row.supersededBy != nil { row.validTo = max(validTo, row.validFrom) }
            return row
        }
        return batch
    }

    /// The current memories once `removed` are deleted: a memory one of them superseded takes
    /// over its `valid_to` and `superseded_by`, as `MemoryStore.replaceExtraction` does.
    static func currentRows(removing removed: Set<String>, from history: [MemoryRow]) -> [MemoryRow] {
        var rows = Dictionary(history.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for id in removed.sorted() {
            guard let gone = rows.removeValue(forKey: id) else { continue }
            for (otherID, other) in rows where other.supersededBy == id {
                rows[otherID]?.validTo = gone.validTo
                rows[otherID]?.supersededBy = gone.supersededBy
            }
        }
        return history.compactMap { rows[$0.id] }.filter { $0.status == .active && $0.validTo == nil }
    }

    /// Builds the rows of a bulk load (the benchmark's seeder) exactly as `prepareWrite` does
    /// (sealed content, keyed term postings, the embedder's vectors, initial salience) but
    /// WITHOUT the conflict-resolution pass: the caller guarantees the memories are distinct
    /// (no repeated slot, no near-duplicates). One call is one `WriteBatch`: keep it to a few
    /// hundred memories.
    public func prepareBulkInsert(
        tenant: String, user: UserKey, extraction: Extraction, conversationID: String?, callAt: Date?,
        idempotencyKey: String, eventID: String, eventType: String
    ) async throws -> WriteBatch {
        let now = clock.now()
        let (_, key) = try await userForWriting(tenant: tenant, user: user)
        var batch = WriteBatch(
            tenant: tenant, user: user, idempotencyKey: idempotencyKey, eventID: eventID, eventType: eventType, processedAt: now, callAt: callAt)
        guard !extraction.memories.isEmpty else { return batch }
        let embedder = try await self.embedder(forTenant: tenant)
        let vectors = try await embedder.embed(extraction.memories.map(\.content))
        batch.inserts.reserveCapacity(extraction.memories.count)
        batch.vectors.reserveCapacity(extraction.memories.count)
        for (extracted, vector) in zip(extraction.memories, vectors) {
            let id = UUIDv7.make(at: now)
            let source = MemorySource(
                conversationID: conversationID, turns: extracted.sourceTurns, kind: extracted.kind, extractor: extraction.extractor)
            try appendInsert(
                extracted, id: id, source: source, vector: vector, embedderID: embedder.id, key: key, fallback: extraction.isFallback, callAt: callAt,
                now: now, to: &batch)
        }
        return batch
    }

    /// One new memory as the store holds it: sealed content, its vector, its keyed term postings.
    private func appendInsert(
        _ extracted: ExtractedMemory, id: String, source: MemorySource, vector: [Float], embedderID: String, key: UserDataKey, fallback: Bool,
        callAt: Date?, now: Date, to batch: inout WriteBatch
    ) throws {
        let sealed = try key.cipher.sealString(extracted.content, context: Self.contentContext(batch.tenant, batch.user, id))
        let terms = Self.termHashes(extracted.indexText ?? extracted.content, key: key)
        batch.inserts.append(
            MemoryRow(
                id: id, tenant: batch.tenant, user: batch.user, sector: extracted.sector, sealedContent: sealed, slot: extracted.slot,
                importance: extracted.importance, salience0: MemoryModelConstants.initialSalience(importance: extracted.importance),
                reinforcedAt: now, sensitive: extracted.sensitive, validFrom: extracted.validFrom ?? callAt ?? now, validTo: nil,
                supersededBy: nil, status: .active, sources: [source], createdAt: now, lastRecalledAt: nil,
                needsReextraction: fallback, termCount: terms.values.reduce(0, +)))
        batch.vectors.append(VectorRow(memoryID: id, embedder: embedderID, vector: vector))
        batch.postings.append(contentsOf: terms.map { TermPosting(term: $0.key, memoryID: id, frequency: $0.value) })
    }
}

/// Keyed embedders per tenant, shared by the copies of one `MemoryVault`.
final class TenantEmbedders: @unchecked Sendable {
    private let lock = NSLock()
    private var byTenant: [String: any Embedder] = [:]

    func get(_ tenant: String) -> (any Embedder)? { lock.withLock { byTenant[tenant] } }
    func set(_ tenant: String, _ embedder: any Embedder) { lock.withLock { byTenant[tenant] = embedder } }
}
