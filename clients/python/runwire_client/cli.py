"""`rw`: start, watch and steer Runwire executions from a terminal or a CI pipeline.

Exit codes (the same for every command):
  0    done; for `run --follow`, `watch` and `retry --follow`: the execution SUCCEEDED; for
       `suite run --follow`: no case regressed (with --fail-on failed: none failed)
  1    the followed execution ended without succeeding (FAILED, CANCELLED, TIMED_OUT), or a
       followed suite run had a case regress (or fail)
  2    bad usage, or the server refused the request (invalid input or definition, unknown
       scenario or id, a transition the execution's state forbids, bad token, no permission)
  3    the server could not be reached, or the connection was lost for good
  128+N  interrupted by signal N (130 for Ctrl-C, 143 for SIGTERM) and detached: the execution
       keeps running
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import enum
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

# Only what the command line's options need is imported here: `rw --help` and bad usage must not
# wait for gql, httpx and rich (about half a second), which each command imports when it runs.
from runwire_client.errors import (
    AuthenticationError,
    ConnectionFailedError,
    InvalidTransitionError,
    NotFoundError,
    RunwireError,
    UnexpectedResponseError,
    ValidationError,
)
from runwire_client.models import (
    ExecutionFilter,
    ExecutionMode,
    ExecutionStatus,
    ExecutionStatusChanged,
    ReviewStatus,
)

if TYPE_CHECKING:
    from runwire_client.client import RunwireClient
    from runwire_client.models import Execution, Scenario, SuiteComparison, SuiteRun
    from runwire_client.view import EventView

EXIT_OK = 0
EXIT_NOT_SUCCEEDED = 1
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3
DEFAULT_URL = "http://127.0.0.1:8000"  # where `runwire serve` listens unless told otherwise
TOKEN_HINT = (
    "pass --token or set RUNWIRE_TOKEN (the embedded default writes its admin token to "
    "data/admin-token; `runwire token create --name NAME --role operator` makes another)"
)


class OnInterrupt(enum.StrEnum):
    """What Ctrl-C (SIGINT) or SIGTERM does while following an execution."""

    ASK = "ask"  # ask whether to stop it or detach (needs a terminal on stdin)
    STOP = "stop"  # stop the execution, show it ending, exit 1
    DETACH = "detach"  # leave it running, exit 128+signal
    CONTINUE = "continue"  # (an answer only) keep watching


ANSWERS = {
    "s": OnInterrupt.STOP,
    "stop": OnInterrupt.STOP,
    "d": OnInterrupt.DETACH,
    "detach": OnInterrupt.DETACH,
    "": OnInterrupt.DETACH,
    "c": OnInterrupt.CONTINUE,
    "continue": OnInterrupt.CONTINUE,
}


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the server is and the token to show it."""

    url: str
    token: str

    def client(self) -> RunwireClient:
        from runwire_client.client import RunwireClient

        return RunwireClient(self.url, self.token)


class Refused(click.ClickException):
    """Bad usage, or the server refused the request: one line on stderr, exit 2."""

    exit_code = EXIT_REFUSED

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"rw: error: {self.message}", err=True)


class Unreachable(Refused):
    """The server could not be reached, or the connection was lost for good: exit 3."""

    exit_code = EXIT_UNREACHABLE


class Interrupted(Refused):
    """Ctrl-C outside a follow (starting, listing, …): exit 130."""

    exit_code = 128 + signal.SIGINT


# --- the command group --------------------------------------------------------------------------

URL_HELP = "The Runwire server (env RUNWIRE_URL)."
TOKEN_HELP = "API token (env RUNWIRE_TOKEN; prefer the variable: arguments show in `ps`)."


def _given_after_the_command(context: click.Context, param: click.Parameter, value: Any) -> Any:
    """Keep a subcommand's --url/--token for `_connection`: it wins over the group's."""
    if value is not None:
        context.meta[f"rw.{param.name}"] = value
    return value


