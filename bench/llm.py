"""L1 an llm step streaming to 100 subscribers, and L2 the cost of an agent entry, with baselines.

L1: one execution's `llm` step streams `words` tokens at 2,000 tokens/s from the fake provider
(`runwire.fakes.llm_provider`, the app `runwire fake-llm` serves, in its own process with a
recorder of when each chunk was written); 100 graphql-transport-ws subscribers (fanout.py's kind,
over several client processes) receive the text. Figures: deliveries/s (one output event received
by one subscriber), tokens/s received, and emit -> receive p50/p99 per token, where emit is when
the provider wrote the token's chunk. Baselines in the same run: a bare `websockets` server in its
own process reads the same stream from the same provider and relays it to the same clients, one
frame per token, and one frame per 5 ms of tokens (Runwire's default coalescing).

L2: an `agent` step runs `runwire fake-agent --format ndjson` replaying N entries, against a
`shell` step running the same command (the same lines as plain output). Figures: seconds and the
server's CPU per line, and their difference per entry: what the runner adds per AGENT_ENTRY.

Every subscriber must get seqs 1..last exactly once, in order, then `complete`, and every token
exactly once; the executions must succeed. Anything else fails loudly.

Usage: .venv/bin/python bench/llm.py [--quick] [--words N] [--entries N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import multiprocessing
import multiprocessing.synchronize
import os
import platform
import queue
import re
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, Final

import httpx
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast, serve

# Run from the repository root or from bench/: the test support package lives at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    FINISHED,
    START,
    BenchmarkFailed,
    graphql,
    postgres_version,
    process_cpu_seconds,
)
from bench.fanout import PROTOCOL, stop_file, wait_listening
from tests.support.server import Server, free_port, running_server

from runwire.fakes.llm_provider import FakeLlmProvider

RUNWIRE: Final = "runwire"
PER_TOKEN: Final = "websockets"
BATCHED: Final = "websockets 5ms"
BATCH_SECONDS: Final = 0.005  # Runwire's default RUNWIRE_OUTPUT_COALESCE_MS
TOKENS_PER_SECOND: Final = 2000
MODEL: Final = "runwire-fake-chat"
CONNECT_CONCURRENCY: Final = 50
WORD: Final = re.compile(r"word(\d+)")
CONTENT: Final = re.compile(rb'"content": "word(\d+)')
SUBSCRIPTION: Final = """
subscription Follow($id: ID!) {
  executionEvents(executionId: $id, afterSeq: 0) {
    lastSeq
    events { seq at type stepKey ... on OutputChunk { stream text } }
  }
}
"""
STREAM_STEP: Final = "answer"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# ---- the provider: the fake's app, recording when each token's chunk is written -----------------


class Recorder:
    """ASGI wrapper: `time.time()` just before each chunk naming `wordN` goes to the socket."""

    def __init__(self, app: FakeLlmProvider, written: multiprocessing.Queue[bytes]) -> None:
        self._app = app
        self._written = written

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != "/v1/chat/completions":
            await self._app(scope, receive, send)
            return
        stamps: dict[int, float] = {}

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.body":
                now = time.time()
                for number in CONTENT.findall(message.get("body", b"")):
                    stamps[int(number)] = now
            await send(message)

        await self._app(scope, receive, recording)
        if stamps:
            times = array("d", [math.nan]) * (max(stamps) + 1)
            for number, stamp in stamps.items():
                times[number] = stamp
            self._written.put(times.tobytes())


def provider_process(port: int, written: multiprocessing.Queue[bytes]) -> None:
    """Serve the fake provider (pace from the model name) until terminated."""
    app = Recorder(FakeLlmProvider(), written)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    asyncio.run(uvicorn.Server(config).serve())


def wait_provider(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise BenchmarkFailed(f"the fake provider did not answer at {url}")


def written_times(written: multiprocessing.Queue[bytes], words: int, variant: str) -> array[float]:
    """The provider's write time of word 1..words (index 0 unused) for the one stream just run."""
    try:
        raw = written.get(timeout=30)
    except queue.Empty:
        raise BenchmarkFailed(f"{variant}: the provider recorded no stream") from None
    times = array("d")
    times.frombytes(raw)
    if len(times) != words + 1 or any(math.isnan(t) for t in times[1:]):
        raise BenchmarkFailed(f"{variant}: the provider did not write words 1..{words}")
    return times


