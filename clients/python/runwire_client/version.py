"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.5.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "0cf1f9eaaec6d5cc019d67452d11b34d1bab7d963764d56c482b25193c944452"
