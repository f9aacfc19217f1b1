import Hummingbird

/// The context of a route behind `Authenticator` (tool and management routes): the caller, its
/// tenant and its key's scope are always there.
struct AuthenticatedRequestContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    let caller: Caller

    init(context: GatewayRequestContext) throws {
        // No caller means the route was grouped without its authenticator: refuse it, never serve it.
        guard let caller = context.caller else { throw APIError.unauthorized() }
        coreContext = context.coreContext
        self.caller = caller
    }
}
