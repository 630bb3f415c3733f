"""Target sinks implementing the engine's Sink port (framework-free)."""
