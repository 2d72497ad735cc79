"""Start `runwire serve` processes as forks of one interpreter that has imported Runwire already.

Most of a server's start-up was Python importing Runwire and its libraries: about 0.9 s of CPU,
some fifty times a run. The fork server (`python -m tests.support.forkserver`, one per test run)
imports them once and forks a process per server, which takes the test's environment and runs
`runwire.cli.main(["serve"])` as the `runwire` console script does: the same settings, app,
lifespan and uvicorn, in a process of its own. Only the interpreter start-up and the imports are
shared. RUNWIRE_TEST_FORK_SERVER=0 execs each server instead (to tell a fork-server problem from
a server one); the benchmark smoke tests and the CLI tests still exec theirs.

The fork server never reaps its children while it runs, so a server's pid cannot be reused while
the test holds it (a pidfd watches it); it exits, and its zombies go to init, when its stdin
closes at the end of the run.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn, Protocol

ROOT = Path(__file__).resolve().parents[2]
ENABLED_ENV = "RUNWIRE_TEST_FORK_SERVER"


class ServerProcess(Protocol):
    """What a test needs of a server's process: whether it ended, signals, and waiting."""

    @property
    def pid(self) -> int: ...

    def exited(self) -> bool: ...

    def send_signal(self, signum: int) -> None: ...

    def wait(self, timeout: float) -> bool:
        """Whether it ended within `timeout` seconds."""
        ...


class ExecutedProcess:
    """A server exec'd as `python -m runwire.cli <command>`, as a user starts one."""

    def __init__(self, env: dict[str, str], log: Path, command: str = "serve") -> None:
        with log.open("ab") as output:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "runwire.cli", command],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self._popen.pid

    def exited(self) -> bool:
        return self._popen.poll() is not None

    def send_signal(self, signum: int) -> None:
        self._popen.send_signal(signum)

    def wait(self, timeout: float) -> bool:
        try:
            self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


class ForkedProcess:
    """A server forked by the fork server, watched through a pidfd (it is not our child)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        # Safe from pid reuse: the fork server reaps nothing while it runs.
        self._pidfd: int = os.pidfd_open(pid)

    @property
    def pid(self) -> int:
        return self._pid

    def exited(self) -> bool:
        return self.wait(0)

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # it has ended
            signal.pidfd_send_signal(self._pidfd, signum)

    def wait(self, timeout: float) -> bool:
        readable, _, _ = select.select([self._pidfd], [], [], timeout)
        return bool(readable)

    def __del__(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            os.close(self._pidfd)


class ForkServer:
    """The client side: one fork server per test run, started on first use."""

    _lock = threading.Lock()
    _process: subprocess.Popen[str] | None = None

    @classmethod
    def start_server(cls, env: dict[str, str], log: Path, command: str = "serve") -> ServerProcess:
        """`runwire <command>` (serve or worker) with `env`, its output appended to `log`."""
        if os.environ.get(ENABLED_ENV, "1") == "0":
            return ExecutedProcess(env, log, command)
        request = {"env": env, "log": str(log), "cwd": os.getcwd(), "argv": [command]}
        with cls._lock:
            process = cls._running()
            assert process.stdin is not None
            assert process.stdout is not None
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            reply = process.stdout.readline()
        if not reply:
            raise RuntimeError(f"the fork server exited (code {process.poll()})")
        return ForkedProcess(int(json.loads(reply)["pid"]))

    @classmethod
    def start_early(cls) -> None:
        """Start the fork server now: its imports overlap what the run does first (collecting)."""
        if os.environ.get(ENABLED_ENV, "1") != "0":
            with cls._lock:
                cls._running()

    @classmethod
    def _running(cls) -> subprocess.Popen[str]:
        if cls._process is None or cls._process.poll() is not None:
            cls._process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.forkserver"],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            atexit.register(cls._stop, cls._process)
        return cls._process

    @staticmethod
    def _stop(process: subprocess.Popen[str]) -> None:
        """End of the run: closing its stdin ends the fork server."""
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)


def _serve_forks() -> None:
    """Read one request per line from stdin, fork a server for each, answer with its pid."""
    before = dict(os.environ)
    # What every server imports, imported once here.
    import runwire.app
    import runwire.cli  # noqa: F401

    # uvicorn imports these by name as it starts; should one move, servers only start slower.
    for name in (
        "uvicorn.lifespan.on",
        "uvicorn.loops.uvloop",
        "uvicorn.protocols.http.httptools_impl",
        "uvicorn.protocols.websockets.websockets_sansio_impl",
    ):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _warm_up()

    # What importing Runwire put in the environment (setdefault, as in any process), re-applied
    # under each server's own environment.
    imported = {key: value for key, value in os.environ.items() if before.get(key) != value}
    # Ctrl-C reaches the whole process group: the servers stop themselves, this just ends.
    with contextlib.suppress(KeyboardInterrupt):
        for line in sys.stdin:
            request = json.loads(line)
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _run_server(request, imported)
            sys.stdout.write(json.dumps({"pid": pid}) + "\n")
            sys.stdout.flush()


def _warm_up() -> None:
    """Do once here what every server's start would otherwise do again in its own fork.

    An app built with the default settings imports what building one imports on first use
    (Litestar's pydantic plugin and pydantic with it, about 0.3 s of CPU a start) and fills the
    libraries' caches; the app itself is dropped. Freezing the heap afterwards keeps it out of
    the garbage collector's sight, so each server's startup collection (app.py) scans only what
    that server made, and the forks keep sharing its pages.
    """
    from runwire.app import create_app
    from runwire.settings import Settings

    create_app(Settings())
    gc.collect()
    gc.freeze()


def _run_server(request: dict[str, Any], imported: dict[str, str]) -> NoReturn:
    """In the forked child: become `runwire <argv>` with the request's environment.

    It ends as any process does, SystemExit and all (exit handlers, waiting for threads), never
    returning to the fork server's loop.
    """
    os.chdir(request["cwd"])
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, 1 << 16)
    os.environ.clear()
    os.environ.update(request["env"])
    for key, value in imported.items():
        os.environ.setdefault(key, value)
    sys.argv = ["runwire", *request["argv"]]
    from runwire.cli import main

    main(args=request["argv"], prog_name="runwire")
    sys.exit(0)


if __name__ == "__main__":
    _serve_forks()
