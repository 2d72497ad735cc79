"""The only reader of the environment: the `RUNWIRE_*` settings and standard `OTEL_*` ones."""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

# The default of RUNWIRE_ARTIFACT_MAX_BYTES: a 10-minute two-channel 8 kHz call recording is
# about 19 MB, and an artifact's content is read whole to serve it.
DEFAULT_ARTIFACT_MAX_BYTES = 64 * 1024 * 1024

DEFAULT_STEP_UIDS = (0x7F00_0000, 0x7F00_FFFF)
"""2130706432-2130771967: 65,536 uids in the block systemd documents as unused
(1879048192-2147483647, above its container ranges and below the top 64K newer releases keep
as the "foreign" range), below 2^31 (some tools take uids as signed 32-bit numbers), and
64K-aligned so `ps` output shows them for what they are. The gid is the same number."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable about one Runwire process."""

    data_dir: Path = Path("data")
    database_url: str | None = None
    bus_url: str = "memory://"
    host: str = "127.0.0.1"
    port: int = 8000
    scenarios_dir: Path | None = None
    # Suite files (*.yaml, *.json) saved at start, after the scenarios they name.
    suites_dir: Path | None = None
    load_examples: bool = True
    runner_enabled: bool = True
    runner_slots: int = 8
    grace_seconds: float = 5.0
    # A runner renews its leases every heartbeat; a runner lost (killed, cut off) is noticed
    # within about lease + 3 heartbeats, and one that cannot renew stops its steps after
    # lease - 2 heartbeats (see runner/runner.py).
    lease_seconds: float = 6.0
    heartbeat_seconds: float = 1.0
    # On SIGTERM, how long running steps may take to finish before they are interrupted and
    # their executions handed over to another runner.
    drain_seconds: float = 20.0
    poll_seconds: float = 0.5
    flush_interval_ms: float = 2.0
    subscriber_buffer: int = 256
    output_coalesce_ms: float = 5.0
    # Output budgets (0 = off). Past one, a step's output is dropped (its pipe still drained) and
    # an OUTPUT_TRUNCATED event says how much. Far above a normal CI log: a verbose build or test
    # run prints a few MB and bursts of a few thousand lines/s, while a runaway loop fills any
    # budget within seconds. Bytes per step attempt, per run of an execution, and a line rate
    # per step attempt (sustained lines/s, with a burst allowed at once).
    output_step_bytes: int = 10 * 1024 * 1024
    output_execution_bytes: int = 50 * 1024 * 1024
    output_lines_per_second: float = 5000.0
    output_line_burst: int = 50_000
    # Keep the whole output of a step attempt that a budget truncated as its artifact
    # `output.log` (up to artifact_max_bytes), spooled to a temporary file while it runs.
    output_artifact: bool = False
    graphiql: bool = True
    # The GraphQL edge: what one document, request and connection may ask of the server.
    introspection: bool = True
    max_query_depth: int = 15
    max_aliases: int = 30
    max_tokens: int = 5000
    max_body_bytes: int = 1_000_000
    max_subscriptions_per_connection: int = 100
    connection_init_timeout_seconds: float = 10.0
    # What one request's content may hold, within the body limit. Far above real use (a scenario
    # of 50 steps is about 5 KB; a label is a word; inputs are a few fields), low enough that
    # parsing and validating one stays well under a second off the event loop (a 200 KB
    # definition: about 1 s in a worker thread) and a row stays small. See scenarios/limits.py.
    max_definition_bytes: int = 200_000  # UTF-8 bytes of a definition's text
    max_definition_steps: int = 1_000  # steps; each becomes rows, events and runner work
    max_labels: int = 20  # per execution (a label is at most 200 characters: its column)
    max_inputs_bytes: int = 100_000  # encoded JSON of one execution's inputs
    max_inputs_depth: int = 32  # nesting of lists and objects in inputs and upstream
    max_reason_chars: int = 1_000  # a stop or pause reason, shown in events and the UI
    # A subscriber (WebSocket or SSE) whose client has not read what it was sent for this long
    # (the server holds more than 64 KiB for it past the kernel's socket buffer) is cut: close
    # code 4100, or the SSE stream ended; it resumes with afterSeq / Last-Event-ID. Its sends
    # never hold up another subscriber meanwhile (events/slow_clients.py).
    subscriber_stall_seconds: float = 10.0
    # permessage-deflate keeps a small zlib compressor per socket (about 10 KB: a 512-byte window,
    # clients compress each message on their own; events/compat/uvicorn.py) and compresses
    # every message once per subscriber: off unless operators want the bandwidth.
    ws_deflate: bool = False
    # One log line per HTTP request and per accepted socket costs throughput; errors still log.
    access_log: bool = False
    # How log lines look (text: for people; json: one object per line, for collectors) and the
    # least severe level logged (logs.py).
    log_format: str = "text"
    log_level: str = "INFO"
    # An SSE stream with nothing to send for this long sends a comment line (`: keepalive`), so
    # proxies and load balancers that cut idle connections (often after 30-60 s) keep it open.
    sse_keepalive_seconds: float = 15.0
    # Browser origins (`scheme://host[:port]`) whose pages may call the API (CORS); empty: none,
    # and no CORS headers at all. `*` is any origin: safe to allow, since Runwire authenticates
    # by a bearer header a page must hold, never by cookies, so no credentials are allowed.
    cors_origins: tuple[str, ...] = ()
    # How often live connections' credentials are checked for revocation and expiry.
    session_check_seconds: float = 1.0
    # An external identity provider whose JWTs are accepted (RS/PS/ES algorithms only).
    jwt_issuer: str | None = None
    jwt_key: str | None = None
    jwt_algorithms: tuple[str, ...] = ("RS256",)
    jwt_audience: str | None = None
    jwt_workspace_claim: str = "runwire_workspace"
    jwt_role_claim: str = "runwire_role"
    # Process steps (runner/steps/confinement.py). Who they run as: None is a uid of its own
    # per attempt from `step_uids` when the server runs as root and the server's own user
    # otherwise; a name (or number) is that account for every step; "" is the server's user.
    step_user: str | None = None
    step_uids: tuple[int, int] = DEFAULT_STEP_UIDS
    # Each step attempt gets a directory of its own under this one, removed when it ends. Outside
    # the data directory (which steps must not read) and on the temp filesystem, cleared on boot.
    step_dir: Path = Path(tempfile.gettempdir()) / "runwire-steps"
    # Server variables passed to steps besides the allowlist (e.g. HTTP_PROXY, SSL_CERT_FILE).
    step_pass_env: tuple[str, ...] = ()
    # "bubblewrap": run each process step in a bwrap sandbox (no network unless the step says
    # `network: true`, read-only system, only its own directory writable, data dir hidden).
    step_sandbox: str = ""
    # A price table replacing the shipped one (runner/prices.yaml has the format).
    prices_file: Path | None = None
    # The server's variables an `llm` step may name as `api_key_env` (RUNWIRE_LLM_KEY_VARS, e.g.
    # OPENAI_API_KEY): only these, so a definition cannot send any other variable to its own
    # base_url. `llm_keys` holds the values of those that are set; never shown or compared.
    llm_key_vars: tuple[str, ...] = ()
    llm_keys: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # The driver a `call` step uses when its dial names none (RUNWIRE_CALL_DRIVER): sip or
    # simulated. The sip driver binds SIP and RTP on `sip_local_host` and puts `sip_public_host`
    # (the address a far end can reach, e.g. behind NAT) in its Contact and SDP.
    call_driver: str = "sip"
    sip_local_host: str = "127.0.0.1"
    sip_public_host: str | None = None
    # Artifacts of step attempts (domain/artifacts.py): the largest one a step may store (its
    # content is a database row, read whole to serve it), and how many days they are kept
    # (0: for ever).
    artifact_max_bytes: int = DEFAULT_ARTIFACT_MAX_BYTES
    artifact_retention_days: float = 30.0
    # The secret a Prometheus scraper sends as `Authorization: Bearer <it>` to read /metrics.
    # None: /metrics answers 404 (its series name workspaces and scenarios: never open).
    metrics_token: str | None = field(default=None, repr=False)
    # OpenTelemetry (trace_export.py): where ended executions' traces are sent, over OTLP/HTTP
    # protobuf; None: not sent. Read from the standard OTEL_* variables every collector setup
    # already uses (see from_env). The headers usually carry a collector's API key: never shown.
    otlp_traces_endpoint: str | None = None
    otlp_headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    otlp_timeout_seconds: float = 10.0  # per post, its retries included
    otel_service_name: str = "runwire"
    # Webhooks (webhook_delivery.py): loopback and private addresses are refused unless allowed
    # (a receiver on the same host or network); how long one post may take; how many attempts a
    # delivery gets; the wait before the first retry (doubling each time, at most 30 minutes).
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 8
    webhook_retry_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < 3 * self.heartbeat_seconds <= self.lease_seconds:
            raise ValueError(
                "RUNWIRE_LEASE_SECONDS must be at least 3 x RUNWIRE_HEARTBEAT_SECONDS (a runner"
                " gives up 2 heartbeats before its lease ends)"
            )
        if self.subscriber_stall_seconds <= 0:
            raise ValueError("RUNWIRE_SUBSCRIBER_STALL_SECONDS must be positive")
        if self.sse_keepalive_seconds <= 0:
            raise ValueError("RUNWIRE_SSE_KEEPALIVE_SECONDS must be positive")
        for origin in self.cors_origins:
            if origin != "*" and not _is_origin(origin):
                raise ValueError(
                    f"RUNWIRE_CORS_ORIGINS: {origin!r} is not an origin: expected"
                    " scheme://host[:port] (no path, no trailing slash), or *"
                )
        if self.drain_seconds < 0:
            raise ValueError("RUNWIRE_DRAIN_SECONDS must not be negative")
        if self.step_sandbox not in {"", "bubblewrap"}:
            raise ValueError(
                f"RUNWIRE_STEP_SANDBOX: expected bubblewrap or empty, got {self.step_sandbox!r}"
            )
        first, last = self.step_uids
        # 0 is root; 65535 and 2^32-1 are (uid_t)-1 in 16 and 32 bits.
        if not 0 < first <= last < 2**32 - 1 or first <= 65535 <= last:
            raise ValueError(
                f"RUNWIRE_STEP_UIDS={first}-{last}: FIRST <= LAST, from 1 to 4294967294,"
                " without 65535"
            )
        if leaked := [name for name in self.step_pass_env if name.startswith("RUNWIRE_")]:
            raise ValueError(f"RUNWIRE_STEP_PASS_ENV: server settings stay private: {leaked}")
        if leaked := [name for name in self.llm_key_vars if name.startswith("RUNWIRE_")]:
            raise ValueError(f"RUNWIRE_LLM_KEY_VARS: server settings stay private: {leaked}")
        if self.log_format not in {"text", "json"}:
            raise ValueError(f"RUNWIRE_LOG_FORMAT: expected text or json, got {self.log_format!r}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(
                f"RUNWIRE_LOG_LEVEL: expected one of {', '.join(LOG_LEVELS)},"
                f" got {self.log_level!r}"
            )
        if self.call_driver not in {"sip", "simulated"}:
            raise ValueError(
                f"RUNWIRE_CALL_DRIVER: expected sip or simulated, got {self.call_driver!r}"
            )
        if not 0 < self.artifact_max_bytes <= _ARTIFACT_BYTES_CEILING:
            raise ValueError(
                f"RUNWIRE_ARTIFACT_MAX_BYTES must be from 1 to {_ARTIFACT_BYTES_CEILING}"
                " (a Postgres bytea value holds at most 1 GB)"
            )
        if self.metrics_token is not None and (
            len(self.metrics_token) < _METRICS_TOKEN_MIN_CHARS
            or any(c.isspace() for c in self.metrics_token)
        ):
            raise ValueError(
                f"RUNWIRE_METRICS_TOKEN must be at least {_METRICS_TOKEN_MIN_CHARS} characters"
                " without spaces (e.g. the output of `openssl rand -hex 32`)"
            )

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'runwire.sqlite').resolve()}"

    @property
    def embedded_database_file(self) -> Path | None:
        """The SQLite file of the database URL (the embedded default or a sqlite:/// URL)."""
        url = self.effective_database_url
        if not url.startswith("sqlite:///"):
            return None
        return Path(url.removeprefix("sqlite:///"))

    @property
    def database_label(self) -> str:
        """The database URL for messages: its password, if any, replaced by ***."""
        return redacted_url(self.effective_database_url)

    @property
    def admin_token_file(self) -> Path:
        """Where the first start writes the bootstrap admin token (readable by the user only)."""
        return self.data_dir / "admin-token"

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
        suites_dir = env.get("RUNWIRE_SUITES_DIR")
        llm_key_vars = tuple(
            name.strip() for name in text("LLM_KEY_VARS", "").split(",") if name.strip()
        )
        cors_origins = tuple(
            origin.strip() for origin in text("CORS_ORIGINS", "").split(",") if origin.strip()
        )
        return cls(
            data_dir=Path(text("DATA_DIR", str(defaults.data_dir))),
            database_url=env.get("RUNWIRE_DATABASE_URL") or None,
            bus_url=text("BUS_URL", defaults.bus_url),
            host=text("HOST", defaults.host),
            port=int(number("PORT", defaults.port)),
            scenarios_dir=Path(scenarios_dir) if scenarios_dir else None,
            suites_dir=Path(suites_dir) if suites_dir else None,
            load_examples=flag("LOAD_EXAMPLES", defaults.load_examples),
            runner_enabled=flag("RUNNER", defaults.runner_enabled),
            runner_slots=int(number("RUNNER_SLOTS", defaults.runner_slots)),
            grace_seconds=number("GRACE_SECONDS", defaults.grace_seconds),
            lease_seconds=number("LEASE_SECONDS", defaults.lease_seconds),
            heartbeat_seconds=number("HEARTBEAT_SECONDS", defaults.heartbeat_seconds),
            drain_seconds=number("DRAIN_SECONDS", defaults.drain_seconds),
            poll_seconds=number("POLL_SECONDS", defaults.poll_seconds),
            flush_interval_ms=number("FLUSH_INTERVAL_MS", defaults.flush_interval_ms),
            subscriber_buffer=int(number("SUBSCRIBER_BUFFER", defaults.subscriber_buffer)),
            output_coalesce_ms=number("OUTPUT_COALESCE_MS", defaults.output_coalesce_ms),
            output_step_bytes=int(number("OUTPUT_STEP_BYTES", defaults.output_step_bytes)),
            output_execution_bytes=int(
                number("OUTPUT_EXECUTION_BYTES", defaults.output_execution_bytes)
            ),
            output_lines_per_second=number(
                "OUTPUT_LINES_PER_SECOND", defaults.output_lines_per_second
            ),
            output_line_burst=int(number("OUTPUT_LINE_BURST", defaults.output_line_burst)),
            output_artifact=flag("OUTPUT_ARTIFACT", defaults.output_artifact),
            graphiql=flag("GRAPHIQL", defaults.graphiql),
            introspection=flag("INTROSPECTION", defaults.introspection),
            max_query_depth=int(number("MAX_QUERY_DEPTH", defaults.max_query_depth)),
            max_aliases=int(number("MAX_ALIASES", defaults.max_aliases)),
            max_tokens=int(number("MAX_TOKENS", defaults.max_tokens)),
            max_body_bytes=int(number("MAX_BODY_BYTES", defaults.max_body_bytes)),
            max_subscriptions_per_connection=int(
                number(
                    "MAX_SUBSCRIPTIONS_PER_CONNECTION", defaults.max_subscriptions_per_connection
                )
            ),
            connection_init_timeout_seconds=number(
                "CONNECTION_INIT_TIMEOUT_SECONDS", defaults.connection_init_timeout_seconds
            ),
            max_definition_bytes=int(number("MAX_DEFINITION_BYTES", defaults.max_definition_bytes)),
            max_definition_steps=int(number("MAX_DEFINITION_STEPS", defaults.max_definition_steps)),
            max_labels=int(number("MAX_LABELS", defaults.max_labels)),
            max_inputs_bytes=int(number("MAX_INPUTS_BYTES", defaults.max_inputs_bytes)),
            max_inputs_depth=int(number("MAX_INPUTS_DEPTH", defaults.max_inputs_depth)),
            max_reason_chars=int(number("MAX_REASON_CHARS", defaults.max_reason_chars)),
            subscriber_stall_seconds=number(
                "SUBSCRIBER_STALL_SECONDS", defaults.subscriber_stall_seconds
            ),
            ws_deflate=flag("WS_DEFLATE", defaults.ws_deflate),
            access_log=flag("ACCESS_LOG", defaults.access_log),
            log_format=text("LOG_FORMAT", defaults.log_format).strip().lower(),
            log_level=text("LOG_LEVEL", defaults.log_level).strip().upper(),
            session_check_seconds=number("SESSION_CHECK_SECONDS", defaults.session_check_seconds),
            jwt_issuer=env.get("RUNWIRE_JWT_ISSUER") or None,
            jwt_key=_file_or_value(env.get("RUNWIRE_JWT_KEY") or None),
            jwt_algorithms=tuple(
                a.strip()
                for a in text("JWT_ALGORITHMS", ",".join(defaults.jwt_algorithms)).split(",")
                if a.strip()
            ),
            jwt_audience=env.get("RUNWIRE_JWT_AUDIENCE") or None,
            jwt_workspace_claim=text("JWT_WORKSPACE_CLAIM", defaults.jwt_workspace_claim),
            jwt_role_claim=text("JWT_ROLE_CLAIM", defaults.jwt_role_claim),
            step_user=env.get("RUNWIRE_STEP_USER"),
            step_uids=parse_uid_range(env["RUNWIRE_STEP_UIDS"])
            if env.get("RUNWIRE_STEP_UIDS", "").strip()
            else defaults.step_uids,
            step_dir=Path(text("STEP_DIR", str(defaults.step_dir))),
            step_pass_env=tuple(
                name.strip() for name in text("STEP_PASS_ENV", "").split(",") if name.strip()
            ),
            step_sandbox=text("STEP_SANDBOX", defaults.step_sandbox).strip().lower(),
            prices_file=Path(env["RUNWIRE_PRICES_FILE"])
            if env.get("RUNWIRE_PRICES_FILE")
            else None,
            llm_key_vars=llm_key_vars,
            llm_keys={name: env[name] for name in llm_key_vars if env.get(name)},
            call_driver=text("CALL_DRIVER", defaults.call_driver).strip().lower(),
            sip_local_host=text("SIP_LOCAL_HOST", defaults.sip_local_host),
            sip_public_host=env.get("RUNWIRE_SIP_PUBLIC_HOST") or None,
            artifact_max_bytes=int(number("ARTIFACT_MAX_BYTES", defaults.artifact_max_bytes)),
            artifact_retention_days=number(
                "ARTIFACT_RETENTION_DAYS", defaults.artifact_retention_days
            ),
            sse_keepalive_seconds=number("SSE_KEEPALIVE_SECONDS", defaults.sse_keepalive_seconds),
            cors_origins=cors_origins,
            metrics_token=_metrics_token(env.get("RUNWIRE_METRICS_TOKEN")),
            otlp_traces_endpoint=_otlp_traces_endpoint(env),
            otlp_headers=_otlp_headers(env),
            otlp_timeout_seconds=_otlp_timeout_seconds(env, defaults.otlp_timeout_seconds),
            otel_service_name=env.get("OTEL_SERVICE_NAME") or defaults.otel_service_name,
            webhook_allow_private=flag("WEBHOOK_ALLOW_PRIVATE", defaults.webhook_allow_private),
            webhook_timeout_seconds=number(
                "WEBHOOK_TIMEOUT_SECONDS", defaults.webhook_timeout_seconds
            ),
            webhook_max_attempts=max(
                1, int(number("WEBHOOK_MAX_ATTEMPTS", defaults.webhook_max_attempts))
            ),
            webhook_retry_seconds=number("WEBHOOK_RETRY_SECONDS", defaults.webhook_retry_seconds),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed (CLI flags win over the environment)."""
        return replace(self, **changes)  # type: ignore[arg-type]


_ARTIFACT_BYTES_CEILING = 1_000_000_000
_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Variable:
    """One `RUNWIRE_*` variable as `runwire serve --help` lists it."""

    name: str
    """Without the `RUNWIRE_` prefix."""
    meaning: str
    setting: str | None = None
    """The Settings field it sets; its default is shown from the dataclass, so it cannot drift."""
    default: str | None = None
    """Said in words when the field's own default does not say it (None, a computed path)."""

    def default_text(self) -> str:
        """The default as an operator would write it: `8000`, `true`, `5`, or words."""
        if self.default is not None:
            return self.default
        value = getattr(Settings(), self.setting) if self.setting else None
        if value is None or value in ((), ""):
            return "unset"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:g}"
        if isinstance(value, int) and value >= _MIB and value % _MIB == 0:
            return f"{value // _MIB} MiB"
        if isinstance(value, tuple):
            return ",".join(str(item) for item in value)
        return str(value)


