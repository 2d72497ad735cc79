"""Stand-ins for external systems, so examples and tests run offline; each named as what it is."""
