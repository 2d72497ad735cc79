"""Offline GraphiQL: in a make_graphql_controller subclass, override property graphql_ide_html."""

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
    for url in _URL_ATTR.findall(page):
        url = html.unescape(url)
        if url.startswith("data:"):
            continue
        if not url.startswith(assets) or not (STATIC_DIRECTORY / url[len(assets) :]).is_file():
            raise RuntimeError(f"GraphiQL asset {url!r} is not vendored in {STATIC_DIRECTORY}")
    if "https://" in page:
        raise RuntimeError("strawberry's GraphiQL template still references a remote URL")
    return page


def graphiql_static_router(assets_path: str = "/static/graphiql") -> Router:
    """Return a router serving the vendored GraphiQL assets with a one-year immutable cache."""
    return create_static_files_router(
        path=assets_path,
        directories=[STATIC_DIRECTORY],
        name="graphiql-static",
        cache_control=CacheControlHeader(max_age=31_536_000, public=True, immutable=True),
    )
