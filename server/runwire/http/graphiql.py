"""Offline GraphiQL: in a make_graphql_controller subclass, override property graphql_ide_html.

Strawberry's page, with its assets served from here and Runwire's fetcher (graphiql_fetcher.js)
in place of GraphiQL's stock one: a subscription's results accumulate, a refused token is said
at once, and the schema (the docs) is fetched again when the Authorization header changes.
Introspection stays behind the token like every other request: the docs load once it is set.
"""

from __future__ import annotations

import functools
import html
import json
import re
from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router
from strawberry.http.ides import get_graphql_ide_html

__all__ = ["STATIC_DIRECTORY", "graphiql_html", "graphiql_static_router"]

STATIC_DIRECTORY = Path(__file__).parent / "static" / "graphiql"

_CDN_PREFIX = "https://unpkg.com/"
_FETCH_URL_LINE = 'const fetchURL = window.location.href.split("?")[0];'
_URL_ATTR = re.compile(r'\b(?:src|href)\s*=\s*"([^"]*)"')
_FETCHER_SCRIPT = Path(__file__).parent / "graphiql_fetcher.js"
# Each edit of Strawberry's template: (what it replaces, what with). A template that no longer
# has one of them fails loudly rather than serving a page without it.
_MAIN_SCRIPT = "    <script>\n      const EXAMPLE_QUERY"
_STOCK_FETCHER = re.compile(r"const fetcher = GraphiQL\.createFetcher\(\{.*?\}\);", re.DOTALL)
_OWN_FETCHER = """function makeFetcher() {
        return RunwireGraphiQL.fetcher({ url: fetchURL, headers: defaultHeaders, subscriptionUrl });
      }"""
# The token stays in the tab: GraphiQL would keep the Headers pane, token and all, in localStorage,
# where it outlives the session and any script of the origin can read it (the console keeps its
# token in sessionStorage for the same reason).
_PERSIST_HEADERS = "shouldPersistHeaders: true,"
_HEADERS_STATE = "const [headers, setHeaders] = React.useState(parameters.headers);"
# GraphiQL fetches the schema again whenever its fetcher changes: a new one per Authorization
# value, a moment after the last keystroke in the Headers pane, loads the docs once a token is
# set (it fetches the schema only at start otherwise).
_FETCHER_STATE = """
        const [authorization, setAuthorization] = React.useState(null);
        const fetcher = React.useMemo(makeFetcher, [authorization]);
        const typing = React.useRef(null);"""
_ON_EDIT_HEADERS = """function onEditHeaders(newHeaders) {
          setHeaders(newHeaders);
        }"""
_REFETCH_ON_EDIT = """function onEditHeaders(newHeaders) {
          setHeaders(newHeaders);
          clearTimeout(typing.current);
          typing.current = setTimeout(() => {
            const found = RunwireGraphiQL.authorizationIn(newHeaders);
            if (found !== undefined) setAuthorization(found);
          }, 300);
        }"""


@functools.cache
def graphiql_html(graphql_path: str = "/graphql", assets_path: str = "/static/graphiql") -> str:
    """Return Strawberry's GraphiQL page with its CDN assets served from ``assets_path``."""
    template = get_graphql_ide_html("graphiql")
    if _FETCH_URL_LINE not in template:
        raise RuntimeError("strawberry's GraphiQL template changed: fetchURL line not found")
    assets = assets_path.rstrip("/") + "/"
    js_path = json.dumps(graphql_path).replace("<", "\\u003c")
    fetch_url = f"const fetchURL = new URL({js_path}, window.location.href).href;"
    page = template.replace(_CDN_PREFIX, html.escape(assets)).replace(_FETCH_URL_LINE, fetch_url)
    page = _with_runwire_fetcher(page)
    for url in _URL_ATTR.findall(page):
        url = html.unescape(url)
        if url.startswith("data:"):
            continue
        if not url.startswith(assets) or not (STATIC_DIRECTORY / url[len(assets) :]).is_file():
            raise RuntimeError(f"GraphiQL asset {url!r} is not vendored in {STATIC_DIRECTORY}")
    if "https://" in page:
        raise RuntimeError("strawberry's GraphiQL template still references a remote URL")
    return page


def _with_runwire_fetcher(page: str) -> str:
    """The page with Runwire's fetcher inlined and used in place of GraphiQL's stock one."""
    script = _FETCHER_SCRIPT.read_text(encoding="utf-8")
    if "</script" in script.lower():
        raise RuntimeError(f"{_FETCHER_SCRIPT.name} cannot be inlined: it contains </script")
    for marker in (_MAIN_SCRIPT, _HEADERS_STATE, _ON_EDIT_HEADERS, _PERSIST_HEADERS):
        if page.count(marker) != 1:
            raise RuntimeError(f"strawberry's GraphiQL template changed: {marker!r} not found once")
    if len(_STOCK_FETCHER.findall(page)) != 1:
        raise RuntimeError("strawberry's GraphiQL template changed: its fetcher not found once")
    page = page.replace(_MAIN_SCRIPT, f"    <script>\n{script}    </script>\n{_MAIN_SCRIPT}")
    page = _STOCK_FETCHER.sub(lambda _: _OWN_FETCHER, page)
    page = page.replace(_HEADERS_STATE, _HEADERS_STATE + _FETCHER_STATE)
    page = page.replace(_PERSIST_HEADERS, "shouldPersistHeaders: false,")
    return page.replace(_ON_EDIT_HEADERS, _REFETCH_ON_EDIT)


def graphiql_static_router(assets_path: str = "/static/graphiql") -> Router:
    """Return a router serving the vendored GraphiQL assets with a one-year immutable cache."""
    return create_static_files_router(
        path=assets_path,
        directories=[STATIC_DIRECTORY],
        name="graphiql-static",
        cache_control=CacheControlHeader(max_age=31_536_000, public=True, immutable=True),
    )