class Commands(click.Group):
    """A group whose every command also takes --url and --token after its name, as `gh` and
    `kubectl` take their global options anywhere (`rw ls --url …`, `rw run F -f --token …`)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        for flag, help_text in (("--url", URL_HELP), ("--token", TOKEN_HELP)):
            cmd.params.append(
                click.Option(
                    [flag],
                    default=None,
                    expose_value=False,
                    callback=_given_after_the_command,
                    help=f"{help_text} Also before the command.",
                )
            )
        super().add_command(cmd, name)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="RUNWIRE_URL", default=DEFAULT_URL, show_default=True, help=URL_HELP)
@click.option("--token", envvar="RUNWIRE_TOKEN", default=None, help=TOKEN_HELP)
@click.version_option(package_name="runwire-client", prog_name="rw")
@click.pass_context
def main(context: click.Context, url: str, token: str | None) -> None:
    """Start, watch and steer Runwire executions.

    --url and --token may come before or after the command.

    Exit codes: 0 done (a followed execution SUCCEEDED), 1 a followed execution did not
    succeed, 2 bad usage or request refused, 3 server unreachable, 130 detached on Ctrl-C.
    """
    context.obj = (url, token)


def _connection(context: click.Context) -> Connection:
    url, token = context.find_root().obj
    url = context.meta.get("rw.url", url)
    token = context.meta.get("rw.token", token)
    if not token:
        raise Refused(f"no API token: {TOKEN_HINT}")
    # What an Authorization header holds is a common paste: the token is what follows Bearer.
    scheme, _, rest = token.strip().partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" and rest.strip() else token.strip()
    if any(character.isspace() for character in token):
        raise Refused(
            "--token (or RUNWIRE_TOKEN): an API token has no spaces or line breaks; pass the"
            " token alone (e.g. rw_…, or `Bearer rw_…`)"
        )
    return Connection(url=url, token=token)


def _run(command: Callable[[], Coroutine[Any, Any, int]]) -> NoReturn:
    """Run an async command and exit with its code; expected failures become one line on
    stderr (never a traceback) and the code their kind calls for."""
    try:
        code = asyncio.run(command())
    except (ConnectionFailedError, UnexpectedResponseError) as error:
        raise Unreachable(_describe(error)) from None
    except RunwireError as error:
        raise Refused(_describe(error)) from None
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    sys.exit(code)


def _describe(error: RunwireError) -> str:
    if isinstance(error, ValidationError) and error.field_errors:
        # An error of the whole document (invalid YAML) has no path: its message alone.
        details = [f"{e.path}: {e.message}" if e.path else e.message for e in error.field_errors]
        # The server's message often is the one field error already: do not say it twice.
        missing = [detail for detail in details if detail not in error.message]
        return f"{error.message} ({'; '.join(missing)})" if missing else error.message
    if isinstance(error, AuthenticationError):
        return f"{error.message} ({TOKEN_HINT})"
    return error.message


@contextlib.asynccontextmanager
async def _client(connection: Connection) -> AsyncIterator[RunwireClient]:
    try:
        client = connection.client()
    except ValueError as error:  # a URL the client will not use (not http(s), credentials in it)
        raise Refused(f"--url: {error}") from None
    async with client:
        yield client


# --- run, watch, retry: start and follow ------------------------------------------------------


def _parse_input(pair: str, option: str = "--input") -> tuple[str, Any]:
    """`k=v`: v as JSON when it parses as JSON (3, true, [1], {"a": 1}, "quoted"), else text."""
    name, equals, raw = pair.partition("=")
    if not equals or not name:
        raise click.BadParameter(f"{pair!r}: expected NAME=VALUE", param_hint=option)
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def _parse_upstream(pairs: tuple[str, ...], step: str | None) -> dict[str, Any] | None:
    """`--upstream KEY=VALUE`: a needed step's output, VALUE read as `--input` reads it."""
    if not pairs:
        return None
    if step is None:
        raise click.UsageError(
            "--upstream gives the outputs of the steps one step needs: it needs --step KEY"
        )
    upstream: dict[str, Any] = {}
    for pair in pairs:
        key, equals, _ = pair.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--upstream")
        if key in upstream:
            raise click.BadParameter(f"{key!r} given twice", param_hint="--upstream")
        upstream[key] = _parse_input(pair)[1]
    return upstream


def _looks_like_path(target: str) -> bool:
    return os.sep in target or target.endswith((".yaml", ".yml", ".json"))


def _definition_or_scenario(target: str) -> tuple[str | None, str | None]:
    """(scenario, definition): an existing file is sent as an inline definition."""
    path = Path(target)
    if path.is_file():
        try:
            return None, path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise Refused(f"cannot read {target}: {error}") from None
    if _looks_like_path(target):
        raise Refused(f"no such file: {target}")
    return target, None


interrupt_option = click.option(
    "--on-interrupt",
    type=click.Choice([OnInterrupt.ASK.value, OnInterrupt.STOP.value, OnInterrupt.DETACH.value]),
    default=None,
    help="What Ctrl-C (or SIGTERM) does while following: ask (default in a terminal), "
    "stop the execution, or detach and leave it running (default otherwise).",
)


