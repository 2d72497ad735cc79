"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.5.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "2ebc7f3ea2700b48718f4bd0a3e327e39601e97b4edad0d589938e6e01f17bdb"
