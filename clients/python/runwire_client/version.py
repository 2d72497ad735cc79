"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.3.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "02a71ca9ec9b3d477a221a86c83dd10be920d3764b8fa5dce37951b8f0678e90"
