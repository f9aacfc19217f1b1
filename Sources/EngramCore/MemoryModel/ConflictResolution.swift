import Foundation

/// What to do with a newly extracted memory, given what the user already has.
public enum Resolution: Equatable, Sendable {
    /// A new row.
    case insert
    /// Same fact again: reinforce the existing memory and add the new source.
    case reinforce(existingID: String)
    /// Same slot, new value: close the old memory (valid_to, superseded_by) and insert.
    case supersede(existingID: String)
}

/// A memory as conflict resolution sees it: no I/O, already decrypted.
public struct ResolutionCandidate: Sendable {
    public var id: String
    public var sector: Sector
    public var slot: String?
    public var content: String
    public var vector: [Float]?

    public init(id: String, sector: Sector, slot: String?, content: String, vector: [Float]?) {
        self.id = id
        self.sector = sector
        self.slot = slot
        self.content = content
        self.vector = vector
    }
}

/// The rules of MEMORY-MODEL.md, "Writing: extraction and conflicts", as pure functions.
public enum ConflictResolution {
    public static func resolve(_ new: ResolutionCandidate, against existing: [ResolutionCandidate], duplicateThreshold: Float) -> Resolution {
        if let slot = new.slot, let current = existing.first(where: { $0.slot == slot }) {
            return TextNormalizer.comparable(current.content) == TextNormalizer.comparable(new.content)
                ? .reinforce(existingID: current.id) : .supersede(existingID: current.id)
        }
        var best: (id: String, similarity: Float)?
        for candidate in existing where candidate.sector == new.sector && candidate.slot == nil {
            let similarity: Float
            if let a = new.vector, let b = candidate.vector, a.count == b.count {
                similarity = VectorMath.dot(a, b)
            } else {
                similarity = TextNormalizer.comparable(candidate.content) == TextNormalizer.comparable(new.content) ? 1 : 0
            }
            if similarity >= duplicateThreshold, similarity > (best?.similarity ?? -1),
                !differInSpecifics(candidate.content, new.content)
            {
                best = (candidate.id, similarity)
            }
        }
        if let best { return .reinforce(existingID: best.id) }
        return .insert
    }

    /// Facts that differ in a number, a date word or a name are never merged, however similar
    /// their vectors: hashed lexical vectors put "Friday"/"Tuesday" variants above 0.95.
    public static func differInSpecifics(_ a: String, _ b: String) -> Bool {
        TextNormalizer.specifics(a) != TextNormalizer.specifics(b)
    }
}
