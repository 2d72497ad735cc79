"""Least privilege for process steps: environment, working directory, user and sandbox.

A step runs someone's command on our machine. It gets a clean environment (a short allowlist,
what the step declares, the secrets it names), a directory of its own for the attempt, when the
server runs as root an unprivileged uid of its own (step_uids.py: no other step running can read
its processes' environment, where its secrets are) or the account RUNWIRE_STEP_USER names, and,
opted into, a bubblewrap sandbox with no network, a read-only system and the data directory
hidden. `Confinement` is resolved from the settings once, at start (so a wrong user or range or a
missing `bwrap` stops the server, not a step), and `prepare` gives the spawn of one attempt
everything it needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from runwire.runner.steps.base import StepContext
from runwire.runner.steps.containment import server_identity, server_is_gone
from runwire.runner.steps.step_uids import HeldUid, StepUids, accounts_in, mapped
from runwire.settings import DEFAULT_STEP_UIDS, Settings

logger = logging.getLogger(__name__)

PASSED_ENV = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "TERM"})
"""Server variables a step sees (with `LC_*`): how to find programs and speak the locale."""

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
"""PATH when the server has none."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class StepUser:
    """The account a step's process runs as."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class Spawn:
    """What one attempt's process is started with: argv prefix, environment, directory."""

    # The user is changed by this prefix (setpriv), not by subprocess's user=/group=: uvloop,
    # which the server runs on, refuses those arguments.
    argv_prefix: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    directory: Path
    held: HeldUid | None = None  # the attempt's own uid, while it has one

    @property
    def pass_fds(self) -> tuple[int, ...]:
        """What the step's reaper must inherit: the uid's lock, which it holds until the step's
        last process is gone (even if the server is gone before)."""
        return (self.held.descriptor,) if self.held and self.held.descriptor >= 0 else ()

    def remove(self, processes_gone: bool = True) -> None:
        """Delete the attempt's directory and whatever the step left in it; let go of its uid.

        `processes_gone`: the reaper said it ended with every process of the step (it exited,
        not killed); only then is no other copy of the uid's lock held.
        """
        try:
            _remove_tree(self.directory)
        finally:
            if self.held is not None:
                self.held.release(unlink=processes_gone)


