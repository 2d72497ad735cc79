"""bench/api.py keeps working: its quick mode runs and prints every P5 and P6 figure row.

Speed is never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import re

from tests.support.bench import run_quick

LOAD_VARIANTS = ("startExecution", "query { viewer { label } }", "bare Litestar constant JSON")
PAGES = ("page 1", "page 200", "page 1 FAILED", r"page \d+ FAILED")
NUMBER = r"\d+\.\d+"


async def test_api_bench_quick_prints_every_figure() -> None:
    text = await run_quick("api.py", timeout=55)
    for variant in LOAD_VARIANTS:
        # variant, requests, seconds, req/s, p50, p99, ratio to bare
        row = rf"^{re.escape(variant)}\s+200\s+{NUMBER}\s+[\d,]+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$"
        assert re.search(row, text, re.MULTILINE), f"no figures for {variant}:\n{text}"
    for page in PAGES:
        # page, samples, GraphQL p50 p99, asyncpg p50 p99, ratio, fixed SQL p50 p99
        row = rf"^{page}\s+\d+\s+" + r"\s+".join([NUMBER] * 7) + "$"
        assert re.search(row, text, re.MULTILINE), f"no figures for {page}:\n{text}"
    # Each page's plan is printed and names the index that serves it.
    assert len(re.findall(r"Index Scan using runwire_execution_", text)) >= len(PAGES), text
