import EngramCore
import Foundation

/// What an episode's lines leave out so that more of what was said fits an answer's budget
/// (issue 13, fifth pass): sentences that only react ("Wow, that's great, Caroline!", "Thanks,
/// Mel!") from every line, and the image captions of the neighbour lines (the turn's own episode
/// keeps its caption, and `AnswerPacker` gives the longer line when both are offered). A line
/// that is nothing but reaction is kept whole: it still says who answered what.
enum EpisodeFiller {
    /// The turn's text without its reaction-only sentences; the text itself when every sentence is one.
    static func trimmed(_ text: String) -> String {
        let sentences = Self.sentences(text)
        guard sentences.count > 1 else { return text }
        let kept = sentences.filter { !isReaction($0) }
        guard !kept.isEmpty, kept.count < sentences.count else { return text }
        return kept.joined(separator: " ")
    }

    /// A neighbour line's text: no image caption, no reaction-only sentence.
    static func neighbour(_ text: String) -> String {
        let bare = withoutCaptions(text)
        return trimmed(bare.isEmpty ? text : bare)
    }

    /// "… [shared an image: a photo of …]" → "…" (the caption `Conversation` appends to a turn).
    static func withoutCaptions(_ text: String) -> String {
        guard text.contains(captionOpening) else { return text }
        var out = ""
        var rest = Substring(text)
        while let open = rest.range(of: captionOpening) {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "]") else {
                rest = rest[rest.endIndex...]
                break
            }
            rest = rest[rest.index(after: close)...]
        }
        out += rest
        return out.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    static let captionOpening = Conversation.imageCaptionOpening

    /// Every sentence of a text, questions included; a caption stays with its sentence.
    static func sentences(_ text: String) -> [String] { StatedFacts.sentences(text, questions: true, bracketsWhole: true) }

    /// A statement (not a question) whose words are all reactions, stop words or names (a
    /// capitalised word after the first): nothing in it a later question could ask about.
    static func isReaction(_ sentence: String) -> Bool {
        let trimmed = sentence.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, !trimmed.hasSuffix("?") else { return false }
        let tokens = trimmed.split(whereSeparator: { !$0.isLetter && !$0.isNumber && $0 != "'" && $0 != "’" })
        var content = 0
        for (position, token) in tokens.enumerated() {
            if token.contains(where: \.isNumber) { return false }
            let isName = position > 0 && token.first?.isUppercase == true && token.count > 1
            let words = TextNormalizer.words(String(token))
            for word in words where !TextNormalizer.stopWords.contains(word) && !reactionWords.contains(word) && !isName {
                content += 1
            }
        }
        return content == 0 && !tokens.isEmpty
    }

    /// Words of praise, thanks, agreement and surprise: what a reply says when it only reacts.
    static let reactionWords: Set<String> = [
        "wow", "awesome", "amazing", "cool", "nice", "great", "thanks", "thank", "glad", "congrats", "congratulations", "sounds",
        "sound", "fun", "wonderful", "fantastic", "incredible", "beautiful", "lovely", "super", "totally", "definitely",
        "absolutely", "agree", "true", "right", "haha", "lol", "omg", "aw", "aww", "whoa", "yay", "woohoo", "hear", "heard",
        "happy", "cute", "sweet", "kind", "appreciate", "means", "mean", "love", "bet", "exactly", "indeed", "nope", "yep",
        "yup", "sorry", "hope", "hey", "hi", "hello", "bye", "see", "soon", "take", "care", "talk", "later", "ya", "you", "too",
    ]
}
