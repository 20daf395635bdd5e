"""Measurement engines: recorders -> models (stacks, reports) -> writers. No UI, no sockets."""
