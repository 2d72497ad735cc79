"""`runwire serve | worker | migrate | export-schema | workspace | token | secret | fake-llm |
ivr-sim`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import click

from runwire.settings import Settings

if TYPE_CHECKING:
    from litestar import Litestar

    from runwire.db.access import AccessRepository
    from runwire.db.engine import Database
    from runwire.domain.access import Actor
    from runwire.domain.secrets import SecretService
    from runwire.domain.tokens import TokenService

T = TypeVar("T")
ROLES = ["viewer", "operator", "editor", "admin"]


class _WithEnvironment(click.Command):
    """A command whose help ends with the `RUNWIRE_*` variables it reads, from settings.py."""

    def format_epilog(self, context: click.Context, formatter: click.HelpFormatter) -> None:
        from runwire.settings import VARIABLES

        with formatter.section("Environment (flags win over variables)"):
            formatter.write_dl(
                [
                    (f"RUNWIRE_{v.name}", f"{v.meaning} (default: {v.default_text()})")
                    for v in VARIABLES
                ]
            )
        super().format_epilog(context, formatter)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="runwire", prog_name="runwire")
def main() -> None:
    """Runwire: run executions and watch them live over GraphQL."""


@main.command(cls=_WithEnvironment)
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Serve GraphQL, SSE and the runner (on the embedded SQLite default unless configured)."""
    settings = _started(host, port)

    def app() -> Litestar:
        from runwire.app import create_app

        return create_app(settings)

    _serve_http(app, settings, websockets=True)


@main.command(cls=_WithEnvironment)
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
def worker(host: str | None, port: int | None) -> None:
    """Run executions only, for API replicas without a runner; /health, /ready, /metrics."""
    settings = _started(host, port)

    def app() -> Litestar:
        from runwire.worker import create_worker_app

        return create_worker_app(settings)

    _serve_http(app, settings, websockets=False)


def _started(host: str | None, port: int | None) -> Settings:
    """A server process's settings, with its logging set up and its memory kept private."""
    from runwire import logs

    settings = _settings(host, port)
    logs.configure(settings)
    _keep_memory_private()
    return settings


def _keep_memory_private() -> None:
    """Before anything runs a step: a step running as the server's user (a server that does not
    run as root) must not read the server's environment (the database URL) through /proc."""
    from runwire.nondumpable import keep_memory_private

    if not keep_memory_private():
        logging.getLogger(__name__).warning(
            "could not make the server non-dumpable: steps running as its user can read its"
            " environment"
        )


def _settings(host: str | None, port: int | None) -> Settings:
    """The environment's settings with the command line's flags; a bad value ends in one line."""
    try:
        settings = Settings.from_env()
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if host is not None:
        settings = settings.with_overrides(host=host)
    if port is not None:
        settings = settings.with_overrides(port=port)
    return settings


def _serve_http(app: Callable[[], Litestar], settings: Settings, *, websockets: bool) -> None:
    """Run `app()` under uvicorn until SIGTERM or SIGINT; leaving its lifespan stops the core.

    What an operator can fix (the port, the database, the bus) is checked first, before the
    app is even imported, and reported in one line (exit code 1); a start-up that fails later
    exits with uvicorn's code 3.
    """
    import uvicorn

    from runwire import logs
    from runwire.events.compat.uvicorn import SocketProtocol

    listening = _listening_socket(settings)
    _check_before_start(settings)
    config = uvicorn.Config(
        app(),
        host=settings.host,
        port=settings.port,
        log_config=logs.config(settings),
        log_level=settings.log_level.lower(),
        access_log=settings.access_log,
        # Named, not "auto": uvicorn's sans-I/O protocol keeps no task per socket (keepalive
        # runs on timers; bench P4: 61 KB per idle subscription, 68 KB with the legacy
        # `websockets` one), and an installed wsproto must not silently change what a socket
        # costs. Runwire's subclass keeps less zlib state when deflate is on.
        ws=SocketProtocol if websockets else "none",
        ws_per_message_deflate=settings.ws_deflate,
        # One limit for a GraphQL request, whichever transport carries it.
        ws_max_size=settings.max_body_bytes,
        timeout_graceful_shutdown=int(settings.grace_seconds) + 5,
    )

    class Server(uvicorn.Server):
        """uvicorn's server, saying where it listens (it does not when given a bound socket)."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                shown = f"[{settings.host}]" if ":" in settings.host else settings.host
                # Named: run as `python -m runwire.cli`, __name__ is "__main__".
                logging.getLogger("runwire.cli").info(
                    "listening on http://%s:%d (Ctrl+C to stop)", shown, settings.port
                )

    server = Server(config)
    server.run(sockets=[listening])
    if not server.started:
        sys.exit(3)  # as uvicorn.run: the app's start-up failed, and uvicorn said why


def _listening_socket(settings: Settings) -> socket.socket:
    """The server's socket, bound before anything starts: a port in use is one line, at once."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((settings.host, settings.port))
    except OSError as error:
        listening.close()
        reason = (error.strerror or type(error).__name__).lower()
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port} ({reason}): stop what uses it,"
            " or choose another port with RUNWIRE_PORT or --port"
        ) from None
    listening.set_inheritable(True)
    return listening


