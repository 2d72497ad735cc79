"""Shared fixtures: fresh Postgres databases, Redis, and real servers per backend."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.bench import QUICK
from tests.support.forkserver import ForkServer
from tests.support.host import MARK, holding_host, remove_run_directory, run_directory
from tests.support.server import BACKENDS, DEFAULT_BACKEND, Server, running_server

pytest_plugins = ["tests.support.fixtures"]

# SQLite and the memory bus unless a module says otherwise: most of what the API tests check does
# not depend on the backend. A module whose behaviour does (Postgres-only SQL, a real bus, claims
# and races that SQLite's single writer cannot have) names its backends, with why, in
# SERVER_BACKENDS; whatever runs across processes has its own fixtures (running_pair).


# A hang ends the run red, with every thread's stack on stderr, instead of holding CI until its own
# limit: the session gets RUNWIRE_TEST_RUN_LIMIT_SECONDS, and the interpreter's exit after it (a
# thread that never ends keeps a process from exiting) another minute.
RUN_LIMIT_ENV = "RUNWIRE_TEST_RUN_LIMIT_SECONDS"
EXIT_LIMIT_SECONDS = 60
_watchdog_stderr: int | None = None


# Where the run's temporary directories go (pytest's tmp_path, so the test servers' data
# directories and SQLite databases, and the steps' directories) unless --basetemp or TMPDIR says
# otherwise: a tmpfs. SQLite commits every write with an fsync, about 3 ms on a disk against
# 0.06 ms in memory, and a SQLite server writes an audit row per mutation field and its event log
# per step: on disk the tenant-isolation probes spent half their time syncing. What the servers
# do is the same; only the medium differs. Skipped where it is small (a container's 64 MB
# /dev/shm) or noexec.
MEMORY_TEMP_ROOT = "/dev/shm"
MEMORY_TEMP_MIN_FREE = 2 << 30


def _is_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


def _is_controller(config: pytest.Config) -> bool:
    """Whether this is pytest-xdist's controller: it runs no test, its workers do."""
    return config.pluginmanager.has_plugin("dsession")


def pytest_configure(config: pytest.Config) -> None:
    _use_memory_temp(config)
    if not _is_worker():
        run_directory()  # before any worker starts: they all inherit its name


def _use_memory_temp(config: pytest.Config) -> None:
    if config.option.basetemp is not None or os.environ.get("TMPDIR"):
        return
    try:
        found = os.statvfs(MEMORY_TEMP_ROOT)
    except OSError:
        return
    if (
        found.f_bavail * found.f_frsize >= MEMORY_TEMP_MIN_FREE
        and not found.f_flag & os.ST_NOEXEC
        and os.access(MEMORY_TEMP_ROOT, os.W_OK | os.X_OK)
    ):
        # The servers and their steps (started later, with this environment) too: all agree.
        os.environ["TMPDIR"] = tempfile.tempdir = MEMORY_TEMP_ROOT


def pytest_sessionstart(session: pytest.Session) -> None:
    global _watchdog_stderr
    if _is_worker():
        # A worker outlives its own session until its controller ends it: the controller's
        # watchdog covers the run. Each worker starts servers from a fork server of its own.
        if not session.config.option.collectonly:
            ForkServer.start_early()
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    # Captured, stderr is a temporary file that is lost when the watchdog ends the process.
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        _watchdog_stderr = os.dup(2)
    limit = float(os.environ.get(RUN_LIMIT_ENV, "1800"))
    faulthandler.dump_traceback_later(limit, exit=True, file=_watchdog_stderr)
    if not session.config.option.collectonly and not _is_controller(session.config):
        ForkServer.start_early()


def pytest_collection_finish(session: pytest.Session) -> None:
    # The benchmarks' smoke runs this session selects start now, together, beside the tests
    # (tests/support/bench.py); under pytest-xdist the controller starts them instead.
    if not session.config.option.collectonly and not _is_worker():
        QUICK.start(item.path.name for item in session.items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """The controller: start the smoke runs of what its workers collected (all the same)."""
    QUICK.start(Path(nodeid.partition("::")[0]).name for nodeid in ids)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """Each test holds the host lock (tests/support/host.py): shared, or exclusive if marked."""
    with holding_host(exclusive=item.get_closest_marker(MARK) is not None):
        return (yield)


def pytest_sessionfinish(session: pytest.Session) -> None:
    QUICK.close()
    if not _is_worker():
        remove_run_directory()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _watchdog_stderr is not None:
        faulthandler.dump_traceback_later(EXIT_LIMIT_SECONDS, exit=True, file=_watchdog_stderr)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the tests of a module that sets SERVER_BACKENDS once per backend it names."""
    backends = getattr(metafunc.module, "SERVER_BACKENDS", None)
    if backends is not None and "server" in metafunc.fixturenames:
        unknown = set(backends) - set(BACKENDS)
        assert not unknown, f"{metafunc.module.__name__}: unknown backends {unknown}"
        metafunc.parametrize("server", backends, indirect=True, scope="module")


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real server, shared by the tests of one module (and backend)."""
    backend = getattr(request, "param", DEFAULT_BACKEND)
    settings = getattr(request.module, "SERVER_SETTINGS", None)
    with running_server(backend, tmp_path_factory.mktemp(backend), settings) as found:
        yield found
