"""`rw` following an execution that no runner is alive to run: a one-line hint, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.server import running_server

RW = Path(sys.executable).with_name("rw")
HINT = (
    "still QUEUED: no runner is alive to run it (start `runwire worker`, or a server with"
    " RUNWIRE_RUNNER=true)"
)
QUICK = "name: quick\nsteps:\n  - {key: nap, kind: sleep, with: {seconds: 0.01}}\n"


def test_following_work_no_runner_can_claim_hints_once(tmp_path: Path) -> None:
    definition = tmp_path / "quick.yaml"
    definition.write_text(QUICK)
    # An API-only server and no worker: what is queued stays QUEUED.
    with running_server("sqlite", tmp_path / "api", {"RUNWIRE_RUNNER": "false"}) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
        env |= {"RUNWIRE_URL": server.url, "RUNWIRE_TOKEN": server.token}
        process = subprocess.Popen(
            [str(RW), "run", str(definition), "--follow"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        hinted = threading.Event()

        def read_errors() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                lines.append(line.rstrip("\n"))
                if line.rstrip("\n") == HINT:
                    hinted.set()

        reader = threading.Thread(target=read_errors, daemon=True)
        reader.start()
        began = time.monotonic()
        try:
            assert hinted.wait(60), lines
            # Not at once (a runner usually claims within a second): after 5 s of following.
            assert time.monotonic() - began > 5
            time.sleep(1)  # it is not repeated while the execution keeps waiting
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, _ = process.communicate(timeout=30)
            reader.join(10)
    assert process.returncode == 128 + signal.SIGTERM, (stdout, lines)
    assert lines.count(HINT) == 1, lines