def _check_before_start(settings: Settings) -> None:
    """The database and bus this process needs, reachable and ready, or one line and exit 1."""
    from runwire import preflight

    try:
        asyncio.run(preflight.check(settings))
    except preflight.StartupProblem as problem:
        raise click.ClickException(problem.message) from None


@main.command("fake-llm")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8089, show_default=True, type=int, help="Port.")
@click.option(
    "--tokens-per-second",
    default=20.0,
    show_default=True,
    type=float,
    help="How fast answers stream (0: as fast as possible).",
)
def fake_llm(host: str, port: int, tokens_per_second: float) -> None:
    """Serve a fake LLM provider for offline tests and examples (not a model).

    OpenAI-compatible POST /v1/chat/completions, Anthropic-style POST /v1/messages, GET
    /v1/models, and GET /tools/weather?city=... (a tool endpoint for the agent example). Answers
    are deterministic: "You said: <last user message>"; with tools offered, a call of one; after
    a tool result, "The <tool> tool returned: <result>".

    \b
    Faults, asked for in the model name after colons (runwire-fake-chat:error=503:times=1):
      error=STATUS        answer STATUS with an OpenAI-style (or Anthropic) error body
      retry-after=SECONDS send Retry-After (a 429 unless error= says otherwise)
      times=N             the fault holds for the first N requests of that model name
      cut=N               drop the connection after N streamed chunks
      stall=N             after N chunks, send nothing until the client hangs up
      delay=MS            wait before answering
      tps=N               N chunks per second for this request
      words=N             answer N words instead of echoing
    """
    from runwire.fakes.llm_provider import run_forever

    asyncio.run(run_forever(host, port, tokens_per_second or None))


@main.command()
def migrate() -> None:
    """Apply pending database migrations (needed once per Postgres database)."""
    from runwire import preflight
    from runwire.db.engine import Database

    url = _settings(None, None).effective_database_url

    async def run() -> None:
        with preflight.database_problems(url):
            async with Database.open(url, migrate=True):
                pass

    try:
        asyncio.run(run())
    except preflight.StartupProblem as problem:
        raise click.ClickException(problem.message) from None
    click.echo("migrations applied")


@main.command("export-schema")
def export_schema() -> None:
    """Print the GraphQL schema (SDL) — the contract in schema/schema.graphql."""
    from runwire.graphql.schema.build import build_schema

    sys.stdout.write(build_schema().as_str() + "\n")


