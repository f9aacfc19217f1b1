import Hummingbird

/// The gateway's request context: what the middleware in front of a route established about the
/// request. Handlers behind that middleware read it through `AuthenticatedRequestContext` or
/// `WebhookRequestContext`, where it cannot be missing.
struct GatewayRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The bearer key's tenant, scope and id: set by `Authenticator` on the tool and admin routes.
    var caller: Caller?
    /// The post-call body whose signature `WebhookSignatureMiddleware` verified, with its tenant.
    var webhook: VerifiedWebhook?

    init(source: Source) {
        coreContext = .init(source: source)
    }
}
