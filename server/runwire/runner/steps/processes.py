"""Finding processes through /proc and signalling them without hitting a reused pid."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A pid pinned to one process by its start time (clock ticks after boot)."""

    pid: int
    start_time: int


def _read_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) from /proc/<pid>/stat; None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after it do not.
    fields = stat.rpartition(b")")[2].split()
    return fields[0].decode(), int(fields[1]), int(fields[19])


def process_ref(pid: int) -> ProcessRef | None:
    """The process that has `pid` now, or None (also where there is no /proc)."""
    stat = _read_stat(pid)
    return ProcessRef(pid, stat[2]) if stat else None


def is_running(ref: ProcessRef) -> bool:
    """Whether the recorded process still runs: same start time, and not a zombie."""
    stat = _read_stat(ref.pid)
    return stat is not None and stat[2] == ref.start_time and stat[0] != "Z"


def all_pids() -> list[int]:
    """Every pid in /proc (empty where there is no /proc)."""
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def pid_namespace() -> int:
    """An id of this process's pid namespace (0 if unknown): pids mean something only inside it."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def strings_of(pid: int) -> list[bytes]:
    """The command line and the initial environment of a process, item by item."""
    items: list[bytes] = []
    for name in ("cmdline", "environ"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as file:
                items += file.read().split(b"\0")
        except OSError:
            pass  # gone, or not ours to read
    return items


def collect(roots: Iterable[ProcessRef]) -> set[ProcessRef]:
    """The roots that still exist and all their descendants, found through /proc parent links."""
    children: dict[int, list[ProcessRef]] = {}
    start_times: dict[int, int] = {}
    for pid in all_pids():
        if stat := _read_stat(pid):
            children.setdefault(stat[1], []).append(ProcessRef(pid, stat[2]))
            start_times[pid] = stat[2]
    found = {root for root in roots if start_times.get(root.pid) == root.start_time}
    pending = list(found)
    while pending:
        for child in children.get(pending.pop().pid, ()):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


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
