"""The GraphiQL page and its vendored assets are served by Runwire itself, with no CDN."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser

import httpx
import pytest
import strawberry
import uvicorn
from litestar import Litestar
from strawberry.http.ides import get_graphql_ide_html
from strawberry.litestar import make_graphql_controller

from runwire.http import graphiql
from runwire.http.graphiql import graphiql_html, graphiql_static_router

# strawberry's Litestar controller trips a Litestar 2.2x deprecation (not this module's concern).
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*Inferred dependency field:litestar.exceptions.LitestarDeprecationWarning"
)
CONTENT_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",)}


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


class _Controller(make_graphql_controller(strawberry.Schema(Query), path="/graphql")):  # type: ignore[misc]
    @property
    def graphql_ide_html(self) -> str:
        return graphiql_html()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        url = a.get("src") if tag == "script" else a.get("href") if tag == "link" else None
        if url and not url.startswith("data:"):
            self.urls[url] = a.get("integrity")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = Litestar(route_handlers=[_Controller, graphiql_static_router()])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with httpx.AsyncClient(base_url=base_url) as http:
            yield http
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_graphiql_page_uses_only_local_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "https://" not in page.text
    # The Headers pane (the token) stays in the tab, out of localStorage.
    assert "shouldPersistHeaders: false," in page.text
    assert "shouldPersistHeaders: true" not in page.text
    parser = _Assets()
    parser.feed(page.text)
    assert any(url.endswith("/graphiql.min.js") for url in parser.urls)
    for url, integrity in parser.urls.items():
        assert url.startswith("/static/graphiql/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[url[url.rfind(".") :]]), url
        assert "max-age=31536000" in asset.headers["cache-control"]
        if integrity:
            digest = base64.b64encode(hashlib.sha384(asset.content).digest()).decode()
            assert integrity == f"sha384-{digest}", url


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("graphiql@3.8.3/graphiql.min.js", "graphiql@9.9.9/graphiql.min.js"),
        ("</head>", '<script src="https://cdn.jsdelivr.net/npm/x.js"></script></head>'),
        ('window.location.href.split("?")[0]', "window.location.href"),
        ("GraphiQL.createFetcher({", "GraphiQL.createGraphiQLFetcher({"),
        ("function onEditHeaders(newHeaders) {", "function onHeaders(newHeaders) {"),
        ("shouldPersistHeaders: true,", "shouldPersistHeaders: props.persist,"),
    ],
)
def test_template_drift_fails_loudly(monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> None:
    template = get_graphql_ide_html("graphiql")
    assert old in template
    monkeypatch.setattr(graphiql, "get_graphql_ide_html", lambda _: template.replace(old, new))
    graphiql_html.cache_clear()
    try:
        with pytest.raises(RuntimeError):
            graphiql_html()
    finally:
        graphiql_html.cache_clear()
