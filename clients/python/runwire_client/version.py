"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.3.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "3fbe32fa587ad8a2769995b13eb404e9271e6d34f0c905b9ce6f8669bc401ce4"
