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
for the ones running elsewhere, and theirs wait for it.
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


def host_lock_file() -> Path:
    return run_directory() / "host.lock"


@contextlib.contextmanager
def holding_host(*, exclusive: bool) -> Iterator[None]:
    """The run's host lock, exclusive or shared, for the block."""
    descriptor = os.open(host_lock_file(), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(descriptor)  # releases the lock
