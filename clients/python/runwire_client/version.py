"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.2.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "56f11720877c77870a35d91baaa09bbd2cce4b9f9ffbdd7dd78f3a09fec479ed"
