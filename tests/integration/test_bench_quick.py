"""bench/event_path.py keeps working: its quick mode runs and prints a figure for every variant.

Speed is never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import re

from tests.support.bench import run_quick

VARIANTS = ("runwire", "naive", "raw COPY")
NUMBER = r"[\d,]+(?:\.\d+)?"


async def test_event_path_quick_prints_every_variant() -> None:
    text = await run_quick("event_path.py", timeout=90)
    for variant in VARIANTS:
        # variant, events, seconds, events/s, ratio to raw COPY, lines/s
        row = rf"^{re.escape(variant)}(?:\s+{NUMBER}){{5}}$"
        assert re.search(row, text, re.MULTILINE), f"no figures for {variant}:\n{text}"
    # What the rates are made of: runwire's chunks and messages, raw COPY's build time.
    for footnote in (
        r"^runwire: [\d,]+ OutputChunk events carried the 2,000 lines",
        r"^runwire: the subscriber got them in [\d,]+ messages",
        r"^raw COPY: the median of \d+ runs; its rows were built before its clock",
    ):
        assert re.search(footnote, text, re.MULTILINE), f"no {footnote!r}:\n{text}"
