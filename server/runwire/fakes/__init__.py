"""Fakes of external systems, for offline tests and examples (`runwire fake-llm`)."""
