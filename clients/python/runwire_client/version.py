"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.5.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "85387d7a5e75e2c67144308f193051868c225f33914543ef05e7d14472076228"
