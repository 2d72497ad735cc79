"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.4.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "54bde3e02a93b193b2ba9fe62c8a930dbc64564e5e695ef5abcd35b1bfe9bce3"