def json_option(says: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--json, with help that says what this command prints as JSON."""
    return click.option("--json", "as_json", is_flag=True, help=says)


FOLLOW_JSON = "one JSON object per event on stdout, the summary on stderr"


@main.command()
@click.argument("target", metavar="SCENARIO|FILE")
@click.option(
    "--input",
    "-i",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An input; VALUE is read as JSON when it parses (3, true, [1,2], '\"007\"'), "
    "otherwise as text. Repeatable.",
)
@click.option("--label", "labels", multiple=True, help="A label for the execution. Repeatable.")
@click.option(
    "--step",
    "step",
    metavar="KEY",
    default=None,
    help="Run only this step (the test panel's mode STEP): the steps it needs do not run.",
)
@click.option(
    "--upstream",
    "upstream_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="With --step: the output of step KEY that it needs, read as --input reads VALUE; "
    "runs it in context (mode STEP_IN_CONTEXT). Give one for every step it needs. Repeatable.",
)
@click.option("--follow", "-f", is_flag=True, help="Show the execution live until it ends.")
@json_option(f"Without --follow, the new execution as one JSON object; with it, {FOLLOW_JSON}.")
@interrupt_option
@click.pass_context
def run(
    context: click.Context,
    target: str,
    inputs: tuple[str, ...],
    labels: tuple[str, ...],
    step: str | None,
    upstream_pairs: tuple[str, ...],
    follow: bool,
    as_json: bool,
    on_interrupt: str | None,
) -> None:
    """Start SCENARIO (a saved name) or FILE (a YAML/JSON definition); print its id, or with
    --follow show it live and exit 0 only if it SUCCEEDED.

    With --step KEY only that step runs; with --upstream too, it runs with the given outputs
    of the steps it needs, which templates read as steps.<key>.output."""
    values = dict(_parse_input(pair) for pair in inputs)
    upstream = _parse_upstream(upstream_pairs, step)
    if step is not None and not step.strip():
        raise click.BadParameter("must name a step", param_hint="--step")
    mode = ExecutionMode.FULL
    if step is not None:
        mode = ExecutionMode.STEP if upstream is None else ExecutionMode.STEP_IN_CONTEXT
    connection = _connection(context)
    scenario, definition = _definition_or_scenario(target)

    async def command() -> int:
        from runwire_client.view import to_jsonable

        async with _client(connection) as client:
            try:
                execution = await client.start(
                    scenario,
                    definition=definition,
                    inputs=values or None,
                    labels=list(labels) or None,
                    mode=mode,
                    step_key=step,
                    upstream=upstream,
                )
            except NotFoundError as error:
                if scenario is None or not error.message.startswith(f"scenario {scenario} "):
                    raise
                raise Refused(
                    _unknown_scenario(error, scenario, await client.scenarios())
                ) from None
            if not follow:
                if as_json:
                    click.echo(json.dumps(to_jsonable(execution)))
                else:
                    click.echo(execution.id)
                return EXIT_OK
            return await _watch(client, execution.id, 0, as_json, on_interrupt)

    _run(command)


@main.command()
@click.argument("execution_id", metavar="ID")
@json_option(FOLLOW_JSON[0].upper() + FOLLOW_JSON[1:] + ".")
@interrupt_option
@click.pass_context
def watch(
    context: click.Context, execution_id: str, as_json: bool, on_interrupt: str | None
) -> None:
    """Show an execution from its first event, live until it ends; exit 0 only if it
    SUCCEEDED."""
    connection = _connection(context)

    async def command() -> int:
        async with _client(connection) as client:
            return await _watch(client, execution_id, 0, as_json, on_interrupt)

    _run(command)


def _steer(context: click.Context, change: Callable[[RunwireClient], Awaitable[Execution]]) -> None:
    """Make one change to an execution and print its id and status after it."""
    connection = _connection(context)

    async def command() -> int:
        async with _client(connection) as client:
            execution = await change(client)
            click.echo(f"{execution.id} {execution.status.value}")
            return EXIT_OK

    _run(command)


@main.command()
@click.argument("execution_id", metavar="ID")
@click.option("--reason", default=None, help="Why; recorded with the stop.")
@click.pass_context
def stop(context: click.Context, execution_id: str, reason: str | None) -> None:
    """Stop an execution (its running steps get SIGINT, then SIGKILL after the grace period)."""
    _steer(context, lambda client: client.stop(execution_id, reason or "stopped with rw"))


@main.command()
@click.argument("execution_id", metavar="ID")
@click.option("--reason", default=None, help="Why; recorded with the pause.")
@click.pass_context
def pause(context: click.Context, execution_id: str, reason: str | None) -> None:
    """Pause an execution: a queued one stays in the queue, a running one once its steps end."""
    _steer(context, lambda client: client.pause(execution_id, reason or "paused with rw"))


@main.command()
@click.argument("execution_id", metavar="ID")
@click.pass_context
def resume(context: click.Context, execution_id: str) -> None:
    """Resume a paused execution where it stopped (it goes back to its place in the queue)."""
    _steer(context, lambda client: client.resume(execution_id))


@main.command()
@click.argument("execution_id", metavar="ID")
@click.pass_context
def delete(context: click.Context, execution_id: str) -> None:
    """Delete an ended execution with its events, steps and artifacts (cannot be undone)."""
    connection = _connection(context)

    async def command() -> int:
        async with _client(connection) as client:
            await client.delete(execution_id)
            click.echo(f"{execution_id} deleted")
            return EXIT_OK

    _run(command)


@main.command()
@click.argument("execution_id", metavar="ID")
@click.argument("step_key", metavar="STEP")
@click.pass_context
def skip(context: click.Context, execution_id: str, step_key: str) -> None:
    """Mark a failed or not yet started STEP skipped; an ended or paused execution continues."""
    _steer(context, lambda client: client.skip_step(execution_id, step_key))


@main.command()
@click.argument("execution_id", metavar="ID")
@click.argument("step_key", metavar="STEP")
@click.option("--follow", "-f", is_flag=True, help="Show the retry live until it ends.")
@json_option(f"With --follow, {FOLLOW_JSON}.")
@interrupt_option
@click.pass_context
def retry(
    context: click.Context,
    execution_id: str,
    step_key: str,
    follow: bool,
    as_json: bool,
    on_interrupt: str | None,
) -> None:
    """Run STEP of an ended or paused execution again as a new attempt, then every step that
    has not succeeded."""
    connection = _connection(context)

    async def command() -> int:
        async with _client(connection) as client:
            # The seq before the retry: following from it shows the new attempts only.
            before = await client.get(execution_id) if follow else None
            execution = await client.retry_step(execution_id, step_key)
            if before is None:
                click.echo(f"{execution.id} {execution.status.value}")
                return EXIT_OK
            return await _watch(
                client, execution_id, before.last_seq, as_json, on_interrupt, before
            )

    _run(command)


# --- reviews -------------------------------------------------------------------------------------

ALL_STATUSES = "ALL"


@main.command("reviews")
@click.option(
    "--status",
    type=click.Choice([*(s.value for s in ReviewStatus), ALL_STATUSES], case_sensitive=False),
    default=ReviewStatus.PENDING.value,
    show_default=True,
    help="Only reviews in this status (PENDING: the queue; ALL: every status).",
)
@click.option("--execution", "execution_id", metavar="ID", default=None, help="Only this one's.")
@click.option(
    "--limit", "-n", default=50, show_default=True, type=click.IntRange(1, 200), help="How many."
)
@json_option("One JSON object per review on stdout, oldest request first.")
@click.pass_context
def list_reviews(
    context: click.Context, status: str, execution_id: str | None, limit: int, as_json: bool
) -> None:
    """Reviews waiting for a decision (the queue), oldest first; `rw review` decides one."""
    connection = _connection(context)
    wanted = None if status.upper() == ALL_STATUSES else ReviewStatus(status.upper())

    async def command() -> int:
        from runwire_client.view import review_rows, review_table, to_jsonable

        async with _client(connection) as client:
            found = await client.reviews(wanted, execution_id=execution_id, first=limit)
        # The queue needs no decision columns: every review in it is undecided.
        closed = wanted is not ReviewStatus.PENDING
        if as_json:
            for review in found:
                click.echo(json.dumps(to_jsonable(review)))
        elif sys.stdout.isatty():
            from rich.console import Console

            Console().print(review_table(found, closed))
        else:
            header, rows = review_rows(found, closed)
            for row in [header, *rows]:
                click.echo("\t".join(row))
        return EXIT_OK

    _run(command)


@main.command("review")
@click.argument("execution_id", metavar="ID")
@click.argument("step_key", metavar="STEP")
@click.argument("decision")
@click.option(
    "--value",
    "pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A field of the review's form; VALUE is read as --input reads it: JSON when it parses"
    " (4, true, [1,2], '\"007\"'), otherwise text. Repeatable.",
)
@click.option("--comment", default=None, help="Why; kept with the decision.")
@click.pass_context
def decide_review(
    context: click.Context,
    execution_id: str,
    step_key: str,
    decision: str,
    pairs: tuple[str, ...],
    comment: str | None,
) -> None:
    """Decide the review STEP of execution ID waits for: DECISION is one of its decisions
    (approve or reject unless it names others). The execution goes on, or fails if the decision
    fails the step; `rw reviews` lists what waits."""
    values = dict(_parse_input(pair, "--value") for pair in pairs)
    _steer(
        context,
        lambda client: client.submit_review(
            execution_id, step_key, decision, values or None, comment
        ),
    )


# --- ls, show -----------------------------------------------------------------------------------


@main.command("ls")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in ExecutionStatus], case_sensitive=False),
    help="Only executions in this status. Repeatable.",
)
@click.option("--scenario", default=None, help="Only executions of this scenario.")
@click.option("--label", default=None, help="Only executions with this label.")
@click.option("--search", default=None, help="Text in the name, a label or the error.")
@click.option(
    "--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 10_000), help="How many."
)
@json_option("One JSON object per execution on stdout, newest first (without its events).")
@click.pass_context
def list_executions(
    context: click.Context,
    statuses: tuple[str, ...],
    scenario: str | None,
    label: str | None,
    search: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """History, newest first (a table in a terminal, tab-separated lines otherwise)."""
    connection = _connection(context)
    wanted = ExecutionFilter(
        statuses=[ExecutionStatus(s.upper()) for s in statuses] or None,
        scenario=scenario,
        label=label,
        search=search,
    )

    async def command() -> int:
        from runwire_client.view import execution_rows, execution_table, to_jsonable

        async with _client(connection) as client:
            found: list[Execution] = []
            pages = client.history(wanted, page_size=min(limit, 100))
            async with contextlib.aclosing(pages):
                async for execution in pages:
                    found.append(execution)
                    if len(found) >= limit:
                        break
        if as_json:
            for execution in found:
                click.echo(json.dumps(to_jsonable(execution)))
        elif sys.stdout.isatty():
            from rich.console import Console

            Console().print(execution_table(found))
        else:
            header, rows = execution_rows(found)
            for row in [header, *rows]:
                click.echo("\t".join(row))
        return EXIT_OK

    _run(command)


@main.command()
@click.argument("execution_id", metavar="ID")
@json_option("The execution and its trace as one JSON object on stdout.")
@click.pass_context
def show(context: click.Context, execution_id: str, as_json: bool) -> None:
    """One execution: its facts and a row per step (status, duration, attempts, cost)."""
    connection = _connection(context)

    async def command() -> int:
        from runwire_client.view import (
            aligned,
            execution_details,
            review_hint,
            summarize,
            summary_lines,
            summary_table,
            to_jsonable,
        )

        async with _client(connection) as client:
            execution = await client.get(execution_id)
            trace = await client.trace(execution_id)
            waiting = []
            if execution.status is ExecutionStatus.WAITING and not as_json:
                waiting = await client.reviews(ReviewStatus.PENDING, execution_id=execution_id)
        if as_json:
            click.echo(json.dumps({**to_jsonable(execution), "trace": to_jsonable(trace)}))
            return EXIT_OK
        summary = summarize(execution, trace)
        facts = execution_details(execution)
        # What it waits for, and the command that decides it.
        facts += [("review", review_hint(review)) for review in waiting]
        if sys.stdout.isatty():
            from rich.console import Console
            from rich.table import Table
            from rich.text import Text

            console = Console()
            grid = Table.grid(padding=(0, 2))
            for label, value in facts:
                grid.add_row(Text(label, style="bold"), Text(value))
            console.print(grid)
            console.print()
            console.print(summary_table(summary))
        else:
            for line in [*aligned([(f"{k}:", v) for k, v in facts]), "", *summary_lines(summary)]:
                click.echo(line)
        return EXIT_OK

    _run(command)


# --- scenarios ----------------------------------------------------------------------------------


@main.command()
@json_option("One JSON object per scenario on stdout: name, version, description, inputs.")
@click.pass_context
def scenarios(context: click.Context, as_json: bool) -> None:
    """The saved scenarios `rw run NAME` starts: name, latest version, inputs, description."""
    connection = _connection(context)

    async def command() -> int:
        from runwire_client.view import to_jsonable

        async with _client(connection) as client:
            found = await client.scenarios()
        if as_json:
            for scenario in found:
                click.echo(json.dumps(to_jsonable(scenario)))
            return EXIT_OK
        click.echo("name\tversion\tinputs\tdescription")
        for scenario in found:
            inputs = ", ".join(i.name if i.required else f"{i.name}?" for i in scenario.inputs)
            row = (scenario.name, str(scenario.version), inputs, scenario.description)
            click.echo("\t".join(" ".join(cell.split()) for cell in row))
        return EXIT_OK

    _run(command)


def _unknown_scenario(error: NotFoundError, name: str, known: list[Scenario]) -> str:
    """The server's not-found message, with the names closest to the one given."""
    close = difflib.get_close_matches(name, [s.name for s in known], n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"{error.message}{hint} (`rw scenarios` lists them)"


# --- following ----------------------------------------------------------------------------------


async def _watch(
    client: RunwireClient,
    execution_id: str,
    after_seq: int,
    as_json: bool,
    on_interrupt: str | None,
    snapshot: Execution | None = None,
) -> int:
    """Follow an execution in the view that suits stdout; the exit code its end calls for."""
    from runwire_client.view import JsonView, LiveView, PlainView, RunState, summarize

    if snapshot is None:
        snapshot = await client.get(execution_id)
    state = RunState.of(snapshot, after_seq)
    view: EventView
    if as_json:
        view = JsonView(state, sys.stdout, sys.stderr)
    elif sys.stdout.isatty():
        from rich.console import Console

        view = LiveView(state, Console())
    else:
        view = PlainView(state, sys.stdout)
    policy = _policy(on_interrupt)
    view.start()
    try:
        detached = await _follow(client, view, after_seq, policy)
    except ConnectionFailedError as error:
        view.finish(None)
        raise Unreachable(
            f"{error.message}; execution {execution_id} may still be running "
            f"(`rw watch {execution_id}` shows it again)"
        ) from None
    except BaseException:
        view.finish(None)
        raise
    if detached is not None:
        view.finish(None)
        view.note(
            f"detached: execution {execution_id} ({state.status.value}) keeps running; "
            f"`rw watch {execution_id}` shows it again"
        )
        return 128 + detached
    final = await client.get(execution_id)
    view.finish(summarize(final, await client.trace(execution_id), retry_ms=state.retry_ms))
    return EXIT_OK if final.status is ExecutionStatus.SUCCEEDED else EXIT_NOT_SUCCEEDED


def _policy(chosen: str | None) -> OnInterrupt:
    """Ask only when someone can answer: a terminal on stdin and stdout."""
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if chosen is None:
        return OnInterrupt.ASK if interactive else OnInterrupt.DETACH
    policy = OnInterrupt(chosen)
    if policy is OnInterrupt.ASK and not sys.stdin.isatty():
        return OnInterrupt.DETACH
    return policy


async def _follow(
    client: RunwireClient, view: EventView, after_seq: int, policy: OnInterrupt
) -> int | None:
    """Show events until the terminal one (None), or until an interrupt detaches (its signal).

    SIGINT and SIGTERM are taken from Python's default handling for the while: the policy, not
    a KeyboardInterrupt at a random await, decides what an interrupt does.
    """
    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[int] = asyncio.Queue()
    handled = (signal.SIGINT, signal.SIGTERM)
    for handled_signal in handled:
        loop.add_signal_handler(handled_signal, signals.put_nowait, int(handled_signal))
    events = asyncio.create_task(_show_events(client, view, after_seq))
    hint = asyncio.create_task(_hint_while_queued(client, view))
    stopping = False
    try:
        while True:
            received = asyncio.create_task(signals.get())
            await asyncio.wait({events, received}, return_when=asyncio.FIRST_COMPLETED)
            if events.done():
                received.cancel()
                events.result()  # raises what following raised
                return None
            signum = received.result()
            if stopping:
                choice = OnInterrupt.DETACH  # a second interrupt while it stops: leave now
            elif policy is OnInterrupt.ASK and signum == signal.SIGINT:
                choice = await _ask(view, events, signals)
                if choice is not OnInterrupt.DETACH or events.done():
                    view.start()
            elif policy is OnInterrupt.ASK:
                choice = OnInterrupt.DETACH  # SIGTERM comes from a supervisor, not a person
            else:
                choice = policy
            if events.done():
                continue  # it ended while we asked: show the end as usual
            if choice is OnInterrupt.DETACH:
                return signum
            if choice is OnInterrupt.STOP:
                stopping = True
                await _request_stop(client, view)
    finally:
        for handled_signal in handled:
            loop.remove_signal_handler(handled_signal)
        hint.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hint
        if not events.done():
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events


# How long a followed execution may stay QUEUED before rw asks whether a runner is alive.
QUEUED_HINT_SECONDS = 5.0


async def _hint_while_queued(client: RunwireClient, view: EventView) -> None:
    """Say once, in one line, why a followed execution stays QUEUED when no runner is alive."""
    while True:
        await asyncio.sleep(QUEUED_HINT_SECONDS)
        if view.state.status is not ExecutionStatus.QUEUED:
            return
        try:
            queue = await client.queue_health()
        except RunwireError:
            return  # a hint, never a reason for the follow to fail
        if queue.runners_alive == 0:
            view.note(
                "still QUEUED: no runner is alive to run it (start `runwire worker`, or a"
                " server with RUNWIRE_RUNNER=true)"
            )
            return


async def _show_events(client: RunwireClient, view: EventView, after_seq: int) -> None:
    stream = client.follow(view.state.execution_id, after_seq)
    async with contextlib.aclosing(stream):
        async for event in stream:
            view.show(event)
            if (
                isinstance(event, ExecutionStatusChanged)
                and event.status is ExecutionStatus.WAITING
            ):
                await _hint_reviews(client, view)


async def _hint_reviews(client: RunwireClient, view: EventView) -> None:
    """Say what a followed execution waits for and how to decide it, so it does not look hung.

    Only reviews pending now: replaying a wait that has since been decided says nothing."""
    from runwire_client.view import review_hint

    try:
        pending = await client.reviews(ReviewStatus.PENDING, execution_id=view.state.execution_id)
    except RunwireError:
        return  # a hint, never a reason for the follow to fail
    for review in pending:
        view.note(review_hint(review))


async def _request_stop(client: RunwireClient, view: EventView) -> None:
    execution_id = view.state.execution_id
    view.note(f"stopping execution {execution_id} (Ctrl-C again to detach)")
    with contextlib.suppress(InvalidTransitionError):  # ended meanwhile: its end is on its way
        await client.stop(execution_id, "interrupted in rw")


async def _ask(
    view: EventView, events: asyncio.Task[None], signals: asyncio.Queue[int]
) -> OnInterrupt:
    """Ask on the terminal whether to stop or detach, while events keep arriving (the view is
    suspended meanwhile; the caller starts it again unless detaching)."""
    view.suspend()
    while True:
        sys.stderr.write(
            f"\nStop execution {view.state.execution_id} or detach (it keeps running)?"
            " [s]top / [d]etach / [c]ontinue watching (default: detach): "
        )
        sys.stderr.flush()
        answer = await _first(_read_line(sys.stdin.fileno()), events, signals)
        if answer is None:  # it ended meanwhile, end of input, or Ctrl-C again
            sys.stderr.write("\n")
            return OnInterrupt.CONTINUE if events.done() else OnInterrupt.DETACH
        choice = ANSWERS.get(answer.strip().lower())
        if choice is not None:
            return choice


async def _first(
    line: Awaitable[str | None], events: asyncio.Task[None], signals: asyncio.Queue[int]
) -> str | None:
    """The line typed, or None if the execution ended or another interrupt came first."""
    reading = asyncio.ensure_future(line)
    interrupted = asyncio.create_task(signals.get())
    try:
        await asyncio.wait({reading, interrupted, events}, return_when=asyncio.FIRST_COMPLETED)
        return reading.result() if reading.done() else None
    finally:
        reading.cancel()
        interrupted.cancel()


async def _read_line(fd: int) -> str | None:
    """One line from a terminal without blocking the loop (events keep arriving); None at EOF."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str | None] = loop.create_future()
    typed = bytearray()

    def readable() -> None:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            chunk = b""
        typed.extend(chunk)
        if answer.done():
            return
        if not chunk:
            answer.set_result(None)
        elif b"\n" in typed:
            answer.set_result(typed.split(b"\n", 1)[0].decode(errors="replace"))

    loop.add_reader(fd, readable)
    try:
        return await answer
    finally:
        loop.remove_reader(fd)


# --- suites: run every case, follow, report, gate ---------------------------------------------

# How often a followed suite run is read again: a run's cases take seconds to minutes each.
SUITE_POLL_SECONDS = 0.5
NO_BASE = "none"
BASELINE = "baseline"


class FailOn(enum.StrEnum):
    """What makes a followed suite run exit 1."""

    REGRESSED = "regressed"  # a case passed in the base run and fails now (the default)
    FAILED = "failed"  # any case did not pass every repeat (FAILED or FLAKY)


@main.group(cls=Commands)
def suite() -> None:
    """Run test suites, write reports CI systems read, and gate on what regressed."""


@suite.command("run")
@click.argument("name", metavar="SUITE")
@click.option("--repeat", "-n", type=int, default=1, show_default=True, help="Runs of each case.")
@click.option(
    "--concurrency",
    type=int,
    default=10,
    show_default=True,
    help="At most this many of the run's executions at once.",
)
@click.option("--label", "labels", multiple=True, help="A label for every execution. Repeatable.")
@click.option(
    "--input",
    "-i",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override input NAME in every case that takes it (VALUE as JSON, else text). Repeatable.",
)
@click.option("--follow", "-f", is_flag=True, help="Wait for the run to end, showing each case.")
@click.option(
    "--base",
    default=BASELINE,
    show_default=True,
    help="With --follow: the run to compare with, by id; `baseline` (the suite's) or `none`.",
)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="With --follow: write the JUnit XML report here.",
)
@click.option(
    "--json-report",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="With --follow: write the JSON report here.",
)
@click.option(
    "--fail-on",
    type=click.Choice([choice.value for choice in FailOn]),
    default=FailOn.REGRESSED.value,
    show_default=True,
    help="With --follow: exit 1 when a case regressed against the base, or when any failed.",
)
@click.pass_context
def suite_run(
    context: click.Context,
    name: str,
    repeat: int,
    concurrency: int,
    labels: tuple[str, ...],
    inputs: tuple[str, ...],
    follow: bool,
    base: str,
    junit: Path | None,
    json_report: Path | None,
    fail_on: str,
) -> None:
    """Run every case of SUITE REPEAT times; print the run's id, or with --follow show each
    case as it ends, the comparison with the base run and write the reports.

    With --follow it exits 0 unless a case REGRESSED against the base (--fail-on failed: unless
    any case failed or was flaky). Without a baseline nothing can regress."""
    if (junit or json_report) and not follow:
        raise Refused("--junit and --json-report need --follow: a run that has not ended")
    values = dict(_parse_input(pair) for pair in inputs)
    connection = _connection(context)

    async def command() -> int:
        async with _client(connection) as client:
            run = await client.start_suite_run(
                name,
                repeat=repeat,
                concurrency=concurrency,
                labels=list(labels) or None,
                inputs=values or None,
            )
            click.echo(run.id)
            if not follow:
                return EXIT_OK
            run = await _follow_suite_run(client, run)
            comparison = await _suite_comparison(client, run, base)
            report_base = None
            if comparison is not None:
                report_base = BASELINE if base == BASELINE else comparison.base_run_id
                click.echo(comparison.verdict)
            else:
                click.echo(
                    f"{run.passed_cases} passed, {run.failed_cases} failed,"
                    f" {run.flaky_cases} flaky of {len(run.cases)} cases"
                )
            for path, kind in ((junit, "junit"), (json_report, "json")):
                if path is not None:
                    path.write_bytes(await client.suite_report(run.id, kind, report_base))
            if FailOn(fail_on) is FailOn.FAILED:
                failed = run.failed_cases + run.flaky_cases > 0
                return EXIT_NOT_SUCCEEDED if failed else EXIT_OK
            regressed = comparison is not None and comparison.regressed
            return EXIT_NOT_SUCCEEDED if regressed else EXIT_OK

    _run(command)


async def _follow_suite_run(client: RunwireClient, run: SuiteRun) -> SuiteRun:
    """Read the run until every execution ended, printing each case once all its repeats have."""
    shown: set[str] = set()
    while True:
        for case in run.cases:
            if case.pending == 0 and case.name not in shown:
                shown.add(case.name)
                passed = f"{case.passed}/{case.passed + case.failed}"
                click.echo(f"  {case.status:<7} {passed:>7}  {case.name}")
        if run.complete:
            return run
        await asyncio.sleep(SUITE_POLL_SECONDS)
        run = await client.suite_run(run.id)


async def _suite_comparison(
    client: RunwireClient, run: SuiteRun, base: str
) -> SuiteComparison | None:
    if base == NO_BASE:
        return None
    try:
        return await client.compare_suite_runs(run.id, None if base == BASELINE else base)
    except NotFoundError:
        if base != BASELINE:
            raise
        click.echo(
            f"rw: suite {run.suite} has no baseline: nothing to compare with (set one with"
            " setSuiteBaseline)",
            err=True,
        )
        return None


@suite.command("report")
@click.argument("run_id", metavar="RUN_ID")
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the JUnit XML report here.",
)
@click.option(
    "--json-report",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the JSON report here.",
)
@click.option(
    "--base",
    default=NO_BASE,
    show_default=True,
    help="Compare with this run (by id), with `baseline` (the suite's), or `none`.",
)
@click.pass_context
def suite_report(
    context: click.Context, run_id: str, junit: Path | None, json_report: Path | None, base: str
) -> None:
    """Write the reports of suite run RUN_ID as it stands (JUnit XML, JSON); with neither
    option, the JUnit XML on stdout."""
    connection = _connection(context)
    report_base = None if base == NO_BASE else base

    async def command() -> int:
        async with _client(connection) as client:
            if junit is None and json_report is None:
                sys.stdout.buffer.write(await client.suite_report(run_id, "junit", report_base))
                return EXIT_OK
            for path, kind in ((junit, "junit"), (json_report, "json")):
                if path is not None:
                    path.write_bytes(await client.suite_report(run_id, kind, report_base))
            return EXIT_OK

    _run(command)
