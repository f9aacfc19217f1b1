import Foundation

/// Closed → open when the failure rate over a window of recent calls passes a threshold;
/// open → half-open after a cool-down, letting one probe through; the probe decides.
public actor CircuitBreaker {
    public enum State: Int, Sendable {
        case closed = 0
        case halfOpen = 1
        case open = 2
    }

    public nonisolated let name: String
    private let window: Int
    private let minimumCalls: Int
    private let failureRate: Double
    private let coolDown: Duration
    private var outcomes: [Bool] = []
    private(set) public var state: State = .closed
    private var openedAt: ContinuousClock.Instant?
    private var probeInFlight = false

    public init(name: String, window: Int = 20, minimumCalls: Int = 5, failureRate: Double = 0.5, coolDown: Duration = .seconds(30)) {
        self.name = name
        self.window = window
        self.minimumCalls = minimumCalls
        self.failureRate = failureRate
        self.coolDown = coolDown
    }

    public func allowRequest() -> Bool {
        switch state {
        case .closed: return true
        case .open:
            guard let openedAt, ContinuousClock.now - openedAt >= coolDown else { return false }
            state = .halfOpen
            probeInFlight = true
            return true
        case .halfOpen:
            if probeInFlight { return false }
            probeInFlight = true
            return true
        }
    }

    public func record(success: Bool) {
        switch state {
        case .halfOpen:
            probeInFlight = false
            if success {
                state = .closed
                outcomes.removeAll()
            } else {
                trip()
            }
        case .closed:
            outcomes.append(success)
            if outcomes.count > window { outcomes.removeFirst(outcomes.count - window) }
            let failures = outcomes.filter { !$0 }.count
            if outcomes.count >= minimumCalls, Double(failures) / Double(outcomes.count) >= failureRate { trip() }
        case .open:
            break
        }
    }

    private func trip() {
        state = .open
        openedAt = .now
        outcomes.removeAll()
    }
}
