"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.2.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "316d0c73d04abfc5f653ea58c37bc9c521e4a92764a8d4c815c17948fdc6829a"