def model_name(words: int) -> str:
    return f"{MODEL}:tps={TOKENS_PER_SECOND}:words={words}"


# ---- the client: plain websockets speaking graphql-transport-ws ---------------------------------


@dataclass(slots=True)
class ClientReport:
    """One client process: receipt time of every token per subscriber, and what it counted."""

    receipts: array[float] = field(default_factory=lambda: array("d"))
    at_latencies: array[float] = field(default_factory=lambda: array("d"))
    deliveries: int = 0
    events: int = 0
    last_seqs: list[tuple[str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def client_process(
    url: str,
    token: str,
    stream_ids: list[str],
    words: int,
    ready: multiprocessing.synchronize.Semaphore,
    go: Synchronized[float],
    reports: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """One process: a socket per entry of `stream_ids`, each following its stream to the end."""
    try:
        report = asyncio.run(follow_all(url, token, stream_ids, words, ready, go))
    except BaseException as exc:  # the parent must hear of every failure, not wait for a report
        report = ClientReport(failures=[f"client process: {type(exc).__name__}: {exc}"])
    reports.put(
        {
            "receipts": report.receipts.tobytes(),
            "at_latencies": report.at_latencies.tobytes(),
            "deliveries": report.deliveries,
            "events": report.events,
            "last_seqs": report.last_seqs,
            "failures": report.failures,
        }
    )


async def follow_all(
    url: str,
    token: str,
    stream_ids: list[str],
    words: int,
    ready: multiprocessing.synchronize.Semaphore,
    go: Synchronized[float],
) -> ClientReport:
    report = ClientReport()
    opening = asyncio.Semaphore(CONNECT_CONCURRENCY)
    receipts = [array("d", [math.nan]) * (words + 1) for _ in stream_ids]
    async with asyncio.TaskGroup() as group:
        for stream_id, received in zip(stream_ids, receipts, strict=True):
            group.create_task(
                follow_one(url, token, stream_id, opening, ready, go, report, received)
            )
    for received in receipts:
        report.receipts.extend(received[1:])
    return report


async def follow_one(
    url: str,
    token: str,
    stream_id: str,
    opening: asyncio.Semaphore,
    ready: multiprocessing.synchronize.Semaphore,
    go: Synchronized[float],
    report: ClientReport,
    received: array[float],
) -> None:
    """Subscribe from seq 0, release `ready` at the first message, note each token's receipt."""
    expected = 1
    announced = False
    async with opening:
        # No compression on either side: the benchmark measures the event path, not zlib.
        ws = await connect(
            url,
            subprotocols=[websockets.Subprotocol(PROTOCOL)],
            compression=None,
            max_size=64 * 1024 * 1024,
            ping_interval=None,
            open_timeout=60,
        )
    async with ws:
        await start_subscription(ws, token, stream_id)
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
                continue
            if kind == "complete":
                report.last_seqs.append((stream_id, expected - 1))
                return
            if kind != "next" or message["payload"].get("errors"):
                report.failures.append(f"{stream_id}: unexpected message {str(message)[:300]}")
                return
            if not announced:
                announced = True
                ready.release()
            for event in message["payload"]["data"]["executionEvents"]["events"]:
                if event["seq"] != expected:
                    report.failures.append(
                        f"{stream_id}: got seq {event['seq']}, expected {expected}"
                    )
                    return
                expected += 1
                report.events += 1
                if not (
                    event["type"] == "OUTPUT"
                    and event["stream"] == "stdout"
                    and event["stepKey"] == STREAM_STEP
                ):
                    continue
                report.deliveries += 1
                if go.value:
                    at = datetime.fromisoformat(event["at"]).timestamp()
                    report.at_latencies.append(now - at)
                for number in WORD.findall(event["text"]):
                    index = int(number)
                    if index >= len(received) or not math.isnan(received[index]):
                        report.failures.append(f"{stream_id}: word{index} twice or unexpected")
                        return
                    received[index] = now
    report.failures.append(f"{stream_id}: ws closed before complete ({ws.close_code})")


async def start_subscription(ws: ClientConnection, token: str, stream_id: str) -> None:
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
    )
    acknowledged = json.loads(await asyncio.wait_for(ws.recv(), 60))
    if acknowledged.get("type") != "connection_ack":
        raise BenchmarkFailed(f"connection_init answered with {acknowledged}")
    message = {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": SUBSCRIPTION, "variables": {"id": stream_id}},
    }
    await ws.send(json.dumps(message))


# ---- the baseline: a bare websockets server relaying the provider's stream ---------------------


def relay_process(port: int, provider: str, words: int, batch: float, go_file: str) -> None:
    """Serve graphql-transport-ws just enough for the client; relay the stream after go."""
    asyncio.run(relay_serve(port, provider, words, batch, Path(go_file)))


async def relay_serve(port: int, provider: str, words: int, batch: float, go_file: Path) -> None:
    sockets: set[ServerConnection] = set()
    first = frame(1, [event(1, "EXECUTION_STATUS", None)])

    async def handle(ws: ServerConnection) -> None:
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "connection_init":
                await ws.send(json.dumps({"type": "connection_ack"}))
            elif message["type"] == "subscribe":
                sockets.add(ws)
                await ws.send(first)  # the "backlog": seq 1, before go

    async with serve(
        handle,
        "127.0.0.1",
        port,
        subprotocols=[websockets.Subprotocol(PROTOCOL)],
        compression=None,
        ping_interval=None,
        max_queue=None,
    ):
        deadline = time.monotonic() + 300
        while not await asyncio.to_thread(go_file.exists):
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.002)
        await relay(sockets, provider, words, batch)
        deadline = time.monotonic() + 600
        while not await asyncio.to_thread(stop_file(go_file).exists):
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)


