"""Runwire's assumptions about its event-path libraries' internals, one module per library."""
