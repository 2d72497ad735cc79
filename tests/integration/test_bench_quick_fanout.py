"""bench/fanout.py keeps working: its quick mode runs and prints every P2 and P3 figure row.

Speed is never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.support import postgres

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fanout.py"
VARIANTS = ("runwire", "websockets")
NUMBER = r"[\d,]+(?:\.\d+)?"


async def test_fanout_quick_prints_every_figure() -> None:
    # Reachability, with the suite's skip/fail policy (RUNWIRE_REQUIRE_POSTGRES), before launching.
    async with postgres.fresh_database():
        pass
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        str(BENCH),
        "--quick",
        cwd=BENCH.parents[1],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(60):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    for variant in VARIANTS:
        # P2: subscribers, variant, events, deliveries, seconds, deliveries/s, lines/s, p50, p99,
        # ratio
        fanout = rf"^\s*20 {variant}(?:\s+{NUMBER}){{8}}$"
        assert re.search(fanout, text, re.MULTILINE), f"no P2 figures for {variant}:\n{text}"
        # P3: variant, lines/s, events/s, events, p50, p99, ratio of p99s
        latency = rf"^{variant}(?:\s+{NUMBER}){{6}}$"
        assert re.search(latency, text, re.MULTILINE), f"no P3 figures for {variant}:\n{text}"
