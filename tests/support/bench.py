"""Run a benchmark's quick mode as the suite does: a smoke run that must exit 0, never timed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.support import postgres

BENCH_DIRECTORY = Path(__file__).resolve().parents[2] / "bench"


async def run_quick(script: str, *arguments: str, timeout: float) -> str:
    """The output of `bench/<script> --quick <arguments>`, after asserting it exited 0."""
    # Reachability, with the suite's skip/fail policy (RUNWIRE_REQUIRE_POSTGRES), before launching.
    async with postgres.fresh_database():
        pass
    bench = BENCH_DIRECTORY / script
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        str(bench),
        "--quick",
        *arguments,
        cwd=BENCH_DIRECTORY.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    return text
