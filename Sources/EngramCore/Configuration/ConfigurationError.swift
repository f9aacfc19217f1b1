import Foundation

/// A bad configuration value: names the variable, never echoes a secret.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let variable: String
    public let reason: String
    public var description: String { "configuration: \(variable): \(reason)" }

    public init(variable: String, reason: String) {
        self.variable = variable
        self.reason = reason
    }
}
