"""bench/capacity.py keeps working: its quick mode runs and prints a figure for every variant.

Speed and memory are never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.support import postgres

BENCH = Path(__file__).resolve().parents[2] / "bench" / "capacity.py"
# (variant, count printed in quick mode) for P4 then P7.
ROWS = (
    ("bare websockets", 200),
    ("runwire", 200),
    ("bare asyncio", 50),
    ("runwire", 50),
)


async def test_capacity_quick_prints_every_variant() -> None:
    # Reachability, with the suite's skip/fail policy (RUNWIRE_REQUIRE_POSTGRES), before launching.
    async with postgres.fresh_database():
        pass
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        str(BENCH),
        "--quick",
        "--server",
        postgres.POSTGRES_SERVER,
        cwd=BENCH.parents[1],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(100):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    for variant, count in ROWS:
        # variant, count, setup s, RSS before MB, RSS after MB, KB each, x baseline
        row = (
            rf"^{re.escape(variant)}\s+{count}\s+\d+\.\d\s+\d+\.\d\s+\d+\.\d"
            rf"\s+-?\d+\.\d\s+-?\d+\.\d\d$"
        )
        assert re.search(row, text, re.MULTILINE), f"no figures for {variant} ({count}):\n{text}"
    # The liveness check of P4 ran: every subscription to the stopped execution was reached.
    assert re.search(r"reached (\d+) of its \1 subscriptions", text), text
