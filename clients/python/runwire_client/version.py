"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.2.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "67cf4c5988b81d8a661b875db11c88510cb06bdcf960f500f0b97136a149b7d0"
