"""docker-compose.yml run without Docker: its services' own commands as local processes.

Each Runwire service of the file (migrate, the API replicas, the workers) is started as its
Dockerfile ENTRYPOINT + `command` with its `environment`, in `depends_on` order, pointed at the
local Postgres (a fresh database) and Redis. Then what the file promises is checked: each health
check passes as written (and fails on a 503), an execution started through one API replica is
run by a worker and followed to its end through the other replica, and SIGTERM stops every
process cleanly within its `stop_grace_period`. The static checks (tests/support/compose.py)
are shown to catch each kind of rot on altered copies of the file.

In the normal suite, behind no marker: the live run takes about 6 s on 2 shared cores, well
under the ~30 s one test may take, and a file that rots must fail on every run that tests a
change, not only where someone selects a marker.
The bus is Redis on 127.0.0.1 with Runwire's fixed channel names, as in the other Redis tests:
notices are keyed by execution id and queue signals only wake runners, which then look in their
own database, so other tests' traffic on it does no harm.
"""

from __future__ import annotations

import asyncio
import copy
import http.server
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from tests.support import compose, postgres
from tests.support.compose import Service
from tests.support.graphql import definition, follow, gated_step, start
from tests.support.server import Server, free_port

README = compose.ROOT / "README.md"
COMPOSE = compose.load()
ENTRYPOINT = compose.entrypoint()
DELETE = object()


def test_the_file_describes_the_whole_topology() -> None:
    assert compose.problems(COMPOSE, ENTRYPOINT) == []


def test_what_the_readme_shows_matches_the_file() -> None:
    text = README.read_text() + compose.COMPOSE_FILE.read_text()
    named = re.findall(r"docker compose (?:exec|logs|run --rm|restart) ([\w-]+)", text)
    named += re.findall(r"--scale ([\w-]+)=", text)
    assert named
    assert set(named) <= set(COMPOSE["services"]), named
    published = re.findall(r"`([\w-]+)` on (127\.0\.0\.1:\d+)", README.read_text())
    assert published
    for service, address in published:
        ports = [str(p) for p in COMPOSE["services"][service].get("ports", [])]
        assert any(p.startswith(f"{address}:") for p in ports), (service, address, ports)


def test_the_image_is_pinned_slim_and_unprivileged() -> None:
    dockerfile = compose.DOCKERFILE.read_text()
    (base,) = set(re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE))
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert len(stages) == 2, stages
    assert set(stages) == {"${PYTHON_IMAGE}"}, stages
    *_, user = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert user not in ("root", "0"), user
    installs = re.findall(r"pip install ([^\n]*)", dockerfile)
    assert installs == ["--no-cache-dir . \\"], installs


def _changed(path: str, value: Any, base: dict[str, Any] = COMPOSE) -> dict[str, Any]:
    """The compose file with the value at `services/...`-style `path` replaced (or deleted).

    Every mapping on the way is copied: anchors share them between services.
    """
    root = copy.deepcopy(base)
    node = root
    *parents, last = path.split("/")
    for key in parents:
        node[key] = copy.copy(node[key])
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return root


