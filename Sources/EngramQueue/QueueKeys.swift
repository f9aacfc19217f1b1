/// Every Redis key Engram uses, from one place. The prefix is `engram:` in production and
/// unique per test.
public struct QueueKeys: Sendable {
    public let prefix: String

    public init(prefix: String = "engram:") { self.prefix = prefix }

    public var events: String { prefix + "events" }
    public var retry: String { prefix + "retry" }
    public var dead: String { prefix + "dead" }
    public var processingPattern: String { prefix + "processing:*" }
    public func processing(_ worker: String) -> String { prefix + "processing:" + worker }
    public func heartbeat(_ worker: String) -> String { prefix + "worker:" + worker }
    public func seen(_ hash: String) -> String { prefix + "seen:" + hash }
    public func rateLimit(_ bucket: String) -> String { prefix + "rate:" + bucket }
    /// Erased callers' user tags, scored by erasure time: queue scripts drop their older events.
    public var erased: String { prefix + "erased" }
    /// The erasure time up to which the purge has run (unix seconds).
    public var erasurePurgedThrough: String { prefix + "erasure:purged_through" }
}
