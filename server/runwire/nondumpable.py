"""Keeping a server's memory and environment from processes of its own uid."""

from __future__ import annotations

import ctypes

PR_SET_DUMPABLE = 4


def keep_memory_private() -> bool:
    """Make this process non-dumpable (Linux); whether it is now.

    Then a process of the same uid that is not privileged (a step of a server that does not run
    as root) can neither read this one's `/proc/<pid>/environ` (where RUNWIRE_DATABASE_URL may
    be), `mem`, `fd` and the like, nor ptrace it; and it dumps no core. The process itself
    still reads its own /proc/self. A program it execs is dumpable again.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False  # not Linux
