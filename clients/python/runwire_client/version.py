"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.6.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "dbf6c613e1f5e5fe50b9f70f50173b818bfd214d18686d383285c8754ddcf8fd"
