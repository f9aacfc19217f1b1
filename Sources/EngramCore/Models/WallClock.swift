import Foundation

/// The time source, injected so tests and the evaluation control it.
public struct WallClock: Sendable {
    public let now: @Sendable () -> Date

    public init(_ now: @escaping @Sendable () -> Date) { self.now = now }

    public static let system = WallClock { Date() }

    public static func fixed(_ date: Date) -> WallClock { WallClock { date } }
}
