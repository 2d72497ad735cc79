"""bench/api.py keeps working: its quick mode runs and prints every P5 and P6 figure row.

Speed is never asserted here; the figures live in bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.support import postgres

BENCH = Path(__file__).resolve().parents[2] / "bench" / "api.py"
LOAD_VARIANTS = ("startExecution", "query { viewer { label } }", "bare Litestar constant JSON")
PAGES = ("page 1", "page 200", "page 1 FAILED", r"page \d+ FAILED")
NUMBER = r"\d+\.\d+"


async def test_api_bench_quick_prints_every_figure() -> None:
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
        async with asyncio.timeout(55):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
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
