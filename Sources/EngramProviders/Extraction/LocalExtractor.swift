import EngramCore
import Foundation

/// Offline extraction (MEMORY-MODEL.md): the call summary, data-collection results as slot
/// facts, every substantive turn as an episode (a window of turns, one line each, citing them),
/// pattern facts (name, likes, allergies, family, work, places, contact preferences) from the
/// caller's words, dated bookings (`DatedFacts`) and stated facts (`StatedFacts`). Each memory of
/// the transcript is indexed with its speaker's names (`SpeakerNames`).
public struct LocalExtractor: Extractor {
    public let id = "local-v1"

    public init() {}

    public func extract(_ conversation: Conversation) async throws -> Extraction { extractNow(conversation) }

    public func extractNow(_ conversation: Conversation) -> Extraction {
        let day = Self.dayFormatter.string(from: conversation.startedAt)
        var memories: [ExtractedMemory] = []
        var userName: String?
        var centres: [Int: Conversation.Speaker] = [:]  // episode position in `memories` → its centre turn's speaker

        if let summary = conversation.summary {
            memories.append(
                ExtractedMemory(
                    content: "Call on \(day): \(summary)", sector: .episodic, importance: 0.7,
                    validFrom: conversation.startedAt, sourceTurns: [], kind: "summary"))
        }
        for (key, value) in conversation.dataCollection.sorted(by: { $0.key < $1.key }) where key != "memory_consent" {
            let label = key.replacingOccurrences(of: "_", with: " ")
            memories.append(
                ExtractedMemory(
                    content: "The caller's \(label): \(value) (as of \(day)).", sector: .semantic, slot: key,
                    importance: 0.6, validFrom: conversation.startedAt, sourceTurns: [], kind: "data_collection"))
        }
        let turns = conversation.turns
        for (position, turn) in turns.enumerated() {
            let text = RelativeDates.annotate(turn.text, callStart: conversation.startedAt)
            // A turn alone is rarely self-contained on the phone ("Friday works."): the turn
            // before travels with it, the turn after only when this one asks something (its
            // answer), and the memory cites them too. A statement's reply is mostly a reaction;
            // leaving it out lets more memories fit an answer's budget (BENCHMARKS.md, issue 13,
            // fourth pass).
            let before = position > 0 ? turns[position - 1] : nil
            let after = position + 1 < turns.count && turn.text.contains("?") ? turns[position + 1] : nil
            let sensitive = Self.isSensitive(text)
            // An episode quotes its neighbours: any of them sensitive makes it sensitive, whichever side speaks.
            let episodeSensitive = sensitive || Self.isSensitive(before?.text ?? "") || Self.isSensitive(after?.text ?? "")
            switch turn.speaker {
            case .caller:
                if Self.isSubstantive(text) {
                    centres[memories.count] = turn.speaker
                    memories.append(
                        ExtractedMemory(
                            content: Self.episode(
                                day: day, speaker: turn.speaker, text: text, before: before, after: after, start: conversation.startedAt),
                            sector: Self.sector(of: text), importance: 0.5, validFrom: conversation.startedAt,
                            sourceTurns: Self.cited(turn, before, after), sensitive: episodeSensitive))
                }
                for fact in PatternFacts.find(in: turn.text) {
                    if fact.slot == "name" { userName = fact.value }
                    memories.append(
                        ExtractedMemory(
                            content: fact.sentence, sector: fact.sector, slot: fact.slot, importance: fact.importance,
                            validFrom: conversation.startedAt, sourceTurns: [turn.index], sensitive: fact.sensitive || sensitive))
                }
            case .agent:
                if let name = PatternFacts.greetedName(in: turn.text) {
                    userName = userName ?? name
                    memories.append(
                        ExtractedMemory(
                            content: "The caller's name is \(name).", sector: .semantic, slot: "name", importance: 0.6,
                            validFrom: conversation.startedAt, sourceTurns: [turn.index]))
                }
                let statements = Self.statements(text)
                if Self.isSubstantive(statements) {
                    centres[memories.count] = turn.speaker
                    memories.append(
                        ExtractedMemory(
                            content: Self.episode(
                                day: day, speaker: turn.speaker, text: statements, before: before, after: after, start: conversation.startedAt),
                            sector: .episodic, importance: 0.35, validFrom: conversation.startedAt,
                            sourceTurns: Self.cited(turn, before, after), sensitive: episodeSensitive))
                }
            }
        }
        memories.append(contentsOf: DatedFacts.bookings(in: conversation, day: day))
        memories.append(contentsOf: StatedFacts.facts(in: conversation, day: day))
        Self.index(&memories, turns: turns, centres: centres)
        return Extraction(memories: memories, summary: conversation.summary, userName: userName, extractor: id)
    }

