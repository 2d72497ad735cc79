"""Keeping a step's processes inside the step: its reaper, and what a dead server left behind.

A process step runs its command under a reaper (reaper.py, a child subreaper with a parent-death
signal): every process the command starts stays below the reaper, and the reaper ends them all
when the command ends and the server says so, when the server stops the step, and when the
server dies. `Supervision` is one reaper seen from the server.

Only a reaper killed with the server (both SIGKILLed) leaves processes behind, orphans of init.
Each step's processes carry a marker in their environment (`RUNWIRE_STEP=<pid namespace>:<server
pid>:<server start time>:<step number>`), so a runner starting on the same host ends the process
trees whose server is gone (`end_leftovers_of_dead_servers`) and never another live server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runwire.runner.steps import reaper
from runwire.runner.steps.processes import (
    ProcessRef,
    all_pids,
    collect,
    is_running,
    pid_namespace,
    process_ref,
    signal_each,
    strings_of,
)
from runwire.runner.steps.spawning import StartedProcess

MARKER_VARIABLE = "RUNWIRE_STEP"
"""The environment variable that ties a step's processes to the server that started them."""

START_SECONDS = 10.0
"""How long a stop waits for a reaper to have started its command before ending it anyway."""

END_SECONDS = 10.0
"""How long a reaper told to end everything may take before the server stops waiting for it."""

_steps = itertools.count(1)
_owners: dict[int, str] = {}


def _owner() -> str:
    """This process as a marker names it: pid namespace, pid and start time."""
    pid = os.getpid()  # per pid: a forked server is another owner than its parent
    if pid not in _owners:
        ref = process_ref(pid)
        _owners[pid] = f"{pid_namespace()}:{pid}:{ref.start_time if ref else 0}"
    return _owners[pid]


@dataclass(frozen=True, slots=True)
class StartFailed:
    """The command could not be started (the exec failed); why, as the user should read it."""

    reason: str


