"""Handing out a uid of its own to each step attempt: never one held elsewhere or in use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runwire.runner.steps.step_uids import StepUids, remove_stale_locks, uid_in_use

# Far above any account; no process runs as them here (checked where it matters).
FREE_UID = 2130771900


def test_two_held_uids_are_never_the_same_and_are_given_back_on_release(tmp_path: Path) -> None:
    uids = StepUids(FREE_UID, FREE_UID + 1, tmp_path / "locks")
    # Another server on the host: its own StepUids, the same directory.
    other = StepUids(FREE_UID, FREE_UID + 1, tmp_path / "locks")
    first, second = uids.take(), other.take()
    assert {first.uid, second.uid} == {FREE_UID, FREE_UID + 1}
    with pytest.raises(OSError, match=f"every uid of RUNWIRE_STEP_UIDS \\({FREE_UID}-"):
        uids.take()
    assert sorted(os.listdir(tmp_path / "locks")) == [str(FREE_UID), str(FREE_UID + 1)]
    first.release()
    assert os.listdir(tmp_path / "locks") == [str(second.uid)]  # let go of cleanly: unlinked
    again = uids.take()
    assert again.uid == first.uid
    again.release()
    second.release()
    second.release()  # twice is once
    assert os.listdir(tmp_path / "locks") == []


def test_the_lock_directory_is_closed_to_others(tmp_path: Path) -> None:
    (tmp_path / "locks").mkdir(mode=0o777)
    StepUids(FREE_UID, FREE_UID, tmp_path / "locks").take().release()
    assert (tmp_path / "locks").stat().st_mode & 0o777 == 0o700
    (tmp_path / "link").symlink_to(tmp_path / "locks")
    with pytest.raises(PermissionError, match="not a directory owned by the server's user"):
        StepUids(FREE_UID, FREE_UID, tmp_path / "link").take()


def test_a_copy_of_the_lock_in_another_process_holds_the_uid_until_it_exits(
    tmp_path: Path,
) -> None:
    # The step's reaper inherits the lock and holds it until its last process is gone, even
    # after the server let go of its own copy.
    uids = StepUids(FREE_UID, FREE_UID, tmp_path / "locks")
    held = uids.take()
    reaper = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        pass_fds=(held.descriptor,),
    )
    try:
        held.release(unlink=False)  # the reaper still holds it: the file must stay
        with pytest.raises(OSError, match="every uid"):
            uids.take()
    finally:
        assert reaper.stdin is not None
        reaper.stdin.close()
        reaper.wait(timeout=10)
    # Left by an unclean end: taken again once no process runs as it.
    assert not uid_in_use(FREE_UID)
    again = uids.take()
    assert again.uid == FREE_UID
    again.release()


def test_a_uid_left_behind_is_not_given_out_while_a_process_runs_as_it(tmp_path: Path) -> None:
    # A crash (server and reaper killed) leaves the lock file and may leave processes; this
    # test's own uid stands for a uid such processes run as.
    mine = os.getuid()
    assert uid_in_use(mine)
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    (locks / str(mine)).touch()
    with pytest.raises(OSError, match="every uid"):
        StepUids(mine, mine, locks).take()
    # A uid never handed out (no file) is free: only a clean release removes a file, and that
    # comes after the step's last process.
    (locks / str(mine)).unlink()
    fresh = StepUids(mine, mine, locks).take()
    assert fresh.uid == mine
    fresh.release()


def test_locks_left_by_dead_servers_are_removed_unless_held_or_in_use(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    uids = StepUids(FREE_UID, FREE_UID + 1, locks)
    held = uids.take()  # a live server's step
    free = FREE_UID + 1 if held.uid == FREE_UID else FREE_UID
    (locks / str(free)).touch()  # left by a server killed with its step's processes ended
    (locks / str(os.getuid())).touch()  # left, and a process still runs as it
    assert remove_stale_locks(locks) == 1
    assert sorted(os.listdir(locks)) == sorted([str(held.uid), str(os.getuid())])
    held.release()
    assert remove_stale_locks(tmp_path / "none") == 0
