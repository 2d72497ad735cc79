"""Starting a step's process off the event loop, and reading its pipes and exit on the loop.

asyncio's and uvloop's `subprocess_exec` fork and wait for the exec on the loop's thread. uvloop
held the loop 15 to 20 ms per start on a loaded 2-core machine, so sixty steps starting within a
second stalled every other execution's output, every flush and every delivery for about a second
(bench/line_latency.py, P8). Here `subprocess.Popen` starts the process in a worker thread, which
releases the GIL while the child execs; the loop then reads the pipes and waits for the exit
through a pidfd, with the same protocol calls (`asyncio.SubprocessProtocol`) as a loop's process
transport, so the caller does not change.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

_READ_BYTES = 256 * 1024  # as asyncio's pipe transports
# Starts have threads of their own: a hundred steps starting at once would queue in the loop's
# default executor ahead of everything else there (getaddrinfo for a new database connection,
# say).
_STARTERS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="step-start")
_P = TypeVar("_P", bound=asyncio.SubprocessProtocol)


class PipeReader:
    """One output pipe of the process, read on the loop while not paused."""

    def __init__(self, process: StartedProcess, fd: int, target: int) -> None:
        self._process = process
        self._fd = fd
        self._target = target  # the child's descriptor number: 1 or 2
        self._paused = False
        os.set_blocking(fd, False)
        process.loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self.close(error)
            return
        if not data:
            self.close()
            return
        self._process.protocol.pipe_data_received(self._target, data)

    def pause_reading(self) -> None:
        if self._fd >= 0 and not self._paused:
            self._paused = True
            self._process.loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if self._fd >= 0 and self._paused:
            self._paused = False
            self._process.loop.add_reader(self._fd, self._readable)

    def close(self, error: Exception | None = None) -> None:
        if self._fd < 0:
            return
        if not self._paused:
            self._process.loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._process.protocol.pipe_connection_lost(self._target, error)


class PipeWriter:
    """The process's stdin: what is written goes out as the pipe takes it, then EOF on close."""

    def __init__(self, process: StartedProcess, fd: int) -> None:
        self._process = process
        self._fd = fd
        self._pending = bytearray()
        self._closing = False
        os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        if self._fd < 0 or self._closing:
            return
        self._pending += data
        self._writable()

    def close(self) -> None:
        """Close once what was written has gone out (or the reader went away)."""
        self._closing = True
        if not self._pending:
            self._close()

    def _writable(self) -> None:
        if self._fd < 0:
            return
        try:
            written = os.write(self._fd, self._pending)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:  # the command closed its stdin or exited: the rest is not wanted
            self._pending.clear()
            self._close()
            return
        del self._pending[:written]
        loop = self._process.loop
        if self._pending:
            loop.add_writer(self._fd, self._writable)
        else:
            loop.remove_writer(self._fd)
            if self._closing:
                self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            self._process.loop.remove_writer(self._fd)
            os.close(self._fd)
            self._fd = -1


class StartedProcess:
    """A process started by `start_process`: the part of a loop's process transport steps use."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, popen: subprocess.Popen[bytes], protocol: Any
    ) -> None:
        self.loop = loop
        self.protocol = protocol
        self._popen = popen
        self._pipes: dict[int, PipeReader | PipeWriter] = {}
        self._pidfd = -1
        self._exited = False

    def get_pid(self) -> int:
        return self._popen.pid

    def get_returncode(self) -> int | None:
        return self._popen.returncode

    def get_pipe_transport(self, fd: int) -> PipeReader | PipeWriter | None:
        return self._pipes.get(fd)

    def send_signal(self, signum: int) -> None:
        """Signal the process; ProcessLookupError once it has exited (as a loop's transport)."""
        if self._popen.returncode is not None:
            raise ProcessLookupError
        # Not reaped yet (its exit is collected only here), so the pid is still this process's.
        os.kill(self._popen.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Close the pipes, and SIGKILL the process if it still runs (as a loop's transport)."""
        for pipe in list(self._pipes.values()):
            pipe.close()
        if self._popen.returncode is None and not self._exited:
            with contextlib.suppress(ProcessLookupError):
                self.send_signal(signal.SIGKILL)

    def _watch_exit(self) -> None:
        try:
            self._pidfd = os.pidfd_open(self._popen.pid)
        except (AttributeError, OSError):
            # No pidfds (an old kernel): a thread of its own waits for this one process.
            threading.Thread(target=self._wait_in_thread, daemon=True).start()
            return
        self.loop.add_reader(self._pidfd, self._pidfd_readable)

    def _pidfd_readable(self) -> None:
        if self._popen.poll() is None:
            return
        self.loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._on_exit()

    def _wait_in_thread(self) -> None:
        self._popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(self._on_exit)

    def _on_exit(self) -> None:
        if not self._exited:
            self._exited = True
            self.protocol.process_exited()


async def start_process(
    protocol_factory: Callable[[], _P],
    argv: Sequence[str],
    *,
    stdin: int,
    cwd: str | None,
    env: Mapping[str, str],
    pass_fds: Sequence[int],
    start_new_session: bool,
) -> tuple[StartedProcess, _P]:
    """Start `argv` in a worker thread with stdout and stderr piped (stdin: DEVNULL or PIPE).

    Raises what `subprocess.Popen` raises when the start fails. A cancellation while the process
    starts waits for it, and is delivered at the caller's next await: the process is the caller's
    to stop, as it would be had the cancellation come just after.
    """
    loop = asyncio.get_running_loop()
    # Our own pipe ends, as descriptors: nothing else (a file object) closes them a second time.
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    in_read, in_write = os.pipe() if stdin == subprocess.PIPE else (subprocess.DEVNULL, -1)
    ends = [out_write, err_write, *([in_read] if in_read >= 0 else [])]

    def popen() -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                list(argv),
                stdin=in_read,
                stdout=out_write,
                stderr=err_write,
                cwd=cwd,
                env=dict(env),
                pass_fds=tuple(pass_fds),
                start_new_session=start_new_session,
            )
        finally:
            for fd in ends:  # the child has its copies (or there is no child)
                os.close(fd)

    starting = loop.run_in_executor(_STARTERS, popen)
    cancelled = False
    try:
        while True:
            try:
                process = await asyncio.shield(starting)
                break
            except asyncio.CancelledError:
                if starting.cancelled():
                    raise
                cancelled = True
    except BaseException:
        for fd in (out_read, err_read, in_write):
            if fd >= 0:
                os.close(fd)
        raise
    started = StartedProcess(loop, process, protocol := protocol_factory())
    started._pipes = {1: PipeReader(started, out_read, 1), 2: PipeReader(started, err_read, 2)}
    if in_write >= 0:
        started._pipes[0] = PipeWriter(started, in_write)
    protocol.connection_made(started)  # type: ignore[arg-type]
    started._watch_exit()
    if cancelled:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
            task.cancel()  # delivered at the caller's next await
    return started, protocol