    /// Index texts (`SpeakerNames`): each memory is indexed with its speaker's names and without
    /// the names the two sides address each other by.
    static func index(_ memories: inout [ExtractedMemory], turns: [Conversation.Turn], centres: [Int: Conversation.Speaker]) {
        let names = SpeakerNames.learn(from: turns)
        let all = Set(names.caller + names.agent)
        guard !all.isEmpty else { return }
        let speakers = Dictionary(turns.map { ($0.index, $0.speaker) }, uniquingKeysWith: { a, _ in a })
        for position in memories.indices where memories[position].kind == "conversation" {
            var speaker = centres[position]
            if speaker == nil, memories[position].sourceTurns.count == 1 { speaker = speakers[memories[position].sourceTurns[0]] }
            let own = speaker.map { names.names(of: $0) } ?? []
            let text = SpeakerNames.indexText(memories[position].content, addressedNames: all, speakerNames: own)
            if text != memories[position].content { memories[position].indexText = text }
        }
    }

    static let dayFormatter: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "d MMMM yyyy"
        return f
    }()

    /// A window of turns, one line each, in turn order (what `AnswerPacker` merges and de-duplicates):
    /// "On 21 November 2025:\nagent: …\ncaller: …\nagent: …" (the turn before, the turn, and the
    /// turn after when the turn asks something). The centre turn carries `text`
    /// (up to 700 characters), its neighbours their own words (up to 300); no line keeps its
    /// reaction-only sentences, and the neighbours leave their image captions to their own
    /// episodes (`EpisodeFiller`).
    static func episode(day: String, speaker: Conversation.Speaker, text: String, before: Conversation.Turn?, after: Conversation.Turn?, start: Date)
        -> String
    {
        var lines = ["On \(day):"]
        if let before {
            lines.append(
                line(before.speaker, clip(EpisodeFiller.neighbour(RelativeDates.annotate(before.text, callStart: start)), limit: contextLimit)))
        }
        lines.append(line(speaker, clip(EpisodeFiller.trimmed(text))))
        if let after {
            lines.append(
                line(after.speaker, clip(EpisodeFiller.neighbour(RelativeDates.annotate(after.text, callStart: start)), limit: contextLimit)))
        }
        return lines.joined(separator: "\n")
    }

    /// One line of an episode: the turn's words on one line.
    static func line(_ speaker: Conversation.Speaker, _ text: String) -> String {
        let flat = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return "\(speaker.rawValue): \(flat)"
    }

    static let contextLimit = 300

    static func cited(_ turn: Conversation.Turn, _ before: Conversation.Turn?, _ after: Conversation.Turn?) -> [Int] {
        [before?.index, turn.index, after?.index].compactMap { $0 }
    }

    /// At most `limit` UTF-8 bytes of the text (whole characters), marked when cut.
    static func clip(_ text: String, limit: Int = 700) -> String {
        text.utf8.count <= limit ? text : ExtractionBudget.clip(text, bytes: limit) + "…"
    }

    private static let pleasantries: Set<String> = [
        "thank", "thanks", "bye", "goodbye", "ok", "okay", "yes", "no", "sure", "great", "hello", "hi", "hey",
        "cool", "awesome", "nice", "wow", "right", "alright", "perfect", "welcome", "cheer", "cheers",
    ]

    /// More than pleasantries: at least three content words, or two with a specific (a number, a name).
    static func isSubstantive(_ text: String) -> Bool {
        let terms = TextNormalizer.terms(text).filter { !pleasantries.contains($0) }
        return terms.count >= 3 || (terms.count >= 1 && !TextNormalizer.specifics(text).isEmpty)
    }

    /// The agent's sentences that state something: questions dropped, line breaks kept.
    static func statements(_ text: String) -> String {
        StatedFacts.sentences(text, trimming: .whitespaces).joined(separator: " ")
    }

    package static func sector(of text: String) -> Sector {
        let words = Set(TextNormalizer.words(text))
        if !words.isDisjoint(with: emotionWords) { return .emotional }
        if !words.isDisjoint(with: procedureWords) { return .procedural }
        return .episodic
    }

    package static func isSensitive(_ text: String) -> Bool {
        !Set(TextNormalizer.words(text)).isDisjoint(with: sensitiveWords)
    }

    static let emotionWords: Set<String> = [
        "frustrated", "frustrating", "angry", "upset", "annoyed", "worried", "anxious", "scared", "afraid",
        "sad", "happy", "excited", "thrilled", "disappointed", "stressed", "furious", "nervous", "grateful",
        "love", "hate", "lonely", "proud", "relieved",
    ]
    static let procedureWords: Set<String> = ["always", "never", "prefer", "rather", "please", "usually", "instead"]
    static let sensitiveWords: Set<String> = [
        "diagnosed", "diagnosis", "diabetes", "diabetic", "cancer", "pregnant", "pregnancy", "medication",
        "medications", "prescription", "surgery", "therapy", "therapist", "depression", "depressed", "hiv",
        "allergic", "allergy", "allergies", "asthma", "disease", "disorder", "chemo", "insulin", "psychiatrist",
        "debt", "debts", "bankrupt", "bankruptcy", "loan", "mortgage", "salary", "overdraft", "lawsuit",
        "lawyer", "attorney", "arrested", "court", "divorce", "custody", "probation", "ssn", "password",
    ]
}

