import EngramObservability

extension EngramConfiguration: TracingSettings {}
