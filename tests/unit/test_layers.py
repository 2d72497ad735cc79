"""The server's packages in layers: each imports only the ones below it, so none import each other.

Read from the source's own import statements (function-level ones too, as the CLI's), so a new
upward import fails here before it makes a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVER = Path(__file__).parents[2] / "server" / "runwire"

# Bottom first. A package may import its own modules and any package of a lower layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    # nondumpable: a process keeps its environment from others of its user (stdlib only)
    # metrics: the Prometheus registry and instruments, handed to the parts that observe;
    # background: a task that lives for an `async with` block
    ("errors", "faults", "settings", "nondumpable", "metrics", "background"),
    ("logs",),  # the log format, and the ids (execution, step, request) lines carry
    ("voice",),  # calls: audio, speech, DTMF, SIP/RTP, the IVR simulator, call drivers
    ("scenarios",),  # definitions, templating, step results, expectations
    ("domain",),  # values, rules, services and their ports
    ("db",),  # the stores
    ("events",),  # event log, publisher, hub, bus
    ("queue",),  # claims, leases, control requests, the queue's signals on the bus
    # health: is the database, is the bus reachable now; retention: deletes old artifacts;
    # preflight: can the configured database and bus serve a process about to start;
    # trace_export: sends ended executions' traces over OTLP; webhook_delivery: queues and posts
    # webhook deliveries; scheduler: fires due schedules; review_timeouts: closes reviews whose
    # time ran out
    (
        "runner",
        "health",
        "retention",
        "preflight",
        "trace_export",
        "webhook_delivery",
        "scheduler",
        "review_timeouts",
    ),
    ("core",),  # the composition root
    ("http",),  # plain HTTP routes
    ("graphql",),  # the schema, the fan-out engine, the /graphql controller
    ("app", "worker"),  # worker: the runner-only process's app
    ("fakes",),  # stand-ins for external systems (a CLI agent's replayer, `runwire fake-llm`)
    ("cli",),
)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def package_of(module: str) -> str:
    """`runwire.db.events` -> `db`; `runwire.core` -> `core`."""
    return module.split(".")[1]


def runwire_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("runwire.")}


MODULES = sorted(
    path
    for path in SERVER.rglob("*.py")
    if "migrations" not in path.parts and path.stem != "__init__"
)


def test_every_package_has_a_layer() -> None:
    packages = {path.relative_to(SERVER).parts[0].removesuffix(".py") for path in MODULES}
    assert packages - {"piccolo_conf"} <= set(RANK), packages - set(RANK)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(SERVER)))
def test_imports_go_down_only(path: Path) -> None:
    own = path.relative_to(SERVER).parts[0].removesuffix(".py")
    upward = {
        name
        for name in runwire_imports(path)
        if package_of(name) != own and RANK[package_of(name)] >= RANK[own]
    }
    assert not upward, f"{own} (layer {RANK[own]}) imports {upward}"


def test_broadcaster_internals_are_reached_through_the_compat_module_only() -> None:
    for path in MODULES:
        if path.parent.name == "compat":
            continue
        source = path.read_text()
        assert "broadcaster._" not in source, f"{path}: go through events/compat/broadcaster.py"
