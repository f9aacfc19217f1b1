import EngramCore
import EngramProviders
import Foundation

/// Builds every answer made of memories (the search tool's, pre-call `memory_context`, the
/// evaluation's) within a character budget, without repeating a turn (issue 13).
///
/// Memories are offered in rank order. An episode (the local extractor's window of turns, one
/// line per turn) delivers only the turns not delivered yet, merged into the answer item of the
/// same call when it touches it, so overlapping windows read as one passage. A fact whose cited
/// turns were all delivered word for word is dropped; a memory citing no turn is dropped when its
/// text was already given. Whatever does not fit in what is left of the budget is skipped and the
/// walk goes on with the next one; nothing is truncated. The budget covers the items' texts and
/// one separator (a line break) between items.
public struct AnswerPacker: Sendable {
    /// One transcript turn of one call.
    public struct TurnRef: Hashable, Sendable {
        public var conversationID: String?
        public var turn: Int
        public init(conversationID: String?, turn: Int) {
            self.conversationID = conversationID
            self.turn = turn
        }
    }

    /// One entry of the answer: its text, the memories it came from (first = highest ranked) and the turns it cites.
    public struct Item: Sendable {
        public var memories: [Memory]
        public var cited: [TurnRef]
        var header: String?
        var lines: [(turn: Int, text: String)]
        var plain: String?
        var conversationID: String?

        public var text: String {
            if let plain { return plain }
            return ([header ?? ""] + lines.sorted { $0.turn < $1.turn }.map(\.text)).joined(separator: "\n")
        }
        public var first: Memory { memories[0] }
        var length: Int { plain?.count ?? ((header?.count ?? 0) + lines.reduce(0) { $0 + 1 + $1.text.count }) }
    }

    public enum Outcome: Sendable, Equatable { case added, merged, redundant, overBudget, itemLimit }

    /// Hits a search reads before packing (the tool and the evaluation read the same). More cost
    /// search time (near-duplicate collapse compares each kept hit with the others) for little:
    /// on LoCoMo 0-2, 100 hits gave 75.8 within 2,000 characters, 30 or 50 hits 75.6.
    public static let searchCandidates = 40
    /// How `Conversation` marks an image caption inside a turn's text.
    static let captionOpening = Conversation.imageCaptionOpening
    /// Characters between two items of an answer.
    public static let separator = "\n"

    public let budget: Int
    public let maxItems: Int?
    public private(set) var items: [Item] = []
    public private(set) var used = 0
    private var deliveredLines: Set<TurnRef> = []
    private var cited: Set<TurnRef> = []
    private var texts: Set<String> = []

    public init(budget: Int, maxItems: Int? = nil) {
        self.budget = max(0, budget)
        self.maxItems = maxItems.map { max(0, $0) }
    }

    /// Every turn the answer cites so far.
    public var citedTurns: Set<TurnRef> { cited }
    /// The answer's text as one string (items separated by line breaks): at most `budget` characters.
    public var text: String { items.map(\.text).joined(separator: Self.separator) }

    /// Offers the next memory in rank order.
    @discardableResult
    public mutating func add(_ memory: Memory) -> Outcome {
        let separatorCost = items.isEmpty ? 0 : Self.separator.count
        if let episode = Episode(memory) {
            let fresh = episode.lines.filter { !deliveredLines.contains(TurnRef(conversationID: episode.conversationID, turn: $0.turn)) }
            // A turn given shorter before (a neighbour line without its caption) is given whole now.
            let fuller = fuller(episode)
            let fullerCost = fuller.reduce(0) { $0 + $1.extra }
            guard !fresh.isEmpty else {
                guard !fuller.isEmpty else { return .redundant }
                guard used + fullerCost <= budget else { return .overBudget }
                lengthen(fuller, memory: memory)
                takeBack(fuller.map(\.turn), of: episode.conversationID)
                return .merged
            }
            let freshTurns = Set(fresh.map(\.turn))
            // Into the item of the same call that it touches (shares or borders a turn).
            if let index = items.firstIndex(where: { item in
                item.plain == nil && item.conversationID == episode.conversationID && item.header == episode.header
                    && item.lines.contains { line in freshTurns.contains { Self.borders($0, line.turn) } || episode.turns.contains(line.turn) }
            }) {
                let cost = fresh.reduce(0) { $0 + 1 + $1.text.count } + fullerCost
                guard used + cost <= budget else { return .overBudget }
                lengthen(fuller, memory: nil)
                items[index].lines.append(contentsOf: fresh)
                items[index].memories.append(memory)
                items[index].cited.append(contentsOf: fresh.map { TurnRef(conversationID: episode.conversationID, turn: $0.turn) })
                deliver(fresh.map(\.turn), of: episode.conversationID)
                used += cost - fullerCost
                takeBack(fresh.map(\.turn) + fuller.map(\.turn), of: episode.conversationID)
                return .merged
            }
            if let maxItems, items.count >= maxItems { return .itemLimit }
            let item = Item(
                memories: [memory], cited: fresh.map { TurnRef(conversationID: episode.conversationID, turn: $0.turn) },
                header: episode.header, lines: fresh, plain: nil, conversationID: episode.conversationID)
            guard used + separatorCost + item.length + fullerCost <= budget else { return .overBudget }
            lengthen(fuller, memory: nil)
            items.append(item)
            deliver(fresh.map(\.turn), of: episode.conversationID)
            used += separatorCost + item.length
            takeBack(fresh.map(\.turn) + fuller.map(\.turn), of: episode.conversationID)
            return .added
        }
        guard !memory.content.allSatisfy(\.isWhitespace) else { return .redundant }
        let refs = memory.sources.flatMap { source in source.turns.map { TurnRef(conversationID: source.conversationID, turn: $0) } }
        if refs.isEmpty {
            if texts.contains(memory.content) { return .redundant }
        } else if refs.allSatisfy({ deliveredLines.contains($0) }) || texts.contains(memory.content) {
            return .redundant
        }
        if let maxItems, items.count >= maxItems { return .itemLimit }
        let item = Item(
            memories: [memory], cited: refs, header: nil, lines: [], plain: memory.content, conversationID: memory.sources.first?.conversationID)
        guard used + separatorCost + item.length <= budget else { return .overBudget }
        items.append(item)
        texts.insert(memory.content)
        cited.formUnion(refs)
        used += separatorCost + item.length
        return .added
    }

