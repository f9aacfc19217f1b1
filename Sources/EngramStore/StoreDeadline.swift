import EngramCore
import Foundation

/// The deadline of one store call (`ENGRAM_STORE_TIMEOUT_MS`). A call still running past it
/// fails with `StoreError.unavailable` and a log line naming the operation: a stalled database
/// becomes an error the caller retries, never a silent wait. A call that timed out may still
/// complete in the database; every write is idempotent or keyed, so the retry is safe.
public enum StoreDeadline {
    public static let defaultTimeout: Duration = .seconds(10)
}
