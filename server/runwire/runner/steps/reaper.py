"""The step reaper: runs one step's command and ends with every process the command started.

The shell step starts this file, not the command, as
`python -I -S reaper.py MARKER STATUS_FD PARENT_PID CREDENTIALS [TARGET=SOURCE...] -- ARGV...`:
standard library only and no
`site`, so it starts in a few milliseconds, and it imports nothing of Runwire. It

- makes itself a child subreaper, so every descendant that is orphaned (`setsid`, a double fork,
  a daemon) is reparented to it instead of to init: all the command's processes stay below it;
- asks for SIGTERM when its parent (the server) dies, even by SIGKILL, and checks the parent is
  still there after asking (the setting is lost on a change of credentials, so it is made here,
  after the exec, whichever user the server started this as);
- forks and execs ARGV in a session and process group of its own (as CREDENTIALS, `UID:GID`,
  if not `-`: then the command cannot signal its reaper), with stdin, stdout and stderr
  inherited (output goes straight to the server's pipes) and MARKER (`RUNWIRE_STEP=…`) added to
  its environment, so a server can find what a dead predecessor's steps left; each descriptor
  SOURCE it was given is the command's descriptor TARGET (a small, fixed number that `sh` can
  name, as in `>&3`), and the reaper keeps no copy of it; any other descriptor it inherited (the
  lock on the step's own uid, step_uids.py) it keeps to itself until it exits, when no process
  of the step is left: the command gets none;
- writes one line per event to STATUS_FD: `started PID`, `error HEXTEXT` (the exec failed,
  and why), `stopping` (a stop, SIGINT or SIGTERM, came while the leader still ran), `exited
  CODE` (the command's leader ended: its code, or minus the signal that killed it); then waits
  for the leader's descendants, and exits once none is left. A leader that exited before a stop
  came is reported as exited, without `stopping`: it ended on its own;
- on SIGINT passes SIGINT to the command's process group (the polite stop); on SIGTERM (the
  server's "end it now", or the server's death) SIGKILLs every descendant, over and over until
  none is left, and exits. Its stdin and stdout are /dev/null once the command runs; stderr stays
  the step's, where a failure of this script would show.
"""

# No `from __future__` and no contextlib: each import is milliseconds of every step's start.
import ctypes
import os
import select
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# How often a reaper that is ending everything looks for descendants again, and how often an
# idle one checks that its parent is still there (besides the parent-death signal).
KILL_ROUND_SECONDS = 0.02
PARENT_CHECK_SECONDS = 1.0


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False  # not Linux: descendants that leave the group are not contained


def _stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, start time) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[19])


def _descendants(root: int) -> list[tuple[int, int]]:
    """(pid, start time) of every descendant of `root`, through /proc parent links."""
    children: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(name)):
            children.setdefault(stat[0], []).append((int(name), stat[1]))
    found, pending = [], [root]
    while pending:
        for child in children.get(pending.pop(), ()):
            found.append(child)
            pending.append(child[0])
    return found


def _kill(pid: int, start_time: int) -> None:
    """SIGKILL `pid` if it is still the process that started at `start_time`."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:
        fd = -1
    try:
        # The pidfd pins the process: a start time that still matches means no pid reuse.
        stat = _stat(str(pid))
        if stat is not None and stat[1] == start_time:
            if fd >= 0:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        if fd >= 0:
            os.close(fd)


def _exec(argv: list[str], env: dict[str, str]) -> None:
    """os.execvpe without its lazy `import warnings`, which a user changed to may not read."""
    if os.sep in argv[0]:
        os.execve(argv[0], argv, env)
    last: OSError = FileNotFoundError(2, "No such file or directory")
    first_other: OSError | None = None
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.execve(os.path.join(directory, argv[0]), argv, env)
        except (FileNotFoundError, NotADirectoryError) as error:
            last = error
        except OSError as error:  # as execvp: report a found file that cannot run first
            last = error
            first_other = first_other or error
    raise first_other or last


def _describe_start_error(error: BaseException, executable: str) -> str:
    """Why the exec failed, worded as subprocess's error for the same failure would be."""
    if isinstance(error, OSError) and error.errno:
        return f"{os.strerror(error.errno)}: {executable}"
    return str(error) or type(error).__name__


