"""docker-compose.yml read as the topology it promises, and as local processes that stand in for it.

Docker does not run on the machines that test Runwire, so the topology test starts each Runwire
service's own command (the Dockerfile's ENTRYPOINT + the service's `command`) and environment
as a local process, with the compose hostnames pointed at the local Postgres and Redis.
`problems()` checks what the file says without running anything; the live test checks that it
works.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import yaml

from runwire.cli import main as runwire_cli
from runwire.settings import Settings

ROOT = Path(__file__).parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

READY_PATH = "/ready"
# The least a role needs for the topology to mean anything: a second API replica to follow
# through, a second worker to take over.
ROLES_AT_LEAST = {"migrate": 1, "serve": 2, "worker": 2}
# Where compose services' healthchecks may reach the process: its own loopback.
LOOPBACK = {"127.0.0.1", "localhost"}
_URL = re.compile(r"https?://[^\s'\"]+")
_INTERPOLATION = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\})"
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file with `${NAME:-default}` taken at its default (no variables set)."""
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path}: not a mapping"
    return _interpolated(document)


def entrypoint(path: Path = DOCKERFILE) -> list[str]:
    """The image's ENTRYPOINT (exec form), which every service's `command` follows."""
    found = [
        line.split(None, 1)[1]
        for line in path.read_text().splitlines()
        if line.split(None, 1)[:1] == ["ENTRYPOINT"]
    ]
    assert found, f"{path}: no ENTRYPOINT"
    value = json.loads(found[-1])
    assert isinstance(value, list), f"{path}: ENTRYPOINT must be in the exec form (a JSON list)"
    assert value, f"{path}: ENTRYPOINT is empty"
    return [str(word) for word in value]


def duration(text: str | int | float) -> float:
    """Seconds in a compose duration: `30s`, `1m30s`, `500ms`."""
    if isinstance(text, int | float):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(amount) * scale[unit] for amount, unit in parts)


@dataclass(frozen=True)
class Service:
    """One service of the file, as the test needs it."""

    name: str
    raw: Mapping[str, Any]
    entrypoint: tuple[str, ...]

    @property
    def is_runwire(self) -> bool:
        """Built from this repository (the others are Postgres and Redis)."""
        return "build" in self.raw

    @property
    def argv(self) -> list[str]:
        """What runs in the container: the ENTRYPOINT, then the service's command."""
        command = self.raw.get("command", [])
        assert isinstance(command, list), f"{self.name}: command must be a list (exec form)"
        return [*self.entrypoint, *(str(word) for word in command)]

    @property
    def role(self) -> str:
        """The Runwire subcommand: `migrate`, `serve`, `worker`, ..."""
        args = self.argv[1:]
        return args[0] if args else ""

    @property
    def environment(self) -> dict[str, str]:
        raw = self.raw.get("environment", {})
        if isinstance(raw, list):
            raw = dict(item.split("=", 1) for item in raw)
        return {str(k): "" if v is None else str(v) for k, v in raw.items()}

    @property
    def depends_on(self) -> dict[str, str]:
        """Each service this one waits for, with the condition compose waits for."""
        raw = self.raw.get("depends_on", {})
        if isinstance(raw, list):
            return {name: "service_started" for name in raw}
        return {
            name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()
        }

    @property
    def replicas(self) -> int:
        return int(self.raw.get("deploy", {}).get("replicas", 1))

    @property
    def healthcheck(self) -> list[str] | None:
        """The check's argv in exec (`CMD`) form; None without one."""
        check = self.raw.get("healthcheck")
        if not check or check.get("disable"):
            return None
        test = check.get("test")
        if not isinstance(test, list) or test[:1] != ["CMD"]:
            raise ValueError(f"{self.name}: healthcheck.test must be in the CMD form (no shell)")
        return [str(word) for word in test[1:]]

    def healthcheck_timing(self, name: str, default: float) -> float:
        return duration(self.raw.get("healthcheck", {}).get(name, default))

    @property
    def stop_grace_period(self) -> float:
        """Docker's SIGTERM-to-SIGKILL time for the service (10 s unless set)."""
        return duration(self.raw.get("stop_grace_period", "10s"))

    def cli(self) -> click.Context:
        """The service's command parsed by Runwire's own CLI; a bad one raises ClickException."""
        if self.argv[0] != "runwire":
            raise click.ClickException(f"runs {self.argv[0]!r}, not runwire")
        command = runwire_cli.get_command(click.Context(runwire_cli), self.role)
        if command is None:
            raise click.ClickException(f"no such command {self.role!r}")
        return command.make_context(self.role, self.argv[2:])

    def settings(self) -> Settings:
        """The process's settings, from the service's environment and its command's flags."""
        settings = Settings.from_env(self.environment)
        flags = {k: v for k, v in self.cli().params.items() if k in {"host", "port"} and v}
        return settings.with_overrides(**flags)


