import Foundation

/// Which extractor or embedder to use.
public enum ProviderKind: String, Sendable { case openai, local }

/// What to do when the LLM keeps failing.
public enum LLMFailurePolicy: String, Sendable {
    case retryThenLocal = "retry-then-local"
    case retry
}

/// Tenant consent modes.
public enum ConsentMode: String, Sendable, Codable {
    case implicit, explicit, off
}
