"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.6.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "27166a8d0af431aef8768e60d00dd1f8fc5f42f1d47a95e9aa21dbbfbd9787eb"