ROT = {
    "database service renamed": (
        _changed(
            "services",
            {("db" if k == "postgres" else k): v for k, v in COMPOSE["services"].items()},
        ),
        "depends on postgres, which is not a service",
    ),
    "command misspelled": (_changed("services/worker/command", ["wroker"]), "no such command"),
    "unknown flag": (_changed("services/api-1/command", ["serve", "--hots", "0.0.0.0"]), "--hots"),
    "bus URL missing": (
        _changed("services/worker/environment/RUNWIRE_BUS_URL", DELETE),
        "worker: no RUNWIRE_BUS_URL",
    ),
    "database URL elsewhere": (
        _changed("services/api-2/environment/RUNWIRE_DATABASE_URL", "postgresql://x@db/runwire"),
        "disagree on RUNWIRE_DATABASE_URL",
    ),
    "health check path": (
        _changed(
            "services/worker/healthcheck/test",
            [
                w.replace("/ready", "/readyz")
                for w in COMPOSE["services"]["worker"]["healthcheck"]["test"]
            ],
        ),
        "worker: the health check asks /readyz",
    ),
    "health check port": (
        _changed(
            "services/api-2/healthcheck/test",
            [
                w.replace(":8000", ":8080")
                for w in COMPOSE["services"]["api-2"]["healthcheck"]["test"]
            ],
        ),
        "api-2: the health check asks 127.0.0.1:8080",
    ),
    "one worker": (_changed("services/worker/deploy/replicas", 1), "run `runwire worker`"),
    "no worker": (_changed("services/worker", DELETE), "0 process(es) run `runwire worker`"),
    "one API replica": (_changed("services/api-2", DELETE), "run `runwire serve`"),
    "API replica with a runner": (
        _changed("services/api-2/environment/RUNWIRE_RUNNER", DELETE),
        "api-2: an API replica runs a runner",
    ),
    "bad setting": (
        _changed("services/worker/environment/RUNWIRE_LEASE_SECONDS", "1"),
        "RUNWIRE_LEASE_SECONDS must be at least",
    ),
    "migrations not awaited": (
        _changed("services/api-1/depends_on/migrate/condition", "service_started"),
        "api-1: must start after migrate completed successfully",
    ),
    "Redis not awaited": (
        _changed("services/worker/depends_on/redis", DELETE),
        "worker: must wait for redis to be healthy",
    ),
    "migrate restarts": (_changed("services/migrate/restart", "always"), "must not restart"),
    "published port": (
        _changed("services/api-1/ports", ["127.0.0.1:8000:9000"]),
        "api-1: publishes 127.0.0.1:8000:9000, but listens on 8000",
    ),
    "API on loopback": (_changed("services/api-1/command", ["serve"]), "binds 127.0.0.1"),
    "no published port": (
        _changed("services/api-2/ports", DELETE, _changed("services/api-1/ports", DELETE)),
        "no API replica publishes a port",
    ),
    "workers killed mid-drain": (
        _changed("services/worker/stop_grace_period", "10s"),
        "worker: stop_grace_period 10s",
    ),
    "database password": (
        _changed("services/postgres/environment/POSTGRES_PASSWORD", "other"),
        "RUNWIRE_DATABASE_URL: password",
    ),
}


@pytest.mark.parametrize(("changed", "expected"), ROT.values(), ids=ROT.keys())
def test_a_rotten_file_is_refused(changed: dict[str, Any], expected: str) -> None:
    found = compose.problems(changed, ENTRYPOINT)
    assert any(expected in problem for problem in found), found


def test_a_changed_entrypoint_is_refused() -> None:
    found = compose.problems(COMPOSE, ["python"])
    assert any("runs 'python', not runwire" in problem for problem in found), found


# ---- the live topology --------------------------------------------------------------------


@dataclass
class Local:
    """One replica of a Runwire service, running here."""

    service: Service
    replica: int
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    healthy_after: float | None = None

    @property
    def name(self) -> str:
        return f"{self.service.name}-{self.replica}"

    def server(self, token: str) -> Server:
        return Server(f"http://127.0.0.1:{self.port}", self.env, self.log, self.process, token)


