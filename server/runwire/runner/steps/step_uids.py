"""A uid of its own for each step attempt, so that no step can read another's processes.

Steps that share a uid can read each other's `/proc/<pid>/environ`, where their secrets are. A
server running as root therefore runs each attempt as a uid no other step running on the host
has at the same time, taken from a range no account uses (`RUNWIRE_STEP_UIDS`).

A uid is taken by holding an exclusive `flock` on a file named after it in a host-wide
directory, so several servers on one host never hand out the same one. The lock is held twice:
by the server until the attempt's directory is removed, and by the step's reaper (reaper.py,
which inherits the descriptor) until the last process of the step is gone, so a uid is never
given out while a process of the step that had it runs, even when the server dies first. A file
is unlinked when it is let go of cleanly; one found already there was left by a crash or an
unclean end, and its uid is taken only if no process runs as it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import random
import stat
from dataclasses import dataclass
from pathlib import Path

from runwire.runner.steps.processes import all_pids

LOCK_DIRECTORY = Path("/run/runwire/step-uids")
"""Where the locks are: host-wide (every server on the host shares it, whatever its settings),
on the tmpfs that is emptied at boot (when no step can be running)."""


class HeldUid:
    """One uid, taken for one attempt until `release`; `descriptor` is its lock, to pass on."""

    def __init__(self, uid: int, descriptor: int, path: Path) -> None:
        self.uid = uid
        self.descriptor = descriptor
        self._path = path

    def release(self, unlink: bool = True) -> None:
        """Let go of the uid (its holders' other copies of the lock still hold it).

        Unlink the lock file only once no copy is held elsewhere: otherwise another server could
        lock a new file of the same name while the old one is still held.
        """
        if self.descriptor < 0:
            return
        if unlink:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
        os.close(self.descriptor)
        self.descriptor = -1


@dataclass(frozen=True, slots=True)
class StepUids:
    """The range uids are handed out from, and the directory of their locks."""

    first: int
    last: int
    directory: Path = LOCK_DIRECTORY

    def take(self) -> HeldUid:
        """A uid no other step on the host holds and no process runs as; OSError if none is."""
        self._ensure_directory()
        count = self.last - self.first + 1
        # From a random place: a uid just let go of is rarely the next one given out, so what a
        # step leaves outside its directory (in /tmp, say) rarely meets the next step of its uid.
        start = random.randrange(count)
        for offset in range(count):
            uid = self.first + (start + offset) % count
            if (held := self._try(uid)) is not None:
                return held
        raise OSError(f"every uid of RUNWIRE_STEP_UIDS ({self.first}-{self.last}) is in use")

    def _try(self, uid: int) -> HeldUid | None:
        path = self.directory / str(uid)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            descriptor, fresh = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
        except FileExistsError:
            try:
                descriptor, fresh = os.open(path, flags), False
            except FileNotFoundError:
                return None  # let go of just now: another round will find it
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Its holder may have unlinked it between our open and our lock: then another
            # server may be locking a new file of that name, and this lock means nothing.
            if os.fstat(descriptor).st_ino != os.stat(path, follow_symlinks=False).st_ino:
                raise BlockingIOError
            if not fresh and uid_in_use(uid):
                raise BlockingIOError  # left by a crash, and its processes still run
        except (BlockingIOError, FileNotFoundError):
            os.close(descriptor)
            return None
        except BaseException:
            os.close(descriptor)
            raise
        return HeldUid(uid, descriptor, path)

    def _ensure_directory(self) -> None:
        """Ours and closed to others: whoever could write it could take or fake uids."""
        with contextlib.suppress(FileExistsError):
            self.directory.mkdir(mode=0o700, parents=True)
        found = os.lstat(self.directory)
        if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
            raise PermissionError(
                f"the step uid locks' directory {self.directory} is not a directory owned by"
                " the server's user"
            )
        if stat.S_IMODE(found.st_mode) & 0o077:
            os.chmod(self.directory, 0o700)


def remove_stale_locks(directory: Path = LOCK_DIRECTORY) -> int:
    """Unlink the lock files of uids no one holds and no process runs as; how many.

    What servers killed before they let go of their steps' uids left (their reapers' copies
    went with the steps' processes). Run after the leftovers of dead servers are ended.
    """
    try:
        names = [name for name in os.listdir(directory) if name.isdigit()]
    except OSError:
        return 0  # none yet, or not ours (a server that does not run as root)
    if not names:
        return 0
    running = uids_in_use()
    removed = 0
    for name in names:
        path = directory / name
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if int(name) not in running:
                # Whoever opened it meanwhile finds, once it has the lock, that it is unlinked.
                os.unlink(path)
                removed += 1
        except OSError:
            pass  # held: a step of a live server has it
        finally:
            os.close(descriptor)
    return removed


def uids_in_use() -> set[int]:
    """Every uid (real, effective, saved or fs) a process in this pid namespace runs as."""
    found: set[int] = set()
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/status", "rb") as file:
                status = file.read()
        except OSError:
            continue  # gone meanwhile
        start = status.find(b"\nUid:")
        if start >= 0:
            found.update(map(int, status[start + 5 : status.find(b"\n", start + 1)].split()))
    return found


def uid_in_use(uid: int) -> bool:
    """Whether a process (in this pid namespace) runs as `uid`: real, effective, saved or fs."""
    return uid in uids_in_use()


def accounts_in(first: int, last: int) -> list[str]:
    """The accounts (of the user database that can be listed) whose uid is in the range."""
    return [entry.pw_name for entry in pwd.getpwall() if first <= entry.pw_uid <= last]


def mapped(first: int, last: int) -> bool:
    """Whether this process's user namespace has every uid and gid of the range (a container's
    may map only 65,536 of them, and setuid to an unmapped one fails)."""
    for kind in ("uid", "gid"):
        try:
            with open(f"/proc/self/{kind}_map") as file:
                lines = [tuple(map(int, line.split())) for line in file if line.strip()]
        except OSError:
            return True  # no /proc: nothing to tell; a failing switch fails the step
        if not any(inside <= first and last < inside + count for inside, _, count in lines):
            return False
    return True
