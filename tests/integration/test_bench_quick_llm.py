"""bench/llm.py keeps working: its quick mode runs and prints every L1 and L2 figure row.

Speed is never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import re

from tests.support.bench import run_quick

NUMBER = r"-?[\d,]+(?:\.\d+)?"


async def test_llm_quick_prints_every_figure() -> None:
    text = await run_quick("llm.py", timeout=90)
    for variant in ("runwire", "websockets", "websockets 5ms"):
        # L1: variant, tokens/s sent, events, deliveries, seconds, deliveries/s, tokens/s
        # received, p50, p99, at p50, at p99, ratio of p99s, server us per token
        stream = rf"^{variant}(?:\s+{NUMBER}){{12}}$"
        assert re.search(stream, text, re.MULTILINE), f"no L1 figures for {variant}:\n{text}"
    for variant in ("agent", "shell"):
        # L2: variant, lines, events, entries, seconds, lines/s, us/line, CPU s, CPU us/line
        entries = rf"^{variant}(?:\s+{NUMBER}){{8}}$"
        assert re.search(entries, text, re.MULTILINE), f"no L2 figures for {variant}:\n{text}"
    added = rf"^added per AGENT_ENTRY: {NUMBER} us wall, {NUMBER} us server CPU"
    assert re.search(added, text, re.MULTILINE), f"no per-entry figure:\n{text}"