def services(compose: Mapping[str, Any], entry: list[str]) -> dict[str, Service]:
    return {
        name: Service(name, raw or {}, tuple(entry))
        for name, raw in (compose.get("services") or {}).items()
    }


def start_order(found: Mapping[str, Service]) -> list[str]:
    """Services in an order that starts each after what it depends on."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        assert name not in visiting, f"depends_on cycle through {name}"
        visiting.add(name)
        for dependency in found[name].depends_on:
            visit(dependency)
        order.append(name)

    for name in found:
        visit(name)
    return order


def problems(compose: Mapping[str, Any], entry: list[str]) -> list[str]:
    """What is wrong with the topology the file describes; empty when it holds together."""
    found = services(compose, entry)
    runwire = {name: s for name, s in found.items() if s.is_runwire}
    wrong: list[str] = []
    for service in found.values():
        for dependency, condition in service.depends_on.items():
            target = found.get(dependency)
            if target is None:
                wrong.append(f"{service.name}: depends on {dependency}, which is not a service")
            elif condition == "service_healthy" and target.raw.get("healthcheck") is None:
                wrong.append(f"{service.name}: waits for {dependency} healthy; it has no check")
            elif condition == "service_completed_successfully" and target.raw.get(
                "restart", "no"
            ) not in ("no", "on-failure"):
                wrong.append(f"{service.name}: waits for {dependency} to exit; it restarts")
    by_role: dict[str, list[Service]] = {}
    urls: dict[str, set[str]] = {"RUNWIRE_DATABASE_URL": set(), "RUNWIRE_BUS_URL": set()}
    for service in runwire.values():
        try:
            settings = service.settings()
        except (click.ClickException, click.exceptions.Exit, ValueError) as error:
            message = error.format_message() if isinstance(error, click.ClickException) else error
            wrong.append(f"{service.name}: {service.argv}: {message}")
            continue
        by_role.setdefault(service.role, []).extend([service] * service.replicas)
        for variable, seen in urls.items():
            if variable not in service.environment:
                wrong.append(f"{service.name}: no {variable}")
            else:
                seen.add(service.environment[variable])
        wrong.extend(_role_problems(service, settings, found))
    for role, least in ROLES_AT_LEAST.items():
        count = len(by_role.get(role, []))
        if count < least:
            wrong.append(f"{count} process(es) run `runwire {role}`; the topology needs {least}")
    for variable, seen in urls.items():
        if len(seen) > 1:
            wrong.append(f"the Runwire services disagree on {variable}: {sorted(seen)}")
    if urls["RUNWIRE_DATABASE_URL"]:
        wrong.extend(_database_problems(min(urls["RUNWIRE_DATABASE_URL"]), found))
    if urls["RUNWIRE_BUS_URL"]:
        wrong.extend(_bus_problems(min(urls["RUNWIRE_BUS_URL"]), found))
    if not any(s.raw.get("ports") for s in by_role.get("serve", [])):
        wrong.append("no API replica publishes a port")
    return wrong


def _role_problems(service: Service, settings: Settings, found: Mapping[str, Service]) -> list[str]:
    wrong: list[str] = []
    name = service.name
    if service.role == "migrate":
        if service.raw.get("restart", "no") != "no":
            wrong.append(f"{name}: a one-shot must not restart")
        database = _host_service(settings.effective_database_url, found)
        if database is not None and service.depends_on.get(database) != "service_healthy":
            wrong.append(f"{name}: must wait for {database} to be healthy")
        return wrong
    if service.role not in ("serve", "worker"):
        return [f"{name}: `runwire {service.role}` is not a role of the topology"]
    if service.role == "serve" and settings.runner_enabled:
        wrong.append(f"{name}: an API replica runs a runner (set RUNWIRE_RUNNER=false)")
    migrations = [s.name for s in found.values() if s.is_runwire and s.role == "migrate"]
    for migrate in migrations:
        if service.depends_on.get(migrate) != "service_completed_successfully":
            wrong.append(f"{name}: must start after {migrate} completed successfully")
    for variable in ("RUNWIRE_DATABASE_URL", "RUNWIRE_BUS_URL"):
        host = _host_service(service.environment.get(variable, ""), found)
        if host is not None and service.depends_on.get(host) != "service_healthy":
            wrong.append(f"{name}: must wait for {host} to be healthy")
    check = service.raw.get("healthcheck", {}).get("test", [])
    urls = [url for word in check for url in _URL.findall(str(word))]
    if len(urls) != 1:
        wrong.append(f"{name}: the health check must request one URL, found {urls}")
    else:
        url = urlsplit(urls[0])
        if url.path != READY_PATH:
            wrong.append(f"{name}: the health check asks {url.path}, not {READY_PATH}")
        if url.hostname not in LOOPBACK or url.port != settings.port:
            wrong.append(
                f"{name}: the health check asks {url.netloc}; it listens on {settings.port}"
            )
    for mapping in service.raw.get("ports", []):
        target = str(mapping).rsplit(":", 1)[-1].split("/")[0]
        if target != str(settings.port):
            wrong.append(f"{name}: publishes {mapping}, but listens on {settings.port}")
        if settings.host not in ("0.0.0.0", "::"):
            wrong.append(f"{name}: publishes {mapping} but binds {settings.host}, unreachable")
    # uvicorn gives open connections RUNWIRE_GRACE_SECONDS + 5 s, then the runner drains.
    needed = settings.grace_seconds + 5
    if settings.runner_enabled:
        needed += settings.drain_seconds + settings.grace_seconds + settings.heartbeat_seconds
    if service.stop_grace_period < needed:
        wrong.append(
            f"{name}: stop_grace_period {service.stop_grace_period:g}s < {needed:g}s it may"
            " take to stop cleanly after SIGTERM"
        )
    return wrong


def _database_problems(database_url: str, found: Mapping[str, Service]) -> list[str]:
    url = urlsplit(database_url)
    host = _host_service(database_url, found)
    if url.scheme not in ("postgresql", "postgres") or host is None:
        return [f"RUNWIRE_DATABASE_URL {database_url} does not name a service of the file"]
    env = found[host].environment
    expected = {
        "user": env.get("POSTGRES_USER", "postgres"),
        "password": env.get("POSTGRES_PASSWORD"),
        "database": env.get("POSTGRES_DB", env.get("POSTGRES_USER", "postgres")),
        "port": 5432,
    }
    actual = {
        "user": url.username,
        "password": url.password,
        "database": url.path.lstrip("/"),
        "port": url.port or 5432,
    }
    return [
        f"RUNWIRE_DATABASE_URL: {key} {actual[key]!r}, but {host} has {expected[key]!r}"
        for key in expected
        if actual[key] != expected[key]
    ]


def _bus_problems(bus_url: str, found: Mapping[str, Service]) -> list[str]:
    url = urlsplit(bus_url)
    if url.scheme != "redis" or _host_service(bus_url, found) is None:
        return [f"RUNWIRE_BUS_URL {bus_url} is not the file's Redis"]
    if (url.port or 6379) != 6379:
        return [f"RUNWIRE_BUS_URL: port {url.port}, but Redis listens on 6379"]
    return []


def _host_service(url: str, found: Mapping[str, Service]) -> str | None:
    host = urlsplit(url).hostname
    return host if host in found else None


def local_url(url: str, netloc: str, database: str | None = None) -> str:
    """`url` pointed at a local server (`netloc`), and at another database if given."""
    parts = urlsplit(url)
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def local_argv(argv: list[str]) -> list[str]:
    """A Runwire service's argv for a local process: this interpreter, no --host or --port.

    The test sets RUNWIRE_HOST and RUNWIRE_PORT instead (flags would win over them).
    """
    assert argv[0] == "runwire", argv
    args: list[str] = []
    words = iter(argv[1:])
    for word in words:
        if word in ("--host", "--port"):
            next(words)
        elif not word.startswith(("--host=", "--port=")):
            args.append(word)
    return [sys.executable, "-m", "runwire.cli", *args]


def local_healthcheck(check: list[str], port: int) -> list[str]:
    """A Runwire service's health check run here: this interpreter, the process's local port."""
    program, *args = check
    if program in ("python", "python3"):
        program = sys.executable

    def to_local(match: re.Match[str]) -> str:
        url = urlsplit(match.group(0))
        return urlunsplit((url.scheme, f"127.0.0.1:{port}", url.path, url.query, url.fragment))

    return [program, *(_URL.sub(to_local, arg) for arg in args)]


def _interpolated(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _interpolated(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolated(item) for item in value]
    if not isinstance(value, str):
        return value

    def default(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        assert match.group("default") is not None, f"{match.group(0)} has no default"
        return match.group("default")

    return _INTERPOLATION.sub(default, value)
