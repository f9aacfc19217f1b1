import EngramStore
import Foundation

@testable import EngramApp

/// Opens a SQLite store off the concurrency pool (`onOwnThread`), as `StoreFactory.open` does:
/// opening takes a file lock, migrates and fsyncs synchronously, and the test process's pool has
/// two threads shared by every test, so a blocked open stalls other tests' deadlines.
func openSQLiteStore(path: String, callTimeout: Duration = StoreDeadline.defaultTimeout) async throws -> SQLiteMemoryStore {
    try await onOwnThread { try SQLiteMemoryStore(path: path, callTimeout: callTimeout) }
}
