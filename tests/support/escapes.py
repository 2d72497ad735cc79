"""Commands whose processes try to outlive their step, and finding the ones that did.

Every escapee runs `sleep <token>`: a number of seconds unique to the test (600.<random>), so a
scan of /proc finds exactly this test's processes, whoever their parent is now.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path


def token() -> str:
    """A `sleep` argument no other test uses: ten minutes and a random fraction."""
    return f"600.{random.randrange(10**8):08d}"


def survivors(token: str) -> list[int]:
    """Pids of live processes (zombies do not count) with `token` as an argument."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if token.encode() in argv and state != "Z":
            found.append(int(name))
    return found


def wait_until(predicate: object, seconds: float, what: str) -> None:
    """Poll `predicate()` until it is true, failing with `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out after {seconds:g} s waiting: {what}"
        time.sleep(0.02)


def kill_all(token: str) -> None:
    """SIGKILL what a failed test left, so one failure does not leave ten-minute sleeps."""
    for pid in survivors(token):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# A shell command starting every kind of escapee: a background child in the step's process
# group, a `setsid` child, a double fork into a new session, and one that closed the pipes.
def escapees(token: str) -> str:
    return (
        f"sleep {token} & "
        f"setsid sleep {token} & "
        f"(setsid sleep {token} &) ; "
        f"(exec >/dev/null 2>&1 </dev/null; setsid sleep {token} &) ; "
    )


ESCAPEES = 4
"""How many `sleep` processes `escapees` starts."""