/// A fact recognised by a pattern in the caller's words.
struct PatternFact {
    var sentence: String
    var sector: Sector
    var slot: String?
    var importance: Double
    var sensitive: Bool
    var value: String
}

/// Regular-expression patterns for facts callers state about themselves.
enum PatternFacts {
    /// NSRegularExpression is immutable and thread-safe once built.
    private struct Rule: @unchecked Sendable {
        let regex: NSRegularExpression
        let make: @Sendable ([String]) -> PatternFact?
    }

    private static func rule(_ pattern: String, caseInsensitive: Bool = true, _ make: @escaping @Sendable ([String]) -> PatternFact?) -> Rule {
        let options: NSRegularExpression.Options = caseInsensitive ? [.caseInsensitive] : []
        return Rule(regex: try! NSRegularExpression(pattern: pattern, options: options), make: make)
    }

    private static let phrase = "([^.!?,;]{2,60})"
    /// The things whose favourite is a slot (slot names are stored in clear, so never the caller's own words).
    static let favouriteThings: Set<String> = [
        "colour", "color", "food", "drink", "movie", "film", "book", "song", "band", "singer", "sport", "team", "animal",
        "place", "restaurant", "season", "holiday", "game", "show", "author", "artist", "flower", "fruit", "dessert",
        "number", "day", "time", "music", "genre", "dish", "snack", "coffee", "tea", "city", "country",
    ]
    private static let notNames: Set<String> = [
        "Just", "So", "Not", "Really", "Sorry", "Calling", "Here", "Fine", "Good", "Great", "Glad", "Happy",
        "Looking", "Going", "Trying", "Still", "Very", "Also", "Back", "Ready", "Sure", "Okay", "Ok", "The",
    ]

