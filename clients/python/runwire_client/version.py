"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.3.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "dfe0c20e11cb31f096df09717fd1187c2e1d90eea8b704c6d32bc5b3b9a71fda"