async def relay(sockets: set[ServerConnection], provider: str, words: int, batch: float) -> None:
    """Read the provider's SSE stream; send its text deltas as they come (or per `batch` s)."""
    body = {
        "model": model_name(words),
        "messages": [{"role": "user", "content": "go"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    seq = 1
    held: list[str] = []
    held_since = 0.0

    def flush() -> None:
        # One event for the held text, as Runwire's coalescer makes one chunk of it.
        nonlocal held, seq
        if held:
            seq += 1
            broadcast(sockets, frame(seq, [event(seq, "OUTPUT", "".join(held))]))
            held = []

    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream("POST", f"{provider}/chat/completions", json=body) as response,
    ):
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:]).get("choices") or ()
            text = choices[0]["delta"].get("content") if choices else None
            if not text:
                continue
            now = time.monotonic()
            if not held:
                held_since = now
            held.append(text)
            if now - held_since >= batch:
                flush()
    flush()
    seq += 1
    broadcast(sockets, frame(seq, [event(seq, "EXECUTION_STATUS", None)]))
    broadcast(sockets, json.dumps({"id": "1", "type": "complete"}))


def event(seq: int, kind: str, text: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "seq": seq,
        "at": datetime.now(UTC).isoformat(),
        "type": kind,
        "stepKey": STREAM_STEP,
    }
    if text is not None:
        found |= {"stream": "stdout", "text": text}
    return found


def frame(seq: int, events: list[dict[str, Any]]) -> str:
    """One `next` message, serialized once for every socket."""
    payload = {"data": {"executionEvents": {"lastSeq": seq, "events": events}}}
    return json.dumps({"id": "1", "type": "next", "payload": payload})


# ---- L1: one measured stream ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamFigure:
    variant: str
    subscribers: int
    words: int
    events: int
    """Distinct output events carrying the tokens (each reached every subscriber)."""
    deliveries: int
    seconds: float
    """From the provider's first write to the last token's receipt by any subscriber."""
    provider_seconds: float
    """From the provider's first write to its last."""
    latencies: Sequence[float]
    """Per token and subscriber: receipt minus the provider's write of that token; sorted."""
    at_latencies: Sequence[float]
    """Per delivery: receipt minus the event's own `at`."""
    server_cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds

    @property
    def token_rate(self) -> float:
        return self.words * self.subscribers / self.seconds


