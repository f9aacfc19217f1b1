import EngramCore
import EngramProviders
import EngramQueue
import Foundation

extension ConversationBackfill {
    /// A backfill through the vault: its store, its envelope key, and its erasure tags on every
    /// envelope (the CLI's `engram backfill`).
    public init(client: ElevenLabsClient, vault: MemoryVault, queue: any EventQueue, dedupeTTLSeconds: Int, clock: WallClock = .system) {
        self.init(
            client: client, store: vault.store, queue: queue, envelopeCipher: vault.keyRing.envelopeCipher, dedupeTTLSeconds: dedupeTTLSeconds,
            clock: clock)
        userTagKeyRing = vault.keyRing
    }
}
