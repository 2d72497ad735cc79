"""The web console: its built page at `/` and its hashed assets under /console/assets.

The build (console/ → console_dist/, `make console`) is committed into the package, so serving it
needs no Node. index.html is revalidated on every load (it names the current assets); the assets'
names carry a hash of their content, so they are cached for a year and never revalidated.
"""

from __future__ import annotations

import functools
from pathlib import Path

from litestar import Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

__all__ = ["CONSOLE_DIRECTORY", "console_assets_router", "console_page"]

CONSOLE_DIRECTORY = Path(__file__).parent / "console_dist"
ASSETS_PATH = "/console/assets"


@functools.cache
def _index() -> bytes | None:
    try:
        return (CONSOLE_DIRECTORY / "index.html").read_bytes()
    except FileNotFoundError:
        return None


@get(["/", "/console"], sync_to_thread=False, include_in_schema=False)
def console_page() -> Response[bytes | str]:
    """The console's single page (routes are in the URL's fragment); public, as its assets are."""
    page = _index()
    if page is None:
        return Response(
            "The console is not built in this installation: run `make console`.\n",
            status_code=404,
            media_type="text/plain",
        )
    return Response(
        page,
        media_type="text/html; charset=utf-8",
        headers={
            "Cache-Control": "no-cache",
            # The page loads only its own scripts and styles and talks only to this server.
            "Content-Security-Policy": (
                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                "img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
            ),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def console_assets_router() -> Router:
    """The built JS and CSS, by hashed name, with a one-year immutable cache."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[CONSOLE_DIRECTORY / "assets"],
        name="console-assets",
        cache_control=CacheControlHeader(max_age=31_536_000, public=True, immutable=True),
        include_in_schema=False,
    )