class Topology:
    """The file's Runwire services as local processes, on a local Postgres database and Redis."""

    def __init__(
        self, directory: Path, found: Mapping[str, Service], database_url: str, redis_url: str
    ) -> None:
        self.directory = directory
        self.found = found
        self.local_postgres = urlsplit(database_url)
        self.local_redis = urlsplit(redis_url)
        self.running: dict[str, list[Local]] = {}

    def environment(self, service: Service, replica: int, port: int) -> dict[str, str]:
        """The service's environment, its URLs pointed here; nothing RUNWIRE_* from ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
        for key, value in service.environment.items():
            host = urlsplit(value).hostname if "://" in value else None
            image = str(self.found[host].raw.get("image", "")) if host in self.found else ""
            if image.startswith("postgres"):
                value = compose.local_url(
                    value, self.local_postgres.netloc, self.local_postgres.path.lstrip("/")
                )
            elif image.startswith("redis"):
                value = compose.local_url(value, self.local_redis.netloc)
            env[key] = value
        # What the image and the container's network give it, here: a data directory
        # (the Dockerfile's RUNWIRE_DATA_DIR), an address of its own.
        env["RUNWIRE_DATA_DIR"] = str(self.directory / f"{service.name}-{replica}")
        env["RUNWIRE_HOST"] = "127.0.0.1"
        env["RUNWIRE_PORT"] = str(port)
        # The image runs as a non-root user, so its steps run as that user; here (as root) steps
        # would be `nobody` and miss the test's gate files: the same (see OWN_USER_STEPS).
        env["RUNWIRE_STEP_USER"] = ""
        return env

    def start(self, service: Service) -> None:
        for replica in range(1, service.replicas + 1):
            port = free_port()
            env = self.environment(service, replica, port)
            log = self.directory / f"{service.name}-{replica}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    compose.local_argv(service.argv),
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            local = Local(service, replica, port, env, log, process)
            self.running.setdefault(service.name, []).append(local)

    async def reached(self, name: str, condition: str) -> None:
        """Wait as compose would before starting what depends on `name`."""
        service = self.found[name]
        if not service.is_runwire:
            if condition == "service_healthy":
                await self._external_healthy(service)
            return
        for local in self.running[name]:
            if condition == "service_completed_successfully":
                code = await asyncio.to_thread(local.process.wait, 60)
                assert code == 0, f"{local.name} exited {code}:\n{local.log.read_text()}"
            elif condition == "service_healthy":
                await self.healthy(local)

    async def healthy(self, local: Local) -> None:
        """Run the service's own health check until it passes, within what compose allows."""
        service = local.service
        check = service.healthcheck
        assert check is not None, f"{service.name} has no health check"
        allowed = service.healthcheck_timing("start_period", 0) + service.healthcheck_timing(
            "interval", 30
        ) * service.healthcheck_timing("retries", 3)
        argv = compose.local_healthcheck(check, local.port)
        timeout = service.healthcheck_timing("timeout", 30)
        while True:
            passed, said = await _check(argv, timeout)
            if passed:
                break
            assert local.process.poll() is None, (
                f"{local.name} exited {local.process.returncode}:\n{local.log.read_text()}"
            )
            waited = time.monotonic() - local.started
            assert waited < allowed, (
                f"{local.name} unhealthy after {waited:.0f}s; its check said:\n{said}\n"
                f"its log:\n{local.log.read_text()}"
            )
            await asyncio.sleep(0.2)
        local.healthy_after = time.monotonic() - local.started

    async def _external_healthy(self, service: Service) -> None:
        """Postgres' and Redis' own checks, run here, where their programs are installed.

        Both reach 127.0.0.1 by default, where the test's servers are; where a program is
        missing, the fresh database and the Redis PING made before starting stand in.
        """
        check = service.healthcheck
        assert check is not None, f"{service.name} has no health check"
        if shutil.which(check[0]) is None:
            return
        passed, said = await _check(check, 10)
        assert passed, f"{service.name}: {check} failed here: {said}"

    def all(self, *roles: str) -> list[Local]:
        """Every process started for the given roles, in start order."""
        return [
            local
            for service in self.running.values()
            for local in service
            if local.service.role in roles
        ]

    def kill_all(self) -> None:
        for service in self.running.values():
            for local in service:
                if local.process.poll() is None:
                    local.process.kill()
                    local.process.wait()