@dataclass(frozen=True, slots=True)
class Confinement:
    """How process steps are confined, resolved from the settings."""

    root: Path
    user: StepUser | None  # one account for every step; None: the server's own user or `uids`
    own_user: StepUser
    setpriv: str | None  # the program that drops to `user` or an attempt's uid
    pass_env: frozenset[str]
    bwrap: str | None  # the sandbox program, when RUNWIRE_STEP_SANDBOX=bubblewrap
    hidden: tuple[Path, ...]  # the data directory (and a SQLite file's elsewhere)
    server_env: Mapping[str, str]
    uids: StepUids | None = None  # a uid of its own for each attempt, from this range

    @classmethod
    def from_settings(
        cls, settings: Settings, server_env: Mapping[str, str] | None = None
    ) -> Confinement:
        """Resolve user, directory and sandbox; ValueError naming the setting when impossible."""
        own = _user_by_uid(os.geteuid())
        wanted = settings.step_user
        # Unset, as root: a uid of its own per attempt. A name: that account, shared by every
        # step (they can read each other's environment). Empty: the server's own user.
        uids = _step_uids(settings) if wanted is None and os.geteuid() == 0 else None
        if wanted is None and os.geteuid() == 0 and uids is None:
            wanted = "nobody"  # the default range is unusable here: one shared account, as before
        user = _user_named(wanted) if wanted else None
        if user is not None and user.uid == own.uid:
            user = None
        if user is not None and os.geteuid() != 0:
            raise ValueError(
                f"RUNWIRE_STEP_USER={wanted!r}: only a server running as root can run steps as"
                " another user; leave it empty to run them as the server's user"
            )
        setpriv = None
        if user is not None or uids is not None:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                setting = "RUNWIRE_STEP_UIDS" if wanted is None else f"RUNWIRE_STEP_USER={wanted!r}"
                raise ValueError(
                    f"{setting} needs `setpriv` on PATH (Debian: util-linux);"
                    " or set RUNWIRE_STEP_USER= to run steps as the server's user"
                )
        root = Path(os.path.abspath(settings.step_dir))
        data = Path(os.path.abspath(settings.data_dir))
        if root == data or data in root.parents:
            raise ValueError(
                f"RUNWIRE_STEP_DIR={str(settings.step_dir)!r} must be outside the data directory,"
                " which steps may not read"
            )
        # Probed as the first uid of the range: any other is alike (mapped, no account).
        probe_user = _uid_user(uids.first) if uids is not None else user
        bwrap = _bubblewrap(setpriv, probe_user) if settings.step_sandbox else None
        return cls(
            root=root,
            user=user,
            own_user=own,
            setpriv=setpriv,
            pass_env=PASSED_ENV | frozenset(settings.step_pass_env),
            bwrap=bwrap,
            hidden=_server_files(settings),
            server_env=dict(os.environ if server_env is None else server_env),
            uids=uids,
        )

    @property
    def runs_as(self) -> StepUser:
        """Who every step runs as, when that is one account (not a uid per attempt)."""
        return self.user or self.own_user

    def environment(
        self,
        home: Path,
        declared: Mapping[str, str] | None,
        secrets: Mapping[str, str],
        user: StepUser | None = None,
    ) -> dict[str, str]:
        """The allowlisted server variables, the step's home, its declared env, its secrets."""
        env = {
            name: value
            for name, value in self.server_env.items()
            if name in self.pass_env or name.startswith("LC_")
        }
        env.setdefault("PATH", DEFAULT_PATH)
        runs_as = user or self.runs_as
        env |= {
            "HOME": str(home),
            "TMPDIR": str(home),
            "USER": runs_as.name,
            "LOGNAME": runs_as.name,
        }
        # What the step asked for wins over the defaults; a secret it names wins over both.
        return env | dict(declared or {}) | dict(secrets)

    def prepare(
        self,
        context: StepContext,
        declared_env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        network: bool = False,
    ) -> Spawn:
        """Create the attempt's directory and say how to start its process (OSError if not).

        With a uid per attempt, the Spawn holds the uid until `remove`, and its reaper must
        inherit `pass_fds`.
        """
        held = self.uids.take() if self.uids is not None else None
        user = _uid_user(held.uid) if held is not None else self.user
        directory: Path | None = None
        try:
            directory = self._attempt_directory(context, user)
            workdir = self._working_directory(directory, cwd, user)
            env = self.environment(directory, declared_env, context.secrets, user)
            prefix: tuple[str, ...] = ()
            if user is not None:
                prefix, env = self._switch_user(directory, env, user)
            if self.bwrap:
                prefix += self._sandbox(directory, workdir, network)
        except BaseException:
            if directory is not None:
                _remove_tree(directory)
            if held is not None:
                held.release()
            raise
        return Spawn(argv_prefix=prefix, env=env, cwd=str(workdir), directory=directory, held=held)

    def _switch_user(
        self, directory: Path, env: Mapping[str, str], user: StepUser
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        """setpriv, then a shell that takes the step's environment from a file and execs.

        Whatever starts as root gets a fixed environment: the step's own (LD_PRELOAD, say)
        would run its code as root before the switch. Not in argv either: /proc/<pid>/cmdline
        is world-readable. So the file is written 0600 for the step user in its 0700
        directory, and deleted by the shell (already the step user) before the command runs.
        """
        if bad := sorted(name for name in env if not _ENV_NAME.fullmatch(name)):
            raise ValueError(f"environment names must be letters, digits and _: {bad}")
        env_file = directory / ".runwire-env"
        descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "w") as file:
            os.fchown(file.fileno(), user.uid, user.gid)
            file.writelines(f"{name}={shlex.quote(value)}\n" for name, value in env.items())
        # Opened and unlinked before it is read, so no program (rm) runs with the step's env.
        # Descriptor 9, not 3: low ones may be the step's own (the report channel's is 3).
        trampoline = 'exec 9<"$0" && rm -f -- "$0" && set -a && . /dev/fd/9 && exec 9<&- "$@"'
        return (
            *_switch_to(self.setpriv, user),
            "/bin/sh",
            "-c",
            trampoline,
            str(env_file),
        ), {"PATH": DEFAULT_PATH}

    def _attempt_directory(self, context: StepContext, user: StepUser | None) -> Path:
        self._ensure_root()
        # Under a directory of this server's, so that a server killed with `kill -9` leaves
        # its steps' directories where the next one can tell whose they were.
        owner = self.root / _SERVER_DIRECTORY.format(*server_identity().split(":"))
        with contextlib.suppress(FileExistsError):
            owner.mkdir(mode=0o711)
        safe_key = "".join(c if c.isalnum() or c in "-_" else "_" for c in context.step_key)
        prefix = f"{context.execution_id[:36]}-{safe_key[:40]}-{context.attempt}-"
        directory = Path(tempfile.mkdtemp(prefix=prefix, dir=owner))  # 0700, ours
        if user is not None:
            os.chown(directory, user.uid, user.gid)
        return directory

    def _ensure_root(self) -> None:
        """The directory of step directories: ours, 0711 (steps reach only their own)."""
        with contextlib.suppress(FileExistsError):
            self.root.mkdir(mode=0o711, parents=True)
        # It may sit under a world-writable /tmp: refuse one someone else made or linked.
        found = os.lstat(self.root)
        if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
            raise PermissionError(
                f"step directory root {self.root} is not a directory owned by the server's user"
            )
        if stat.S_IMODE(found.st_mode) != 0o711:
            os.chmod(self.root, 0o711)

    def _working_directory(self, directory: Path, cwd: str | None, user: StepUser | None) -> Path:
        """No `cwd`: the attempt's directory; relative: created inside it; absolute: as given."""
        if cwd is None:
            return directory
        if os.path.isabs(cwd):
            workdir = Path(os.path.abspath(cwd))
            real = Path(os.path.realpath(cwd))  # a link into the data is the data
            if any(real == hidden or hidden in real.parents for hidden in self.hidden):
                raise ValueError(f"cwd {cwd!r} is inside the server's data directory")
            return workdir
        if ".." in PurePosixPath(cwd).parts:
            raise ValueError(f"cwd {cwd!r} must not leave the step's directory")
        workdir = directory
        for part in PurePosixPath(cwd).parts:
            workdir /= part
            with contextlib.suppress(FileExistsError):
                workdir.mkdir(mode=0o700)
            if user is not None:
                os.chown(workdir, user.uid, user.gid)
        return workdir

    def _sandbox(self, directory: Path, workdir: Path, network: bool) -> tuple[str, ...]:
        """bubblewrap: fresh namespaces, read-only system, own dir writable, server's hidden."""
        assert self.bwrap is not None
        argv = [self.bwrap, "--die-with-parent", "--unshare-all"]
        if network:
            argv.append("--share-net")
        argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        # Empty over what holds other steps' and services' files and sockets: /tmp (other
        # steps, gate files), /run (e.g. the Postgres socket, reachable without a network).
        for hidden in ("/tmp", "/var/tmp", "/run", *map(str, self.hidden), str(self.root)):
            if os.path.isdir(hidden):
                argv += ["--tmpfs", hidden]
        resolv = Path("/etc/resolv.conf")
        if network and resolv.is_symlink() and resolv.resolve().is_relative_to("/run"):
            argv += ["--ro-bind", str(resolv.resolve()), str(resolv.resolve())]
        argv += ["--bind", str(directory), str(directory)]
        if workdir != directory and directory not in workdir.parents:
            # A directory the step named (a checkout, say): writable as far as its modes allow.
            argv += ["--bind", str(workdir), str(workdir)]
        argv += ["--chdir", str(workdir), "--"]
        return tuple(argv)


