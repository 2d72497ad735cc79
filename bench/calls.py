"""V1 concurrent IVR calls on one server against `runwire ivr-sim`, next to a bare SIP client.

Both sides place the same N calls at once, over real SIP/RTP on loopback, to one
`runwire ivr-sim --menu bank` in its own process. Each call: hear the welcome prompt and
recognize it against "press one for balances", press 1 (RFC 4733), hear the next prompt and
recognize it against "anything else", hang up.

- `runwire`: N executions of one `call` step (driver `sip`), started together on one
  `runwire serve` (Postgres, runner slots N): the runner, the call step, its events, spans,
  recording and transcript artifacts.
- `bare client`: the same calls from this process with the voice library alone (SipDriver,
  listening.hear, the recognition workers): no server, no runner, no events, no artifacts.

Figures per side: calls passed (both prompts recognized), calls held at once (answered ->
hung up overlapping), turn latency p50/p95 (the end of our digit's tone -> the first audio of the
IVR's answer), and CPU per call-minute of the caller's processes (the server, or this process,
with their recognition workers) and of the simulator. `added` is Runwire's turn latency minus
the bare client's: what the server adds over the same call. The simulator's own reaction (its
log: digit heard -> next prompt started) is printed beside them, so the latency is read against
what the far end itself took.

Usage: .venv/bin/python bench/calls.py [--calls N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

# Run from the repository root or from bench/: the test support package lives at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import START, BenchmarkFailed, graphql, process_tree_cpu_seconds
from tests.support.server import Server, free_port, running_server

IVR_SIM = (sys.executable, "-m", "runwire.cli", "ivr-sim", "--menu", "bank")
WELCOME = "press one for balances"
BALANCES = "anything else"
RESULT = """
query Result($id: ID!) {
  execution(id: $id) {
    status
    steps { status error output }
    events(first: 1000) { ... on CallEventReported { call at } }
  }
}
"""


@dataclass(frozen=True)
class CallFigure:
    passed: bool
    answered_at: float | None
    ended_at: float | None
    latency_ms: float | None
    seconds: float
    """Answered -> hung up."""
    failure: str | None = None
    """Why the call did not pass, in the step's words."""


@dataclass(frozen=True)
class SideFigure:
    label: str
    calls: list[CallFigure]
    caller_cpu: float
    simulator_cpu: float

    @property
    def call_minutes(self) -> float:
        return sum(call.seconds for call in self.calls) / 60

    @property
    def latencies(self) -> list[float]:
        return [c.latency_ms for c in self.calls if c.latency_ms is not None]

    def held_at_once(self) -> int:
        moments = sorted(
            [(c.answered_at, 1) for c in self.calls if c.answered_at and c.ended_at]
            + [(c.ended_at, -1) for c in self.calls if c.answered_at and c.ended_at]
        )
        held = most = 0
        for _, change in moments:
            held += change
            most = max(most, held)
        return most


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ---- the far end ------------------------------------------------------------------------


class Simulator:
    """`runwire ivr-sim --menu bank --json` in its own process, and what it logged."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.log = directory / "ivr-sim.jsonl"
        self._out = self.log.open("w")
        self.process = subprocess.Popen(
            [*IVR_SIM, "--port", str(self.port), "--json"],
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60  # it synthesizes every prompt before answering
        while "answering" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkFailed(f"ivr-sim did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    @property
    def target(self) -> str:
        return f"sip:bank@127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return process_tree_cpu_seconds(self.process.pid)

    def reactions_ms(self) -> list[float]:
        """Per call: the menu's digit heard -> the next prompt started, by its own clock."""
        heard: dict[int, float] = {}
        reactions = []
        for line in self.log.read_text().splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            call, event = record.get("call"), record.get("event")
            if event == "HEARD" and (record.get("heard") or {}).get("digits"):
                heard[call] = float(record["at"])
            elif event == "PROMPT" and call in heard:
                reactions.append((float(record["at"]) - heard.pop(call)) * 1000)
        return reactions

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._out.close()


