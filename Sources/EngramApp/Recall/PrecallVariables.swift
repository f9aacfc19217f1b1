import EngramCore
import Foundation

/// The dynamic variables Engram gives an agent before a call: always the full set.
public struct PrecallVariables: Codable, Sendable, Equatable {
    public var memoryContext: String
    public var userName: String
    public var isReturningCaller: Bool
    public var lastCallSummary: String
    public var daysSinceLastCall: Int
    public var memoryCount: Int

    enum CodingKeys: String, CodingKey {
        case memoryContext = "memory_context"
        case userName = "user_name"
        case isReturningCaller = "is_returning_caller"
        case lastCallSummary = "last_call_summary"
        case daysSinceLastCall = "days_since_last_call"
        case memoryCount = "memory_count"
    }

    /// What a new, unknown or withheld caller gets (and every fallback).
    public static let neutral = PrecallVariables(
        memoryContext: "", userName: "", isReturningCaller: false, lastCallSummary: "", daysSinceLastCall: -1, memoryCount: 0)

    public init(memoryContext: String, userName: String, isReturningCaller: Bool, lastCallSummary: String, daysSinceLastCall: Int, memoryCount: Int) {
        self.memoryContext = memoryContext
        self.userName = userName
        self.isReturningCaller = isReturningCaller
        self.lastCallSummary = lastCallSummary
        self.daysSinceLastCall = daysSinceLastCall
        self.memoryCount = memoryCount
    }

    /// `{{name}}` substitution for the optional first-message and prompt templates.
    public func render(_ template: String) -> String {
        var text = template
        let values: [String: String] = [
            "memory_context": memoryContext, "user_name": userName, "is_returning_caller": String(isReturningCaller),
            "last_call_summary": lastCallSummary, "days_since_last_call": String(daysSinceLastCall), "memory_count": String(memoryCount),
        ]
        for (name, value) in values { text = text.replacingOccurrences(of: "{{\(name)}}", with: value) }
        return text
    }
}

/// Builds pre-call context (MEMORY-MODEL.md, "Pre-call has no question"): the caller's profile
/// first (current slot facts), then the last call's summary, then the most salient others,
/// within a character budget, packed by `AnswerPacker` (no turn twice). Sensitive memories stay out unless the tenant allows them.
public struct PrecallContextBuilder: Sendable {
    public let vault: MemoryVault
    public let characterBudget: Int
    /// Recent pre-call orders (ids and saliences, no content), reused for a minute per caller version;
    /// the vault's, so that erasing a caller drops them (`MemoryVault.forgetCached`).
    var rankings: PrecallRankingCache { vault.precallRankings }

    public init(vault: MemoryVault, characterBudget: Int) {
        self.vault = vault
        self.characterBudget = characterBudget
    }

    /// The variables, and the memories injected (to reinforce).
    public func variables(tenant: TenantContext, user: UserKey, includeSensitive: Bool) async throws -> (PrecallVariables, [Memory]) {
        guard let record = try await vault.store.user(tenant: tenant.id, user: user) else { return (.neutral, []) }
        let now = vault.clock.now()
        let key = try vault.dataKey(of: record)
        let heads = try await vault.heads(record)
        guard !heads.isEmpty else { return (.neutral, []) }

        // Slots, the last summary, then the others by salience: ranked lazily (PrecallRanking), as
        // the walk below reads a few dozen of a caller's thousands.
        // Reused for a minute (PrecallRankingCache): a call's first LLM turn follows its pre-call.
        let rankingKey = PrecallRankingCache.key(tenant: tenant.id, user: user, includeSensitive: includeSensitive)
        let version = MemoryVault.cacheVersion(record)
        let cached = rankings.ranking(key: rankingKey, version: version, now: now)
        var ordered = cached?.ranking ?? PrecallRanking(heads: heads, includeSensitive: includeSensitive, now: now)
        defer { rankings.keep(ordered, key: rankingKey, version: version, rankedAt: cached?.rankedAt ?? now, now: now) }
        let slots = ordered.slots
        let lastSummary = ordered.lastSummary

        var packer = AnswerPacker(budget: characterBudget)
        var userName = ""
        var summaryText = ""
        // Decrypt in small pages, in rank order, until the budget is spent. One packer builds the
        // answer: overlapping episodes merge, no turn is given twice, what does not fit is passed
        // over. After the profile and the summary, the walk ends once less than a memory's worth of
        // characters is left or a few memories in a row did not fit (a caller can hold thousands).
        let alwaysRead = slots.count + (lastSummary == nil ? 0 : 1)
        var misses = 0
        var position = 0
        fill: while position < ordered.count {
            let page = ordered.page(position..<min(ordered.count, position + 16))
            position += page.count
            let rows = Dictionary(
                uniqueKeysWithValues: try await vault.store.memories(tenant: tenant.id, user: user, ids: page.map(\.id)).map { ($0.id, $0) })
            for (offset, head) in page.enumerated() {
                guard let row = rows[head.id] else { continue }
                let memory = try vault.decrypt(row, key: key)
                if row.slot == "name", userName.isEmpty { userName = Self.nameValue(memory.content) }
                if row.id == lastSummary?.id { summaryText = Self.stripCallPrefix(memory.content) }
                misses = packer.add(memory) == .overBudget ? misses + 1 : 0
                guard position - page.count + offset + 1 >= alwaysRead else { continue }
                if packer.budget - packer.used < AnswerPacker.minimumUsefulCharacters || misses >= Self.maxMisses { break fill }
            }
        }
        let injected = packer.items.flatMap(\.memories)
        let days = record.lastCallAt.map { SafeNumber.clampedInt(max(0, now.timeIntervalSince($0)) / 86_400) } ?? -1
        let variables = PrecallVariables(
            memoryContext: packer.text, userName: userName, isReturningCaller: true,
            lastCallSummary: summaryText, daysSinceLastCall: days, memoryCount: heads.count)
        return (variables, injected)
    }

    /// Memories in a row that may not fit before pre-call stops looking further down the ranking.
    static let maxMisses = 8

    static func nameValue(_ content: String) -> String {
        // "The caller's name is Dana." → "Dana"; a data-collection value "The caller's name: Dana (as of ...)." → "Dana"
        if let range = content.range(of: " is ", options: .backwards) {
            return String(content[range.upperBound...]).trimmingCharacters(in: CharacterSet(charactersIn: ". "))
        }
        if let colon = content.firstIndex(of: ":") {
            let value = content[content.index(after: colon)...]
            return String(value.split(separator: "(").first ?? value).trimmingCharacters(in: .whitespaces)
        }
        return content
    }

    static func stripCallPrefix(_ content: String) -> String {
        guard content.hasPrefix("Call on "), let colon = content.firstIndex(of: ":") else { return content }
        return String(content[content.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
    }
}
