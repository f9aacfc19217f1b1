import EngramCore
import EngramStore
import Foundation

/// One user's keyword index in memory, valid for one version of the user: the keyed term
/// postings and BM25 statistics of the user's current memories, so a keyword query reads no
/// posting from the store. It holds what the store's `memory_terms` holds (16-byte keyed term
/// hashes, memory ids, frequencies, document lengths): no words, no content.
public struct TermIndex: Sendable {
    /// A keyed term hash (`MemoryVault.termHashes`, 16 bytes) as a cheap dictionary key.
    struct Term: Hashable, Sendable {
        let high: UInt64
        let low: UInt64
        let length: Int

        init(_ data: Data) {
            var words: (UInt64, UInt64) = (0, 0)
            withUnsafeMutableBytes(of: &words) { target in
                data.withUnsafeBytes { source in
                    let count = min(source.count, target.count)
                    if count > 0, let from = source.baseAddress, let to = target.baseAddress { to.copyMemory(from: from, byteCount: count) }
                }
            }
            high = words.0
            low = words.1
            length = data.count
        }
    }

    /// One memory holding a term: its position in `ids` and the term's frequency in it.
    struct Posting: Sendable {
        let document: Int32
        let frequency: Int32
    }

    /// The version of the user this index was built from (`MemoryVault.cacheVersion`).
    public let version: String
    /// What the store's `termStatistics` answers for the same memories.
    public let statistics: TermStatistics
    public let postingCount: Int
    /// Approximate bytes held, for the cache's bound.
    public let estimatedBytes: Int
    let ids: [String]
    let lengths: [Int]
    let postings: [Term: [Posting]]

    /// `documents`: every current memory with its term count (also those without a posting,
    /// which count for the statistics); `postings`: the current memories' postings.
    public init(version: String, documents: [(id: String, length: Int)], postings rows: [TermPosting]) {
        self.version = version
        var ids: [String] = []
        var lengths: [Int] = []
        var position: [String: Int32] = [:]
        ids.reserveCapacity(documents.count)
        lengths.reserveCapacity(documents.count)
        position.reserveCapacity(documents.count)
        var total = 0
        for document in documents where position[document.id] == nil && ids.count < Int(Int32.max) {
            position[document.id] = Int32(ids.count)
            ids.append(document.id)
            lengths.append(document.length)
            total = total &+ document.length
        }
        var postings: [Term: [Posting]] = [:]
        var count = 0
        for row in rows {
            guard let document = position[row.memoryID] else { continue }
            let frequency = Int32(clamping: row.frequency)
            postings[Term(row.term), default: []].append(Posting(document: document, frequency: frequency))
            count += 1
        }
        self.ids = ids
        self.lengths = lengths
        self.postings = postings
        self.postingCount = count
        // As the store computes them: COUNT(*) and AVG(term_count) over the current memories.
        self.statistics = TermStatistics(documentCount: ids.count, averageLength: ids.isEmpty ? 0 : Double(total) / Double(ids.count))
        self.estimatedBytes = count * MemoryLayout<Posting>.stride + postings.count * 96 + ids.count * 112
    }

    /// The best `limit` memories by BM25 over the query's keyed terms (`Scoring.bm25`, with the
    /// inputs the store path gives it: each term's frequency in the memory, its document
    /// frequency among the user's current memories, the memory's length and the statistics),
    /// best first; equal scores in id order, highest first. Repeated terms count once.
    public func candidates(terms: [Data], limit: Int) -> [(id: String, score: Double)] {
        guard limit > 0, !ids.isEmpty else { return [] }
        var seen = Set<Term>()
        var lists: [[Posting]] = []
        // In byte order, the order in which SQLite's primary key gives a memory's postings, so
        // each score is summed in the order the store path sums it.
        for term in terms.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            let key = Term(term)
            guard seen.insert(key).inserted, let list = postings[key], !list.isEmpty else { continue }
            lists.append(list)
        }
        guard !lists.isEmpty else { return [] }

        // Each memory's matched terms as a chain through flat arrays, in query-term order (the
        // lists are walked backwards and each entry is put in front of its memory's chain).
        var head = [Int](repeating: -1, count: ids.count)
        var next: [Int] = []
        var frequencies: [Int] = []
        var idfs: [Double] = []
        var touched: [Int32] = []
        for list in lists.reversed() {
            let idf = Scoring.idf(df: list.count, documentCount: statistics.documentCount)
            for posting in list {
                let document = Int(posting.document)
                if head[document] < 0 { touched.append(posting.document) }
                next.append(head[document])
                head[document] = frequencies.count
                frequencies.append(Int(posting.frequency))
                idfs.append(idf)
            }
        }

        var buffer: [(tf: Int, idf: Double)] = []
        var best: [(document: Int32, score: Double)] = []
        best.reserveCapacity(limit + 1)
        for document in touched {
            buffer.removeAll(keepingCapacity: true)
            var entry = head[Int(document)]
            while entry >= 0 {
                buffer.append((tf: frequencies[entry], idf: idfs[entry]))
                entry = next[entry]
            }
            let score = Scoring.bm25(termIDFs: buffer, documentLength: lengths[Int(document)], averageLength: statistics.averageLength)
            // A small sorted buffer of the best: O(n log k), not a sort of every score.
            if best.count == limit, let last = best.last, !ranksBefore(score, document, last.score, last.document) { continue }
            let at = best.firstIndex { ranksBefore(score, document, $0.score, $0.document) } ?? best.count
            best.insert((document, score), at: at)
            if best.count > limit { best.removeLast() }
        }
        return best.map { (ids[Int($0.document)], $0.score) }
    }

    private func ranksBefore(_ score: Double, _ document: Int32, _ otherScore: Double, _ otherDocument: Int32) -> Bool {
        score > otherScore || (score == otherScore && ids[Int(document)] > ids[Int(otherDocument)])
    }
}