# ---- the bare client --------------------------------------------------------------------


async def bare_call(target: str) -> CallFigure:
    from runwire.voice.calls import DialRequest
    from runwire.voice.listening import hear
    from runwire.voice.media import DigitMethod
    from runwire.voice.recognition_processes import default_recognizer
    from runwire.voice.sip.driver import SipDriver

    recognizer = default_recognizer()
    passed = False
    latency = None
    answered = ended = None
    async with SipDriver().dial(DialRequest(target), lambda _: None) as call:
        answered = time.monotonic()
        # One iterator for the whole call, as the call step has: audio that comes while the
        # digit is still being sent is heard.
        heard = call.media.heard()
        try:
            welcome = await hear(heard, start_timeout=5, end_silence_ms=700)
            first = await asyncio.to_thread(recognizer.recognize, welcome.pcm, [WELCOME])
            await call.media.send_digits("1", DigitMethod.RFC4733, tone_ms=100, gap_ms=70)
            pressed = time.monotonic() - 0.07
            balances = await hear(heard, start_timeout=5, end_silence_ms=700)
            if balances.speech_started is not None:
                latency = max(0.0, balances.speech_started - pressed) * 1000
            second = await asyncio.to_thread(recognizer.recognize, balances.pcm, [BALANCES])
            passed = WELCOME in first.text and BALANCES in second.text
        finally:
            await call.hangup()
            ended = time.monotonic()
    return CallFigure(passed, answered, ended, latency, ended - answered)


def bench_bare(simulator: Simulator, calls: int) -> SideFigure:
    from runwire.voice.recognition_processes import default_recognizer

    default_recognizer()  # loaded before the clock, as the server loads it before dialing

    async def all_calls() -> list[CallFigure]:
        return list(await asyncio.gather(*(bare_call(simulator.target) for _ in range(calls))))

    # This process and its recognition workers, as the server's side counts the server's.
    def own_cpu() -> float:
        return process_tree_cpu_seconds(os.getpid(), leave_out={simulator.process.pid})

    cpu, sim_cpu = own_cpu(), simulator.cpu()
    figures = asyncio.run(all_calls())
    return SideFigure("bare client", figures, own_cpu() - cpu, simulator.cpu() - sim_cpu)


# ---- Runwire ----------------------------------------------------------------------------


def definition(target: str) -> str:
    actions = [
        {"listen": {"timeout": 5, "phrases": [WELCOME]}},
        {"expect": {"transcript_contains": WELCOME}},
        {"press": "1"},
        {"listen": {"timeout": 5, "phrases": [BALANCES]}},
        {"expect": {"transcript_contains": BALANCES}},
        {"hangup": True},
    ]
    step = {
        "key": "call",
        "kind": "call",
        "timeout": 60,
        "with": {"dial": {"target": target, "driver": "sip"}, "actions": actions},
    }
    return json.dumps({"name": "bench-call", "steps": [step]})


def moment(at: str) -> float:
    """An event's time as this machine's monotonic clock (both are this machine's clocks)."""
    return time.monotonic() - (time.time() - datetime.fromisoformat(at).timestamp())


def bench_runwire(server: Server, simulator: Simulator, calls: int) -> SideFigure:
    # One call first, untimed: the server loads its recognizer and speaker on the first call.
    warm = graphql(server, START, {"definition": definition(simulator.target)})
    wait_finished(server, [warm["startExecution"]["execution"]["id"]])
    cpu, sim_cpu = process_tree_cpu_seconds(server.process.pid), simulator.cpu()
    ids = []
    for _ in range(calls):
        started = graphql(server, START, {"definition": definition(simulator.target)})
        if started["startExecution"]["__typename"] != "StartExecutionSuccess":
            raise BenchmarkFailed(f"startExecution: {started}")
        ids.append(started["startExecution"]["execution"]["id"])
    results = wait_finished(server, ids)
    server_cpu = process_tree_cpu_seconds(server.process.pid) - cpu
    figures = []
    for result in results:
        [step] = result["steps"]
        metrics = (step["output"] or {}).get("call", {})
        events = [e for e in result["events"] if e]
        answered = next((moment(e["at"]) for e in events if e["call"] == "ANSWERED"), None)
        ended = next((moment(e["at"]) for e in events if e["call"] == "HUNG_UP"), None)
        latencies = metrics.get("latency_ms") or [None]
        figures.append(
            CallFigure(
                result["status"] == "SUCCEEDED",
                answered,
                ended,
                latencies[-1],
                (metrics.get("duration_ms") or 0) / 1000,
                None if result["status"] == "SUCCEEDED" else f"{result['status']}: {step['error']}",
            )
        )
    return SideFigure("runwire", figures, server_cpu, simulator.cpu() - sim_cpu)


