"""Piccolo tables, migrations and the repository: the only code that touches tables."""