async def test_the_services_run_an_execution_from_one_replica_to_the_other(tmp_path: Path) -> None:
    found = compose.services(COMPOSE, ENTRYPOINT)
    assert compose.problems(COMPOSE, ENTRYPOINT) == []
    redis_url = await postgres.redis_url()
    async with postgres.fresh_database("runwire_compose") as database_url:
        topology = Topology(tmp_path, found, database_url, redis_url)
        try:
            began = time.monotonic()
            for name in compose.start_order(found):
                for dependency, condition in found[name].depends_on.items():
                    await topology.reached(dependency, condition)
                if found[name].is_runwire:
                    topology.start(found[name])
            for migrate in topology.all("migrate"):
                assert "migrations applied" in migrate.log.read_text()
            processes = topology.all("serve", "worker")
            await asyncio.gather(*(topology.healthy(local) for local in processes))
            up = time.monotonic() - began
            await _health_checks_fail_when_not_ready(processes)

            apis = [p for p in processes if p.service.role == "serve"]
            workers = [p for p in processes if p.service.role == "worker"]
            token = _admin_token(apis[0])
            first, other = apis[0].server(token), apis[1].server(token)
            await _an_execution_runs_on_a_worker(
                first, other, {w.process.pid for w in workers}, database_url, tmp_path
            )
            stopped = await _sigterm_stops_everything(processes)
        finally:
            topology.kill_all()
    print(
        f"\ncompose topology: {len(processes)} processes healthy {up:.1f}s after the first start"
        f" ({', '.join(f'{p.name} {p.healthy_after:.1f}s' for p in processes)});"
        f" all stopped {stopped:.1f}s after SIGTERM"
    )


async def _health_checks_fail_when_not_ready(processes: list[Local]) -> None:
    """Each check, pointed at a server answering 503 to everything, must fail."""

    class NotReady(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(503)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotReady)
    serving = threading.Thread(target=stub.serve_forever, daemon=True)
    serving.start()
    try:
        for local in processes:
            check = local.service.healthcheck
            assert check is not None
            argv = compose.local_healthcheck(check, stub.server_address[1])
            passed, _ = await _check(argv, 10)
            assert not passed, f"{local.name}: {check} passed on a 503"
    finally:
        stub.shutdown()
        stub.server_close()


def _admin_token(api: Local) -> str:
    """A token made the way the README says, with the service's command and environment."""
    made = subprocess.run(
        compose.local_argv(["runwire", "token", "create", "--name", "topology", "--role", "admin"]),
        env=api.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return made.stdout.strip()


async def _an_execution_runs_on_a_worker(
    first: Server, other: Server, workers: set[int], database_url: str, directory: Path
) -> None:
    gate = directory / "gate"
    execution_id = await start(
        first, definition=definition(gated_step("wait", gate), name="compose")
    )
    # Followed from the start through the other replica, while a worker runs it.
    following = asyncio.create_task(follow(other, execution_id))
    try:
        owner = await _owner(database_url, execution_id)
        pid = int(owner.rsplit(":", 2)[1])
        assert pid in workers, f"run by {owner}, not by a worker ({sorted(workers)})"
        gate.touch()
        async with asyncio.timeout(30):
            events = await following
    finally:
        following.cancel()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "EXECUTION_STATUS"
    assert events[-1]["status"] == "SUCCEEDED", events[-1]


async def _owner(database_url: str, execution_id: str) -> str:
    """The runner the database records as running the execution (`host:pid:nonce`)."""
    connection = await asyncpg.connect(database_url)
    try:
        async with asyncio.timeout(15):
            while True:
                owner = await connection.fetchval(
                    "SELECT owner FROM runwire_execution WHERE id = $1", execution_id
                )
                if owner is not None:
                    return str(owner)
                await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def _sigterm_stops_everything(processes: list[Local]) -> float:
    """SIGTERM to all at once; each exits cleanly within its stop_grace_period. How long it took."""
    began = time.monotonic()
    for local in processes:
        local.process.send_signal(signal.SIGTERM)
    for local in processes:
        bound = local.service.stop_grace_period - (time.monotonic() - began)
        try:
            code = await asyncio.to_thread(local.process.wait, max(bound, 0.1))
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{local.name} still running {local.service.stop_grace_period:g}s after SIGTERM"
            )
        log = local.log.read_text()
        # uvicorn re-raises the signal once it has shut down (Docker reports 143).
        assert code in (0, -signal.SIGTERM), f"{local.name} exited {code}:\n{log}"
        assert "Application shutdown complete." in log, f"{local.name}:\n{log}"
        assert "Traceback" not in log, f"{local.name}:\n{log}"
    return time.monotonic() - began


async def _check(argv: list[str], timeout: float) -> tuple[bool, str]:
    """Whether a check exits 0 within `timeout` (compose's healthcheck.timeout), and its output."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        return False, f"no answer within {timeout:g}s"
    return process.returncode == 0, output.decode(errors="replace").strip()
