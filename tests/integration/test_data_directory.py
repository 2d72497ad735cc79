"""The data directory is the server's alone: steps (another user) cannot read what is in it."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

from runwire.core import Core
from runwire.settings import Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_data_directory_is_private_and_an_old_open_one_is_tightened(
    tmp_path: Path,
) -> None:
    fresh = Settings(
        data_dir=tmp_path / "new",
        bus_url=f"memory://{uuid.uuid4().hex}",
        load_examples=False,
        runner_enabled=False,
    )
    async with Core.running(fresh):
        pass
    assert _mode(fresh.data_dir) == 0o700
    assert _mode(fresh.data_dir / "runwire.sqlite") == 0o600
    assert _mode(fresh.admin_token_file) == 0o600

    # As an older version left it: the directory readable by every local user.
    fresh.data_dir.chmod(0o755)
    async with Core.running(fresh):
        assert _mode(fresh.data_dir) == 0o700
