"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.6.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "ac643fe545c8c79da39ef67f05703c9177b954941da3d876acc4d718b84c7f24"
