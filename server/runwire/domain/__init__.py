"""Plain values, statuses, errors and services; imports no framework."""
