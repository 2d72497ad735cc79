"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.4.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "ce036cfcaf3309445db62e82e716c290ef50a8850d7c59077a43b8133e20ed27"
