"""The confinement of process steps, resolved from settings: environment, user, directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.support.steps import RecordingContext

from runwire.runner.steps import confinement as confinement_module
from runwire.runner.steps.confinement import Confinement
from runwire.settings import DEFAULT_STEP_UIDS, Settings

SERVER_ENV = {
    "PATH": "/opt/tools/bin:/usr/bin",
    "LANG": "C.UTF-8",
    "LC_TIME": "en_GB.UTF-8",
    "TZ": "UTC",
    "RUNWIRE_DATABASE_URL": "postgresql://postgres@127.0.0.1/runwire",
    "RUNWIRE_DATA_DIR": "/srv/runwire/data",
    "AWS_SECRET_ACCESS_KEY": "server-only",
    "HOME": "/root",
    "HTTP_PROXY": "http://proxy:3128",
}


def confinement(**settings: object) -> Confinement:
    return Confinement.from_settings(Settings(step_user="", **settings), SERVER_ENV)  # type: ignore[arg-type]


def test_a_step_gets_the_allowlist_its_env_and_its_secrets_and_nothing_else() -> None:
    context = RecordingContext(secrets={"API_KEY": "s3cret", "SHARED": "from-secret"})
    env = confinement().environment(
        Path("/steps/a"), {"GREETING": "hi", "SHARED": "from-env"}, context.secrets
    )
    user = confinement().own_user.name
    assert env == {
        "PATH": "/opt/tools/bin:/usr/bin",
        "LANG": "C.UTF-8",
        "LC_TIME": "en_GB.UTF-8",
        "TZ": "UTC",
        "HOME": "/steps/a",
        "TMPDIR": "/steps/a",
        "USER": user,
        "LOGNAME": user,
        "GREETING": "hi",
        "API_KEY": "s3cret",
        "SHARED": "from-secret",  # a named secret wins over the declared env
    }


def test_operators_may_pass_more_server_variables_but_not_settings() -> None:
    env = confinement(step_pass_env=("HTTP_PROXY",)).environment(Path("/s"), None, {})
    assert env["HTTP_PROXY"] == "http://proxy:3128"
    with pytest.raises(ValueError, match="RUNWIRE_STEP_PASS_ENV"):
        Settings(step_pass_env=("RUNWIRE_DATABASE_URL",))
    assert Settings.from_env({"RUNWIRE_STEP_PASS_ENV": "HTTP_PROXY, NO_PROXY"}).step_pass_env == (
        "HTTP_PROXY",
        "NO_PROXY",
    )


def test_without_a_path_the_step_gets_the_system_one() -> None:
    found = Confinement.from_settings(Settings(step_user=""), {"RUNWIRE_PORT": "1"})
    assert found.environment(Path("/s"), None, {}) == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/s",
        "TMPDIR": "/s",
        "USER": found.own_user.name,
        "LOGNAME": found.own_user.name,
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="the default step user applies to root servers")
@pytest.mark.skipif(os.geteuid() != 0, reason="the range applies to root servers")
def test_a_root_server_runs_each_step_as_a_uid_of_its_own_by_default() -> None:
    found = Confinement.from_settings(Settings())
    assert found.user is None
    assert found.uids is not None
    assert (found.uids.first, found.uids.last) == DEFAULT_STEP_UIDS
    # Named, it is that account for every step (shared); empty, the server's own user.
    named = Confinement.from_settings(Settings(step_user="nobody"))
    assert named.uids is None
    assert named.user is not None
    assert named.runs_as.uid == 65534
    assert Confinement.from_settings(Settings(step_user="")).user is None
    assert Confinement.from_settings(Settings(step_user="")).uids is None
    assert Confinement.from_settings(Settings(step_user="root")).user is None  # its own


@pytest.mark.skipif(os.geteuid() != 0, reason="the range applies to root servers")
def test_a_uid_range_holding_an_account_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match=r"RUNWIRE_STEP_UIDS=65000-65534: accounts .*nobody"):
        Confinement.from_settings(Settings(step_uids=(65000, 65534)))


@pytest.mark.skipif(os.geteuid() != 0, reason="the range applies to root servers")
def test_where_the_default_range_does_not_exist_steps_share_nobody_and_the_log_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A container whose user namespace maps only some uids (/proc/self/uid_map): the server
    # must still start on the defaults; a range chosen explicitly must exist.
    monkeypatch.setattr(confinement_module, "mapped", lambda first, last: False)
    found = Confinement.from_settings(Settings())
    assert found.uids is None
    assert found.runs_as.uid == 65534
    assert "steps run as `nobody`" in caplog.text
    with pytest.raises(ValueError, match=r"RUNWIRE_STEP_UIDS=3000000000-3000000009: not all"):
        Confinement.from_settings(Settings(step_uids=(3000000000, 3000000009)))


def test_the_uid_range_setting_is_checked() -> None:
    parsed = Settings.from_env({"RUNWIRE_STEP_UIDS": " 3000000000-3000000009 "}).step_uids
    assert parsed == (3000000000, 3000000009)
    assert Settings.from_env({}).step_uids == DEFAULT_STEP_UIDS == (2130706432, 2130771967)
    for bad in ("1000", "a-b", "-5"):
        with pytest.raises(ValueError, match=r"RUNWIRE_STEP_UIDS=.*expected FIRST-LAST"):
            Settings.from_env({"RUNWIRE_STEP_UIDS": bad})
    for first, last in ((0, 10), (20, 10), (60000, 70000), (1, 2**32 - 1)):
        with pytest.raises(ValueError, match=f"RUNWIRE_STEP_UIDS={first}-{last}"):
            Settings(step_uids=(first, last))


def test_bad_step_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RUNWIRE_STEP_USER='no-such-user-x': no such user"):
        Confinement.from_settings(Settings(step_user="no-such-user-x"))
    with pytest.raises(ValueError, match="RUNWIRE_STEP_DIR"):
        confinement(data_dir=tmp_path, step_dir=tmp_path / "steps")
    with pytest.raises(ValueError, match="RUNWIRE_STEP_SANDBOX"):
        Settings.from_env({"RUNWIRE_STEP_SANDBOX": "docker"})