    private static let rules: [Rule] = [
        rule(#"\b(?:my name is|this is|call me)\s+([A-Z][a-z]+)"#, caseInsensitive: false) { m in
            guard !notNames.contains(m[1]) else { return nil }
            return PatternFact(
                sentence: "The caller's name is \(m[1]).", sector: .semantic, slot: "name", importance: 0.9, sensitive: false, value: m[1])
        },
        rule(#"\b(?:I'm|I am)\s+([A-Z][a-z]+)\b(?!\s+[a-z])"#, caseInsensitive: false) { m in
            guard !notNames.contains(m[1]) else { return nil }
            return PatternFact(
                sentence: "The caller's name is \(m[1]).", sector: .semantic, slot: "name", importance: 0.9, sensitive: false, value: m[1])
        },
        rule(#"\bmy (?:favou?rite) (\w+) is (?:now )?\#(phrase)"#) { m in
            let thing = m[1].lowercased()
            let value = m[2].replacingOccurrences(of: " now", with: "")
            // Slot names are stored in clear: only a known thing names one.
            let slot = favouriteThings.contains(thing) ? "favourite.\(thing)" : nil
            return PatternFact(
                sentence: "The caller's favourite \(thing) is \(value).", sector: .semantic, slot: slot, importance: 0.6, sensitive: false,
                value: value)
        },
        rule(#"\bI (?:really |also )?(?:love|like|enjoy|adore)\s+\#(phrase)"#) { m in
            PatternFact(sentence: "The caller likes \(m[1]).", sector: .semantic, slot: nil, importance: 0.55, sensitive: false, value: m[1])
        },
        rule(#"\bI (?:really )?(?:hate|dislike|can't stand|cannot stand|don't like|do not like)\s+\#(phrase)"#) { m in
            PatternFact(sentence: "The caller dislikes \(m[1]).", sector: .semantic, slot: nil, importance: 0.55, sensitive: false, value: m[1])
        },
        rule(#"\bI (?:would |'d )?prefer\s+\#(phrase)"#) { m in
            PatternFact(sentence: "The caller prefers \(m[1]).", sector: .procedural, slot: nil, importance: 0.6, sensitive: false, value: m[1])
        },
        rule(#"\ballergic to\s+\#(phrase)"#) { m in
            PatternFact(sentence: "The caller is allergic to \(m[1]).", sector: .semantic, slot: nil, importance: 0.9, sensitive: true, value: m[1])
        },
        rule(
            #"\bmy (wife|husband|partner|son|daughter|mom|mother|dad|father|sister|brother|dog|cat|puppy|kitten)(?:'s name is| is called| is named| named| called)\s+([A-Z][a-z]+)"#
        ) { m in
            PatternFact(
                sentence: "The caller's \(m[1].lowercased()) is called \(m[2]).", sector: .semantic, slot: "family.\(m[1].lowercased())",
                importance: 0.7, sensitive: false, value: m[2])
        },
        rule(#"\bI (?:work|am working) (?:at|for|as)\s+\#(phrase)"#) { m in
            PatternFact(
                sentence: "The caller works \(m[0].lowercased().contains(" as ") ? "as" : "at") \(m[1]).", sector: .semantic, slot: "work",
                importance: 0.6, sensitive: false, value: m[1])
        },
        rule(#"\bI (?:live|moved|am moving|'m moving) (?:in|to)\s+([A-Z][A-Za-z .'-]{1,40}?)(?=[.!?,;]| with| and| because|$)"#) { m in
            PatternFact(
                sentence: "The caller lives in \(m[1]).", sector: .semantic, slot: "home.city", importance: 0.6, sensitive: false, value: m[1])
        },
        rule(
            #"\b(?:call|reach|contact) me (?:in the |on |at |during the )?(mornings?|afternoons?|evenings?|weekends?|weekdays?|after \d{1,2}(?::\d\d)? ?(?:am|pm)?|before \d{1,2}(?::\d\d)? ?(?:am|pm)?)"#
        ) { m in
            PatternFact(
                sentence: "The caller prefers to be contacted \(m[1].lowercased()).", sector: .procedural, slot: "preferred_contact_time",
                importance: 0.7, sensitive: false, value: m[1])
        },
    ]

