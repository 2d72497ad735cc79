"""Piccolo tables, migrations, and one store per noun: the only code that touches tables."""
