"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.3.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "cf4a11381212372a36e80d2ef621ec3a0a48845822b40f8574457447717c39ea"
