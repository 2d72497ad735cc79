"""Stopping a process together with everything it started, without signalling a reused pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A pid pinned to one process by its start time (clock ticks after boot)."""

    pid: int
    start_time: int


def _read_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) from /proc/<pid>/stat, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after it do not.
    fields = stat.rpartition(b")")[2].split()
    return int(fields[1]), int(fields[19])


def process_ref(pid: int) -> ProcessRef | None:
    """The process that has `pid` now, or None (also where there is no /proc)."""
    stat = _read_stat(pid)
    return ProcessRef(pid, stat[1]) if stat else None


def collect(roots: Iterable[ProcessRef]) -> set[ProcessRef]:
    """The roots that still exist and all their descendants, found through /proc parent links."""
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return set()  # no /proc: the caller still has the process group to signal
    children: dict[int, list[ProcessRef]] = {}
    start_times: dict[int, int] = {}
    for pid in pids:
        if stat := _read_stat(pid):
            children.setdefault(stat[0], []).append(ProcessRef(pid, stat[1]))
            start_times[pid] = stat[1]
    found = {root for root in roots if start_times.get(root.pid) == root.start_time}
    pending = list(found)
    while pending:
        for child in children.get(pending.pop().pid, ()):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a process group if it still has members."""
    # A pgid stays reserved while any member lives, so this reaches only our group's processes.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def signal_each(processes: Iterable[ProcessRef], sig: signal.Signals) -> None:
    """Signal each process that still exists and is the same process that was recorded."""
    for ref in processes:
        try:
            fd = os.pidfd_open(ref.pid)
        except ProcessLookupError:
            continue
        except (AttributeError, OSError):
            fd = -1  # no pidfd support: a reuse between the check and the kill stays possible
        try:
            # A pidfd pins the process it was opened for, so a start time that still matches
            # after opening it proves the signal goes to the recorded process, not a reused pid.
            if process_ref(ref.pid) == ref:
                if fd >= 0:
                    signal.pidfd_send_signal(fd, sig)
                else:
                    os.kill(ref.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        finally:
            if fd >= 0:
                os.close(fd)


async def stop_group(
    pid: int, leader: ProcessRef | None, exited: asyncio.Future[Any], grace: float
) -> bool:
    """Stop a process group and every descendant that left it; True if SIGINT was not enough."""
    # SIGINT first so the step can clean up; after `grace`, SIGKILL whatever is left.
    # Record descendants before signalling: once a parent exits, its children are reparented
    # to init and can no longer be found by walking down from the leader.
    tracked = await asyncio.to_thread(collect, [leader] if leader else [])
    signal_group(pid, signal.SIGINT)
    await asyncio.wait({exited}, timeout=grace)
    # Walk again from everything recorded: processes may have forked during the grace period.
    tracked |= await asyncio.to_thread(collect, tracked)
    killed = not exited.done()
    signal_group(pid, signal.SIGKILL)
    signal_each(tracked, signal.SIGKILL)
    await asyncio.shield(exited)
    return killed
