"""bench/api.py keeps working: its quick mode runs and prints every P5, P5b and P6 figure row.

Speed is never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import re

from tests.support.bench import run_quick

LOAD_VARIANTS = ("startExecution", "query { viewer { label } }", "bare Litestar constant JSON")
PAGES = ("page 1", "page 200", "page 1 FAILED", r"page \d+ FAILED")
NUMBER = r"\d+\.\d+"


async def test_api_bench_quick_prints_every_figure() -> None:
    text = await run_quick("api.py", timeout=120)
    for variant in LOAD_VARIANTS:
        # variant, requests, seconds, req/s, p50, p99, ratio to bare, server CPU ms, 1-core req/s
        row = (
            rf"^{re.escape(variant)}\s+200\s+{NUMBER}\s+[\d,]+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}"
            rf"\s+{NUMBER}\s+[\d,]+$"
        )
        assert re.search(row, text, re.MULTILINE), f"no figures for {variant}:\n{text}"
    for variant in ("startExecution", "bare Litestar"):
        # P5b: variant, requests (3 rounds of 20), p50, p99, max
        row = rf"^{variant}\s+60\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$"
        assert re.search(row, text, re.MULTILINE), f"no P5b figures for {variant}:\n{text}"
    for page in PAGES:
        # page, samples, GraphQL p50 p99, asyncpg p50 p99, ratio
        row = rf"^{page}\s+\d+\s+" + r"\s+".join([NUMBER] * 5) + "$"
        assert re.search(row, text, re.MULTILINE), f"no figures for {page}:\n{text}"
    # Each page's plan is printed and names the index that serves it; a page after a cursor
    # seeks to it (the index condition holds the cursor's bound), it does not filter up to it.
    assert len(re.findall(r"Index Scan using runwire_execution_", text)) >= len(PAGES), text
    assert len(re.findall(r"index cond .*queued_at <= ", text)) == 2, text
