"""A real `runwire serve` (or `runwire worker`) in a subprocess, on SQLite or a fresh Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.support import postgres
from tests.support.forkserver import ForkServer, ServerProcess

# Where each backend keeps executions, and which bus carries notices between processes.
BACKENDS = ("sqlite", "postgres", "redis")
# The API and client tests' default (tests/conftest.py): the embedded SQLite and memory bus.
DEFAULT_BACKEND = "sqlite"


@dataclass(frozen=True)
class Server:
    url: str
    env: dict[str, str]
    log: Path
    process: ServerProcess
    # The admin token the first start wrote to the data directory (or the one given).
    token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def graphql_http(self) -> str:
        return f"{self.url}/graphql"

    @property
    def graphql_ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Tests (and CI) run as root, so a server's steps would each run as a uid of its own by default:
# they could not read the gate files tests leave in pytest's tmp_path (/tmp/pytest-of-root is
# 0700) nor run this venv's Python (under /root). Test servers keep steps as the server's user;
# the default is checked by tests/api/test_step_privileges.py, which overrides this.
OWN_USER_STEPS = {"RUNWIRE_STEP_USER": ""}


@contextlib.contextmanager
def running_server(
    backend: str,
    directory: Path,
    settings: Mapping[str, str | None] | None = None,
    database_url: str | None = None,
    token: str | None = None,
    command: str = "serve",
) -> Iterator[Server]:
    """Start a server for `backend`, wait for /health, and stop it (SIGTERM) afterwards.

    `settings` are variables of the server's environment; None leaves one out (unset).

    Given a `database_url` (from `database`: migrated already), several servers share one
    Postgres database; the ones after the first get the first one's admin `token`, since only
    the first start on an empty database creates one. `command` is `serve` or `worker` (which
    answers /health only).
    """
    with contextlib.ExitStack() as stack:
        if database_url is None:
            database_url = stack.enter_context(database(backend))
        port = free_port()
        env = {
            **os.environ,
            "RUNWIRE_DATA_DIR": str(directory / "data"),
            "RUNWIRE_PORT": str(port),
            "RUNWIRE_GRACE_SECONDS": "1",
            # A server stopped with executions running hands them over after this drain.
            "RUNWIRE_DRAIN_SECONDS": "1",
            **({"RUNWIRE_DATABASE_URL": database_url} if database_url else {}),
            "RUNWIRE_BUS_URL": {
                "sqlite": "memory://",
                "postgres": database_url or "",
                "redis": postgres.REDIS_URL,
            }[backend],
            **OWN_USER_STEPS,
        }
        for name, value in (settings or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        directory.mkdir(parents=True, exist_ok=True)
        log = directory / f"server-{port}.log"
        process = ForkServer.start_server(env, log, command)
        server = Server(url=f"http://127.0.0.1:{port}", env=env, log=log, process=process)
        try:
            _wait_healthy(server)
            if token is None:
                token = (directory / "data" / "admin-token").read_text().strip()
            yield dataclasses.replace(server, token=token)
        finally:
            process.send_signal(signal.SIGTERM)
            if not process.wait(timeout=20):
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=20)


@contextlib.contextmanager
def running_pair(
    backend: str, directory: Path, runner_settings: dict[str, str] | None = None
) -> Iterator[tuple[Server, Server]]:
    """A runner process and an API-only process (no runner) sharing one database and bus.

    They start together, so the pair is up in about one server's start-up: bootstrap is safe for
    processes starting together (tests/api/test_tokens.py), and whichever of them bootstraps the
    empty database writes the admin token that both get.
    """
    with database(backend) as url, contextlib.ExitStack() as stack:
        managers = [
            running_server(backend, directory / "a", runner_settings, database_url=url, token=""),
            running_server(
                backend, directory / "b", {"RUNWIRE_RUNNER": "false"}, database_url=url, token=""
            ),
        ]
        with ThreadPoolExecutor(len(managers)) as pool:
            starting = [pool.submit(manager.__enter__) for manager in managers]
        started = []
        for manager, future in zip(managers, starting, strict=True):
            if future.exception() is None:
                started.append(future.result())
                stack.push(manager.__exit__)
        for future in starting:
            future.result()  # a failed start fails the pair, the other one stopped on the way out
        (token_file,) = [
            written
            for written in (directory / name / "data" / "admin-token" for name in ("a", "b"))
            if written.exists()
        ]
        token = token_file.read_text().strip()
        runner, api_only = (dataclasses.replace(server, token=token) for server in started)
        yield runner, api_only


def _wait_healthy(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.exited():
            raise RuntimeError(f"server exited early:\n{server.log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(f"{server.url}/health", timeout=1)
            if response.status_code == 200 and response.json().get("status") == "ok":
                return
        # A forked server is up in a few tenths of a second: a coarse poll would add to each.
        time.sleep(0.02)
    raise RuntimeError(f"server not healthy after {timeout}s:\n{server.log.read_text()}")


@contextlib.contextmanager
def database(backend: str) -> Iterator[str | None]:
    """A fresh migrated Postgres database for `backend` (None for SQLite), dropped afterwards."""
    if backend == "sqlite":
        yield None
        return
    if backend == "redis":
        asyncio.run(postgres.redis_url())
    name = f"runwire_api_{secrets.token_hex(6)}"
    url = asyncio.run(postgres.create_database(name))
    try:
        yield url
    finally:
        asyncio.run(postgres.drop_database(name))
