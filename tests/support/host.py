"""What the processes of one test run share on this host: a directory, and the host's lock.

Under pytest-xdist a run is several processes (a controller and its workers), each running tests
beside the others'. The run's first process makes the directory and names it in the environment
(RUNWIRE_TEST_RUN_DIRECTORY) before it starts any worker, so every worker (and whatever they
start) finds the same one.

The lock is for the few tests that need the host to themselves for a while: a runner starting
anywhere on the host ends the step processes of dead servers (runner/steps/containment.py), so a
test that leaves such processes behind on purpose, to see its next server end them, would see
another test's server end them first. A test marked `host_to_itself` holds the lock exclusively
while it runs; every other test holds it shared (tests/conftest.py), and so do the benchmark
smoke runs, which start servers beside the tests (tests/support/bench.py). So that test waits
for the ones running elsewhere, and theirs wait for it. The lock is the host's, not the run's:
two runs on one host (a developer's beside CI's) start servers beside each other just the same.

Taking it shared passes a gate first, which an exclusive taker holds while it waits: with tests
starting one after another in several processes, some test would otherwise always hold it
shared, and the exclusive one could wait for ever.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

RUN_DIRECTORY_ENV = "RUNWIRE_TEST_RUN_DIRECTORY"
MARK = "host_to_itself"


def run_directory() -> Path:
    """The directory this test run's processes share (made on first use, before any worker)."""
    found = os.environ.get(RUN_DIRECTORY_ENV)
    if found is None:
        found = os.environ[RUN_DIRECTORY_ENV] = tempfile.mkdtemp(prefix="runwire-test-run-")
    return Path(found)


def remove_run_directory() -> None:
    """At the end of the run (its first process, once its workers are done)."""
    shutil.rmtree(run_directory(), ignore_errors=True)


def _lock_directory() -> Path:
    """Where the host's lock files are: /run/lock (a tmpfs, host-wide), else the temp dir."""
    shared = Path("/run/lock")
    return shared if os.access(shared, os.W_OK) else Path(tempfile.gettempdir())


def host_lock_file() -> Path:
    return _lock_directory() / "runwire-tests-host.lock"


def _gate_file() -> Path:
    return _lock_directory() / "runwire-tests-host.gate"


def _opened(path: Path) -> int:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with contextlib.suppress(PermissionError):  # another user's: it is open to all already
        os.fchmod(descriptor, 0o666)  # whoever runs tests next on the host, as whichever user
    return descriptor


@contextlib.contextmanager
def holding_host(*, exclusive: bool) -> Iterator[None]:
    """The host lock, exclusive or shared, for the block."""
    gate, lock = _opened(_gate_file()), _opened(host_lock_file())
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if not exclusive:
            fcntl.flock(gate, fcntl.LOCK_UN)  # the next one may pass
        yield
    finally:
        os.close(lock)  # closing releases
        os.close(gate)
