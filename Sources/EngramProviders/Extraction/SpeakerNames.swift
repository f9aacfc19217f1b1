import Foundation

/// Who is who in a call, from how the two sides address each other (issue 13). A name one side
/// uses to address the other ("Hey Mel!", "Thanks, Dana.", "Maria, that's great") belongs to the
/// other side; a name a side gives itself ("This is Dana", "my name is Dana", "I'm Dana") to that
/// side. A name both ways goes to the side with more votes; a tie names nobody.
///
/// Search uses it through the keyword index only (`ExtractedMemory.indexText`): a memory is
/// indexed with the name of the side whose words it carries, and without the names its speaker
/// addresses the other side by. A question that names a person ("What did Caroline paint?") then
/// matches what Caroline said, not the lines where the other side says "Wow, Caroline!". The
/// memory's text is unchanged.
public struct SpeakerNames: Sendable, Equatable {
    public var caller: [String]
    public var agent: [String]

    public init(caller: [String] = [], agent: [String] = []) {
        self.caller = caller
        self.agent = agent
    }

    public func names(of speaker: Conversation.Speaker) -> [String] { speaker == .caller ? caller : agent }

    /// The names learned from a call's turns.
    public static func learn(from turns: [Conversation.Turn]) -> SpeakerNames {
        var votes: [String: (caller: Int, agent: Int)] = [:]
        for turn in turns {
            for name in addressed(in: turn.text) {
                var vote = votes[name] ?? (0, 0)
                if turn.speaker == .caller { vote.agent += 1 } else { vote.caller += 1 }
                votes[name] = vote
            }
            for name in introduced(in: turn.text) {
                var vote = votes[name] ?? (0, 0)
                if turn.speaker == .caller { vote.caller += 1 } else { vote.agent += 1 }
                votes[name] = vote
            }
        }
        var result = SpeakerNames()
        for (name, vote) in votes.sorted(by: { $0.key < $1.key }) {
            if vote.caller > vote.agent { result.caller.append(name) }
            if vote.agent > vote.caller { result.agent.append(name) }
        }
        return result
    }

    // MARK: patterns (generic English forms of address, not tuned to a data set)

    private struct Pattern: @unchecked Sendable { let regex: NSRegularExpression }

