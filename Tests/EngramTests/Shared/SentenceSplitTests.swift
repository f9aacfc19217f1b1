import Foundation
import Testing

@testable import EngramCore
@testable import EngramProviders

/// One sentence splitter (`StatedFacts.sentences`) serves the stated facts, the episodes' filler
/// check and the local extractor's agent statements. The extractor's statements are stored, so
/// moving them onto the shared splitter must not change one character of what it stores.
@Suite("One sentence splitter: the local extractor's statements are what they were", .timeLimit(.minutes(1)))
struct SentenceSplitTests {
    /// `LocalExtractor.statements` as it was before it used the shared splitter (the reference).
    static func formerStatements(_ text: String) -> String {
        var kept: [String] = []
        var current = ""
        let characters = Array(text)
        for (i, character) in characters.enumerated() {
            current.append(character)
            let atBoundary = ".!?".contains(character) && (i + 1 == characters.count || characters[i + 1].isWhitespace)
            if atBoundary {
                if character != "?" { kept.append(current.trimmingCharacters(in: .whitespaces)) }
                current = ""
            }
        }
        let tail = current.trimmingCharacters(in: .whitespaces)
        if !tail.isEmpty { kept.append(tail) }
        return kept.joined(separator: " ")
    }

    @Test("line breaks stay inside a statement, questions go, \"a.m.\" stays whole, a trailing fragment stays")
    func cases() {
        let cases: [(String, String)] = [
            ("Your cleaning is Friday at 10 a.m. Is that still good? See you then!", "Your cleaning is Friday at 10 a.m. See you then!"),
            ("Booked.\nAnything else?\n", "Booked. \n"),
            ("Line one\nline two. Done", "Line one\nline two. Done"),
            ("?!.", "?!."),
            ("", ""),
            ("   ", ""),
            ("Wait... what? Okay.", "Wait... Okay."),
        ]
        for (text, expected) in cases {
            #expect(LocalExtractor.statements(text) == expected, "\(text.debugDescription)")
            #expect(LocalExtractor.statements(text) == Self.formerStatements(text), "\(text.debugDescription)")
        }
    }

    @Test("on 5,000 random texts of words, punctuation, spaces, tabs, line breaks and brackets, the same output as before")
    func sameAsBefore() {
        var random = SplitMix64(seed: 22)
        let pieces = ["word", "a.m.", "Dr.", ".", "!", "?", "...", " ", "  ", "\t", "\n", "\r\n", "[", "]", "é", "👋", "10", ",", "?!"]
        for _ in 0..<5_000 {
            let count = Int.random(in: 0...24, using: &random)
            let text = (0..<count).map { _ in pieces[Int.random(in: 0..<pieces.count, using: &random)] }.joined()
            #expect(LocalExtractor.statements(text) == Self.formerStatements(text), "\(text.debugDescription)")
        }
    }
}