    private static let greeting = try! NSRegularExpression(
        pattern: #"^(?:hi|hello|hey|thanks|thank you|good (?:morning|afternoon|evening)),?\s+([A-Z][a-z]+)\b"#, options: [.caseInsensitive])

    /// The name an agent greets the caller by ("Hi Dana, welcome back!").
    static func greetedName(in text: String) -> String? {
        let ns = text as NSString
        guard let match = greeting.firstMatch(in: text, range: NSRange(location: 0, length: ns.length)) else { return nil }
        let name = ns.substring(with: match.range(at: 1))
        guard name.first?.isUppercase == true, !notNames.contains(name), !["There", "Again", "Everyone", "All"].contains(name) else { return nil }
        return name
    }

    static func find(in text: String) -> [PatternFact] {
        let range = NSRange(text.startIndex..., in: text)
        var facts: [PatternFact] = []
        for rule in rules {
            for match in rule.regex.matches(in: text, range: range) {
                let groups = (0..<match.numberOfRanges).map { i -> String in
                    guard let r = Range(match.range(at: i), in: text) else { return "" }
                    return String(text[r]).trimmingCharacters(in: .whitespaces)
                }
                if let fact = rule.make(groups), !facts.contains(where: { $0.sentence == fact.sentence }) { facts.append(fact) }
            }
        }
        return facts
    }
}

/// Resolves "yesterday", "tomorrow", "next Friday" against the call's start, by annotation:
/// "next Friday" → "next Friday (28 November 2025)".
enum RelativeDates {
    private static let weekdays = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
    private static let regex = try! NSRegularExpression(
        pattern:
            #"\b(yesterday|today|tomorrow|last week|next week|(?:next|this|last|on) (?:sunday|monday|tuesday|wednesday|thursday|friday|saturday))\b"#,
        options: [.caseInsensitive])

    static func annotate(_ text: String, callStart: Date) -> String {
        let ns = text as NSString
        let matches = regex.matches(in: text, range: NSRange(location: 0, length: ns.length))
        guard !matches.isEmpty else { return text }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        var result = text
        for match in matches.reversed() {
            let phrase = ns.substring(with: match.range).lowercased()
            guard let date = resolve(phrase, from: callStart, calendar: calendar),
                let range = Range(match.range, in: result)
            else { continue }
            result.replaceSubrange(range, with: "\(result[range]) (\(LocalExtractor.dayFormatter.string(from: date)))")
        }
        return result
    }

    static func resolve(_ phrase: String, from start: Date, calendar: Calendar) -> Date? {
        let day = 86_400.0
        switch phrase {
        case "yesterday": return start.addingTimeInterval(-day)
        case "today": return start
        case "tomorrow": return start.addingTimeInterval(day)
        case "last week": return start.addingTimeInterval(-7 * day)
        case "next week": return start.addingTimeInterval(7 * day)
        default: break
        }
        let parts = phrase.split(separator: " ")
        guard parts.count == 2, let target = weekdays.firstIndex(of: String(parts[1])) else { return nil }
        let today = calendar.component(.weekday, from: start) - 1
        var delta = (target - today + 7) % 7
        switch parts[0] {
        case "next", "on": if delta == 0 { delta = 7 }
        case "last": delta = delta == 0 ? -7 : delta - 7
        default: break  // "this"
        }
        return start.addingTimeInterval(Double(delta) * day)
    }
}
