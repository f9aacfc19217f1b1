import Foundation

/// Number conversions that never trap, for every value that comes from outside the process (a
/// payload, a header, Redis, the database, a provider's answer). `Int64(someDouble)` traps on
/// NaN, on infinities and past ±9.2e18; these return nil or clamp instead.
public enum SafeNumber {
    /// The whole part of `value`, or nil when it is not finite or does not fit in Int64.
    public static func int64(_ value: Double) -> Int64? {
        guard value.isFinite else { return nil }
        return Int64(exactly: value.rounded(.towardZero))
    }

    /// The whole part of `value`, or nil when it is not finite or does not fit in Int.
    public static func int(_ value: Double) -> Int? {
        guard value.isFinite else { return nil }
        return Int(exactly: value.rounded(.towardZero))
    }

    /// The whole part of `value` clamped into Int64's range; NaN is 0.
    public static func clampedInt64(_ value: Double) -> Int64 {
        if value.isNaN { return 0 }
        // Double(Int64.max) rounds up to 2^63, which does not fit: `>=` keeps it out.
        if value >= Double(Int64.max) { return .max }
        if value <= Double(Int64.min) { return .min }
        return Int64(value.rounded(.towardZero))
    }

    /// The whole part of `value` clamped into Int's range; NaN is 0.
    public static func clampedInt(_ value: Double) -> Int {
        Int(clamping: clampedInt64(value))
    }

    /// Milliseconds from seconds, clamped (a `Retry-After` of 1e300 s is a long wait, not a trap).
    public static func milliseconds(fromSeconds seconds: Double) -> Duration {
        .milliseconds(clampedInt64((seconds * 1000).rounded()))
    }

    /// A `Retry-After` header in seconds: finite and not negative, else nil (dates are not used).
    public static func retryAfterSeconds(_ header: String?) -> Double? {
        guard let header, let seconds = Double(header.trimmingCharacters(in: .whitespaces)), seconds.isFinite, seconds >= 0 else { return nil }
        return seconds
    }

    /// The latest Unix time accepted from a payload: 9999-12-31T23:59:59Z.
    public static let maxUnixSeconds: Int64 = 253_402_300_799

    /// Unix seconds from a payload: a whole number between 1970 and the year 9999, else nil
    /// (the caller falls back to the time the event was received).
    public static func unixSeconds(_ value: Double) -> Int64? {
        guard let seconds = int64(value), (0...maxUnixSeconds).contains(seconds) else { return nil }
        return seconds
    }

    /// Unix seconds from text: an integer, or a decimal number (fractions dropped).
    public static func unixSeconds(_ text: String) -> Int64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let seconds = Int64(trimmed) { return (0...maxUnixSeconds).contains(seconds) ? seconds : nil }
        // Double("nan"), Double("inf") and Double("1e300") parse: `unixSeconds(Double)` refuses them.
        return Double(trimmed).flatMap(unixSeconds)
    }

    /// A number as text that keeps what it says: integers exactly (up to 2^53, where Double is
    /// exact), anything larger or fractional in Swift's shortest round-trip form ("1e+19").
    public static func text(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        if value.rounded() == value, abs(value) <= 9_007_199_254_740_992, let whole = int64(value) { return String(whole) }
        return String(value)
    }
}

extension Date {
    /// A date from Unix seconds that comes from outside: non-finite or beyond year 9999 is nil.
    public init?(checkedUnixSeconds seconds: Double) {
        guard seconds.isFinite, abs(seconds) <= Double(SafeNumber.maxUnixSeconds) else { return nil }
        self.init(timeIntervalSince1970: seconds)
    }
}