@main.command(
    "fake-agent",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def fake_agent(args: tuple[str, ...]) -> None:
    """Replay a recorded CLI-agent transcript, standing in for Claude Code or Codex (--help)."""
    from runwire.fakes.cli_agent import main as replay

    sys.exit(replay(list(args)))


@main.command("ivr-sim")
@click.option(
    "--menu",
    "menu_name",
    required=True,
    help="A menu YAML file, or a shipped menu's name (bank, broken-bank).",
)
@click.option("--port", default=5070, show_default=True, type=int, help="SIP (UDP) port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--json", "json_lines", is_flag=True, help="Log one JSON object per event.")
def ivr_sim(menu_name: str, port: int, host: str, json_lines: bool) -> None:
    """Answer SIP calls with an IVR menu: TTS prompts, DTMF and spoken-keyword branches.

    Calls to another extension than the menu's get 404; each call's prompts, what it heard
    (digits, or the transcript and its confidence), transfers and hang-ups are logged one line
    an event. Ctrl-C hangs up live calls (BYE) and exits. See docs/ivr-simulator.md.
    """
    from runwire.errors import InvalidDefinition
    from runwire.voice.calls import EngineMissing
    from runwire.voice.ivr.menu import find_menu, load_menu
    from runwire.voice.ivr.server import run_until_stopped

    try:
        menu = load_menu(find_menu(menu_name))
    except (FileNotFoundError, InvalidDefinition) as error:
        raise click.ClickException(str(error)) from error

    def line(text: str) -> None:
        click.echo(text)
        sys.stdout.flush()

    try:
        asyncio.run(run_until_stopped(menu, host, port, line, json_lines=json_lines))
    except EngineMissing as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        raise click.ClickException(f"cannot serve on {host}:{port}: {error}") from error


@main.group()
def workspace() -> None:
    """Create and list workspaces (on the configured database)."""


@workspace.command("create")
@click.argument("name")
@click.option("--organization", default="default", show_default=True)
def workspace_create(name: str, organization: str) -> None:
    """Create a workspace (and its organization if new)."""

    async def run(access: AccessRepository) -> str:
        created = await access.create_workspace(organization, name)
        return f"{created.name}\t{created.id}"

    click.echo(_with_access(run))


@workspace.command("list")
def workspace_list() -> None:
    """Every workspace: name and id."""

    async def run(access: AccessRepository) -> str:
        return "\n".join(f"{w.name}\t{w.id}" for w in await access.workspaces())

    click.echo(_with_access(run))


@main.group()
def token() -> None:
    """Create, list and revoke API tokens (on the configured database)."""


@token.command("create")
@click.option("--workspace", "workspace_name", default="default", show_default=True)
@click.option("--name", required=True, help="What the token is for, e.g. ci-bot.")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--expires-in-days", type=float, default=None, help="Default: never.")
def token_create(workspace_name: str, name: str, role: str, expires_in_days: float | None) -> None:
    """Create a token; its secret is printed once, alone on stdout (for `$(...)`)."""
    from runwire.domain.access import Role
    from runwire.domain.clock import utc_now

    async def run(access: AccessRepository) -> str:
        expires_at = None
        if expires_in_days is not None:
            expires_at = utc_now() + timedelta(days=expires_in_days)
        issued = await _tokens(access).create(
            await _admin(access, workspace_name), name, Role(role), expires_at
        )
        click.echo(f"token {issued.token.id} ({role}) in workspace {workspace_name}", err=True)
        return issued.secret

    click.echo(_with_access(run))


@token.command("list")
@click.option("--workspace", "workspace_name", default="default", show_default=True)
def token_list(workspace_name: str) -> None:
    """The workspace's tokens: id, name, role, expiry, last use, revocation."""

    async def run(access: AccessRepository) -> str:
        found = await _tokens(access).list_tokens(await _admin(access, workspace_name))
        rows = ["id\tname\trole\texpires_at\tlast_used_at\trevoked_at"]
        rows.extend(
            "\t".join(
                str(value or "-")
                for value in (
                    t.id,
                    t.name,
                    t.role.value,
                    t.expires_at,
                    t.last_used_at,
                    t.revoked_at,
                )
            )
            for t in found
        )
        return "\n".join(rows)

    click.echo(_with_access(run))


@token.command("revoke")
@click.argument("token_id")
@click.option("--workspace", "workspace_name", default="default", show_default=True)
def token_revoke(token_id: str, workspace_name: str) -> None:
    """Revoke a token; its live subscriptions close within seconds."""

    async def run(access: AccessRepository) -> str:
        revoked = await _tokens(access).revoke(await _admin(access, workspace_name), token_id)
        return f"revoked {revoked.id} ({revoked.name})"

    click.echo(_with_access(run))


@main.group()
def secret() -> None:
    """Set, list and delete workspace secrets (on the configured database)."""


@secret.command("set")
@click.argument("name")
@click.option("--workspace", "workspace_name", default="default", show_default=True)
def secret_set(name: str, workspace_name: str) -> None:
    """Set NAME to the value read from stdin (one trailing newline dropped), or typed hidden."""
    _database_url()  # no database: say so before asking for the value
    if sys.stdin.isatty():
        value = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        # Never an argument: arguments show in `ps` and in shell history.
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")

    async def run(access: AccessRepository, secrets: SecretService) -> str:
        found = await secrets.set(await _admin(access, workspace_name), name, value)
        return f"set {found.name} in workspace {workspace_name}"

    click.echo(_with_secrets(run))


@secret.command("list")
@click.option("--workspace", "workspace_name", default="default", show_default=True)
def secret_list(workspace_name: str) -> None:
    """The workspace's secrets: name, when set, by whom; never a value."""

    async def run(access: AccessRepository, secrets: SecretService) -> str:
        found = await secrets.list(await _admin(access, workspace_name))
        rows = ["name\tcreated_at\tupdated_at\tupdated_by"]
        rows.extend(f"{s.name}\t{s.created_at}\t{s.updated_at}\t{s.updated_by}" for s in found)
        return "\n".join(rows)

    click.echo(_with_secrets(run))


@secret.command("delete")
@click.argument("name")
@click.option("--workspace", "workspace_name", default="default", show_default=True)
def secret_delete(name: str, workspace_name: str) -> None:
    """Delete a secret; executions that name it can no longer start."""

    async def run(access: AccessRepository, secrets: SecretService) -> str:
        await secrets.delete(await _admin(access, workspace_name), name)
        return f"deleted {name}"

    click.echo(_with_secrets(run))


def _with_secrets(run: Callable[[AccessRepository, SecretService], Awaitable[T]]) -> T:
    """`_with_access`, with the workspace secrets of the same database."""
    from runwire.db.access import AccessRepository
    from runwire.db.secrets import SecretRepository
    from runwire.domain.secrets import SecretService

    async def with_database() -> T:
        async with _database() as database:
            secrets = SecretService(SecretRepository(database))
            return await run(AccessRepository(database), secrets)

    return _reporting(with_database)


def _with_access(run: Callable[[AccessRepository], Awaitable[T]]) -> T:
    """Run `run` against the configured database; expected errors end with a message, code 1."""
    from runwire.db.access import AccessRepository

    async def with_database() -> T:
        async with _database() as database:
            return await run(AccessRepository(database))

    return _reporting(with_database)


def _reporting(main: Callable[[], Awaitable[T]]) -> T:
    """Run `main`; an expected error ends in one line naming the database it was about."""
    from asyncpg import PostgresError

    from runwire.errors import RunwireError

    async def awaited() -> T:
        return await main()

    database = _admin_settings().database_label
    # Piccolo warns (in colour, with its file and line) when it cannot connect; the line below
    # says it once.
    warnings.filterwarnings("ignore", message=".*Unable to (connect|fetch)", category=Warning)
    try:
        return asyncio.run(awaited())
    except RunwireError as error:
        raise click.ClickException(f"{error.message}; database: {database}") from None
    except (OSError, PostgresError) as error:
        raise click.ClickException(f"cannot use database {database}: {error}") from None


def _admin_settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as error:
        raise click.ClickException(str(error)) from None


@contextlib.asynccontextmanager
async def _database() -> AsyncIterator[Database]:
    """The database `runwire serve` would use, brought up to date as `serve` would (SQLite)."""
    from runwire.db.engine import Database

    url = _database_url()
    async with Database.open(url, migrate=url.startswith("sqlite")) as database:
        yield database


def _database_url() -> str:
    """The configured database's URL; an embedded file that does not exist ends the command."""
    settings = _admin_settings()
    embedded = settings.embedded_database_file
    if embedded is not None and not embedded.is_file():
        # Creating it here would make an empty database nobody serves (in whichever directory
        # the command ran), then report that its workspace does not exist.
        raise click.ClickException(
            f"no database at {embedded}: run this where `runwire serve` ran (its data directory"
            " is ./data unless RUNWIRE_DATA_DIR says otherwise), or set RUNWIRE_DATABASE_URL"
        )
    return settings.effective_database_url


async def _admin(access: AccessRepository, workspace_name: str) -> Actor:
    """Whoever runs the CLI on the server's database is its administrator."""
    from runwire.domain.access import Actor, Role
    from runwire.errors import NotFound

    found = await access.workspace(workspace_name)
    if found is None:
        raise NotFound(f"workspace {workspace_name} not found (see `runwire workspace list`)")
    return Actor(workspace_id=found.id, label="cli", role=Role.ADMIN)


def _tokens(access: AccessRepository) -> TokenService:
    from runwire.domain.tokens import TokenService

    return TokenService(access)


if __name__ == "__main__":
    main()
