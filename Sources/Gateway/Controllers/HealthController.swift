import Hummingbird
import Shared

/// Probes: live = the process answers; ready = the database answers and Redis is reachable.
struct HealthController {
    let services: GatewayServices

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/health/live") { _, _ in try Response.json(["status": "ok"]) }
        router.get("/health/ready") { _, _ in
            var checks: [String: String] = [:]
            do { try await withTimeout(.seconds(2)) { try await services.vault.store.ping() }; checks["database"] = "ok" } catch { checks["database"] = "unavailable" }
            do { try await withTimeout(.seconds(2)) { try await services.queue.ping() }; checks["redis"] = "ok" } catch { checks["redis"] = "unavailable" }
            let ready = checks.values.allSatisfy { $0 == "ok" }
            return try Response.json(["status": ready ? "ready" : "not_ready", "database": checks["database"]!, "redis": checks["redis"]!], status: ready ? .ok : .serviceUnavailable)
        }
    }
}
