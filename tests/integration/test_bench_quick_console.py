"""bench/console_log.py keeps working: its quick mode drives the console and the bare page in
headless Chromium and prints every C1 figure row.

Speed is never asserted here (the benchmark itself fails on lost lines or an unbounded DOM); the
figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import re

from tests.support.bench import run_quick
from tests.support.browser import require_chromium

NUMBER = r"[\d,]+(?:\.\d+)?"


async def test_console_bench_quick_prints_every_figure() -> None:
    require_chromium()
    text = await run_quick("console_log.py", timeout=180)
    assert "BENCHMARK FAILED" not in text, text
    for variant in ("console", "bare"):
        # Keeping up: lines, shown (both all 400), frames, fps, lag p50, p99, at the end, rows.
        keeping_up = rf"^{variant}\s+400\s+400(?:\s+{NUMBER}){{6}}$"
        assert re.search(keeping_up, text, re.MULTILINE), f"no C1 row for {variant}:\n{text}"
        # Cost: busy, worst, js, layout, style, cpu, nodes, after GC, heap, after GC, RSS.
        cost = rf"^{variant}(?:\s+{NUMBER}){{11}}$"
        assert re.search(cost, text, re.MULTILINE), f"no C1 cost row for {variant}:\n{text}"
    assert re.search(r"^console / bare: main-thread busy", text, re.MULTILINE), text
