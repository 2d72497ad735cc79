"""bench/fanout.py keeps working: its quick mode runs and prints every P2 and P3 figure row.

Speed is never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import re

from tests.support.bench import run_quick

VARIANTS = ("runwire", "websockets")
NUMBER = r"[\d,]+(?:\.\d+)?"


async def test_fanout_quick_prints_every_figure() -> None:
    text = await run_quick("fanout.py", timeout=60)
    for variant in VARIANTS:
        # P2: subscribers, every ms, offered/s, variant, events, deliveries, seconds,
        # deliveries/s, lines/s, p50, p99, ratio, server us per delivery
        fanout = rf"^\s*20\s+10\s+2,000 {variant}(?:\s+{NUMBER}){{9}}$"
        assert re.search(fanout, text, re.MULTILINE), f"no P2 figures for {variant}:\n{text}"
        # P3: variant, lines/s, events/s, events, p50, p99, ratio of p99s
        latency = rf"^{variant}(?:\s+{NUMBER}){{6}}$"
        assert re.search(latency, text, re.MULTILINE), f"no P3 figures for {variant}:\n{text}"
