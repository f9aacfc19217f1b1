import Hummingbird
import Logging

/// Runs `router` on 127.0.0.1 on a port the kernel picks, for the fake servers of the tests.
/// Returns once it listens: the serving task (cancel it to stop) and the port.
func startLoopbackServer(_ router: Router<BasicRequestContext>, name: String) async throws -> (task: Task<Void, any Error>, port: Int) {
    var logger = Logger(label: name)
    logger.logLevel = .critical  // stopping by cancellation logs errors that mean nothing here
    let (ready, readyContinuation) = AsyncStream.makeStream(of: Int?.self)
    let app = Application(
        router: router,
        configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: name),
        onServerRunning: { channel in
            readyContinuation.yield(channel.localAddress?.port)
            readyContinuation.finish()
        },
        logger: logger)
    let serving = Task {
        defer { readyContinuation.finish() }
        try await app.runService(gracefulShutdownSignals: [])
    }
    var listening: Int?
    for await port in ready { listening = port }
    guard let listening else {
        serving.cancel()
        _ = try? await serving.value
        throw FakeServerError.didNotStart
    }
    return (serving, listening)
}
