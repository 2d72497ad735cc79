"""The only reader of the environment: every `RUNWIRE_*` setting, frozen at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable about one Runwire process."""

    data_dir: Path = Path("data")
    database_url: str | None = None
    bus_url: str = "memory://"
    host: str = "127.0.0.1"
    port: int = 8000
    scenarios_dir: Path | None = None
    load_examples: bool = True
    runner_enabled: bool = True
    runner_slots: int = 8
    grace_seconds: float = 5.0
    lease_seconds: float = 30.0
    poll_seconds: float = 0.5
    flush_interval_ms: float = 2.0
    subscriber_buffer: int = 256
    output_coalesce_ms: float = 5.0
    graphiql: bool = True

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'runwire.sqlite').resolve()}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `RUNWIRE_*` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        defaults = cls()

        def text(name: str, default: str) -> str:
            return env.get(f"RUNWIRE_{name}", default)

        def flag(name: str, default: bool) -> bool:
            raw = env.get(f"RUNWIRE_{name}")
            if raw is None:
                return default
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(f"RUNWIRE_{name}: expected a boolean, got {raw!r}")

        def number(name: str, default: float) -> float:
            raw = env.get(f"RUNWIRE_{name}")
            try:
                return default if raw is None else float(raw)
            except ValueError:
                raise ValueError(f"RUNWIRE_{name}: expected a number, got {raw!r}") from None

        scenarios_dir = env.get("RUNWIRE_SCENARIOS_DIR")
        return cls(
            data_dir=Path(text("DATA_DIR", str(defaults.data_dir))),
            database_url=env.get("RUNWIRE_DATABASE_URL") or None,
            bus_url=text("BUS_URL", defaults.bus_url),
            host=text("HOST", defaults.host),
            port=int(number("PORT", defaults.port)),
            scenarios_dir=Path(scenarios_dir) if scenarios_dir else None,
            load_examples=flag("LOAD_EXAMPLES", defaults.load_examples),
            runner_enabled=flag("RUNNER", defaults.runner_enabled),
            runner_slots=int(number("RUNNER_SLOTS", defaults.runner_slots)),
            grace_seconds=number("GRACE_SECONDS", defaults.grace_seconds),
            lease_seconds=number("LEASE_SECONDS", defaults.lease_seconds),
            poll_seconds=number("POLL_SECONDS", defaults.poll_seconds),
            flush_interval_ms=number("FLUSH_INTERVAL_MS", defaults.flush_interval_ms),
            subscriber_buffer=int(number("SUBSCRIBER_BUFFER", defaults.subscriber_buffer)),
            output_coalesce_ms=number("OUTPUT_COALESCE_MS", defaults.output_coalesce_ms),
            graphiql=flag("GRAPHIQL", defaults.graphiql),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed (CLI flags win over the environment)."""
        return replace(self, **changes)  # type: ignore[arg-type]
