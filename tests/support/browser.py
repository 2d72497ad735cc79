"""A headless Chromium driven over the DevTools protocol, and static pages on origins of their own.

Driven over CDP with the `websockets` library the tests already use, rather than Playwright: one
small module instead of a new dependency with a bundled Node driver and browser downloads (which
cannot run here), and CDP is the protocol Playwright itself speaks to Chromium. Debian's
`chromium` package provides the browser (.ci/run installs it). Without it the tests that need it
skip, unless RUNWIRE_REQUIRE_BROWSER=1 or RUNWIRE_REQUIRE_POSTGRES=1 (CI sets the latter) turns
the skip into a failure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import itertools
import json
import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = os.environ.get("RUNWIRE_CHROMIUM", "/usr/bin/chromium")
REQUIRED_BY = ("RUNWIRE_REQUIRE_BROWSER", "RUNWIRE_REQUIRE_POSTGRES")
START_SECONDS = 30.0


def require_chromium() -> str:
    """The browser's path; skips the test without one, or fails it where it is required."""
    found = shutil.which(CHROMIUM)
    if found is None:
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if any(os.environ.get(name) == "1" for name in REQUIRED_BY):
            pytest.fail(f"{reason}; required by {' or '.join(REQUIRED_BY)}=1")
        pytest.skip(reason)
    return found


class PageError(Exception):
    """A script in the page threw, or its promise rejected."""


@dataclass
class Browser:
    """One Chromium process and its DevTools socket; pages are tabs of it."""

    socket: ClientConnection
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _waiting: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, directory: Path) -> AsyncIterator[Browser]:
        """Start headless Chromium with a fresh profile in `directory`; stop it afterwards."""
        executable = require_chromium()
        profile = directory / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        log = (directory / "chromium.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            executable,
            "--headless",
            # Tests run as root, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=log,
            stderr=log,
        )
        try:
            url = await _devtools_url(profile, process)
            async with connect(url, max_size=None) as socket:
                browser = cls(socket)
                reader = asyncio.create_task(browser._read())
                try:
                    yield browser
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            log.close()

    async def _read(self) -> None:
        async for raw in self.socket:
            message = json.loads(raw)
            waiter = self._waiting.pop(message.get("id", -1), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """One DevTools command's result (raises on a protocol error)."""
        command_id = next(self._ids)
        waiter = self._waiting[command_id] = asyncio.get_running_loop().create_future()
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        await self.socket.send(json.dumps(message))
        answer = await asyncio.wait_for(waiter, 30)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    @contextlib.asynccontextmanager
    async def page(self, url: str) -> AsyncIterator[Page]:
        """A new tab showing `url` (loaded), closed afterwards."""
        target = (await self.call("Target.createTarget", {"url": url}))["targetId"]
        try:
            attached = await self.call(
                "Target.attachToTarget", {"targetId": target, "flatten": True}
            )
            page = Page(self, attached["sessionId"])
            # A new tab shows about:blank (complete, origin "null") before it navigates to `url`.
            loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
            async with asyncio.timeout(30):
                while True:
                    with contextlib.suppress(PageError, RuntimeError):  # a context replaced
                        if await page.evaluate(loaded):
                            break
                    await asyncio.sleep(0.05)
            yield page
        finally:
            await self.call("Target.closeTarget", {"targetId": target})


@dataclass(frozen=True)
class Page:
    browser: Browser
    session: str

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page, a promise's once it settles."""
        result = await self.browser.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            self.session,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise PageError(details.get("exception", {}).get("description") or details["text"])
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """The first truthy value of `expression` (true for an element), polled; fails after
        `timeout` seconds."""
        probe = f"(() => {{ const v = ({expression}); return v instanceof Node ? true : v; }})()"
        try:
            async with asyncio.timeout(timeout):
                while True:
                    # Still rendering (PageError), or between documents (RuntimeError).
                    with contextlib.suppress(PageError, RuntimeError):
                        value = await self.evaluate(probe)
                        if value:
                            return value
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"not true after {timeout} s: {expression}") from None

    async def type_text(self, selector: str, text: str) -> None:
        """Focus the element and type `text` into it, as a keyboard would."""
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.browser.call("Input.insertText", {"text": text}, self.session)

    async def press(self, key: str) -> None:
        """Press and release one named key (Enter, Escape, Tab…) in the focused element."""
        codes = {"Enter": 13, "Escape": 27, "Tab": 9, "End": 35, "PageUp": 33}
        event = {"key": key, "code": key, "windowsVirtualKeyCode": codes.get(key, 0)}
        if key == "Enter":
            event["text"] = "\r"
        for kind in ("keyDown", "keyUp"):
            await self.browser.call("Input.dispatchKeyEvent", {**event, "type": kind}, self.session)

    async def wheel(self, selector: str, delta_y: float) -> None:
        """Turn the mouse wheel over the element's centre (negative: scroll up)."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        event = {"type": "mouseWheel", "x": box[0], "y": box[1], "deltaX": 0, "deltaY": delta_y}
        await self.browser.call("Input.dispatchMouseEvent", event, self.session)

    async def resize(self, width: int, height: int) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        await self.browser.call("Emulation.setDeviceMetricsOverride", metrics, self.session)

    async def screenshot(self, path: Path) -> None:
        """A PNG of the viewport into `path`."""
        shot = await self.browser.call("Page.captureScreenshot", {"format": "png"}, self.session)
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def _devtools_url(profile: Path, process: asyncio.subprocess.Process) -> str:
    """The browser's DevTools socket, from the port file Chromium writes when it listens."""
    port_file = profile / "DevToolsActivePort"
    async with asyncio.timeout(START_SECONDS):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"Chromium exited with {process.returncode}")
            with contextlib.suppress(FileNotFoundError, ValueError):
                port, path = port_file.read_text().split("\n")[:2]
                return f"ws://127.0.0.1:{int(port)}{path}"
            await asyncio.sleep(0.05)


@contextlib.contextmanager
def static_site(directory: Path, port: int = 0) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a page's own origin); yields the origin."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
