"""Which client this is, and which server schema it was written against."""

from __future__ import annotations

__version__ = "0.2.0"

# sha256 of the schema/schema.graphql this version's operations and types were written against;
# a test compares it with the current file, so a schema change cannot pass unnoticed here.
SCHEMA_SHA256 = "c4119d61121006f352cfd043c33cb0677385d98a236806bccda1e70f8bb0c818"