# Every variable `Settings.from_env` reads, for `runwire serve --help`; a test checks that this
# table, that function and README's settings table name the same variables.
VARIABLES: tuple[Variable, ...] = (
    Variable("DATA_DIR", "where the embedded SQLite file and admin token live", "data_dir"),
    Variable(
        "DATABASE_URL",
        "sqlite:////abs/path.sqlite or postgresql://user@host/db",
        default="SQLite in the data dir",
    ),
    Variable("BUS_URL", "memory://, a postgresql:// URL (LISTEN/NOTIFY) or redis://", "bus_url"),
    Variable("HOST", "interface to bind (also --host)", "host"),
    Variable("PORT", "port to listen on (also --port)", "port"),
    Variable("SCENARIOS_DIR", "extra *.yaml scenarios loaded at start", "scenarios_dir"),
    Variable("SUITES_DIR", "*.yaml suites loaded at start, after the scenarios", "suites_dir"),
    Variable("LOAD_EXAMPLES", "save the shipped example scenarios at start", "load_examples"),
    Variable("RUNNER", "serve runs executions too; false for API replicas", "runner_enabled"),
    Variable("RUNNER_SLOTS", "executions run at once by this process", "runner_slots"),
    Variable("GRACE_SECONDS", "SIGINT to SIGKILL grace when a step is stopped", "grace_seconds"),
    Variable("LEASE_SECONDS", "a runner's claim on an execution; >= 3 heartbeats", "lease_seconds"),
    Variable("HEARTBEAT_SECONDS", "how often a runner renews its claims", "heartbeat_seconds"),
    Variable("DRAIN_SECONDS", "on SIGTERM, how long running steps may finish", "drain_seconds"),
    Variable("POLL_SECONDS", "how often a runner looks for queued work", "poll_seconds"),
    Variable(
        "FLUSH_INTERVAL_MS", "how long events wait to be written together", "flush_interval_ms"
    ),
    Variable("SUBSCRIBER_BUFFER", "events held for one subscriber", "subscriber_buffer"),
    Variable(
        "OUTPUT_COALESCE_MS", "output lines within this window are one event", "output_coalesce_ms"
    ),
    Variable(
        "OUTPUT_STEP_BYTES", "output one step attempt may print (0: off)", "output_step_bytes"
    ),
    Variable(
        "OUTPUT_EXECUTION_BYTES",
        "output one run of an execution may print (0: off)",
        "output_execution_bytes",
    ),
    Variable(
        "OUTPUT_LINES_PER_SECOND", "a step attempt's sustained line rate", "output_lines_per_second"
    ),
    Variable("OUTPUT_LINE_BURST", "lines a step attempt may print at once", "output_line_burst"),
    Variable(
        "OUTPUT_ARTIFACT",
        "keep a truncated attempt's whole output as output.log",
        "output_artifact",
    ),
    Variable("GRAPHIQL", "serve GraphiQL", "graphiql"),
    Variable("INTROSPECTION", "answer GraphQL introspection", "introspection"),
    Variable("MAX_QUERY_DEPTH", "nesting of one GraphQL document", "max_query_depth"),
    Variable("MAX_ALIASES", "aliases in one GraphQL document", "max_aliases"),
    Variable("MAX_TOKENS", "tokens in one GraphQL document", "max_tokens"),
    Variable("MAX_BODY_BYTES", "largest request body or WebSocket message", "max_body_bytes"),
    Variable(
        "MAX_SUBSCRIPTIONS_PER_CONNECTION",
        "operations at once on one socket",
        "max_subscriptions_per_connection",
    ),
    Variable(
        "CONNECTION_INIT_TIMEOUT_SECONDS",
        "a socket must send connection_init by then",
        "connection_init_timeout_seconds",
    ),
    Variable("MAX_DEFINITION_BYTES", "a definition's text, in UTF-8 bytes", "max_definition_bytes"),
    Variable("MAX_DEFINITION_STEPS", "steps in one definition", "max_definition_steps"),
    Variable("MAX_LABELS", "labels per execution", "max_labels"),
    Variable("MAX_INPUTS_BYTES", "one execution's inputs as JSON", "max_inputs_bytes"),
    Variable("MAX_INPUTS_DEPTH", "nesting of inputs and upstream", "max_inputs_depth"),
    Variable("MAX_REASON_CHARS", "a stop or pause reason", "max_reason_chars"),
    Variable(
        "SUBSCRIBER_STALL_SECONDS",
        "a subscriber that reads nothing for this long is cut",
        "subscriber_stall_seconds",
    ),
    Variable("WS_DEFLATE", "accept permessage-deflate on sockets", "ws_deflate"),
    Variable("ACCESS_LOG", "log a line per HTTP request and socket", "access_log"),
    Variable(
        "SESSION_CHECK_SECONDS",
        "how often live connections' tokens are checked for revocation",
        "session_check_seconds",
    ),
    Variable("JWT_ISSUER", "an identity provider whose JWTs are accepted", "jwt_issuer"),
    Variable("JWT_KEY", "its PEM public key, or @/path/key.pem", "jwt_key"),
    Variable("JWT_ALGORITHMS", "accepted JWT algorithms (RS, PS, ES only)", "jwt_algorithms"),
    Variable("JWT_AUDIENCE", "the audience JWTs must name", "jwt_audience"),
    Variable("JWT_WORKSPACE_CLAIM", "the JWT claim naming the workspace", "jwt_workspace_claim"),
    Variable("JWT_ROLE_CLAIM", "the JWT claim naming the role", "jwt_role_claim"),
    Variable(
        "STEP_USER",
        "account process steps run as (empty: the server's user)",
        default="as root: a uid of its own per step",
    ),
    Variable(
        "STEP_UIDS",
        "FIRST-LAST: the uids steps get when run as root",
        default="{}-{}".format(*DEFAULT_STEP_UIDS),
    ),
    Variable(
        "STEP_DIR", "where each step attempt gets a directory", default="$TMPDIR/runwire-steps"
    ),
    Variable("STEP_PASS_ENV", "server variables passed to steps, comma-separated", "step_pass_env"),
    Variable(
        "STEP_SANDBOX",
        "bubblewrap: run process steps in a sandbox",
        "step_sandbox",
        default="unset",
    ),
    Variable("PRICES_FILE", "a price table replacing the shipped one", default="the shipped table"),
    Variable("LLM_KEY_VARS", "server variables llm steps may use as API keys", "llm_key_vars"),
    Variable("CALL_DRIVER", "driver of call steps that name none: sip or simulated", "call_driver"),
    Variable("SIP_LOCAL_HOST", "where the sip driver binds", "sip_local_host"),
    Variable(
        "SIP_PUBLIC_HOST",
        "the address a far end reaches the sip driver at",
        default="the local host",
    ),
    Variable(
        "ARTIFACT_MAX_BYTES", "the largest artifact a step attempt may store", "artifact_max_bytes"
    ),
    Variable(
        "ARTIFACT_RETENTION_DAYS",
        "days artifacts are kept (0: for ever)",
        "artifact_retention_days",
    ),
    Variable(
        "SSE_KEEPALIVE_SECONDS",
        "a quiet SSE stream sends a comment this often",
        "sse_keepalive_seconds",
    ),
    Variable(
        "CORS_ORIGINS", "browser origins whose pages may call the API; * for any", "cors_origins"
    ),
    Variable(
        "METRICS_TOKEN",
        "the secret a Prometheus scraper sends to read /metrics (@/path: a file)",
        default="unset: /metrics answers 404",
    ),
    Variable("LOG_FORMAT", "text (for people) or json (one object per line)", "log_format"),
    Variable(
        "LOG_LEVEL", "the least severe lines logged: DEBUG, INFO, WARNING, ERROR", "log_level"
    ),
    Variable(
        "WEBHOOK_ALLOW_PRIVATE",
        "webhooks may post to loopback and private addresses",
        "webhook_allow_private",
    ),
    Variable(
        "WEBHOOK_TIMEOUT_SECONDS", "how long one webhook post may take", "webhook_timeout_seconds"
    ),
    Variable("WEBHOOK_MAX_ATTEMPTS", "attempts a webhook delivery gets", "webhook_max_attempts"),
    Variable(
        "WEBHOOK_RETRY_SECONDS",
        "wait before a delivery's first retry (doubling, at most 30 min)",
        "webhook_retry_seconds",
    ),
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_METRICS_TOKEN_MIN_CHARS = 16


def redacted_url(url: str) -> str:
    """`url` with its password, if any, shown as `***` (for messages and logs)."""
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url


def parse_uid_range(text: str) -> tuple[int, int]:
    """`FIRST-LAST` as two numbers (ValueError naming RUNWIRE_STEP_UIDS if it is not that)."""
    first, separator, last = text.strip().partition("-")
    if not (separator and first.strip().isdigit() and last.strip().isdigit()):
        raise ValueError(
            f"RUNWIRE_STEP_UIDS={text!r}: expected FIRST-LAST, e.g. 2130706432-2130771967"
        )
    return int(first), int(last)


def _is_origin(text: str) -> bool:
    """Whether `text` is what a browser sends as Origin: scheme://host[:port], nothing more."""
    if "*" in text:
        return False  # Litestar would read it as a wildcard pattern, not an origin
    parsed = urlsplit(text)
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    return (
        parsed.scheme in {"http", "https"}
        and bool(parsed.hostname)
        and not (parsed.path or parsed.query or parsed.fragment or parsed.username)
        and text == f"{parsed.scheme}://{parsed.netloc}"
    )


def _otlp_traces_endpoint(env: Mapping[str, str]) -> str | None:
    """The traces URL the OTEL_* variables name, as the OTLP exporter spec reads them."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = env.get(name, "").strip()
        if protocol:
            if protocol != "http/protobuf":
                raise ValueError(f"{name}={protocol!r}: Runwire sends traces as http/protobuf only")
            break
    # The per-signal variable is the whole URL; the general one is a base that gets /v1/traces.
    if endpoint := env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return _http_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    if base := env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return _http_url("OTEL_EXPORTER_OTLP_ENDPOINT", base.rstrip("/") + "/v1/traces")
    return None


def _http_url(name: str, url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{name}: expected an http:// or https:// URL")
    return url


def _otlp_timeout_seconds(env: Mapping[str, str], default: float) -> float:
    """OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT: milliseconds, as the OTLP exporter spec says."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        raw = env.get(name, "").strip()
        if raw:
            try:
                milliseconds = float(raw)
            except ValueError:
                raise ValueError(f"{name}: expected milliseconds, got {raw!r}") from None
            if not 0 < milliseconds <= 600_000:
                raise ValueError(f"{name}: expected 1 to 600000 milliseconds, got {raw!r}")
            return milliseconds / 1000
    return default


def _otlp_headers(env: Mapping[str, str]) -> dict[str, str]:
    """`key=value,key2=value2` (values URL-encoded) from the OTEL_* headers variables."""
    name = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
    raw = env.get(name, "").strip()
    if not raw:
        name = "OTEL_EXPORTER_OTLP_HEADERS"
        raw = env.get(name, "").strip()
    headers: dict[str, str] = {}
    for index, entry in enumerate(part for part in raw.split(",") if part.strip()):
        key, equals, value = entry.partition("=")
        if not equals or not key.strip():
            # Which entry, never its text: header values are credentials.
            raise ValueError(f"{name}: entry {index + 1} is not key=value")
        headers[urllib.parse.unquote(key.strip()).lower()] = urllib.parse.unquote(value.strip())
    return headers


def _file_or_value(raw: str | None) -> str | None:
    """`@/path/key.pem` reads the file (keys are multi-line); anything else is the value."""
    if raw is None or not raw.startswith("@"):
        return raw
    return Path(raw[1:]).read_text()


def _metrics_token(raw: str | None) -> str | None:
    """The scrape secret, or the content of the file `@/path` names (a mounted secret)."""
    if not raw:
        return None
    if raw.startswith("@"):
        try:
            token = Path(raw[1:]).read_text().strip()
        except OSError as error:
            raise ValueError(
                f"RUNWIRE_METRICS_TOKEN: cannot read {raw[1:]} ({error.strerror})"
            ) from None
        if not token:
            raise ValueError(f"RUNWIRE_METRICS_TOKEN: {raw[1:]} is empty")
        return token
    return raw
