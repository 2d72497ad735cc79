"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.5.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "fbe94f3f93ead9ae0fb43cee886fb3870a4ed1a090d09cb944e45af7c31e3863"