def percentile_ms(ordered: Sequence[float], fraction: float) -> float:
    """The percentile, in ms, of seconds already sorted (millions of them: sorted once)."""
    return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure_stream(
    variant: str,
    url: str,
    token: str,
    stream_id: str,
    subscribers: int,
    processes: int,
    words: int,
    go_file: Path,
    server_pid: int,
    written: multiprocessing.Queue[bytes],
) -> tuple[StreamFigure, list[tuple[str, int]]]:
    """Subscribers in client processes; go; collect every token's receipt."""
    context = multiprocessing.get_context("spawn")
    ready = context.Semaphore(0)
    go = context.Value("d", 0.0)
    reports: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    shares = [subscribers // processes + (n < subscribers % processes) for n in range(processes)]
    clients = [
        context.Process(
            target=client_process,
            args=(url, token, [stream_id] * share, words, ready, go, reports),
            name=f"bench-client-{n}",
        )
        for n, share in enumerate(shares)
        if share
    ]
    for client in clients:
        client.start()
    try:
        deadline = time.monotonic() + 60 + subscribers / 20
        for count in range(subscribers):
            if not ready.acquire(timeout=max(0.1, deadline - time.monotonic())):
                raise BenchmarkFailed(
                    f"{variant}: only {count} of {subscribers} subscribers got their first"
                    f" message{drain_failures(reports)}"
                )
        cpu_before = process_cpu_seconds(server_pid)
        go.value = time.time()
        go_file.touch()
        budget = 60 + 3 * words / TOKENS_PER_SECOND + subscribers * words / 5000
        collected = collect(variant, reports, len(clients), budget)
        server_cpu = process_cpu_seconds(server_pid) - cpu_before
    finally:
        go_file.touch()
        for client in clients:
            client.join(timeout=5)
            if client.is_alive():
                client.kill()
                client.join()
    failures = [failure for report in collected for failure in report["failures"]]
    if failures:
        raise BenchmarkFailed(f"{variant}: {len(failures)} failures, first: {failures[:3]}")
    last_seqs = [pair for report in collected for pair in report["last_seqs"]]
    if len(last_seqs) != subscribers:
        raise BenchmarkFailed(f"{variant}: {len(last_seqs)} of {subscribers} completed")
    writes = written_times(written, words, variant)
    latencies = array("d")
    last_receipt = 0.0
    at_latencies = array("d")
    for report in collected:
        receipts = array("d")
        receipts.frombytes(report["receipts"])
        missing = [1 + i % words for i, r in enumerate(receipts) if math.isnan(r)]
        if missing:
            raise BenchmarkFailed(
                f"{variant}: {len(missing)} tokens missed, e.g. word{missing[0]}..{missing[-1]}"
            )
        for index, receipt in enumerate(receipts):
            latencies.append(receipt - writes[1 + index % words])
        last_receipt = max(last_receipt, max(receipts))
        at_latencies.frombytes(report["at_latencies"])
    deliveries = sum(report["deliveries"] for report in collected)
    figure = StreamFigure(
        variant=variant,
        subscribers=subscribers,
        words=words,
        events=deliveries // subscribers,
        deliveries=deliveries,
        seconds=last_receipt - writes[1],
        provider_seconds=writes[words] - writes[1],
        latencies=sorted(latencies),
        at_latencies=sorted(at_latencies),
        server_cpu_seconds=server_cpu,
    )
    return figure, last_seqs


def collect(
    variant: str, reports: multiprocessing.Queue[dict[str, Any]], count: int, budget: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + budget
    collected: list[dict[str, Any]] = []
    while len(collected) < count:
        try:
            collected.append(reports.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            raise BenchmarkFailed(
                f"{variant}: {count - len(collected)} client processes had no result"
                f" within {budget:.0f} s"
            ) from None
    return collected


def drain_failures(reports: multiprocessing.Queue[dict[str, Any]]) -> str:
    failures: list[str] = []
    with contextlib.suppress(queue.Empty):
        while True:
            failures += reports.get(timeout=0.5)["failures"]
    return f"; client failures: {failures[:3]}" if failures else ""


def gate_step(go_file: Path) -> dict[str, Any]:
    """A shell step that ends when the go file appears: subscribers are in before what follows."""
    code = (
        "import os, sys, time\n"
        "deadline = time.monotonic() + 300\n"
        f"while not os.path.exists({str(go_file)!r}):\n"
        "    if time.monotonic() > deadline: sys.exit(3)\n"
        "    time.sleep(0.002)\n"
    )
    return {"key": "gate", "kind": "shell", "with": {"argv": [sys.executable, "-c", code]}}


def start(server: Server, name: str, steps: list[dict[str, Any]]) -> str:
    definition = json.dumps({"name": name, "steps": steps})
    result = graphql(server, START, {"definition": definition})["startExecution"]
    if result["__typename"] != "StartExecutionSuccess":
        raise BenchmarkFailed(f"startExecution: {result}")
    return str(result["execution"]["id"])


def check_finished(server: Server, execution_id: str, last_seqs: list[tuple[str, int]]) -> None:
    execution = graphql(server, FINISHED, {"id": execution_id})["execution"]
    for _, last in last_seqs:
        if execution["status"] != "SUCCEEDED" or execution["lastSeq"] != last:
            raise BenchmarkFailed(
                f"{RUNWIRE}: a subscriber of {execution_id} ended at seq {last};"
                f" the execution is {execution['status']} at lastSeq {execution['lastSeq']}"
            )


def bench_llm_runwire(
    server: Server, provider: str, plan: Plan, directory: Path, written: Any
) -> StreamFigure:
    go_file = directory / "go-llm"
    llm = {
        "key": STREAM_STEP,
        "kind": "llm",
        "with": {
            "base_url": provider,
            "model": model_name(plan.words),
            "messages": [{"role": "user", "content": "go"}],
        },
    }
    execution_id = start(server, "llm-bench", [gate_step(go_file), llm])
    figure, last_seqs = measure_stream(
        RUNWIRE,
        server.graphql_ws,
        server.token,
        execution_id,
        plan.subscribers,
        plan.processes,
        plan.words,
        go_file,
        server.process.pid,
        written,
    )
    check_finished(server, execution_id, last_seqs)
    return figure


def bench_llm_relay(
    variant: str, batch: float, provider: str, plan: Plan, directory: Path, written: Any
) -> StreamFigure:
    go_file = directory / f"go-relay-{batch}"
    port = free_port()
    context = multiprocessing.get_context("spawn")
    relay_server = context.Process(
        target=relay_process,
        args=(port, provider, plan.words, batch, str(go_file)),
        name="bench-relay",
    )
    relay_server.start()
    assert relay_server.pid is not None  # started
    try:
        wait_listening(port)
        figure, last_seqs = measure_stream(
            variant,
            f"ws://127.0.0.1:{port}/",
            "",
            "relay",
            plan.subscribers,
            plan.processes,
            plan.words,
            go_file,
            relay_server.pid,
            written,
        )
    finally:
        go_file.touch()
        stop_file(go_file).touch()
        relay_server.join(timeout=10)
        if relay_server.is_alive():
            relay_server.kill()
            relay_server.join()
    if len({last for _, last in last_seqs}) != 1:
        raise BenchmarkFailed(f"{variant}: subscribers ended at different seqs")
    return figure


# ---- L2: what an agent entry costs ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryFigure:
    variant: str
    lines: int
    events: int
    entries: int
    seconds: float
    server_cpu_seconds: float


def transcript(path: Path, entries: int) -> None:
    """An ndjson transcript of exactly `entries` lines: init, (text, tool call, result)…, result."""
    lines = [json.dumps({"type": "init", "session_id": "bench", "model": "runwire-fake-agent"})]
    turn = 0
    while len(lines) < entries - 1:
        turn += 1
        kind = (len(lines) - 1) % 3
        if kind == 0:
            lines.append(json.dumps({"type": "text", "text": f"Turn {turn}: looking it up."}))
        elif kind == 1:
            call = {"type": "tool_call", "tool": "search", "call_id": f"c{len(lines)}"}
            lines.append(json.dumps({**call, "input": {"q": f"query {turn}"}}))
        else:
            result = {"type": "tool_result", "call_id": f"c{len(lines) - 1}"}
            lines.append(json.dumps({**result, "output": f"result {turn}"}))
    usage = {"model": "runwire-fake-agent", "input_tokens": 1200, "output_tokens": 40}
    lines.append(json.dumps({"type": "result", "text": "done", "turns": turn, "usage": usage}))
    path.write_text("\n".join(lines) + "\n")


def entry_follower(
    url: str,
    token: str,
    execution_id: str,
    ready: multiprocessing.synchronize.Semaphore,
    reports: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """One subscriber in its own process: every seq once, in order; when the last arrived."""

    async def follow() -> dict[str, Any]:
        counts: dict[str, int] = {}
        expected = 1
        async with connect(
            url,
            subprotocols=[websockets.Subprotocol(PROTOCOL)],
            compression=None,
            max_size=64 * 1024 * 1024,
            ping_interval=None,
            open_timeout=60,
        ) as ws:
            await start_subscription(ws, token, execution_id)
            announced = False
            async for raw in ws:
                now = time.time()
                message = json.loads(raw)
                if message.get("type") == "complete":
                    return {"last": expected - 1, "counts": counts, "done": now, "failures": []}
                if message.get("type") != "next" or message["payload"].get("errors"):
                    return {"failures": [f"unexpected message {str(message)[:300]}"]}
                if not announced:
                    announced = True
                    ready.release()
                for found in message["payload"]["data"]["executionEvents"]["events"]:
                    if found["seq"] != expected:
                        return {"failures": [f"got seq {found['seq']}, expected {expected}"]}
                    expected += 1
                    counts[found["type"]] = counts.get(found["type"], 0) + 1
        return {"failures": ["ws closed before complete"]}

    try:
        reports.put(asyncio.run(follow()))
    except BaseException as exc:  # the parent must hear of every failure
        reports.put({"failures": [f"follower: {type(exc).__name__}: {exc}"]})


def bench_entries(
    server: Server, kind: str, transcript_file: Path, entries: int, directory: Path, label: str
) -> EntryFigure:
    """One execution: a gate, then `kind` running fake-agent; go until the subscriber's complete."""
    go_file = directory / f"go-{label}"
    runwire = str(Path(sys.executable).parent / "runwire")
    argv = [runwire, "fake-agent", "--format", "ndjson", "--transcript", str(transcript_file), "go"]
    step: dict[str, Any] = {"key": "agent", "kind": kind}
    step["with"] = {"command": argv, "format": "ndjson"} if kind == "agent" else {"argv": argv}
    execution_id = start(server, f"entries-{label}", [gate_step(go_file), step])
    context = multiprocessing.get_context("spawn")
    ready = context.Semaphore(0)
    reports: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    follower = context.Process(
        target=entry_follower,
        args=(server.graphql_ws, server.token, execution_id, ready, reports),
        name="bench-follower",
    )
    follower.start()
    try:
        if not ready.acquire(timeout=60):
            raise BenchmarkFailed(f"{kind}: the subscriber got no first message")
        cpu_before = process_cpu_seconds(server.process.pid)
        go = time.time()
        go_file.touch()
        try:
            report = reports.get(timeout=60 + entries / 500)
        except queue.Empty:
            raise BenchmarkFailed(f"{kind}: the subscriber had no result in time") from None
        server_cpu = process_cpu_seconds(server.process.pid) - cpu_before
    finally:
        go_file.touch()
        follower.join(timeout=5)
        if follower.is_alive():
            follower.kill()
            follower.join()
    if report["failures"]:
        raise BenchmarkFailed(f"{kind}: {report['failures']}")
    check_finished(server, execution_id, [(execution_id, report["last"])])
    counts: dict[str, int] = report["counts"]
    found_entries = counts.get("AGENT_ENTRY", 0)
    if kind == "agent" and found_entries != entries:
        raise BenchmarkFailed(f"agent: {found_entries} AGENT_ENTRY events for {entries} lines")
    return EntryFigure(
        variant=kind,
        lines=entries,
        events=counts.get("AGENT_ENTRY", 0) + counts.get("OUTPUT", 0) + counts.get("SPAN", 0),
        entries=found_entries,
        seconds=report["done"] - go,
        server_cpu_seconds=server_cpu,
    )


# ---- the runs and the report ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    subscribers: int
    processes: int
    words: int
    entries: int
    rounds: int


FULL: Final = Plan(subscribers=100, processes=4, words=20_000, entries=20_000, rounds=3)
QUICK: Final = Plan(subscribers=10, processes=2, words=1_000, entries=300, rounds=1)


def run(plan: Plan) -> None:
    with tempfile.TemporaryDirectory(prefix="runwire-llm-bench-") as temporary:
        directory = Path(temporary)
        context = multiprocessing.get_context("spawn")
        written: multiprocessing.Queue[bytes] = context.Queue()
        port = free_port()
        provider_server = context.Process(
            target=provider_process, args=(port, written), name="bench-fake-llm"
        )
        provider_server.start()
        try:
            provider = f"http://127.0.0.1:{port}/v1"
            wait_provider(provider)
            with running_server("postgres", directory / "server") as server:
                print_header(plan, server, provider_server.pid)
                streams = [
                    bench_llm_runwire(server, provider, plan, directory, written),
                    bench_llm_relay(PER_TOKEN, 0.0, provider, plan, directory, written),
                    bench_llm_relay(BATCHED, BATCH_SECONDS, provider, plan, directory, written),
                ]
                transcript_file = directory / "transcript.jsonl"
                transcript(transcript_file, plan.entries)
                entries: list[tuple[EntryFigure, EntryFigure]] = []
                for number in range(plan.rounds):
                    agent = bench_entries(
                        server, "agent", transcript_file, plan.entries, directory, f"a{number}"
                    )
                    shell = bench_entries(
                        server, "shell", transcript_file, plan.entries, directory, f"s{number}"
                    )
                    entries.append((agent, shell))
        finally:
            provider_server.terminate()
            provider_server.join(timeout=10)
            if provider_server.is_alive():
                provider_server.kill()
                provider_server.join()
    print_streams(plan, streams)
    print()
    print_entries(plan, entries)


def print_header(plan: Plan, server: Server, provider_pid: int | None) -> None:
    print("L1 an llm step streaming to subscribers, L2 the cost of an agent entry")
    print(f"date:     {datetime.now(UTC).isoformat(timespec='seconds')}")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine:  {os.cpu_count()} cores, {platform.platform()}; load average {load} at start")
    print(f"python:   {platform.python_version()} ({platform.python_implementation()})")
    print(f"postgres: {postgres_version()} on 127.0.0.1; bus: postgres")
    print(
        f"server:   runwire serve (pid {server.process.pid}), defaults;"
        f" fake provider pid {provider_pid}"
    )
    print(f"command:  {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print()


def print_streams(plan: Plan, figures: list[StreamFigure]) -> None:
    print(
        f"L1 one llm step: {plan.words:,} tokens at {TOKENS_PER_SECOND:,} tokens/s from the fake"
        f" provider, {plan.subscribers} subscribers over {plan.processes} client processes"
    )
    print(
        f"{'variant':<15} {'tokens/s sent':>13} {'events':>7} {'deliveries':>10} {'seconds':>8}"
        f" {'deliveries/s':>12} {'tokens/s recv':>13} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'at p50 ms':>9} {'at p99 ms':>9} {'x baseline p99':>14} {'server us/token':>15}"
    )
    # The batched relay is the like-for-like one: one frame per token is more frames than the
    # client processes can read at this rate (its row shows what that costs).
    baseline = next(f for f in figures if f.variant == BATCHED)
    for figure in figures:
        sent = (figure.words - 1) / figure.provider_seconds
        cpu_per_token = 1e6 * figure.server_cpu_seconds / (figure.words * figure.subscribers)
        p99 = percentile_ms(figure.latencies, 0.99)
        print(
            f"{figure.variant:<15} {sent:>13,.0f} {figure.events:>7,} {figure.deliveries:>10,}"
            f" {figure.seconds:>8.2f} {figure.rate:>12,.0f} {figure.token_rate:>13,.0f}"
            f" {percentile_ms(figure.latencies, 0.50):>8.1f}"
            f" {p99:>8.1f} {percentile_ms(figure.at_latencies, 0.50):>9.1f}"
            f" {percentile_ms(figure.at_latencies, 0.99):>9.1f}"
            f" {p99 / percentile_ms(baseline.latencies, 0.99):>14.2f} {cpu_per_token:>15.2f}"
        )
    print(
        "p50/p99: per token and subscriber, receipt minus the provider's write of the token's"
        " chunk (the provider's clock is the clients'); at p50/p99: per delivery, receipt minus"
        " the event's `at` (Runwire: when the coalesced chunk was emitted; baselines: when the"
        " relay read the token)"
    )
    print(
        "deliveries: output events received by all subscribers (Runwire and `websockets 5ms`"
        " carry several tokens per event); seconds: provider's first write to the last receipt"
    )
    print(
        f"x baseline p99: p99 over `{BATCHED}`'s; server us/token: the server process's"
        " CPU (not its children) from go to the last report, per token delivered"
    )


def print_entries(plan: Plan, rounds: list[tuple[EntryFigure, EntryFigure]]) -> None:
    print(
        f"L2 agent entries: `runwire fake-agent --format ndjson` replaying {plan.entries:,}"
        f" lines as an `agent` step, and as a `shell` step (plain output);"
        f" median of {plan.rounds} round(s)"
    )
    print(
        f"{'variant':<8} {'lines':>7} {'events':>7} {'entries':>7} {'seconds':>8}"
        f" {'lines/s':>9} {'us/line':>8} {'server CPU s':>12} {'CPU us/line':>11}"
    )
    medians: dict[str, tuple[float, float]] = {}
    for index in (0, 1):
        figures = [pair[index] for pair in rounds]
        seconds = statistics.median(f.seconds for f in figures)
        cpu = statistics.median(f.server_cpu_seconds for f in figures)
        medians[figures[0].variant] = (seconds, cpu)
        first = figures[0]
        print(
            f"{first.variant:<8} {first.lines:>7,} {first.events:>7,} {first.entries:>7,}"
            f" {seconds:>8.2f} {first.lines / seconds:>9,.0f}"
            f" {1e6 * seconds / first.lines:>8.1f} {cpu:>12.2f}"
            f" {1e6 * cpu / first.lines:>11.1f}"
        )
    (agent_s, agent_cpu), (shell_s, shell_cpu) = medians["agent"], medians["shell"]
    print(
        f"added per AGENT_ENTRY: {1e6 * (agent_s - shell_s) / plan.entries:.1f} us wall,"
        f" {1e6 * (agent_cpu - shell_cpu) / plan.entries:.1f} us server CPU"
        f" (agent {agent_s / shell_s:.2f} x shell's seconds)"
    )
    print(
        "seconds: go (the gate step's file) to the subscriber's `complete`; events: AGENT_ENTRY,"
        " OUTPUT and SPAN events (tool calls are spans); server CPU: the server process's own"
    )


def main(argv: Iterator[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--words", type=int, help="L1 tokens (default 20,000: 10 s)")
    parser.add_argument("--entries", type=int, help="L2 transcript lines (default 20,000)")
    parser.add_argument("--rounds", type=int, help="L2 rounds of (agent, shell) (default 3)")
    args = parser.parse_args(None if argv is None else list(argv))
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    plan = QUICK if args.quick else FULL
    changes = {
        name: value
        for name, value in (
            ("words", args.words),
            ("entries", args.entries),
            ("rounds", args.rounds),
        )
        if value is not None
    }
    if any(value < (3 if name == "entries" else 1) for name, value in changes.items()):
        parser.error("--words and --rounds must be at least 1, --entries at least 3")
    plan = dataclasses.replace(plan, **changes)
    try:
        run(plan)
    except BenchmarkFailed as exc:
        sys.exit(f"BENCHMARK FAILED: {exc}")


if __name__ == "__main__":
    main()
