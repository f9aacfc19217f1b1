import Crypto
import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore

/// The keyword index stores keyed term hashes, so a change to how they are computed would make
/// every stored index unreadable: `TermHasher` (a precomputed HMAC state) must give exactly the
/// one-shot `HMAC<SHA256>` prefix the rows were written with. And the second step's lazy hashing
/// relies on `QueryFeedback` asking the frequency of every term it may choose.
@Suite("Term hashes and feedback terms stay as they were", .timeLimit(.minutes(1)))
struct TermHashTests {
    static let oddTexts = [
        "", "   ", "?!", "dog", "Dog DOG dog", "Ünïcödé café naïve", "e\u{301}cole école", "İstanbul ǅ Straße ﬁle", "日本語のテキスト 中文",
        "emoji 😀 👍🏽 family 👨‍👩‍👧 flag 🇸🇪", "a\u{0}b nul", "tab\tnew\nline\r\n", "١٢٣ 123 ④ 1st 2,500.75", "\u{202E}reversed\u{200B}zero",
        String(repeating: "x", count: 5_000), String(repeating: "word ", count: 500), "🙂" + String(repeating: "\u{301}", count: 50),
    ]

    @Test("termHashes and termHash equal the one-shot HMAC-SHA256 prefix of each normalised term, on odd text too")
    func hashesMatchOneShotHMAC() {
        let key = UserDataKey.generate()
        for text in Self.oddTexts {
            var expected: [Data: Int] = [:]
            for term in TextNormalizer.terms(text) {
                let mac = Data(HMAC<SHA256>.authenticationCode(for: Data(term.utf8), using: key.termKey)).prefix(16)
                expected[Data(mac), default: 0] += 1
            }
            #expect(MemoryVault.termHashes(text, key: key) == expected, "\(text.unicodeScalars.count) scalars")
            for term in TextNormalizer.terms(text) {
                let one = MemoryVault.termHash(term, key: key)
                #expect(one.count == 16 && one.startIndex == 0)
                #expect(one == Data(Data(HMAC<SHA256>.authenticationCode(for: Data(term.utf8), using: key.termKey)).prefix(16)))
            }
        }
        // Keyed: another user's key gives other hashes.
        #expect(MemoryVault.termHashes("dog", key: key) != MemoryVault.termHashes("dog", key: UserDataKey.generate()))
    }

    /// The expansion as computed before the second step took normalised terms (commit f188d85's parent).
    static func reference(query: String, hits: [String], documentCount: Int, limit: Int, minimumIDF: Double, documentFrequency: (String) -> Int?)
        -> [QueryFeedback.Term]
    {
        guard limit > 0, documentCount > 0 else { return [] }
        let queryTerms = Set(TextNormalizer.terms(query))
        var idfs: [String: Double?] = [:]
        var weights: [String: Double] = [:]
        for (rank, text) in hits.enumerated() {
            var counts: [String: Int] = [:]
            let terms = TextNormalizer.terms(text)
            for term in terms { counts[term, default: 0] += 1 }
            guard !terms.isEmpty else { continue }
            let length = Double(terms.count)
            for (term, frequency) in counts where !queryTerms.contains(term) && !term.allSatisfy(\.isNumber) {
                let termIDF: Double?
                if let known = idfs[term] {
                    termIDF = known
                } else {
                    termIDF = documentFrequency(term).map { QueryFeedback.idf(documentFrequency: $0, documentCount: documentCount) }
                    idfs[term] = termIDF
                }
                guard let termIDF, termIDF >= minimumIDF else { continue }
                weights[term, default: 0] += Double(frequency) / length * termIDF / Double(rank + 1)
            }
        }
        let best = weights.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.prefix(limit)
        guard let top = best.first?.value, top > 0 else { return [] }
        return best.map { QueryFeedback.Term(term: $0.key, weight: $0.value / top) }
    }

    @Test("the expansion from normalised terms equals the one from texts, and every chosen term had its frequency asked, once")
    func feedbackOverloadsAgree() {
        var rng = SystemRandomNumberGenerator()
        let words = [
            "sweden", "grandmother", "letters", "weather", "moved", "caroline", "2023", "cold", "violin", "Friday", "café", "😀", "the", "and",
        ]
        let texts = Self.oddTexts.filter { $0.count < 200 }
        for round in 0..<200 {
            var hits: [String] = []
            for _ in 0..<Int.random(in: 0...10, using: &rng) {
                var hit: [String] = []
                for _ in 0..<Int.random(in: 0...12, using: &rng) { hit.append(words.randomElement(using: &rng) ?? "") }
                if round % 3 == 0 { hit.append(texts.randomElement(using: &rng) ?? "") }
                hits.append(hit.joined(separator: " "))
            }
            var queryWords: [String] = []
            for _ in 0..<Int.random(in: 0...4, using: &rng) { queryWords.append(words.randomElement(using: &rng) ?? "") }
            let query = queryWords.joined(separator: " ")
            var frequencies: [String: Int] = [:]
            for term in Set(hits.flatMap(TextNormalizer.terms)) where Int.random(in: 0..<5, using: &rng) > 0 {
                frequencies[term] = Int.random(in: 0...40, using: &rng)
            }
            let documentCount = Int.random(in: 0...50, using: &rng)
            let limit = Int.random(in: 0...12, using: &rng)
            let minimumIDF = Double.random(in: 0...2, using: &rng)
            let expected = Self.reference(
                query: query, hits: hits, documentCount: documentCount, limit: limit, minimumIDF: minimumIDF, documentFrequency: { frequencies[$0] })
            #expect(
                QueryFeedback.terms(query: query, hits: hits, documentCount: documentCount, limit: limit, minimumIDF: minimumIDF) { frequencies[$0] }
                    == expected)
            var asked: [String: Int] = [:]
            let fromTerms = QueryFeedback.terms(
                queryTerms: Set(TextNormalizer.terms(query)), hitTerms: hits.map(TextNormalizer.terms), documentCount: documentCount, limit: limit,
                minimumIDF: minimumIDF
            ) { term in
                asked[term, default: 0] += 1
                return frequencies[term]
            }
            #expect(fromTerms == expected)
            // The vault hashes a term only when its frequency is asked and drops a chosen term it has no hash for.
            #expect(fromTerms.allSatisfy { asked[$0.term] != nil })
            #expect(asked.values.allSatisfy { $0 == 1 })
        }
    }
}
