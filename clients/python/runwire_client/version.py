"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.3.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "f23d62a50deafc3435e66854038fd06d5bc81aaf314d0fc435ea880466c10d3d"
