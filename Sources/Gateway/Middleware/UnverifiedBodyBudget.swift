import Synchronization

/// How many body bytes all requests together may hold before their signature is verified.
///
/// The post-call webhook can only check its HMAC once the whole body has arrived, so until then
/// every byte it keeps is held on behalf of a sender nobody has authenticated. Without a shared
/// cap, a few hundred stalled uploads with a wrong signature hold hundreds of megabytes. Each
/// request reserves what it keeps, chunk by chunk, and gives it all back when it ends.
final class UnverifiedBodyBudget: Sendable {
    let limit: Int
    private let held = Mutex(0)

    init(limit: Int) { self.limit = limit }

    /// Bytes held right now by all requests.
    var inUse: Int { held.withLock { $0 } }

    /// Reserves `bytes` if they fit under the limit; false (nothing reserved) when they do not.
    func reserve(_ bytes: Int) -> Bool {
        held.withLock { value in
            guard bytes >= 0, bytes <= limit - value else { return false }
            value += bytes
            return true
        }
    }

    func release(_ bytes: Int) {
        held.withLock { value in value = max(0, value - bytes) }
    }
}
