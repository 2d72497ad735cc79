"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.4.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "4262fb6f483c9d77e71a73831c411852195eae994d708d1eaa1adb808e84b239"
