import Foundation

/// Tokenising, stop words and light stemming shared by the keyword index, the local embedder
/// and conflict checks, so all three see the same words.
public enum TextNormalizer {
    /// Lowercased alphanumeric words, apostrophes folded ("Dana's" → "dana").
    public static func words(_ text: String) -> [String] {
        var out: [String] = []
        var current = ""
        for scalar in text.lowercased().unicodeScalars {
            if alphanumerics.contains(scalar) {
                current.unicodeScalars.append(scalar)
            } else if scalar == "'" || scalar == "’" {
                // drop possessive / contraction tails: dana's → dana, don't → don
                if !current.isEmpty {
                    out.append(current)
                    current = ""
                }
                out.append("\u{0}")  // marker: the next word is a contraction tail
            } else if !current.isEmpty {
                out.append(current)
                current = ""
            }
        }
        if !current.isEmpty { out.append(current) }
        var result: [String] = []
        var skipNext = false
        for word in out {
            if word == "\u{0}" {
                skipNext = true
                continue
            }
            if skipNext, ["s", "t", "re", "ll", "ve", "d", "m"].contains(word) {
                skipNext = false
                continue
            }
            skipNext = false
            result.append(word)
        }
        return result
    }

    /// Built once: Foundation makes a new set on every read of `CharacterSet.alphanumerics`,
    /// which was the largest cost of tokenising (issue 14 profile).
    private static let alphanumerics = CharacterSet.alphanumerics

    /// Index terms: words without stop words, stemmed.
    public static func terms(_ text: String) -> [String] {
        words(text).filter { !stopWords.contains($0) }.map(stem)
    }

    /// A light suffix stripper (plural, -ing, -ed, -ly): enough to join "cleaning"/"clean".
    public static func stem(_ word: String) -> String {
        guard word.count > 3, word.allSatisfy({ $0.isLetter }) else { return word }
        for (suffix, replacement) in suffixes where word.hasSuffix(suffix) && word.count - suffix.count >= 3 {
            return String(word.dropLast(suffix.count)) + replacement
        }
        return word
    }

    private static let suffixes: [(String, String)] = [
        ("ies", "y"), ("ing", ""), ("edly", ""), ("ed", ""), ("ly", ""), ("es", ""), ("s", ""),
    ]

    /// For equality of facts: stemmed terms, order kept.
    public static func comparable(_ text: String) -> String { terms(text).joined(separator: " ") }

    /// Numbers, weekdays, months and capitalised names: what makes two similar facts different.
    public static func specifics(_ text: String) -> Set<String> {
        var out = Set<String>()
        let tokens = text.split(whereSeparator: { !$0.isLetter && !$0.isNumber })
        for (index, token) in tokens.enumerated() {
            let lower = token.lowercased()
            if token.contains(where: \.isNumber) {
                out.insert(lower)
                continue
            }
            if dateWords.contains(lower) {
                out.insert(lower)
                continue
            }
            if index > 0, token.first?.isUppercase == true, !stopWords.contains(lower), lower != "i" { out.insert(lower) }
        }
        return out
    }

    static let dateWords: Set<String> = [
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
        "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
        "november", "december", "today", "tomorrow", "yesterday", "morning", "afternoon", "evening", "noon",
    ]

    public static let stopWords: Set<String> = [
        "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at",
        "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could",
        "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has",
        "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if",
        "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor",
        "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out",
        "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their",
        "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to",
        "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while",
        "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves",
        "yeah", "yes", "oh", "um", "uh", "ok", "okay", "hey", "hi", "hello", "also", "really", "well", "get",
        "got", "let", "lot", "like", "much", "many", "one", "thing", "things", "know", "think", "going",
        "gonna", "wanna", "sure", "thank", "thanks", "great", "good", "did", "ever", "still", "caller", "said",
    ]
}

/// Deterministic 64-bit FNV-1a: stable across processes (Swift's `Hasher` is seeded per run).
public func stableHash(_ text: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01b3
    }
    return hash
}
