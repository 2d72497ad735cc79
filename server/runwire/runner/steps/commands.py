"""Running one command confined and contained: streaming its output, stopping its whole tree.

What every process step shares (`shell`, `agent`): the attempt's directory, clean environment,
step user and sandbox (confinement.py), the reaper that ends every process the command starts
(containment.py), back-pressure while the execution's events are behind, and the stop: SIGINT to
the command, then, after the grace period, SIGKILL to all that is left.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import subprocess
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from runwire.domain.models import OutputStream
from runwire.runner.steps.base import StepContext, StepResult
from runwire.runner.steps.confinement import Confinement, Spawn
from runwire.runner.steps.containment import END_SECONDS, START_SECONDS, StartFailed, Supervision
from runwire.runner.steps.report_channel import ReportChannel
from runwire.runner.steps.spawning import PipeReader, PipeWriter, StartedProcess, start_process
from runwire.scenarios.results import describe_exit
from runwire.settings import Settings

CAPTURE_BYTES = 64 * 1024
"""How much of the end of stdout and of stderr the step's output keeps."""

DRAIN_SECONDS = 0.5
"""How long output may keep arriving after the process exited (background children)."""

# How often a stopping step's grace period is read again (a give-up cuts it to 0).
_GRACE_CHECK_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class Command:
    """One process to start: argv (no shell), its declared env, cwd, stdin text, network."""

    argv: tuple[str, ...]
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    stdin: str | None = None
    # Whether a sandboxed step may use the network (RUNWIRE_STEP_SANDBOX); ignored without one.
    network: bool = False


@dataclass(frozen=True, slots=True)
class Finished:
    """A command that ran to its end: its exit code, the kept ends of its output, and the named
    outputs it wrote to its report channel (report_channel.py)."""

    exit_code: int
    stdout: str
    stderr: str
    reported: Mapping[str, Any] = field(default_factory=dict)


class ProcessKind:
    """A step kind that runs commands, confined as its settings say."""

    def __init__(self, confinement: Confinement | None = None) -> None:
        self._confinement = confinement

    @property
    def confinement(self) -> Confinement:
        """As given, or the default settings' on first use (parsing alone never needs one)."""
        if self._confinement is None:
            self._confinement = Confinement.from_settings(Settings())
        return self._confinement


class _Capture:
    """One output stream: forwarded as decoded text as it arrives, its last bytes kept."""

    def __init__(
        self,
        stream: OutputStream,
        context: StepContext,
        forward: Callable[[str], None] | None = None,
    ) -> None:
        self.stream = stream
        self.context = context
        # Where decoded text goes: the step's output as it is, unless the kind reads it itself.
        self.forward = forward or (lambda text: context.output(stream, text))
        # Incremental, so a character split across two reads is decoded whole.
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes, final: bool = False) -> None:
        self.total += len(data)
        self.tail += data
        del self.tail[:-CAPTURE_BYTES]
        if text := self.decoder.decode(data, final):
            self.forward(text)

    def text(self) -> str:
        dropped = self.total - len(self.tail)
        if not dropped:
            return self.tail.decode(errors="replace")
        # Skip the continuation bytes of a character cut in half by the cap.
        start = next((i for i in range(4) if self.tail[i] & 0xC0 != 0x80), 0)
        return f"…[truncated {dropped + start} bytes]\n" + self.tail[start:].decode(
            errors="replace"
        )