def wait_finished(server: Server, ids: list[str], timeout: float = 300) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    results: dict[str, dict[str, Any]] = {}
    while len(results) < len(ids):
        if time.monotonic() > deadline:
            raise BenchmarkFailed(f"{len(ids) - len(results)} calls did not finish")
        for execution_id in ids:
            if execution_id in results:
                continue
            found = graphql(server, RESULT, {"id": execution_id})["execution"]
            if found["status"] in ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"):
                results[execution_id] = found
        time.sleep(0.2)
    return [results[execution_id] for execution_id in ids]


# ---- report -----------------------------------------------------------------------------


def report(sides: list[SideFigure], reactions: list[float], calls: int) -> None:
    print(
        f"\nV1 — {calls} concurrent calls to runwire ivr-sim (bank) over SIP/RTP on loopback;"
        f" Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'variant':<12} {'passed':>7} {'held':>5} {'turn p50 ms':>12} {'turn p95 ms':>12}"
        f" {'caller CPU s/call-min':>22} {'sim CPU s/call-min':>19}"
    )
    print(header)
    print("-" * len(header))
    for side in sides:
        minutes = side.call_minutes or float("nan")
        print(
            f"{side.label:<12} {sum(c.passed for c in side.calls):>3}/{len(side.calls):<3}"
            f" {side.held_at_once():>5} {percentile(side.latencies, 50):>12.0f}"
            f" {percentile(side.latencies, 95):>12.0f} {side.caller_cpu / minutes:>22.2f}"
            f" {side.simulator_cpu / minutes:>19.2f}"
        )
    runwire, bare = sides[0], sides[1]
    added = percentile(runwire.latencies, 50) - percentile(bare.latencies, 50)
    print(
        f"added by Runwire (turn p50, runwire - bare client): {added:+.0f} ms;"
        f" the simulator's own reaction p50 {percentile(reactions, 50):.0f} ms"
        f" (digit heard -> next prompt, {len(reactions)} turns)"
    )
    for side in sides:
        failures = [call.failure for call in side.calls if call.failure]
        if failures:
            print(f"{side.label}: {len(failures)} failed; the first: {failures[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 calls: a smoke run, not a figure")
    args = parser.parse_args()
    calls = 2 if args.quick else args.calls
    with tempfile.TemporaryDirectory(prefix="runwire-bench-calls-") as folder:
        directory = Path(folder)
        simulator = Simulator(directory)
        try:
            settings = {"RUNWIRE_RUNNER_SLOTS": str(max(8, calls))}
            with running_server("postgres", directory / "server", settings) as server:
                print(f"server pid {server.process.pid}, ivr-sim pid {simulator.process.pid}")
                runwire = bench_runwire(server, simulator, calls)
                if os.environ.get("KEEPLOG"):
                    import shutil

                    shutil.copy(server.log, "/tmp/rw/server.log")
            bare = bench_bare(simulator, calls)
            reactions = simulator.reactions_ms()
        finally:
            simulator.close()
    report([runwire, bare], reactions, calls)
    for side in (runwire, bare):
        if not all(call.answered_at for call in side.calls):
            raise BenchmarkFailed(f"{side.label}: not every call was answered")


if __name__ == "__main__":
    main()
