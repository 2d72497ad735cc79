"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.1.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "11698231791e1573d12ddc15e0e029777e02d68d1970cefba093ae69093c3e48"