def _server_files(settings: Settings) -> tuple[Path, ...]:
    """Directories no step may use as cwd and the sandbox empties: the server's own files."""
    hidden = [Path(os.path.realpath(settings.data_dir))]
    url = settings.effective_database_url
    if url.startswith("sqlite:///"):
        folder = Path(os.path.realpath(url[len("sqlite:///") :])).parent
        if folder not in hidden and folder != Path("/"):
            hidden.append(folder)
    return tuple(hidden)


def _switch_to(setpriv: str | None, user: StepUser | None) -> tuple[str, ...]:
    """setpriv: become `user` with its group only, never to gain privileges again.

    no_new_privs keeps setuid programs (sudo, su) from taking the step back to root.
    """
    if user is None:
        return ()
    assert setpriv is not None
    return (
        setpriv,
        f"--reuid={user.uid}",
        f"--regid={user.gid}",
        "--clear-groups",
        "--no-new-privs",
        "--",
    )


def _bubblewrap(setpriv: str | None, user: StepUser | None) -> str:
    """The `bwrap` program, once seen to work as the step user (user namespaces may be off)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ValueError(
            "RUNWIRE_STEP_SANDBOX=bubblewrap but no `bwrap` on PATH"
            " (Debian: apt-get install bubblewrap)"
        )
    probe = [*_switch_to(setpriv, user), bwrap, "--unshare-all", "--ro-bind", "/", "/", "true"]
    try:
        subprocess.run(probe, capture_output=True, check=True, timeout=10, env={})
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        raise ValueError(
            f"RUNWIRE_STEP_SANDBOX=bubblewrap: bwrap cannot run here:"
            f" {detail.decode(errors='replace').strip() or error}"
        ) from None
    return bwrap


def _step_uids(settings: Settings) -> StepUids | None:
    """The range of per-attempt uids, checked: no account's, and usable in this namespace.

    None when the default range is not (a container that maps only some uids): the server
    still starts, as `make run` must on any machine, and says so; a range set explicitly that
    is not usable stops it."""
    first, last = settings.step_uids
    described = f"RUNWIRE_STEP_UIDS={first}-{last}"
    problem = None
    if taken := accounts_in(first, last):
        problem = f"{described}: accounts have uids in it ({', '.join(taken[:5])})"
    elif not mapped(first, last):
        problem = (
            f"{described}: not all of them exist in this user namespace (/proc/self/uid_map,"
            " gid_map); choose a range inside it, or set RUNWIRE_STEP_USER"
        )
    if problem is None:
        return StepUids(first, last)
    if settings.step_uids != DEFAULT_STEP_UIDS:
        raise ValueError(problem)
    logger.warning(
        "%s; steps run as `nobody`, one account shared by all of them, so a step can read a"
        " concurrent step's environment (its secrets)",
        problem,
    )
    return None


def _uid_user(uid: int) -> StepUser:
    """A per-attempt uid as a user: no account, its name the number, its group the same."""
    return StepUser(str(uid), uid, uid)


def _user_named(name: str) -> StepUser:
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise ValueError(f"RUNWIRE_STEP_USER={name!r}: no such user") from None
    return StepUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _user_by_uid(uid: int) -> StepUser:
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:  # a container's arbitrary uid has no passwd entry
        return StepUser(str(uid), uid, os.getegid())
    return StepUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


_SERVER_DIRECTORY = "server-{}-{}-{}"
_SERVER_DIRECTORY_NAME = re.compile(r"server-(\d+)-(\d+)-(\d+)")


def remove_directories_of_dead_servers(root: Path) -> int:
    """Remove the step directories of servers no longer running; how many servers' there were.

    A server killed before its steps ended leaves them. Live servers' and other entries stay.
    """
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0  # no root yet: no step ran here
    removed = 0
    for entry in entries:
        named = _SERVER_DIRECTORY_NAME.fullmatch(entry.name)
        if (
            named
            and entry.is_dir(follow_symlinks=False)
            and server_is_gone(":".join(named.groups()))
        ):
            _remove_tree(Path(entry.path))
            removed += 1
    return removed


def _remove_tree(directory: Path) -> None:
    def writable_then_retry(function: Callable[..., Any], path: str, _: Any) -> None:
        # A step may leave read-only directories; a non-root server must open them first.
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o700)
            function(path)

    try:
        shutil.rmtree(directory, onerror=writable_then_retry)
    except OSError as error:
        logger.warning("could not remove step directory %s: %s", directory, error.strerror)
