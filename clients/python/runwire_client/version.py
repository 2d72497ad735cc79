"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.4.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "4e415099b7c9eed490af10c32cd4b08ae5319e0a23b0252cefbe13ce9dfea572"
