"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.4.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "a15cf2587ea394edb6f93fbb8fa6cff8487d8b9a77adcf128553d8d44d27b74a"
