"""bench/capacity.py keeps working: its quick mode runs and prints a figure for every variant.

Speed and memory are never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import re

from tests.support.bench import run_quick

# (variant, count printed in quick mode) for P4 (servers with Runwire's default: no deflate)
# then P7.
ROWS = (
    ("bare websockets, no deflate", 200),
    ("runwire, no deflate", 200),
    ("bare asyncio", 50),
    ("runwire", 50),
)


async def test_capacity_quick_prints_every_variant() -> None:
    text = await run_quick("capacity.py", timeout=100)
    for variant, count in ROWS:
        # variant, count, setup s, RSS before MB, RSS after MB, KB each, x baseline
        row = (
            rf"^{re.escape(variant)}\s+{count}\s+\d+\.\d\s+\d+\.\d\s+\d+\.\d"
            rf"\s+-?\d+\.\d\s+-?\d+\.\d\d$"
        )
        assert re.search(row, text, re.MULTILINE), f"no figures for {variant} ({count}):\n{text}"
    # The liveness check of P4 ran: every subscription to the stopped execution was reached.
    assert re.search(r"reached (\d+) of its \1 subscriptions", text), text
