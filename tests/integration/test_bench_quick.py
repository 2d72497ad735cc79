"""bench/event_path.py keeps working: its quick mode runs and prints a figure for every variant.

Speed is never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.support import postgres

BENCH = Path(__file__).resolve().parents[2] / "bench" / "event_path.py"
VARIANTS = ("runwire", "naive", "raw COPY")


async def test_event_path_quick_prints_every_variant() -> None:
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
        async with asyncio.timeout(60):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    for variant in VARIANTS:
        # variant, events, seconds, events/s, ratio to raw COPY
        row = rf"^{re.escape(variant)}\s+[\d,]+\s+\d+\.\d+\s+[\d,]+\s+\d+\.\d+$"
        assert re.search(row, text, re.MULTILINE), f"no figures for {variant}:\n{text}"
