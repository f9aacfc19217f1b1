/// The kind of memory, after the cognitive model (MEMORY-MODEL.md).
public enum Sector: String, Codable, Sendable, CaseIterable {
    /// What happened.
    case episodic
    /// Facts and preferences.
    case semantic
    /// How the caller likes things done.
    case procedural
    /// Feelings and frustrations.
    case emotional
    /// Insights across calls.
    case reflective
}

/// Lifecycle of a memory row.
public enum MemoryStatus: String, Codable, Sendable {
    case active, archived, erased
}