class _Pipes(asyncio.SubprocessProtocol):
    """Forwards output as the loop reads it; tells when the reaper exits and the pipes close."""

    # asyncio's Process.wait() also waits for the pipes to close, which never happens while a
    # background child holds them open; this protocol reports the two moments separately.

    def __init__(self, captures: Mapping[int, _Capture]) -> None:
        loop = asyncio.get_running_loop()
        self.captures = captures
        self.exited: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.open = set(captures)
        self.transport: StartedProcess | None = None
        self.resuming: asyncio.Future[None] | None = None
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(StartedProcess, transport)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if self.finished:
            return
        capture = self.captures[fd]
        capture.feed(data.encode() if isinstance(data, str) else data)
        if self.resuming is None and capture.context.backlogged():
            # Back-pressure: the database is behind (or away). Stop reading; the command blocks
            # on its full pipe instead of the server holding its output in memory.
            for reading in self._pipes():
                reading.pause_reading()
            self.resuming = asyncio.ensure_future(self._resume_when_room(capture.context))

    async def _resume_when_room(self, context: StepContext) -> None:
        try:
            await context.room()
        finally:
            self.resuming = None
            for reading in self._pipes():
                with contextlib.suppress(RuntimeError):  # closed meanwhile
                    reading.resume_reading()

    def _pipes(self) -> list[PipeReader]:
        """The output pipes' transports."""
        if self.transport is None:
            return []
        found = (self.transport.get_pipe_transport(fd) for fd in self.captures)
        return [pipe for pipe in found if isinstance(pipe, PipeReader)]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.open.discard(fd)
        if not self.open and not self.closed.done():
            self.closed.set_result(None)

    def process_exited(self) -> None:
        code = self.transport.get_returncode() if self.transport else None
        if not self.exited.done():
            self.exited.set_result(-1 if code is None else code)


async def _within(future: asyncio.Future[Any], seconds: float) -> bool:
    done, _ = await asyncio.wait({future}, timeout=seconds)
    return bool(done)


async def _within_grace(future: asyncio.Future[Any], context: StepContext) -> bool:
    """Wait for `future` for the step's grace period, as it is now: a runner giving its steps up
    sets it to 0 to kill at once, also a step already stopping (a give-up that waited out a
    stop's grace left the step running after its lease could pass to another runner)."""
    started = time.monotonic()
    while not future.done():
        left = context.grace_seconds - (time.monotonic() - started)
        if left <= 0:
            return False
        await _within(future, min(left, _GRACE_CHECK_SECONDS))
    return True


async def run_command(
    confinement: Confinement,
    command: Command,
    context: StepContext,
    stdout: Callable[[str], None] | None = None,
    reserved_outputs: Collection[str] = (),
) -> Finished | StepResult:
    """Run `command` under a reaper; how it finished, or the failed result if it never could.

    Its output goes to the step's output as it arrives; stdout to `stdout` instead when given
    (decoded text, in pieces as read). It gets a report channel (fd 3) whose named outputs may
    not take the names in `reserved_outputs` (the kind's own output keys). On cancellation the
    command is stopped, then it re-raises.
    """
    captures = {
        1: _Capture(OutputStream.STDOUT, context, stdout),
        2: _Capture(OutputStream.STDERR, context),
    }
    spawn: Spawn | None = None
    channel: ReportChannel | None = None
    finish: int | StepResult | None = None  # how it ended, once it has
    # Whether a reaper may hold a copy of the lock on the attempt's uid (step_uids.py).
    reaper_may_hold_uid = False
    try:
        try:
            # The report channel (report_channel.py): records the command writes to fd 3.
            async with (
                Supervision.opened() as reaper,
                ReportChannel(context, reserved_outputs) as channel,
            ):
                try:
                    # Its own directory, a clean environment, the step user (confinement.py).
                    spawn = confinement.prepare(
                        context, channel.environment(command.env), command.cwd, command.network
                    )
                    reaper_may_hold_uid = True  # a stop during the spawn leaves it unknown
                    # Started in a thread: a loop's subprocess_exec holds the loop while the
                    # child execs, which stalled every execution's output (spawning.py).
                    transport, pipes = await start_process(
                        lambda: _Pipes(captures),
                        # The reaper keeps the server's user (a command run as the step user cannot
                        # signal it) and ends every process the step starts, whenever and however
                        # the step ends (containment.py); the confined command, switched to the
                        # step user, runs below it.
                        reaper.wrap((*spawn.argv_prefix, *command.argv), give=channel.descriptors),
                        stdin=subprocess.DEVNULL if command.stdin is None else subprocess.PIPE,
                        cwd=spawn.cwd,
                        env=spawn.env,
                        # With a uid of its own, the uid's lock too: the reaper holds it until
                        # the step's last process is gone (step_uids.py).
                        pass_fds=(*reaper.pass_fds, *spawn.pass_fds),
                        # The reaper, and the command in a session of its own below it, are out of
                        # reach of a Ctrl-C on the server's terminal.
                        start_new_session=True,
                    )
                except (OSError, ValueError) as error:
                    reaper_may_hold_uid = False  # no process was started
                    return StepResult(error=f"cannot start: {_describe_start_error(error)}")
                reaper.spawned(transport, pipes.exited)
                try:
                    if command.stdin is not None:
                        stdin = transport.get_pipe_transport(0)
                        assert isinstance(stdin, PipeWriter)  # asked for with stdin=PIPE
                        stdin.write(command.stdin.encode())
                        stdin.close()  # flushes, then closes: the child sees EOF after the text
                    finish = await _supervise(reaper, pipes, context)
                    # Named outputs, beside (never over) the kind's own; artifacts stored by now.
                    reported = await channel.finish()
                finally:
                    pipes.finished = True  # what a process killed late writes is not the step's
        finally:
            if spawn is not None:
                gone = not reaper_may_hold_uid or reaper.ended_with_its_processes()
                await asyncio.to_thread(spawn.remove, gone)  # in a thread: it may be many files
    except asyncio.CancelledError:
        if finish is None or channel is None:
            raise
        # Stopped after the command ended on its own, while its reports were collected or its
        # directory removed: as in `_supervise`, it answers with how it ended (an artifact still
        # being stored is not stored).
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        reported = await channel.finish()  # finished already: the named outputs it read
    if isinstance(finish, StepResult):
        return finish
    for capture in captures.values():
        capture.feed(b"", final=True)
    return Finished(finish, captures[1].text(), captures[2].text(), reported)


