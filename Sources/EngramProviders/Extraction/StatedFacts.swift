import Foundation

/// Facts a receptionist would write down from what either side said (issue 13): events ("I went
/// to a pottery class yesterday"), plans ("I'm planning a trip next month"), preferences ("I love
/// hiking"), relations ("my husband and kids") and dated mentions ("last week", "tomorrow").
/// Each is one sentence of one turn, as said (relative dates resolved against the call), dated
/// with the call's day and attributed to its speaker: "On 8 May 2023 the caller said: I went to
/// a support group yesterday (7 May 2023)." It cites only its own turn. Short, so several fit
/// where one episode (a window of three turns) would: episodes stay the fallback for the rest.
/// A little less important than the episode of the same turn, so a per-event memory budget
/// (`ExtractionBudget.cap`) drops these first.
enum StatedFacts {
    private struct Pattern: @unchecked Sendable { let regex: NSRegularExpression }

    private static let apostrophe = "['’]"
    /// A first-person statement of one of the kinds above. Generic English, not tuned to a data set.
    private static let statement = Pattern(
        regex: try! NSRegularExpression(
            pattern: [
                // events: "I went", "we just got", "I finally finished"
                #"\b(?:I|we)\s+(?:just\s+|recently\s+|finally\s+|also\s+|even\s+|actually\s+)?(?:went|got|made|took|joined|started|finished|signed|bought|visited|saw|met|found|painted|read|ran|had|did|tried|learned|adopted|moved|gave|won|lost|decided|played|attended|watched|wrote|built|baked|cooked|traveled|travelled|booked|volunteered|quit|left|completed|organized|organised|hosted)\b"#,
                // plans and ongoing: "I'm going to", "we are planning", "I'm learning"
                #"\b(?:I\#(apostrophe)m|I am|we\#(apostrophe)re|we are)\s+(?:going|planning|thinking|hoping|looking forward|excited|learning|taking|starting|working|volunteering|moving|getting|doing)\b"#,
                // preferences
                #"\b(?:I|we)\s+(?:really\s+|also\s+)?(?:love|like|enjoy|prefer|hate)\b"#,
                // relations, pets, work, names
                #"\bmy\s+(?:\w+\s+)?(?:husband|wife|kids?|son|daughter|children|mom|mother|dad|father|sister|brother|family|partner|friends?|dog|cat|pet|job|work|boss|team|name|favou?rite)\b"#,
                // dated mentions
                #"\b(?:next|last)\s+(?:week|month|year|weekend|\w+day)\b|\byesterday\b|\btomorrow\b"#,
            ].joined(separator: "|"),
            options: [.caseInsensitive]))

    /// Longest sentence kept (UTF-8 bytes), marked when cut.
    static let sentenceLimit = 400

    /// The facts stated in a call, in turn order; each sentence once per call.
    static func facts(in conversation: Conversation, day: String) -> [ExtractedMemory] {
        var facts: [ExtractedMemory] = []
        var seen = Set<String>()
        for turn in conversation.turns {
            let text = RelativeDates.annotate(turn.text, callStart: conversation.startedAt)
            let sensitive = LocalExtractor.isSensitive(text)
            for sentence in sentences(text) where LocalExtractor.isSubstantive(sentence) && matches(sentence) {
                let said = LocalExtractor.clip(sentence.split(whereSeparator: \.isNewline).joined(separator: " "), limit: sentenceLimit)
                let content = "On \(day) the \(turn.speaker.rawValue) said: \(said)"
                guard seen.insert(content).inserted else { continue }
                facts.append(
                    ExtractedMemory(
                        content: content, sector: LocalExtractor.sector(of: sentence), importance: turn.speaker == .caller ? 0.45 : 0.3,
                        validFrom: conversation.startedAt, sourceTurns: [turn.index], sensitive: sensitive))
            }
        }
        return facts
    }

    static func matches(_ sentence: String) -> Bool {
        statement.regex.firstMatch(in: sentence, range: NSRange(sentence.startIndex..., in: sentence)) != nil
    }

    /// The sentences of a turn that state something (questions dropped unless `questions`): a
    /// sentence ends at . ! ? followed by a space or the end ("a.m." stays whole). With
    /// `bracketsWhole`, nothing inside [ … ] ends a sentence (an image caption). Each sentence is
    /// trimmed of `trimming` (`LocalExtractor.statements` keeps line breaks: its text is stored).
    static func sentences(
        _ text: String, questions: Bool = false, bracketsWhole: Bool = false, trimming: CharacterSet = .whitespacesAndNewlines
    ) -> [String] {
        var out: [String] = []
        var current = ""
        var depth = 0
        let characters = Array(text)
        for (i, character) in characters.enumerated() {
            current.append(character)
            if bracketsWhole {
                if character == "[" { depth += 1 } else if character == "]" { depth = max(0, depth - 1) }
            }
            guard depth == 0, ".!?".contains(character), i + 1 == characters.count || characters[i + 1].isWhitespace else { continue }
            let sentence = current.trimmingCharacters(in: trimming)
            if questions || character != "?", !sentence.isEmpty { out.append(sentence) }
            current = ""
        }
        let tail = current.trimmingCharacters(in: trimming)
        if !tail.isEmpty { out.append(tail) }
        return out
    }
}
