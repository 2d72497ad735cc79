"""P2s: one stalled reader among 50 subscribers of one execution hurts only itself.

One execution prints a line of LINE_BYTES every `interval`; 50 graphql-transport-ws subscribers
(P2's client code, over several client processes) follow it with one subscription text. Measured
on one server, alternately: without, and with a 51st socket that sent the same subscription text
and never reads (a raw TCP socket, its kernel receive buffer set small, as any viewer could do).
Figures: the 50's p50/p99 latency and deliveries in each run; when the server cut the stalled
socket after go (from its log) against RUNWIRE_SUBSCRIBER_STALL_SECONDS, the close code it sent;
and the most followers `/health` counted during the run (the stalled one is not a live follower).

Every one of the 50 must get seqs 1..last exactly once, in order, then `complete` (as in P2).

Usage: .venv/bin/python bench/stalled.py [--rounds 2] [--seconds 20] [--stall-seconds 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import socket
import struct
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Final

import httpx

# Run from the repository root or from bench/: the test support package lives at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import FINISHED, START, BenchmarkFailed, graphql, postgres_version
from bench.fanout import RUNWIRE, SUBSCRIPTION, Figure, Workload, measure
from tests.support.server import Server, running_server

SUBSCRIBERS: Final = 50
LINE_BYTES: Final = 2000
INTERVAL: Final = 0.005
CUT_LINE: Final = "cut a subscriber connection"
STAMP: Final = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")


def emitter_definition(lines: int, go_file: Path, name: str) -> str:
    """Wait for the go file, then print `lines` lines of LINE_BYTES, one every INTERVAL."""
    code = (
        "import os, sys, time\n"
        "deadline = time.monotonic() + 300\n"
        f"while not os.path.exists({str(go_file)!r}):\n"
        "    if time.monotonic() > deadline: sys.exit(3)\n"
        "    time.sleep(0.002)\n"
        "tick = time.monotonic()\n"
        f"pad = 'x' * {LINE_BYTES - 20}\n"
        f"for line in range(1, {lines} + 1):\n"
        "    sys.stdout.write(f'line-{line:>10} {pad}\\n'); sys.stdout.flush()\n"
        f"    tick += {INTERVAL!r}\n"
        "    time.sleep(max(0.0, tick - time.monotonic()))\n"
    )
    step = {"key": "emit", "kind": "shell", "with": {"argv": [sys.executable, "-c", code]}}
    return json.dumps({"name": name, "steps": [step]})


class StalledReader:
    """A raw socket that subscribes like the others, then reads nothing."""

    def __init__(self, server: Server, execution_id: str) -> None:
        port = int(server.url.rsplit(":", 1)[1])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)  # byte by byte: nothing past the handshake is read
        if not head.startswith(b"HTTP/1.1 101"):
            raise BenchmarkFailed(f"stalled reader's handshake: {head[:100]!r}")
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {server.token}"}}
        self._send(json.dumps(init))
        payload = {"query": SUBSCRIPTION, "variables": {"id": execution_id}}
        self._send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))

    def _send(self, text: str) -> None:
        """One masked text frame, as a client must send."""
        data = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(data))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def ending(self) -> str:
        """How the connection ended, read after the run: a close frame's code, or a reset.

        A client that reads nothing cannot reach the close frame queued after what it did not
        read: the server drops the connection (a reset) when the grace after the cut is over.
        """
        self.sock.settimeout(5)
        data = b""
        try:
            while chunk := self.sock.recv(1 << 20):
                data += chunk
        except ConnectionResetError:
            return "connection reset"
        except OSError as error:
            return f"{type(error).__name__}"
        finally:
            self.sock.close()
        code = self._close_code(data)
        return "closed without a close frame" if code is None else f"close code {code}"

    @staticmethod
    def _close_code(data: bytes) -> int | None:
        at = 0
        while at + 2 <= len(data):
            opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
            at += 2
            if length == 126:
                length = struct.unpack("!H", data[at : at + 2])[0]
                at += 2
            elif length == 127:
                length = struct.unpack("!Q", data[at : at + 8])[0]
                at += 8
            if opcode == 0x8 and length >= 2:
                return int(struct.unpack("!H", data[at : at + 2])[0])
            at += length
        return None


class FollowerCounts(threading.Thread):
    """`/health`'s follower count every 0.2 s while running, with when it was read."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.url = f"{server.url}/health"
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client() as client:
            while not self.stop.wait(0.2):
                count = client.get(self.url).json()["followers"]
                self.samples.append((time.time(), int(count)))

    def at(self, moment: float) -> int | None:
        """The count read nearest to `moment`."""
        if not self.samples:
            return None
        return min(self.samples, key=lambda sample: abs(sample[0] - moment))[1]


