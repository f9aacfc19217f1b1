import Foundation

/// SplitMix64: a tiny seeded generator, so one seed always yields the same benchmark data
/// (the standard library's generators are either unseeded or not guaranteed stable).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0..<upper` (multiply-high; independent of the standard library's algorithms).
    public mutating func below(_ upper: Int) -> Int {
        precondition(upper > 0)
        return Int(next().multipliedFullWidth(by: UInt64(upper)).high)
    }

    /// Uniform in `[0, 1)`.
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    public mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

    /// A generator for one stream of a run (a caller, a chunk, a path), derived from the seed.
    public static func derived(_ seed: UInt64, _ parts: UInt64...) -> SplitMix64 {
        var mixer = SplitMix64(seed: seed)
        var state = mixer.next()
        for part in parts {
            mixer = SplitMix64(seed: state ^ (part &* 0xD6E8_FEB8_6659_FD93))
            state = mixer.next()
        }
        return SplitMix64(seed: state)
    }
}