    /// Lines of `episode` already given in a shorter form whose words the new form all carries
    /// (a neighbour line given without its image caption, now offered with it): where
    /// each is in the answer and the characters it adds.
    private func fuller(_ episode: Episode) -> [(item: Int, line: Int, text: String, extra: Int, turn: Int)] {
        var out: [(item: Int, line: Int, text: String, extra: Int, turn: Int)] = []
        for offered in episode.lines where deliveredLines.contains(TurnRef(conversationID: episode.conversationID, turn: offered.turn)) {
            for (i, item) in items.enumerated() where item.plain == nil && item.conversationID == episode.conversationID {
                guard let j = item.lines.firstIndex(where: { $0.turn == offered.turn }) else { continue }
                let given = item.lines[j].text
                if offered.text.count > given.count, offered.text.contains(Self.captionOpening), !given.contains(Self.captionOpening),
                    Set(TextNormalizer.words(offered.text)).isSuperset(of: TextNormalizer.words(given))
                {
                    out.append((i, j, offered.text, offered.text.count - given.count, offered.turn))
                }
                break
            }
        }
        return out
    }

    /// Replaces lines with their fuller forms (`fuller`), counting the characters they add.
    private mutating func lengthen(_ lines: [(item: Int, line: Int, text: String, extra: Int, turn: Int)], memory: Memory?) {
        for line in lines {
            items[line.item].lines[line.line].text = line.text
            used += line.extra
        }
        if let memory, let first = lines.first { items[first.item].memories.append(memory) }
    }

    /// Takes back the entries without a slot that cite one of `turns` alone and say nothing its
    /// line (with the day it was said) does not: a stated fact ("On 9 June 2023 the caller said: I
    /// went …") whose turn an episode has now given whole. The answer then says it once, and what it frees is
    /// left for the memories after.
    private mutating func takeBack(_ turns: [Int], of conversationID: String?) {
        guard items.count > 1, !turns.isEmpty else { return }
        let given = Set(turns)
        var passages: [Int: String] = [:]  // turn → its item's day and line
        for item in items where item.plain == nil && item.conversationID == conversationID {
            for line in item.lines where given.contains(line.turn) { passages[line.turn] = (item.header ?? "") + " " + line.text }
        }
        guard !passages.isEmpty else { return }
        var index = items.count - 1
        while index >= 0, items.count > 1 {
            let item = items[index]
            // A slot's fact stays: it is the current value, what supersession keeps first.
            if let plain = item.plain, item.first.slot == nil, item.cited.count == 1, item.cited[0].conversationID == conversationID,
                let passage = passages[item.cited[0].turn],
                Set(TextNormalizer.terms(passage)).isSuperset(of: TextNormalizer.terms(plain))
            {
                items.remove(at: index)
                used -= item.length + Self.separator.count
            }
            index -= 1
        }
    }

    /// The same turn or the next one either way; turn numbers come from stored sources, so no
    /// arithmetic on them may trap.
    static func borders(_ a: Int, _ b: Int) -> Bool { a == b || a == b &+ 1 || a == b &- 1 }

    private mutating func deliver(_ turns: [Int], of conversationID: String?) {
        for turn in turns {
            let ref = TurnRef(conversationID: conversationID, turn: turn)
            deliveredLines.insert(ref)
            cited.insert(ref)
        }
    }

    /// The answer for memories in rank order.
    public static func pack(_ memories: [Memory], budget: Int, maxItems: Int? = nil) -> AnswerPacker {
        var packer = AnswerPacker(budget: budget, maxItems: maxItems)
        for memory in memories {
            packer.add(memory)
            if packer.budget - packer.used < minimumUsefulCharacters { break }
        }
        return packer
    }

    /// Below this many characters left, no memory fits: the walk stops.
    static let minimumUsefulCharacters = 16

    /// An episode of the local extractor: `On <day>:` then one `caller: …` / `agent: …` line per
    /// cited turn, in the order of its first source's turns. Anything else is not one.
    struct Episode {
        var header: String
        var conversationID: String?
        var turns: [Int]
        var lines: [(turn: Int, text: String)]

        init?(_ memory: Memory) {
            guard let source = memory.sources.first, source.kind == "conversation", !source.turns.isEmpty else { return nil }
            let parts = memory.content.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == source.turns.count + 1, let header = parts.first, header.hasPrefix("On "), header.hasSuffix(":") else { return nil }
            var lines: [(turn: Int, text: String)] = []
            for (turn, line) in zip(source.turns, parts.dropFirst()) {
                guard line.hasPrefix("caller: ") || line.hasPrefix("agent: ") else { return nil }
                lines.append((turn, line))
            }
            guard Set(source.turns).count == source.turns.count else { return nil }
            self.header = header
            self.conversationID = source.conversationID
            self.turns = source.turns
            self.lines = lines
        }
    }
}