async def _supervise(reaper: Supervision, pipes: _Pipes, context: StepContext) -> int | StepResult:
    """Wait for the command and end what it leaves; its exit code, or the result if it has none."""
    reports = reaper.reports
    try:
        # Shielded: cancelling a task cancels the future it awaits, and `outcome` must still
        # report the real exit while stopping.
        outcome = await asyncio.shield(reports.outcome)
        if isinstance(outcome, int):
            # Background children may still write: let them flush briefly, then end them all.
            if not await _within(reaper.ended, DRAIN_SECONDS):
                reaper.end()
                context.output(OutputStream.LOG, "killed processes left running in the background")
                await _within(reaper.ended, END_SECONDS)
            await _within(pipes.closed, DRAIN_SECONDS)
    except asyncio.CancelledError:
        if reports.outcome.done():
            # The command had ended on its own before the stop came: it did its work, and
            # reporting it as stopped would run it again. Leave nothing behind, and answer with
            # how it ended.
            reaper.end()
            await _within(reaper.ended, END_SECONDS)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            outcome = reports.outcome.result()
        else:
            # SIGINT first so the step can clean up; after the grace period the reaper SIGKILLs
            # whatever is left, in the group or not.
            await _within(reports.started, START_SECONDS)  # before, SIGINT would hit the reaper
            reaper.interrupt()
            await _within_grace(reports.outcome, context)
            killed = not reports.outcome.done()
            reaper.end()
            await _within(reaper.ended, END_SECONDS)
            code = reports.outcome.result() if reports.outcome.done() else None
            if not isinstance(code, int) or reports.stopped:
                if reports.outcome.done() and code is None:
                    await reaper.end_leftovers()  # the reaper was killed (see below)
                context.output(
                    OutputStream.LOG,
                    f"killed after a grace period of {context.grace_seconds:g} s"
                    if killed or not isinstance(code, int)
                    else f"stopped: {describe_exit(code)}",
                )
                await _within(pipes.closed, DRAIN_SECONDS)  # what it printed while stopping
                raise
            # Its exit was on its way (the reaper had not said so, or not been read) when the
            # stop came, and the reaper says the stop never reached it: as above, it answers
            # with how it ended.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            outcome = code
    if isinstance(outcome, StartFailed):
        await _within(reaper.ended, END_SECONDS)
        return StepResult(error=f"cannot start: {outcome.reason}")
    if outcome is None:
        # The reaper itself was killed (only SIGKILL can do that) before the command ended:
        # its processes went to init. End them here, by their marker.
        code = await asyncio.shield(pipes.exited)
        left = await reaper.end_leftovers()
        return StepResult(
            error=f"the step's reaper ended before its command ({describe_exit(code)});"
            f" {left} processes it left were killed"
        )
    return outcome


def _describe_start_error(error: OSError | ValueError) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error)