class Reaper:
    def __init__(self, status_fd: int, parent: int, given: list[int]) -> None:
        self.status_fd = status_fd
        self.parent = parent
        self.given = given
        self.leader = 0
        self.leader_ended = False
        self.stopping = False
        self.ending = False
        # Signals arrive as bytes on this pipe, so the loop waits on one descriptor.
        self.wakeup, wakeup_write = os.pipe()
        os.set_blocking(self.wakeup, False)
        os.set_blocking(wakeup_write, False)
        signal.set_wakeup_fd(wakeup_write)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(signum, lambda *_: None)

    def report(self, line: str) -> None:
        try:
            os.write(self.status_fd, line.encode() + b"\n")
        except OSError:
            self.ending = True  # nobody reads: the server is gone

    def signals(self) -> bytes:
        try:
            return os.read(self.wakeup, 256)
        except BlockingIOError:
            return b""

    def start(self, marker: str, credentials: str, argv: list[str]) -> None:
        error_read, error_write = os.pipe()  # close-on-exec: EOF alone means the exec worked
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                signal.set_wakeup_fd(-1)
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                    signal.signal(signum, signal.SIG_DFL)
                # Python ignores these; a command expects the defaults, as subprocess gives.
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
                if credentials != "-":
                    uid, gid = (int(part) for part in credentials.split(":"))
                    os.setgroups([])  # none of the reaper's supplementary groups
                    os.setgid(gid)
                    os.setuid(uid)
                for target in self.given:
                    os.set_inheritable(target, True)
                name, _, value = marker.partition("=")
                _exec(argv, {**os.environ, name: value})
            except BaseException as error:  # all of it goes to the server, then _exit
                os.write(error_write, _describe_start_error(error, argv[0]).encode())
            finally:
                os._exit(127)
        os.close(error_write)
        for target in self.given:
            # The command has its own copy: when it (and all it started) closes it, the reader
            # sees the end, and a reaper waiting for stragglers keeps nothing open for them.
            os.close(target)
        self.leader = pid
        failed = b""
        while chunk := os.read(error_read, 64):
            failed += chunk
        os.close(error_read)
        if failed:
            os.waitpid(pid, 0)
            self.leader_ended = True
            self.report(f"error {failed.hex()}")
        else:
            self.report(f"started {pid}")

    def reap(self) -> bool:
        """Collect ended children; whether any child is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.leader and not self.leader_ended:
                self.leader_ended = True
                self.report(f"exited {os.waitstatus_to_exitcode(status)}")

    def run(self) -> None:
        while self.reap() or not self.leader_ended:
            if self.ending:
                # Killed processes cannot fork; their children come to this reaper and are
                # found on the next round.
                for pid, start_time in _descendants(os.getpid()):
                    _kill(pid, start_time)
            timeout = KILL_ROUND_SECONDS if self.ending else PARENT_CHECK_SECONDS
            select.select([self.wakeup], [], [], timeout)
            for signum in self.signals():
                if signum in (signal.SIGINT, signal.SIGTERM) and not self.stopping:
                    # Reaped first: a leader that has exited, its SIGCHLD come with the stop,
                    # ended on its own, and the server must hear so (or it runs it again).
                    self.reap()
                    if not self.leader_ended:
                        self.stopping = True
                        self.report("stopping")
                if signum == signal.SIGTERM:
                    self.ending = True
                elif signum == signal.SIGINT and not self.leader_ended:
                    # The leader is not reaped yet, so its pid (the group's id) is not reused.
                    try:  # noqa: SIM105 - contextlib costs milliseconds to import
                        os.killpg(self.leader, signal.SIGINT)
                    except (ProcessLookupError, PermissionError):
                        pass
            if os.getppid() != self.parent:
                self.ending = True


def _give(status_fd: int, given: list[str]) -> tuple[int, list[int]]:
    """Move each given SOURCE descriptor to its TARGET; the status descriptor, and the targets.

    The targets stay close-on-exec here, so only the command (see `start`) inherits them.
    """
    pairs = [tuple(int(fd) for fd in item.split("=")) for item in given]
    targets = [target for target, _ in pairs]
    sources = {source for _, source in pairs}
    if status_fd in targets:
        status_fd = os.dup(status_fd)  # above every descriptor in use, so never a target
    for target, source in pairs:
        if target in sources and target != source:
            # A later source sits where this target goes: move it out of the way first.
            moved = os.dup(target)
            pairs = [(t, moved if s == target else s) for t, s in pairs]
            sources = {s for _, s in pairs}
    for target, source in pairs:
        if source != target:
            os.dup2(source, target, inheritable=False)
    for source in sources - set(targets):
        os.close(source)
    for target in targets:
        os.set_inheritable(target, False)
    return status_fd, targets


def _keep_to_itself(given: list[int]) -> None:
    """Every inherited descriptor but stdin, stdout, stderr and the given: close-on-exec."""
    try:
        inherited = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return  # no /proc: nothing beyond the status pipe and the given is passed there
    for fd in inherited:
        if fd > 2 and fd not in given:
            try:  # noqa: SIM105 - contextlib costs milliseconds to import
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, closed by now


def main(args: list[str]) -> int:
    marker, status_fd, parent, credentials, *rest = args
    given = rest[: rest.index("--")] if "--" in rest else []
    argv = rest[len(given) + 1 :]
    if "--" not in rest or not argv or not all("=" in item for item in given):
        usage = "MARKER STATUS_FD PARENT_PID CREDENTIALS [TARGET=SOURCE...] -- ARGV..."
        print(f"usage: {sys.argv[0]} {usage}", file=sys.stderr)
        return 2
    status, targets = _give(int(status_fd), given)
    _keep_to_itself(targets)
    reaper = Reaper(status, int(parent), targets)
    os.set_inheritable(reaper.status_fd, False)  # the command must not hold the status pipe
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != reaper.parent:
        return 0  # the server died before the parent-death signal was set: start nothing
    if signal.SIGTERM in reaper.signals():
        reaper.report("stopping")  # ended before the command started
        reaper.report(f"exited {-signal.SIGTERM}")
        return 0
    reaper.start(marker, credentials, argv)
    # The command has its own copies; these would only keep an input pipe from ending.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    reaper.run()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Nothing is buffered (reports are os.write): skip the interpreter's finalization.
    os._exit(code)
