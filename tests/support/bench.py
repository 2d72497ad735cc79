"""Run the benchmarks' quick modes as the suite does: smoke runs that must exit 0, never timed.

The quick runs are mostly waiting (servers starting, client processes spawning, a few seconds of
streaming each), so the ones a run selects start together as soon as its tests are collected, at
a low CPU priority (nice 10) so the tests running meanwhile keep the CPU they need, and each test
then reads its own run's output: by the time the suite reaches them the runs have mostly ended,
in time the other tests spent waiting. Nothing here measures speed, so running them beside the
tests is safe.

One process of a test run starts them: pytest itself, or under pytest-xdist the controller, which
sees every worker's collection and outlives them all (tests/conftest.py). Each run writes its
output, then its exit status, into the test run's directory (tests/support/host.py), so the test
that reads a run may be in any worker. A run holds the host lock shared while it runs: it starts
servers, as tests do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from tests.support import postgres
from tests.support.host import host_lock_file, run_directory

BENCH_DIRECTORY = Path(__file__).resolve().parents[2] / "bench"

# Each smoke test's module, the benchmark it runs, and that benchmark's quick-mode arguments.
QUICK_RUNS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "test_bench_quick.py": ("event_path.py", ()),
    "test_bench_quick_api.py": ("api.py", ()),
    "test_bench_quick_console.py": ("console_log.py", ()),
    "test_bench_quick_capacity.py": ("capacity.py", ("--server", postgres.POSTGRES_SERVER)),
    "test_bench_quick_fanout.py": ("fanout.py", ()),
    "test_bench_quick_llm.py": ("llm.py", ()),
    "test_bench_quick_peer.py": ("peer_dagster.py", ("--runwire-only",)),
}


class _QuickRuns:
    """The runs this process started: started together on first use, ended with the session."""

    def __init__(self) -> None:
        self._runs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, test_files: Iterable[str]) -> None:
        """Start the run of each of `test_files` that is a smoke test, unless started already."""
        directory = run_directory()
        for name, arguments in (QUICK_RUNS[f] for f in set(test_files) if f in QUICK_RUNS):
            if name in self._runs:
                continue
            with (directory / f"{name}.out").open("wb") as output:
                process = subprocess.Popen(
                    [
                        # flock holds the lock (not passed on: --close) until the run ends.
                        "flock",
                        "--shared",
                        "--close",
                        str(host_lock_file()),
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
                    # A group of its own, so ending the run ends flock, the benchmark and its own
                    # processes together.
                    start_new_session=True,
                )
            self._runs[name] = process
            threading.Thread(
                target=_record_status, args=(process, directory / f"{name}.status"), daemon=True
            ).start()

    async def output(self, script: str, timeout: float) -> str:
        """The run's output once it has ended, after asserting it exited 0."""
        directory = run_directory()
        status = directory / f"{script}.status"
        try:
            async with asyncio.timeout(timeout):
                while not status.exists():
                    await asyncio.sleep(0.1)
        except TimeoutError:
            output = directory / f"{script}.out"
            sofar = output.read_text() if output.exists() else "(not started)"
            pytest.fail(f"bench/{script} --quick still running after {timeout:g} s:\n{sofar}")
        finally:
            # A run this process owns ends with its test; another's ends with that process.
            if (process := self._runs.get(script)) is not None:
                _end(process)
        text = (directory / f"{script}.out").read_text()
        assert status.read_text() == "0", text
        return text

    def close(self) -> None:
        """End whatever is still running (its test failed or was interrupted)."""
        for process in self._runs.values():
            _end(process)
        self._runs.clear()


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill the run's process group, unless it has ended."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _record_status(process: subprocess.Popen[bytes], path: Path) -> None:
    """Write the run's exit status once it ends, whole (a reader sees it complete or not at all)."""
    code = process.wait()
    written = path.with_suffix(".writing")
    written.write_text(str(code))
    written.replace(path)


QUICK = _QuickRuns()


async def run_quick(script: str, *, timeout: float) -> str:
    """The output of `bench/<script> --quick …`, after asserting it exited 0.

    `timeout` counts from when this test starts waiting; its run started with the test run.
    """
    # Reachability, with the suite's skip/fail policy (RUNWIRE_REQUIRE_POSTGRES), before reading.
    async with postgres.fresh_database():
        pass
    return await QUICK.output(script, timeout)