def cut_times(log: Path) -> list[float]:
    """When the server logged each cut (its log's local time), as Unix times."""
    times: list[float] = []
    for line in log.read_text(errors="replace").splitlines():
        found = STAMP.search(line) if CUT_LINE in line else None
        if found is not None:
            times.append(datetime.strptime(found[0], "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return times


def one_run(
    server: Server, directory: Path, label: str, lines: int, stalled: bool, stall_seconds: float
) -> tuple[Figure, str]:
    go_file = directory / f"go-{label}"
    definition = emitter_definition(lines, go_file, f"stalled-{label}")
    result = graphql(server, START, {"definition": definition})["startExecution"]
    if result["__typename"] != "StartExecutionSuccess":
        raise BenchmarkFailed(f"startExecution: {result}")
    execution_id = result["execution"]["id"]
    reader = StalledReader(server, execution_id) if stalled else None
    counts = FollowerCounts(server)
    counts.start()
    cuts_before = len(cut_times(server.log))
    workload = Workload(streams=1, subscribers=SUBSCRIBERS, lines=lines, interval=INTERVAL)
    try:
        figure, last_seqs = measure(
            RUNWIRE,
            server.graphql_ws,
            server.token,
            [execution_id],
            workload,
            go_file,
            4,
            server.process.pid,
        )
    finally:
        # Created at go (by measure), or now so that no emitter is left waiting.
        go = go_file.stat().st_mtime if go_file.exists() else time.time()
        go_file.touch()
        counts.stop.set()
    finished = graphql(server, FINISHED, {"id": execution_id})["execution"]
    if finished["status"] != "SUCCEEDED" or any(
        last != finished["lastSeq"] for _, last in last_seqs
    ):
        raise BenchmarkFailed(f"{label}: subscribers ended at {set(last_seqs)}; {finished}")
    if reader is None:
        return figure, ""
    ending = reader.ending()
    cuts = cut_times(server.log)[cuts_before:]
    if not cuts:
        return figure, f"stalled reader NOT CUT; {ending}"
    cut = cuts[0]
    return figure, (
        f"stalled reader cut {cut - go:.2f} s after go, then {ending}; /health followers"
        f" {stall_seconds / 2:g} s before the cut: {counts.at(cut - stall_seconds / 2)},"
        f" 1 s after: {counts.at(cut + 1)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (default 2)")
    parser.add_argument("--seconds", type=float, default=20.0, help="emitting time per run")
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=2.0,
        help="RUNWIRE_SUBSCRIBER_STALL_SECONDS for the server (default 2)",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    lines = round(args.seconds / INTERVAL)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print("P2s: one stalled reader among 50 subscribers of one execution")
    print(f"machine:  {os.cpu_count()} cores, {platform.platform()}; load average {load} at start")
    print(f"postgres: {postgres_version()}; command: {' '.join(sys.argv)}")
    print(
        f"workload: one execution, a {LINE_BYTES}-byte line every {INTERVAL * 1000:g} ms for"
        f" {args.seconds:g} s; {SUBSCRIBERS} subscribers over 4 client processes;"
        f" RUNWIRE_SUBSCRIBER_STALL_SECONDS={args.stall_seconds:g}"
    )
    print(f"{'run':<16} {'deliveries':>10} {'p50 ms':>8} {'p99 ms':>8}  notes")
    settings = {"RUNWIRE_SUBSCRIBER_STALL_SECONDS": str(args.stall_seconds)}
    try:
        with (
            tempfile.TemporaryDirectory(prefix="runwire-stalled-") as temporary,
            running_server("postgres", Path(temporary) / "server", settings=settings) as server,
        ):
            for round_number in range(1, args.rounds + 1):
                for stalled in (False, True):
                    label = f"{round_number}-{'stalled' if stalled else 'clean'}"
                    figure, note = one_run(
                        server, Path(temporary), label, lines, stalled, args.stall_seconds
                    )
                    print(
                        f"{label:<16} {figure.deliveries:>10,} {figure.percentile_ms(0.5):>8.1f}"
                        f" {figure.percentile_ms(0.99):>8.1f}  {note}"
                    )
    except BenchmarkFailed as exc:
        sys.exit(f"BENCHMARK FAILED: {exc}")


if __name__ == "__main__":
    main()
