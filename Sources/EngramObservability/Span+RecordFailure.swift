import Tracing

extension Span {
    /// Marks the span failed with the error's type only: descriptions can carry data.
    public func recordFailure(_ error: any Error) {
        let errorClass = String(describing: type(of: error))
        attributes["error.type"] = errorClass
        setStatus(SpanStatus(code: .error, message: errorClass))
    }
}
