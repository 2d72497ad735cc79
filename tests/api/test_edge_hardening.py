"""The GraphQL edge refuses hostile documents and requests quickly and clearly, then serves on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from tests.support.server import Server, running_server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

import runwire.http
from runwire.http.edge import json_nesting

# Generous: these guard against exponential and quadratic blowups, they are not benchmarks.
QUICKLY_SECONDS = 2.0
NORMAL = "{ viewer { label } }"
# Settings that must differ from the embedded default, on one second server.
LOCKED_DOWN = {
    "RUNWIRE_INTROSPECTION": "false",
    "RUNWIRE_GRAPHIQL": "false",
    "RUNWIRE_MAX_SUBSCRIPTIONS_PER_CONNECTION": "3",
    "RUNWIRE_CONNECTION_INIT_TIMEOUT_SECONDS": "1",
    "RUNWIRE_MAX_QUERY_DEPTH": "3",
    "RUNWIRE_MAX_ALIASES": "2",
    "RUNWIRE_MAX_TOKENS": "100",
    "RUNWIRE_MAX_BODY_BYTES": "10000",
}
TRANSPORT_WS = "graphql-transport-ws"
UPDATES = "subscription { executionUpdates { kind } }"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The embedded default: SQLite, default limits, introspection and GraphiQL on."""
    with running_server("sqlite", tmp_path_factory.mktemp("edge-default")) as found:
        yield found


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Introspection and GraphiQL off, 3 subscriptions per socket, 1 s to connection_init, and
    small document limits."""
    with running_server("sqlite", tmp_path_factory.mktemp("edge-locked"), LOCKED_DOWN) as found:
        yield found


async def _post(
    server: Server,
    body: object = None,
    *,
    content: str | bytes | None = None,
    content_type: str = "application/json",
) -> tuple[httpx.Response, float]:
    """POST to /graphql as the admin; the response and how long it took."""
    raw = json.dumps(body) if content is None else content
    async with httpx.AsyncClient(timeout=60) as client:
        began = time.monotonic()
        response = await client.post(
            server.graphql_http,
            content=raw,
            headers={**server.headers, "Content-Type": content_type},
        )
        return response, time.monotonic() - began


def _messages(response: httpx.Response) -> list[str]:
    return [error["message"] for error in response.json().get("errors") or []]


def _no_stack_trace(response: httpx.Response) -> None:
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


async def _still_serves(server: Server) -> None:
    response, _ = await _post(server, {"query": NORMAL})
    assert response.status_code == 200
    assert response.json() == {"data": {"viewer": {"label": "token:bootstrap-admin"}}}


async def _refused(
    server: Server, body: object, message: str, *, within: float = QUICKLY_SECONDS
) -> None:
    """Send a hostile document: a GraphQL error containing `message`, in time, then service."""
    response, elapsed = await _post(server, body)
    assert response.status_code == 200, response.text
    assert response.json()["data"] is None
    assert any(message in found for found in _messages(response)), _messages(response)
    _no_stack_trace(response)
    assert elapsed < within, f"{elapsed:.2f}s"
    await _still_serves(server)


def _nested(field: str, levels: int) -> str:
    return "{" + f" {field} {{" * levels + " label" + " }" * levels + " }"


def _fan_out(fragments: int, leaf: str) -> str:
    """Each fragment spreads the next twice: 2^n paths through a document of n fragments."""
    chain = " ".join(
        f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(fragments)
    )
    return f"query FanOut {{ ...F0 }} {chain} fragment F{fragments} on Query {{ {leaf} }}"


# --- hostile documents ----------------------------------------------------------------------


async def test_deep_nesting_is_refused(server: Server) -> None:
    # The schema itself nests at most 5 deep, so only a document naming fields that do not
    # exist can go deeper; the limit is checked alongside the field checks, on the syntax.
    await _refused(
        server, {"query": _nested("viewer", 40)}, "is nested 40 deep; the maximum operation depth"
    )


async def test_deep_nesting_through_fragments_is_refused(server: Server) -> None:
    chain = " ".join(
        f"fragment F{n} on Viewer {{ label nested {{ ...F{n + 1} }} }}" for n in range(30)
    )
    document = f"query Deep {{ viewer {{ ...F0 }} }} {chain} fragment F30 on Viewer {{ label }}"
    await _refused(
        server, {"query": document}, "'Deep' is nested 31 deep; the maximum operation depth is 15"
    )


async def test_deep_introspection_is_refused(server: Server) -> None:
    document = "{ __schema { types {" + " fields { type {" * 4 + " name" + " } }" * 4 + " } } }"
    await _refused(server, {"query": document}, "Maximum introspection depth exceeded")


async def test_alias_flood_is_refused(server: Server) -> None:
    document = "{" + " ".join(f"a{n}: viewer {{ label }}" for n in range(500)) + " }"
    await _refused(server, {"query": document}, "more than 30 aliases in the document")


async def test_aliases_multiplied_through_fragments_are_refused(server: Server) -> None:
    # 40 fragments, one alias at the end: 2^40 aliases. Strawberry's own limiters walked every
    # path, so this document (1.6 KB) would have held the event loop for days.
    await _refused(server, {"query": _fan_out(40, "a: viewer { label }")}, "more than 30 aliases")


async def test_fragment_fan_out_is_measured_once_per_fragment(server: Server) -> None:
    response, elapsed = await _post(server, {"query": _fan_out(40, "viewer { label }")})
    assert response.json() == {"data": {"viewer": {"label": "token:bootstrap-admin"}}}
    assert elapsed < QUICKLY_SECONDS, f"{elapsed:.2f}s"


@pytest.mark.parametrize(
    "document",
    [
        "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
        "query { ...A } fragment A on Query { viewer { label } ...A }",
        "query { viewer { ...V } } fragment V on Viewer { label ...W } fragment W on Viewer"
        " { role ...V }",
    ],
    ids=["two", "self", "nested"],
)
async def test_fragment_cycles_are_refused(server: Server, document: str) -> None:
    await _refused(server, {"query": document}, "Cannot spread fragment")


async def test_unknown_fragments_and_empty_selections_leak_no_exception(server: Server) -> None:
    # Strawberry's limiters raised KeyError / ValueError on these; the bare exception message
    # ("'Missing'", "max() arg is an empty sequence") reached the client.
    await _refused(server, {"query": "{ viewer { ...Missing } }"}, "Unknown fragment 'Missing'.")
    response, _ = await _post(server, {"query": "{ viewer { } }"})
    assert response.status_code == 200
    assert "empty sequence" not in response.text
    assert "Internal error" not in response.text
    _no_stack_trace(response)


async def test_huge_token_count_is_refused_before_parsing(server: Server) -> None:
    document = "{" + " viewer { label }" * 12_000 + " }"
    assert len(document) > 200_000
    await _refused(
        server, {"query": document}, "Document contains more than 5000 tokens. Parsing aborted."
    )


async def test_field_flood_under_the_token_limit_is_cut_off(server: Server) -> None:
    # 1200 identical selections: comparing them pairwise is quadratic; graphql-core stops at the
    # budget the schema sets (its default took 1-4 s here).
    document = "{" + " viewer { label }" * 1200 + " }"
    await _refused(server, {"query": document}, "Validation aborted.")


async def test_batched_operations_are_refused(server: Server) -> None:
    response, elapsed = await _post(server, [{"query": NORMAL}, {"query": NORMAL}])
    assert response.status_code == 400
    assert response.text == "Batching is not enabled"
    assert elapsed < QUICKLY_SECONDS
    await _still_serves(server)


async def test_deeply_nested_json_is_refused_before_parsing(server: Server) -> None:
    # Python's json raises RecursionError near 1000 levels, which came out as a bare 500.
    for levels in (101, 100_000):
        # The body object, then variables, then `levels` arrays.
        content = f'{{"query": "{NORMAL}", "variables": {{"x": {"[" * levels}{"]" * levels}}}}}'
        assert json_nesting(content.encode()) == levels + 2
        response, elapsed = await _post(server, content=content)
        assert response.status_code == 400, response.text
        assert f"nests JSON {levels + 2} levels deep; at most 100" in response.json()["detail"]
        assert elapsed < QUICKLY_SECONDS
    nested = {"query": NORMAL, "variables": {"x": json.loads("[" * 90 + "]" * 90)}}
    response, _ = await _post(server, nested)
    assert response.status_code == 200
    await _still_serves(server)


async def test_body_over_the_size_limit_is_refused(server: Server) -> None:
    content = json.dumps({"query": NORMAL, "variables": {"padding": "x" * 1_000_000}})
    response, elapsed = await _post(server, content=content)
    assert response.status_code == 413
    assert response.json()["detail"] == "Request Entity Too Large"
    assert elapsed < QUICKLY_SECONDS
    await _still_serves(server)


# --- what GraphiQL needs still works under the default limits -----------------------------------


def _graphiql_introspection() -> str:
    """The introspection query the vendored GraphiQL sends, read from its bundle."""
    bundle = next(Path(runwire.http.__file__).parent.glob("static/graphiql/graphiql@*/*.min.js"))
    source = bundle.read_text()
    function = source[source.index("function getIntrospectionQuery(") :]
    template = function[function.index("return `") + len("return `") : function.index("`;")]
    # Our GraphiQL page passes inputValueDeprecation: true; every other option is off.
    query = re.sub(r"\$\{inputDeprecation\('([^']*)'\)\}", r"\1", template)
    query = query.replace("${descriptions}", "description")
    query = re.sub(
        r"\$\{(specifiedByUrl|directiveIsRepeatable|schemaDescription|oneOf)\}", "", query
    )
    assert "${" not in query
    assert query.count("ofType") == 9
    return query


async def test_graphiql_introspection_works_under_the_default_limits(server: Server) -> None:
    body = {"query": _graphiql_introspection(), "operationName": "IntrospectionQuery"}
    response, elapsed = await _post(server, body)
    assert response.status_code == 200
    assert "errors" not in response.json()
    names = {t["name"] for t in response.json()["data"]["__schema"]["types"]}
    assert {"Query", "Mutation", "Subscription", "Execution"} <= names
    assert elapsed < QUICKLY_SECONDS


async def test_metrics_are_off_unless_a_scrape_token_is_set(server: Server) -> None:
    # Its series name workspaces and scenarios: without RUNWIRE_METRICS_TOKEN nobody reads them,
    # not with the admin API token either, and the answer says what to set.
    async with httpx.AsyncClient(timeout=10) as client:
        for headers in ({}, server.headers):
            response = await client.get(f"{server.url}/metrics", headers=headers)
            assert response.status_code == 404
            assert response.text == (
                "/metrics is off: set RUNWIRE_METRICS_TOKEN on the server and scrape with"
                " Authorization: Bearer <that token>\n"
            )


async def test_graphiql_page_is_served_by_default(server: Server) -> None:
    async with httpx.AsyncClient() as client:
        page = await client.get(server.graphql_http, headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


# --- transport rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (NORMAL, "queries are not allowed when using GET"),
        (
            'mutation { createApiToken(input: {name: "via-get", role: ADMIN}) { __typename } }',
            "mutations are not allowed when using GET",
        ),
    ],
)
async def test_no_operation_over_get(server: Server, document: str, message: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            server.graphql_http, params={"query": document}, headers=server.headers
        )
    assert response.status_code == 400
    assert response.text == message
    assert "via-get" not in await _token_names(server)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=x",
        # A browser reads these as text/plain (a "simple" request, no CORS preflight).
        "text/plain;application/json",
        "text/plain; charset=application/json",
    ],
)
async def test_form_and_text_posts_are_refused(server: Server, content_type: str) -> None:
    # What a cross-site form or fetch can send without a preflight must never run a mutation.
    name = f"csrf-{secrets.token_hex(4)}"
    mutation = (
        f'mutation {{ createApiToken(input: {{name: "{name}", role: ADMIN}}) {{ __typename }} }}'
    )
    response, _ = await _post(
        server, content=json.dumps({"query": mutation}), content_type=content_type
    )
    assert response.status_code == 400
    assert response.text == "Unsupported content type"
    assert name not in await _token_names(server)


async def test_real_form_encodings_are_refused(server: Server) -> None:
    async with httpx.AsyncClient() as client:
        form = await client.post(
            server.graphql_http, data={"query": NORMAL}, headers=server.headers
        )
        multipart = await client.post(
            server.graphql_http,
            files={"operations": (None, json.dumps({"query": NORMAL})), "map": (None, "{}")},
            headers=server.headers,
        )
    for response in (form, multipart):
        assert response.status_code == 400
        assert response.text == "Unsupported content type"


async def _token_names(server: Server) -> set[str]:
    response, _ = await _post(server, {"query": "{ apiTokens { name } }"})
    return {token["name"] for token in response.json()["data"]["apiTokens"]}


async def test_page_size_is_capped(server: Server) -> None:
    response, _ = await _post(server, {"query": "{ executions(first: 201) { edges { cursor } } }"})
    errors = response.json()["errors"]
    assert [(e["message"], e["path"]) for e in errors] == [
        ("first: expected 0..200", ["executions"])
    ]
    allowed, _ = await _post(server, {"query": "{ executions(first: 200) { edges { cursor } } }"})
    assert "errors" not in allowed.json()


async def _drop_column(database_url: str, table: str, column: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    finally:
        await connection.close()


def test_unexpected_errors_are_masked(tmp_path: Path) -> None:
    # An error nobody expected: the schema changed behind the server's back (a column dropped by
    # hand). Bad input is no example any more: each one found became a validation error (a lone
    # surrogate, then a cursor time past year 9999). Sync: its server makes its own database.
    with running_server("postgres", tmp_path) as own:
        asyncio.run(
            _drop_column(own.env["RUNWIRE_DATABASE_URL"], "runwire_scenario", "description")
        )
        response, _ = asyncio.run(_post(own, {"query": "{ scenarios { name description } }"}))
    assert response.status_code == 200
    assert _messages(response) == ["Internal error"]
    # Nothing of the database's own message ("column s.description does not exist").
    assert "does not exist" not in response.text
    assert "runwire_scenario" not in response.text
    _no_stack_trace(response)
    # The server's log has it, once, with its traceback, on a line naming the request's id.
    log = own.log.read_text()
    assert log.count("Traceback (most recent call last)") == 1, log
    (line,) = [line for line in log.splitlines() if " ERROR strawberry.execution " in line]
    assert f"[request={response.headers['X-Request-ID']}]" in line
    assert "KeyError: 'description'" in log  # the query no longer selects the column


async def test_bad_variable_values_are_named_not_masked(server: Server) -> None:
    query = "query($n: Int!) { executions(first: $n) { edges { cursor } } }"
    response, _ = await _post(server, {"query": query, "variables": {"n": 2**40}})
    assert _messages(response) == [
        "Variable '$n' has invalid value: Int cannot represent non 32-bit signed integer value:"
        " 1099511627776"
    ]


# --- the limits are settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            "{ executions { edges { node { steps { key } } } } }",
            "'anonymous' is nested 4 deep; the maximum operation depth is 3",
        ),
        ("{ a: viewer { label } b: viewer { label } c: viewer { label } }", "more than 2 aliases"),
        ("{" + " viewer { label }" * 30 + " }", "Document contains more than 100 tokens"),
    ],
    ids=["depth", "aliases", "tokens"],
)
async def test_document_limits_follow_the_settings(
    locked: Server, document: str, message: str
) -> None:
    await _refused(locked, {"query": document}, message)
    allowed, _ = await _post(locked, {"query": "{ executions { edges { node { id } } } }"})
    assert "errors" not in allowed.json()


async def test_body_limit_follows_the_setting(locked: Server) -> None:
    content = json.dumps({"query": NORMAL, "variables": {"padding": "x" * 10_000}})
    response, _ = await _post(locked, content=content)
    assert response.status_code == 413
    await _still_serves(locked)


# --- introspection and GraphiQL off --------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("{ __schema { types { name } } }", "__schema"),
        ('{ __type(name: "Query") { name } }', "__type"),
    ],
)
async def test_introspection_can_be_turned_off(locked: Server, document: str, field: str) -> None:
    await _refused(
        locked,
        {"query": document},
        f"GraphQL introspection has been disabled, but the requested query contained the field"
        f" '{field}'",
    )


async def test_graphiql_can_be_turned_off(locked: Server) -> None:
    async with httpx.AsyncClient() as client:
        page = await client.get(locked.graphql_http, headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert "graphiql" not in page.text.lower()


# --- websockets ----------------------------------------------------------------------------------


async def _open(server: Server, subprotocols: list[str]) -> ClientConnection:
    return await connect(server.graphql_ws, subprotocols=[Subprotocol(p) for p in subprotocols])


async def _closed(socket: ClientConnection, within: float = 5) -> tuple[int | None, str | None]:
    """Read until the server closes the socket; its close code and reason."""
    # Codes other than 1000/1001 end the iteration with ConnectionClosedError.
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(within):
            async for raw in socket:
                message = json.loads(raw)
                assert message["type"] != "connection_ack", message
    return socket.close_code, socket.close_reason


async def _init(socket: ClientConnection, server: Server) -> None:
    await socket.send(json.dumps({"type": "connection_init", "payload": server.headers}))
    assert json.loads(await socket.recv()) == {"type": "connection_ack", "payload": None}


async def test_legacy_graphql_ws_is_refused(server: Server) -> None:
    # The handshake completes without a subprotocol, then the server closes at once: before a
    # connection_init could authenticate anything.
    async with await _open(server, ["graphql-ws"]) as socket:
        assert socket.subprotocol is None
        assert await _closed(socket) == (4406, "Subprotocol not acceptable")


async def test_subscribe_before_connection_init_is_4401(server: Server) -> None:
    async with await _open(server, [TRANSPORT_WS]) as socket:
        message = {"id": "1", "type": "subscribe", "payload": {"query": UPDATES}}
        await socket.send(json.dumps(message))
        assert await _closed(socket) == (4401, "Unauthorized")


async def test_silent_socket_is_closed_after_the_init_timeout(locked: Server) -> None:
    began = time.monotonic()
    async with await _open(locked, [TRANSPORT_WS]) as socket:
        assert await _closed(socket) == (4408, "Connection initialisation timeout")
    assert 0.9 < time.monotonic() - began < 5


async def test_subscriptions_beyond_the_cap_get_an_error(locked: Server) -> None:
    async with await _open(locked, [TRANSPORT_WS]) as socket:
        await _init(socket, locked)
        for n in range(1, 5):
            await socket.send(
                json.dumps({"id": str(n), "type": "subscribe", "payload": {"query": UPDATES}})
            )
        refused: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert refused == {
            "id": "4",
            "type": "error",
            "payload": [{"message": "Subscription limit reached"}],
        }
        # Ending one makes room again, on the same socket.
        await socket.send(json.dumps({"id": "1", "type": "complete"}))
        await socket.send(
            json.dumps({"id": "5", "type": "subscribe", "payload": {"query": NORMAL}})
        )
        answer = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert answer == {
            "id": "5",
            "type": "next",
            "payload": {"data": {"viewer": {"label": "token:bootstrap-admin"}}},
        }
