"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.6.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "23c2bd74591539e1f98f8a56bfe88592c907c382548ceccf244c4f00cb79c6e4"