class _Reports:
    """Reads the reaper's status lines (reaper.py) into futures."""

    # Read with add_reader and os.read, not connect_read_pipe: uvloop closes a pipe given as a
    # file object twice (libuv, then the file object), and the second close can hit a
    # descriptor another thread has just opened (SQLite's: seen as "file is not a database").

    def __init__(self, fd: int) -> None:
        self._loop = asyncio.get_running_loop()
        # The command runs, or it never will: from then on the reaper can take signals.
        self.started: asyncio.Future[None] = self._loop.create_future()
        # The leader's exit code, why it could not start, or None: the reaper ended first.
        self.outcome: asyncio.Future[int | StartFailed | None] = self._loop.create_future()
        # A stop reached the leader while it ran (before that, it ended on its own).
        self.stopped = False
        # The status pipe closed: the reaper has exited (or was killed).
        self.ended: asyncio.Future[None] = self._loop.create_future()
        self._fd = fd
        self._pending = b""
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        if not data:
            self.close()
            return
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            word, _, rest = line.decode(errors="replace").partition(" ")
            if not self.started.done():
                self.started.set_result(None)
            if self.outcome.done():
                continue
            if word == "stopping":
                self.stopped = True
            elif word == "exited":
                self.outcome.set_result(int(rest))
            elif word == "error":
                reason = bytes.fromhex(rest).decode(errors="replace")
                self.outcome.set_result(StartFailed(reason))

    def close(self) -> None:
        """Stop reading (at the end of the pipe, or when let go of)."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        for future in (self.started, self.outcome, self.ended):
            if not future.done():
                future.set_result(None)


class Supervision:
    """One step's reaper: the argv that starts it, what it reports, and telling it to stop."""

    def __init__(self, status_write: int, reports: _Reports) -> None:
        self.marker = f"{MARKER_VARIABLE}={_owner()}:{next(_steps)}"
        self._status_write = status_write
        self.reports = reports
        self._process: StartedProcess | None = None
        self._exited: asyncio.Future[Any] | None = None
        self._given: tuple[int, ...] = ()
        # Its reports read to the end, and its exit seen by the loop: only then may its
        # transport close without SIGKILLing it.
        self.ended: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls) -> AsyncIterator[Supervision]:
        """A status pipe to read the reaper's reports from, for the block."""
        status_read, status_write = os.pipe()
        try:
            reports = _Reports(status_read)
        except BaseException:
            os.close(status_read)
            os.close(status_write)
            raise
        supervision = cls(status_write, reports)
        try:
            yield supervision
        finally:
            supervision._release()

    def wrap(
        self,
        argv: Sequence[str],
        run_as: tuple[int, int] | None = None,
        give: Mapping[int, int] | None = None,
    ) -> list[str]:
        """The argv that runs `argv` under a reaper, to spawn with `pass_fds`.

        With `run_as` (uid, gid) the reaper keeps the server's credentials and runs the command
        as that user: the command can then neither signal its reaper nor escape it. `give` maps
        a descriptor number the command gets to one of ours (kept open by the caller until the
        spawn) that it is a copy of.
        """
        script = str(Path(reaper.__file__))
        status, parent = str(self._status_write), str(os.getpid())
        credentials = f"{run_as[0]}:{run_as[1]}" if run_as else "-"
        self._given = tuple((give or {}).values())
        given = [f"{target}={source}" for target, source in (give or {}).items()]
        # -I -S: no site-packages, no user paths, no PYTHON* variables; a fast start.
        python = [sys.executable, "-I", "-S", script]
        return [*python, self.marker, status, parent, credentials, *given, "--", *argv]

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self._status_write, *self._given)

    def spawned(self, process: StartedProcess, exited: asyncio.Future[Any]) -> None:
        """The reaper runs as `process`, whose protocol resolves `exited` when it exits."""
        self._process = process
        self._exited = exited
        self.ended = asyncio.gather(self.reports.ended, exited)
        self._close_status_write()

    def _close_status_write(self) -> None:
        # Only the reaper may hold the write end, so that the pipe ends when the reaper does.
        if self._status_write >= 0:
            os.close(self._status_write)
            self._status_write = -1

    def ended_with_its_processes(self) -> bool:
        """Whether the reaper has exited on its own, which it does only once every process of
        the step is gone (not if it was killed, nor if it is not known to have started)."""
        exited = self._exited
        return (
            self.ended.done()
            and exited is not None
            and not exited.cancelled()
            and exited.exception() is None
            and exited.result() == 0
        )

    def interrupt(self) -> None:
        """Pass SIGINT to the command's process group (once it runs)."""
        self._signal(signal.SIGINT)

    def end(self) -> None:
        """Have the reaper SIGKILL every process of the step and exit."""
        self._signal(signal.SIGTERM)

    def _signal(self, signum: signal.Signals) -> None:
        if self._process is not None and not self.ended.done():
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                self._process.send_signal(signum)

    def _release(self) -> None:
        """Let go of the reaper: now if it has exited, else once it has ended everything."""
        self._close_status_write()
        if self._process is None or self.ended.done():
            self._close()
        else:
            # Closing a process transport SIGKILLs a process still running: the reaper, whose
            # descendants would then go to init. Tell it to end them, and close once it has.
            self.end()
            self.ended.add_done_callback(lambda _: self._close())

    def _close(self) -> None:
        if self._process is not None:
            self._process.close()
        self.reports.close()

    async def end_leftovers(self) -> int:
        """SIGKILL what this step left after its reaper was killed; how many processes."""
        return await asyncio.to_thread(end_marked, lambda marker: marker == self.marker)


def end_marked(chosen: Callable[[str], bool], rounds: int = 50) -> int:
    """SIGKILL every process with a chosen marker, and its descendants; how many there were."""
    prefix = f"{MARKER_VARIABLE}=".encode()
    killed: set[ProcessRef] = set()
    for _ in range(rounds):
        roots = set()
        for pid in all_pids():
            for item in strings_of(pid):
                if item.startswith(prefix) and chosen(item.decode(errors="replace")):
                    if (ref := process_ref(pid)) is not None and is_running(ref):
                        roots.add(ref)
                    break
        if not roots:
            break
        found = {ref for ref in collect(roots) if is_running(ref)}
        signal_each(found, signal.SIGKILL)
        killed |= found
        time.sleep(0.02)  # a process killed while forking leaves children: look again
    return len(killed)


def server_identity() -> str:
    """This server process as its steps' markers name it: `pid namespace:pid:start time`."""
    return _owner()


def server_is_gone(identity: str) -> bool:
    """Whether the server an identity names is no longer running (in this pid namespace only)."""
    try:
        namespace, pid, start_time = identity.split(":")[:3]
        if int(namespace) != pid_namespace():
            return False  # another namespace's pids: nothing can be said about its servers
        owner = ProcessRef(int(pid), int(start_time))
    except ValueError:
        return False  # not ours to judge
    return not is_running(owner)


def _owner_is_gone(marker: str) -> bool:
    return server_is_gone(marker.partition("=")[2])


def end_leftovers_of_dead_servers() -> int:
    """SIGKILL the step processes whose server died without ending them; how many."""
    return end_marked(_owner_is_gone)
