"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.1.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "65d74a4bda5559ad16be73f6e293cf9ad00025083595b6530ed7cc662cead497"
