"""What starting a process step costs: the shell step run directly, and an execution of steps.

    .venv/bin/python bench/step_start.py              # 50 direct runs, 5 executions of 20 steps
    .venv/bin/python bench/step_start.py --runs N --executions M

A: `ShellStep.run` of `true` in this process (from spawn to result) and of `echo hi` (from spawn
to its first output), one after the other. B: a real `runwire serve` (SQLite, in-memory bus)
runs an execution of 20 sequential `true` steps; the time from `startExecution` to SUCCEEDED.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

# Run as a script from anywhere: the repository root holds `tests.support`.
REPO: Final = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import FINISHED, START, BenchmarkFailed, graphql  # noqa: E402
from tests.support.graphql import definition  # noqa: E402 - after the path is set
from tests.support.server import running_server  # noqa: E402
from tests.support.steps import RecordingContext  # noqa: E402

from runwire.domain.models import OutputStream  # noqa: E402
from runwire.runner.steps import STEP_KINDS  # noqa: E402


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[int(len(values) * 0.9) - 1]
    return f"p50 {statistics.median(values) * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms"


async def direct(runs: int) -> None:
    shell = STEP_KINDS["shell"]
    whole, first = [], []
    for _ in range(runs):
        context = RecordingContext()
        started = time.perf_counter()
        result = await shell.run(shell.parse({"argv": ["true"]}, "with"), context)
        whole.append(time.perf_counter() - started)
        if result.exit_code != 0:
            raise BenchmarkFailed(f"true ended {result}")
    for _ in range(runs):
        context = RecordingContext()
        started = time.perf_counter()
        seen = 0.0

        def output(stream: OutputStream, text: str, context: RecordingContext = context) -> None:
            nonlocal seen
            seen = seen or time.perf_counter()
            context.calls.append((stream, text))

        context.output = output  # type: ignore[method-assign]
        await shell.run(shell.parse({"argv": ["echo", "hi"]}, "with"), context)
        first.append(seen - started)
    print(f"A  `true` run to its result ({runs}x): {_ms(whole)}")
    print(f"A  `echo hi` spawn to first output ({runs}x): {_ms(first)}")


def executions(count: int, step_user: str | None) -> None:
    steps = [f"{{key: s{i}, kind: shell, with: {{argv: ['true']}}}}" for i in range(20)]
    settings = {"RUNWIRE_LOAD_EXAMPLES": "false", "RUNWIRE_STEP_USER": step_user}
    with (
        tempfile.TemporaryDirectory() as directory,
        running_server("sqlite", Path(directory), settings) as server,
    ):
        seconds = []
        for _ in range(count + 1):  # the first is a warm-up
            started = time.perf_counter()
            data = graphql(server, START, {"definition": definition(*steps, name="twenty")})
            execution_id = data["startExecution"]["execution"]["id"]
            while True:
                status = graphql(server, FINISHED, {"id": execution_id})["execution"]["status"]
                if status == "SUCCEEDED":
                    break
                if status in {"FAILED", "CANCELLED"}:
                    raise BenchmarkFailed(f"execution {execution_id} {status}")
                time.sleep(0.005)
            seconds.append(time.perf_counter() - started)
        runs = seconds[1:]
        print(
            f"B  execution of 20 `true` steps ({count}x): median"
            f" {statistics.median(runs) * 1000:.0f} ms, {statistics.median(runs) / 20 * 1000:.1f}"
            " ms per step"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--executions", type=int, default=5)
    parser.add_argument(
        "--step-user",
        default="",
        help="B's RUNWIRE_STEP_USER: empty (the default here) runs steps as the server's user;"
        " `default` leaves the setting unset, as a server started by hand has it (as root: a uid"
        " of its own per attempt)",
    )
    options = parser.parse_args()
    asyncio.run(direct(options.runs))
    executions(options.executions, None if options.step_user == "default" else options.step_user)


if __name__ == "__main__":
    main()
