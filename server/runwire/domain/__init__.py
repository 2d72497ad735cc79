"""Plain values, statuses, errors, services and their ports; imports no framework."""
