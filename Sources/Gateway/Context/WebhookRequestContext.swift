import EngramApp
import EngramCore
import EngramObservability
import EngramQueue
import Hummingbird

/// The context of a route behind `WebhookSignatureMiddleware` (the post-call webhooks): the body
/// has arrived and its signature is verified.
struct WebhookRequestContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    let webhook: VerifiedWebhook

    init(context: GatewayRequestContext) throws {
        // No verified body means the route was grouped without the signature check: refuse it.
        guard let webhook = context.webhook else { throw APIError.from(SignatureError.mismatch) }
        coreContext = context.coreContext
        self.webhook = webhook
    }
}
