"""The committed console build is the build of the committed sources, and the server serves it.

No Node here: the sources' hash is recomputed the way web/scripts/manifest.mjs computes it
at build time, and compared with the one the build wrote into console_dist/manifest.json.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.server import Server, running_server

from runwire.http.console import CONSOLE_DIRECTORY

ROOT = Path(__file__).resolve().parents[2]
SKIP = {"web/node_modules", "web/src/gql"}


def _walk(directory: Path) -> list[str]:
    found: list[str] = []
    for path in sorted(directory.iterdir()):
        name = path.relative_to(ROOT).as_posix()
        if name in SKIP:
            continue
        if path.is_dir():
            found.extend(_walk(path))
        elif path.is_file():
            found.append(name)
    return found


def sources_sha256() -> str:
    """The hash of everything the console's build is made from (as manifest.mjs computes it)."""
    files = [*_walk(ROOT / "web"), "schema/schema.graphql", *_walk(ROOT / "schema/operations")]
    digest = hashlib.sha256()
    for name in sorted(files, key=lambda name: name.encode()):
        content = hashlib.sha256((ROOT / name).read_bytes()).hexdigest()
        digest.update(f"{name}\0{content}\n".encode())
    return digest.hexdigest()


def test_the_committed_build_matches_the_sources() -> None:
    manifest = json.loads((CONSOLE_DIRECTORY / "manifest.json").read_text())
    assert manifest["sourcesSha256"] == sources_sha256(), (
        "the console's committed build is stale against web/ or schema/: run `make console` "
        "and commit server/runwire/http/console_dist"
    )


def test_the_page_names_only_built_assets() -> None:
    page = (CONSOLE_DIRECTORY / "index.html").read_text()
    assets = re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', page)
    assert assets, page
    for asset in assets:
        assert (CONSOLE_DIRECTORY / asset.removeprefix("/console/")).is_file(), asset
    assert "https://" not in page
    assert "http://" not in page


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("sqlite", tmp_path_factory.mktemp("console-build")) as found:
        yield found


def test_the_server_serves_the_page_and_caches_hashed_assets_for_good(server: Server) -> None:
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    (script,) = re.findall(r'src="(/console/assets/[^"]+\.js)"', page.text)
    asset = httpx.get(f"{server.url}{script}")
    assert asset.status_code == 200
    assert "javascript" in asset.headers["content-type"]
    directives = {part.strip() for part in asset.headers["cache-control"].split(",")}
    assert directives == {"public", "max-age=31536000", "immutable"}
    assert httpx.get(f"{server.url}/console/assets/missing-0000.js").status_code == 404
