"""bench/event_path.py keeps working: its quick mode runs and prints a figure for every variant.

Speed is never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import re

from tests.support import postgres
from tests.support.bench import run_quick

VARIANTS = ("runwire", "naive", "raw COPY")


async def test_event_path_quick_prints_every_variant() -> None:
    text = await run_quick("event_path.py", "--server", postgres.POSTGRES_SERVER, timeout=60)
    for variant in VARIANTS:
        # variant, events, seconds, events/s, ratio to raw COPY
        row = rf"^{re.escape(variant)}\s+[\d,]+\s+\d+\.\d+\s+[\d,]+\s+\d+\.\d+$"
        assert re.search(row, text, re.MULTILINE), f"no figures for {variant}:\n{text}"
