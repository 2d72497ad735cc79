"""Run the benchmarks' quick modes as the suite does: smoke runs that must exit 0, never timed.

The quick runs are mostly waiting (servers starting, client processes spawning, a few seconds of
streaming each), so the ones a session selects start together as soon as the session has
collected its tests, at a low CPU priority (nice 10) so the tests running meanwhile keep the CPU
they need, and each test then reads its own run's output: by the time the suite reaches them the
runs have mostly ended, in time the other tests spent waiting. Nothing here measures speed, so
running them beside the tests is safe.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from tests.support import postgres

BENCH_DIRECTORY = Path(__file__).resolve().parents[2] / "bench"

# Each smoke test's module, the benchmark it runs, and that benchmark's quick-mode arguments.
QUICK_RUNS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "test_bench_quick.py": ("event_path.py", ()),
    "test_bench_quick_api.py": ("api.py", ()),
    "test_bench_quick_capacity.py": ("capacity.py", ("--server", postgres.POSTGRES_SERVER)),
    "test_bench_quick_fanout.py": ("fanout.py", ()),
    "test_bench_quick_llm.py": ("llm.py", ()),
}


class _QuickRuns:
    """The selected quick runs: started together on first use, ended with the session."""

    def __init__(self) -> None:
        self.selected: set[str] = set()
        self._runs: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    def select(self, test_files: Iterable[str]) -> None:
        self.selected = {QUICK_RUNS[name][0] for name in test_files if name in QUICK_RUNS}

    def start(self, script: str | None = None) -> None:
        """Start `script`'s run (if given), and every other selected one not started yet."""
        for name, arguments in QUICK_RUNS.values():
            if (name == script or name in self.selected) and name not in self._runs:
                # Closed in close(), after the run: it outlives this call on purpose.
                output = tempfile.TemporaryFile()  # noqa: SIM115
                process = subprocess.Popen(
                    [
                        "nice",
                        "-n",
                        "10",
                        sys.executable,
                        "-W",
                        "error",
                        str(BENCH_DIRECTORY / name),
                        "--quick",
                        *arguments,
                    ],
                    cwd=BENCH_DIRECTORY.parent,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
                self._runs[name] = (process, output)

    async def output(self, script: str, timeout: float) -> str:
        process, output = self._runs[script]
        try:
            async with asyncio.timeout(timeout):
                while process.poll() is None:
                    await asyncio.sleep(0.1)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        output.seek(0)
        text = output.read().decode()
        assert process.returncode == 0, text
        return text

    def close(self) -> None:
        """End whatever is still running (its test failed or was interrupted)."""
        for process, output in self._runs.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            output.close()
        self._runs.clear()


QUICK = _QuickRuns()


async def run_quick(script: str, *, timeout: float) -> str:
    """The output of `bench/<script> --quick …`, after asserting it exited 0.

    `timeout` counts from when this test starts waiting; its run may have started earlier,
    beside the others.
    """
    # Reachability, with the suite's skip/fail policy (RUNWIRE_REQUIRE_POSTGRES), before launching.
    async with postgres.fresh_database():
        pass
    QUICK.start(script)
    return await QUICK.output(script, timeout)
