"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.1.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "afee5a7ff1c4ac4058acc9726a4b7ea6f7995ed8c4d9a77aee580ab7f4cb130e"
