import Foundation
import Testing

@testable import EngramCore
@testable import EngramProviders

@Suite("Salience, decay, reinforcement and conflicts", .timeLimit(.minutes(3)))
struct MemoryModelTests {
    let t0 = Date(timeIntervalSince1970: 1_700_000_000)

    func memory(_ sector: Sector, salience0: Double, at: Date) -> Memory {
        Memory(
            id: "m", tenant: "t", user: UserKey("u_aaaaaaaaaaaaaaaaaaaaaaaaaa")!, sector: sector, content: "x", importance: 0.5,
            salience0: salience0, reinforcedAt: at, validFrom: at, sources: [], createdAt: at)
    }

    @Test("salience halves above the floor after one half-life, per sector")
    func halfLife() {
        // episodic: lambda 0.015 → half-life ln 2 / 0.015 = 46.21 days; 0.05 + 0.85 · 0.5 = 0.475
        let days = log(2) / 0.015
        let s = Salience.at(t0.addingTimeInterval(days * 86_400), salience0: 0.9, reinforcedAt: t0, sector: .episodic)
        #expect(abs(s - 0.475) < 1e-9)
        // reflective decays slowest: after 30 days 0.05 + 0.85 · e^(-0.03) = 0.874878...
        let r = Salience.at(t0.addingTimeInterval(30 * 86_400), salience0: 0.9, reinforcedAt: t0, sector: .reflective)
        #expect(abs(r - (0.05 + 0.85 * exp(-0.03))) < 1e-12)
        #expect(abs(r - 0.87487) < 1e-4)
        // no time passed: salience0 itself; never below the floor
        #expect(Salience.at(t0, salience0: 0.6, reinforcedAt: t0, sector: .emotional) == 0.6)
        #expect(Salience.at(t0.addingTimeInterval(1e9), salience0: 0.6, reinforcedAt: t0, sector: .emotional) >= 0.05)
    }

    @Test("reinforcement moves salience 18 % of the way to 1 from its current value")
    func reinforcement() {
        let m = memory(.episodic, salience0: 0.9, at: t0)
        let later = t0.addingTimeInterval(log(2) / 0.015 * 86_400)
        // s = 0.475 → 0.475 + 0.18 · 0.525 = 0.5695
        #expect(abs(Salience.reinforced(m, at: later) - 0.5695) < 1e-9)
        #expect(abs(MemoryModelConstants.initialSalience(importance: 0.5) - 0.6) < 1e-12)
    }

    @Test("decay is computed at read time and does not compound across reads")
    func noCompounding() {
        let m = memory(.semantic, salience0: 0.8, at: t0)
        let a = Salience.of(m, at: t0.addingTimeInterval(10 * 86_400))
        _ = Salience.of(m, at: t0.addingTimeInterval(5 * 86_400))
        #expect(Salience.of(m, at: t0.addingTimeInterval(10 * 86_400)) == a)
    }

    @Test("the score formula weighs cosine, BM25, salience and recency as documented")
    func score() {
        let s = Scoring.score(cosine: 0.8, bm25: 0.5, salience: 0.4, eventDate: t0, now: t0.addingTimeInterval(30 * 86_400))
        #expect(abs(s.recency - exp(-1)) < 1e-12)
        let expected: Double = 0.55 * 0.8 + 0.25 * 0.5 + 0.12 * 0.4 + 0.08 * exp(-1.0)
        #expect(abs(s.score - expected) < 1e-12)
    }

    @Test("same slot with a new value supersedes; same value reinforces")
    func slotConflicts() {
        let blue = ResolutionCandidate(
            id: "old", sector: .semantic, slot: "favourite.colour", content: "The caller's favourite colour is blue.", vector: nil)
        let green = ResolutionCandidate(
            id: "new", sector: .semantic, slot: "favourite.colour", content: "The caller's favourite colour is green.", vector: nil)
        #expect(ConflictResolution.resolve(green, against: [blue], duplicateThreshold: 0.9) == .supersede(existingID: "old"))
        #expect(ConflictResolution.resolve(blue, against: [blue], duplicateThreshold: 0.9) == .reinforce(existingID: "old"))
    }

    @Test("near-duplicates reinforce, but facts differing in a day, number or name are never merged")
    func nearDuplicates() async throws {
        let embedder = LocalEmbedder()
        func candidate(_ id: String, _ text: String) -> ResolutionCandidate {
            ResolutionCandidate(id: id, sector: .episodic, slot: nil, content: text, vector: embedder.vector(text))
        }
        let friday = candidate("a", "The caller's cleaning appointment is on Friday at 10:00.")
        let again = candidate("b", "The caller's cleaning appointment is on Friday at 10:00!")
        let tuesday = candidate("c", "The caller's cleaning appointment is on Tuesday at 10:00.")
        let eleven = candidate("d", "The caller's cleaning appointment is on Friday at 11:00.")
        // The hashed lexical vectors do put these above the threshold…
        #expect(VectorMath.dot(friday.vector!, tuesday.vector!) > 0.7)
        #expect(ConflictResolution.resolve(again, against: [friday], duplicateThreshold: embedder.duplicateThreshold) == .reinforce(existingID: "a"))
        // …and the specifics check keeps them apart.
        #expect(ConflictResolution.resolve(tuesday, against: [friday], duplicateThreshold: embedder.duplicateThreshold) == .insert)
        #expect(ConflictResolution.resolve(eleven, against: [friday], duplicateThreshold: embedder.duplicateThreshold) == .insert)
    }

    @Test("the local embedder is deterministic and unit-length")
    func embedder() {
        let e = LocalEmbedder()
        let a = e.vector("Dana's cleaning moved to Friday")
        #expect(a == e.vector("Dana's cleaning moved to Friday"))
        #expect(a.count == 384)
        #expect(abs(VectorMath.dot(a, a) - 1) < 1e-5)
    }

    @Test("phone numbers normalise to E.164 and withheld ones resolve to no one")
    func phones() {
        #expect(PhoneNumber.normalize("+1 (252) 396-0448") == "+12523960448")
        #expect(PhoneNumber.normalize("0044 20 7946 0958") == "+442079460958")
        #expect(PhoneNumber.normalize("12523960448") == "+12523960448")
        for withheld in ["anonymous", "Restricted", "", "   ", "unknown", "+", "2523960448", "sip:alice@example.com", "+0000000000"] {
            #expect(PhoneNumber.normalize(withheld) == nil, "\(withheld)")
        }
        let deriver = UserKeyDeriver(tenantSecret: Data(repeating: 7, count: 32))
        let key = deriver.key(for: .phone("+12523960448"))
        #expect(UserKey(key.rawValue) == key)
        #expect(key != deriver.key(for: .external("+12523960448")))
        #expect(CallerReference.parse("%2B12523960448") == .phone("+12523960448"))
        #expect(CallerReference.parse("ext:crm-42") == .external("crm-42"))
    }

    @Test("relative dates resolve against the call's start")
    func relativeDates() {
        let friday = Date(timeIntervalSince1970: 1_763_759_979)  // Friday 21 November 2025
        let text = RelativeDates.annotate("See you next Friday, and I went there yesterday.", callStart: friday)
        #expect(text.contains("next Friday (28 November 2025)"))
        #expect(text.contains("yesterday (20 November 2025)"))
    }
}