    private static let name = "([A-Z][a-z]{1,20})"
    private static let interjection =
        "(?:hi|hey|hello|heya|hiya|yo|thanks|thank you|thanks so much|thank you so much|congrats|congratulations|wow|whoa|oh|aw|aww|sorry|bye|goodbye|see you|take care|good morning|good afternoon|good evening|morning|welcome back|welcome|great to see you|good to see you|nice to meet you|dear|well done|way to go|cheers|ok|okay|yes|yeah|no|sure|right|absolutely|totally|haha|ha|omg|great|awesome|cool|nice|amazing)"
    /// "Hey Mel", "Thanks, Dana", "Wow Jon!" (the name ends its phrase).
    private static let afterInterjection = Pattern(
        regex: try! NSRegularExpression(
            pattern: #"(?i:\b\#(interjection))[,!]?\s+\#(name)(?=\s*[,.!?;:)—-]|\s*$)"#, options: []))
    /// "That's great, Maria!", "…, Jon." (a name alone between a comma and the end of a sentence).
    private static let endOfSentence = Pattern(
        regex: try! NSRegularExpression(pattern: #",\s+\#(name)(?=\s*[.!?])"#, options: []))
    /// "Maria, that's great" / "Jon!" at the start of a sentence.
    private static let startOfSentence = Pattern(
        regex: try! NSRegularExpression(pattern: #"(?:^|[.!?]\s+)\#(name)(?=\s*[,!])"#, options: [.anchorsMatchLines]))
    /// "This is Dana", "my name is Dana", "I'm Dana." (`PatternFacts`' forms).
    private static let introduction = Pattern(
        regex: try! NSRegularExpression(
            pattern: #"\b(?:[Mm]y name is|[Tt]his is|[Cc]all me|I['’]m|I am)\s+\#(name)(?=\s*[,.!?]|\s+here\b|\s*$)"#, options: []))

    /// Capitalised words that start or end sentences without being names.
    static let notNames: Set<String> = [
        "Yeah", "Yes", "Yep", "Yup", "No", "Nope", "Oh", "Wow", "Hey", "Hi", "Hello", "Thanks", "Thank", "Cool", "Great", "Awesome",
        "Nice", "Sure", "Okay", "Ok", "Right", "Well", "So", "And", "But", "Absolutely", "Totally", "Definitely", "Exactly", "Really",
        "Sorry", "Congrats", "Congratulations", "Amazing", "Good", "Glad", "Haha", "Aww", "Aw", "Whoa", "Bye", "Goodbye", "Cheers",
        "Perfect", "Alright", "Hmm", "Um", "Uh", "Ah", "Also", "Anyway", "Anyways", "Honestly", "Actually", "Maybe", "Please", "Welcome",
        "Morning", "Evening", "Afternoon", "Night", "Everyone", "All", "Guys", "There", "Again", "Too", "Indeed", "True", "Agreed",
        "Same", "Fine", "Fair", "Lol", "Omg", "Ha", "Seriously", "Thankfully", "Luckily", "Sadly", "Unfortunately", "Sounds", "Love",
        "Man", "Dude", "Buddy", "Friend", "Sir", "Madam", "Ma", "Mom", "Dad", "Just", "Not", "Here", "Calling", "Still", "Very", "Back",
        "Ready", "The", "It", "That", "This", "What", "How", "Why", "When", "Where", "Who", "Which", "You", "We", "They", "He", "She",
        "I", "My", "Your", "Our", "Their", "Happy", "Merry", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
        "Sunday", "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
        "December", "Today", "Tomorrow", "Yesterday", "Bless", "God", "Jesus", "Lord", "Christmas", "Easter",
    ]

    /// The names a turn addresses the other side by.
    /// One vote per turn and name, however many forms match.
    static func addressed(in text: String, quickCheck: Bool = true) -> Set<String> {
        guard !quickCheck || mayHoldName(text) else { return [] }
        return Set(matches(afterInterjection, in: text) + matches(endOfSentence, in: text) + matches(startOfSentence, in: text))
    }

    /// The names a turn gives its own speaker (one vote per turn and name).
    static func introduced(in text: String, quickCheck: Bool = true) -> Set<String> {
        guard !quickCheck || mayHoldName(text) else { return [] }
        return Set(matches(introduction, in: text))
    }

    /// Whether `text` holds a word every pattern's name could be: a run of ASCII letters, one
    /// capital then 1 to 20 small ones, not in `notNames`. The patterns can match nothing else,
    /// and most turns hold no such word, so they skip the regular expressions (which cost the
    /// worker about a tenth of its throughput on every turn).
    static func mayHoldName(_ text: String) -> Bool {
        var word: [UInt8] = []
        func isName() -> Bool {
            guard (2...21).contains(word.count), let first = word.first, (65...90).contains(first),
                word.dropFirst().allSatisfy({ (97...122).contains($0) })
            else { return false }
            return !notNames.contains(String(decoding: word, as: UTF8.self))
        }
        for byte in text.utf8 {
            if (65...90).contains(byte) || (97...122).contains(byte) {
                word.append(byte)
                continue
            }
            if isName() { return true }
            word.removeAll(keepingCapacity: true)
        }
        return isName()
    }

    private static func matches(_ pattern: Pattern, in text: String) -> [String] {
        let ns = text as NSString
        return pattern.regex.matches(in: text, range: NSRange(location: 0, length: ns.length)).compactMap { match in
            guard match.numberOfRanges > 1, match.range(at: 1).location != NSNotFound else { return nil }
            let word = ns.substring(with: match.range(at: 1))
            return notNames.contains(word) ? nil : word
        }
    }

    /// The text a memory is indexed by: the names of `addressed` taken out where they address
    /// someone (the words stay in the memory itself), and the speaker's own names added.
    static func indexText(_ content: String, addressedNames: Set<String>, speakerNames: [String]) -> String {
        var text = content
        if !addressedNames.isEmpty, addressedNames.contains(where: { content.contains($0) }) {
            for pattern in [afterInterjection, endOfSentence, startOfSentence] {
                let ns = text as NSString
                let found = pattern.regex.matches(in: text, range: NSRange(location: 0, length: ns.length)).reversed()
                for match in found where match.numberOfRanges > 1 && match.range(at: 1).location != NSNotFound {
                    guard addressedNames.contains(ns.substring(with: match.range(at: 1))),
                        let range = Range(match.range(at: 1), in: text)
                    else { continue }
                    text.replaceSubrange(range, with: "")
                }
            }
        }
        guard !speakerNames.isEmpty else { return text }
        return text + "\n" + speakerNames.joined(separator: " ")
    }
}
