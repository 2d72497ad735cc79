"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.1.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "db73b5d8d75e3552e62a115286af3211d4a462f3ba9b3a7519067ad1f3bfbc59"
