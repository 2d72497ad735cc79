"""The console in headless Chromium against a real server: what an operator does in it.

One server and one browser for the module; every page is opened through a TCP proxy in front of
the server, so a test can drop the page's connections as a network would. Screenshots of the
main pages land in docs/console/ (shown in the README).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from tests.support.browser import Browser, Page
from tests.support.graphql import (
    definition,
    execute,
    follow,
    gated_step,
    start,
    wait_for_status,
)
from tests.support.proxy import Proxy, proxy_to
from tests.support.server import Server, running_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The README's screenshots are rewritten only when asked (RUNWIRE_UPDATE_SCREENSHOTS=1), so a test
# run leaves the tree as it found it; otherwise they go to a temporary directory.
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
SCREENSHOTS = (
    DOCS
    if os.environ.get("RUNWIRE_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / f"runwire-console-screenshots-{os.getpid()}"
)
WIDTH, HEIGHT = 1280, 860
BUTTONS = "[...document.querySelectorAll('button')]"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Two executions at a time, so a third waits in the queue (test_queue_positions).
    settings = {"RUNWIRE_RUNNER_SLOTS": "2"}
    with running_server("sqlite", tmp_path_factory.mktemp("console"), settings) as found:
        yield found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxy(server: Server) -> AsyncIterator[Proxy]:
    async with proxy_to(server.url) as found:
        yield found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    async with Browser.running(tmp_path_factory.mktemp("chromium")) as found:
        yield found


def printing_step(key: str, gate: Path, pause: float = 0.01) -> str:
    """A shell step printing `line 1`, `line 2`, … until the file `gate` exists, then `end N`."""
    script = (
        f"i=0; while [ ! -e {gate} ]; do i=$((i+1)); echo line $i; sleep {pause}; done; echo end $i"
    )
    return f'{{key: {key}, kind: shell, with: {{argv: ["sh", "-c", "{script}"]}}}}'


async def sign_in(page: Page, token: str, remember: bool = False) -> None:
    await page.wait_for("document.querySelector('input[name=token]')")
    await page.type_text("input[name=token]", token)
    if remember:
        await page.evaluate("document.querySelector('input[type=checkbox]').click()")
    await page.evaluate("document.querySelector('form button[type=submit]').click()")


async def signed_in(browser: Browser, proxy: Proxy, server: Server, route: str = "") -> Page:
    """A new tab on the console, signed in, showing `route` (a hash route)."""
    page_context = browser.page(f"{proxy.url}/")
    page = await page_context.__aenter__()
    _open_pages.append(page_context)
    await page.resize(WIDTH, HEIGHT)
    await sign_in(page, server.token)
    await page.wait_for("document.querySelector('#executions-title')")
    if route:
        await page.evaluate(f"location.hash = {json.dumps(route)}")
    return page


_open_pages: list[object] = []


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def _close_pages() -> AsyncIterator[None]:
    yield
    while _open_pages:
        await _open_pages.pop().__aexit__(None, None, None)  # type: ignore[attr-defined]


def text_of(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)})?.textContent ?? ''"


async def test_a_wrong_token_is_refused_in_words_at_once(browser: Browser, proxy: Proxy) -> None:
    async with browser.page(f"{proxy.url}/") as page:
        await page.resize(WIDTH, HEIGHT)
        await page.wait_for("document.querySelector('input[name=token]')")
        await page.screenshot(SCREENSHOTS / "sign-in.png")
        await sign_in(page, "rw_not-a-real-token")
        alert = await page.wait_for(text_of("[role=alert]"), timeout=10)
        assert "refused" in alert
        assert "wrong, revoked or expired" in alert
        assert await page.evaluate("sessionStorage.length + localStorage.length") == 0


async def test_sign_in_keeps_the_token_for_the_tab_only(
    browser: Browser, proxy: Proxy, server: Server
) -> None:
    async with browser.page(f"{proxy.url}/") as page:
        await sign_in(page, server.token)
        who = await page.wait_for(text_of(".who"))
        assert who == "default · admin"
        assert await page.evaluate("sessionStorage.getItem('runwire.token')") == server.token
        assert await page.evaluate("localStorage.getItem('runwire.token')") is None
        # Signing out forgets it.
        await page.evaluate(f"{BUTTONS}.find(b => b.textContent === 'Sign out').click()")
        await page.wait_for("document.querySelector('input[name=token]')")
        assert await page.evaluate("sessionStorage.length + localStorage.length") == 0


async def test_remember_on_this_device_uses_local_storage(
    browser: Browser, proxy: Proxy, server: Server
) -> None:
    async with browser.page(f"{proxy.url}/") as page:
        try:
            await sign_in(page, server.token, remember=True)
            await page.wait_for("document.querySelector('#executions-title')")
            assert await page.evaluate("localStorage.getItem('runwire.token')") == server.token
            assert await page.evaluate("sessionStorage.getItem('runwire.token')") is None
            # A reload signs in again from it (the marker tells the new document from the old).
            # Reload after the evaluation returns: a navigation under way would fail it.
            await page.evaluate("window.beforeReload = true; setTimeout(() => location.reload())")
            await page.wait_for(
                "!window.beforeReload && document.querySelector('#executions-title')"
            )
            await page.evaluate(f"{BUTTONS}.find(b => b.textContent === 'Sign out').click()")
            await page.wait_for("document.querySelector('input[name=token]')")
            assert await page.evaluate("localStorage.length") == 0
        finally:
            # The browser's profile is the module's: leave no token for the next tab.
            await page.evaluate("localStorage.clear()")


async def test_the_live_badge_comes_and_goes_with_the_run(
    browser: Browser, proxy: Proxy, server: Server, tmp_path: Path
) -> None:
    page = await signed_in(browser, proxy, server)
    first, second = tmp_path / "first", tmp_path / "second"
    execution_id = await start(
        server,
        definition=definition(
            printing_step("build", first, 0.05), gated_step("test", second), name="badge"
        ),
        labels=["console"],
    )
    row = f"tr[data-execution={json.dumps(execution_id)}]"
    progress = text_of(f"{row} [data-progress]")
    try:
        # The list is live: the new execution appears, and its badge shows while it runs.
        await page.wait_for(f"document.querySelector('{row}[data-status=RUNNING] [data-live]')")
        assert await page.evaluate(progress) == "0 of 2"
        first.touch()
        # Its steps' progress moves while it runs, not only when it ends.
        await page.wait_for(f"{progress} === '1 of 2'")
        assert await page.evaluate(f"!!document.querySelector('{row}[data-status=RUNNING]')")
    finally:
        first.touch()
        second.touch()
    await page.wait_for(f"document.querySelector('{row}[data-status=SUCCEEDED]')")
    assert not await page.evaluate(f"!!document.querySelector('{row} [data-live]')")
    await page.wait_for(f"{progress} === '2 of 2'")


async def test_the_log_follows_until_the_reader_scrolls_up(
    browser: Browser, proxy: Proxy, server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(
        server, definition=definition(printing_step("chatty", gate), name="chatty")
    )
    page = await signed_in(browser, proxy, server, f"#/executions/{execution_id}")
    log = "document.querySelector('[role=log]')"
    at_end = f"({log}.scrollTop + {log}.clientHeight >= {log}.scrollHeight - 20)"
    try:
        await page.wait_for(f"{log} && {log}.dataset.lines > 150")
        assert await page.evaluate(f"{log}.dataset.following") == "true"
        await page.wait_for(at_end)
        # Virtualised: however long the log, only the rows in view (and a margin) are in the DOM.
        assert await page.evaluate(f"{log}.querySelectorAll('.line').length") <= 100
        await page.screenshot(SCREENSHOTS / "execution.png")

        await page.wheel("[role=log]", -400)
        await page.wait_for(f"{log}.dataset.following === 'false'")
        top = await page.evaluate(f"{log}.scrollTop")
        lines = int(await page.evaluate(f"{log}.dataset.lines"))
        await page.wait_for(f"{log}.dataset.lines > {lines + 50}")
        # New lines came, and the reader's place stayed where it was.
        assert await page.evaluate(f"{log}.scrollTop") == top
        assert not await page.evaluate(at_end)
        await page.evaluate(f"{BUTTONS}.find(b => b.textContent.includes('Jump to live')).click()")
        await page.wait_for(f"{log}.dataset.following === 'true'")
        lines = int(await page.evaluate(f"{log}.dataset.lines"))
        await page.wait_for(f"{log}.dataset.lines > {lines + 20}")
        await page.wait_for(at_end)
        # From the keyboard: the log takes the focus; Page Up pauses, End follows again.
        await page.evaluate(f"{log}.focus()")
        await page.press("PageUp")
        await page.wait_for(f"{log}.dataset.following === 'false'")
        await page.press("End")
        await page.wait_for(f"{log}.dataset.following === 'true'")
        await page.wait_for(at_end)
    finally:
        gate.touch()
    await page.wait_for("document.querySelector('[data-execution-status=SUCCEEDED]')")


async def test_a_late_join_and_a_dropped_connection_lose_and_repeat_nothing(
    browser: Browser, proxy: Proxy, server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(
        server, definition=definition(printing_step("count", gate, 0.02), name="count")
    )
    query = "query($id: ID!) { execution(id: $id) { lastSeq } }"
    try:
        # Join late: the run has been printing for a while.
        async with asyncio.timeout(30):
            while (await execute(server, query, {"id": execution_id}))["execution"]["lastSeq"] < 20:
                await asyncio.sleep(0.05)
        joined_at = (await execute(server, query, {"id": execution_id}))["execution"]["lastSeq"]
        page = await signed_in(browser, proxy, server, f"#/executions/{execution_id}")
        log = "document.querySelector('[role=log]')"
        # Everything so far, then it follows.
        await page.wait_for(f"{log} && {log}.dataset.lastSeq >= {joined_at}")
        seen = int(await page.evaluate(f"{log}.dataset.lastSeq"))
        await page.wait_for(f"{log}.dataset.lastSeq > {seen}")

        before = len(proxy.connections)
        cut_at = int(await page.evaluate(f"{log}.dataset.lastSeq"))
        assert proxy.cut() > 0
        # The page subscribes again on a new connection, from the last seq it showed.
        await page.wait_for(f"{log}.dataset.lastSeq > {cut_at + 5}")
        resumed = [c for c in proxy.connections[before:] if c.seqs]
        assert resumed, "no new connection carried events"
        assert min(resumed[0].seqs) > cut_at
    finally:
        gate.touch()
    await page.wait_for("document.querySelector('[data-execution-status=SUCCEEDED]')")
    events = await follow(server, execution_id)
    last = events[-1]["seq"]
    await page.wait_for(f"{log}.dataset.lastSeq == {last}")
    stdout = "".join(
        e["text"] for e in events if e["type"] == "OUTPUT" and e.get("stream") == "stdout"
    )
    expected = stdout.count("\n")
    assert expected > 20
    assert int(await page.evaluate(f"{log}.dataset.stdoutLines")) == expected
    assert await page.evaluate(f"{log}.dataset.duplicates") == "0"


async def _confirm(page: Page, button: str) -> None:
    await page.evaluate(
        f"[...document.querySelectorAll('button')].find(b => b.textContent === {json.dumps(button)}"
        " || b.getAttribute('aria-label') === " + json.dumps(button) + ").click()"
    )
    await page.wait_for("document.querySelector('dialog[open] [data-confirm]')")
    await page.evaluate("document.querySelector('dialog[open] [data-confirm]').click()")


async def test_stop_and_retry_from_the_page(
    browser: Browser, proxy: Proxy, server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(
        server, definition=definition(printing_step("work", gate, 0.1), name="steered")
    )
    page = await signed_in(browser, proxy, server, f"#/executions/{execution_id}")
    try:
        await page.wait_for(
            "document.querySelector('[data-execution-status=RUNNING] .title-row [data-live]')"
        )
        await _confirm(page, "Stop")
        await page.wait_for("document.querySelector('[data-execution-status=CANCELLED]')")
        assert not await page.evaluate("!!document.querySelector('.title-row [data-live]')")
        await page.wait_for(
            "document.querySelector('tr[data-step=work][data-step-status=CANCELLED]')"
        )

        await _confirm(page, "Retry step work")
        # The page follows the revived execution: running again, a second attempt, live.
        await page.wait_for(
            "document.querySelector('[data-execution-status=RUNNING] .title-row [data-live]')"
        )
        await page.wait_for(text_of("[data-result]") + ".includes('Retry: done')")
        await page.wait_for("[...document.querySelectorAll('tr[data-step=work]')].length === 2")
    finally:
        gate.touch()
    await page.wait_for("document.querySelector('[data-execution-status=SUCCEEDED]')")
    await page.wait_for(
        "[...document.querySelectorAll('[role=log] .line')]"
        ".some(line => line.textContent.includes('attempt 2'))"
    )


async def test_a_refused_action_is_explained_in_words(
    browser: Browser, proxy: Proxy, server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(
        server, definition=definition(printing_step("work", gate, 0.1), name="raced")
    )
    page = await signed_in(browser, proxy, server, f"#/executions/{execution_id}")
    try:
        await page.wait_for("document.querySelector('[data-execution-status=RUNNING]')")
        await page.evaluate(
            "[...document.querySelectorAll('button')].find(b => b.textContent === 'Stop').click()"
        )
        await page.wait_for("document.querySelector('dialog[open] [data-confirm]')")
        # Someone else stops it first, while the question is open.
        stop = "mutation($id: ID!) { stopExecution(id: $id) { __typename } }"
        await execute(server, stop, {"id": execution_id})
        await wait_for_status(server, execution_id, {"CANCELLED"})
        await page.evaluate("document.querySelector('dialog[open] [data-confirm]').click()")
        answer = await page.wait_for(text_of("[data-result=error]"))
        assert "CANCELLED" in answer or "cancelled" in answer, answer
    finally:
        gate.touch()


async def test_filters_search_and_paging(browser: Browser, proxy: Proxy, server: Server) -> None:
    instant = "{key: nap, kind: sleep, with: {seconds: 0}}"
    ids = [
        await start(server, definition=definition(instant, name=f"paged-{n}"), labels=["paging"])
        for n in range(27)
    ]
    assert len(set(ids)) == 27
    page = await signed_in(browser, proxy, server, "#/executions?label=paging")
    rows = "document.querySelectorAll('tr[data-execution]')"
    names = f"[...{rows}].map(r => r.querySelector('a').textContent)"
    # Newest first, 25 a page; the next page (keyset: after the last cursor) has the other two.
    await page.wait_for(f"{rows}.length === 25")
    assert await page.evaluate(names) == [f"paged-{n}" for n in range(26, 1, -1)]
    await page.evaluate(f"{BUTTONS}.find(b => b.textContent.includes('Older')).click()")
    await page.wait_for(f'JSON.stringify({names}) === \'["paged-1","paged-0"]\'')
    await page.evaluate(f"{BUTTONS}.find(b => b.textContent.includes('Newer')).click()")
    await page.wait_for(f"{rows}.length === 25")
    # Search (typed, then applied), and the status filter (applied as it changes).
    await page.type_text("input[type=search]", "paged-13")
    await page.evaluate("document.querySelector('form[role=search]').requestSubmit()")
    await page.wait_for(f"JSON.stringify({names}) === '[\"paged-13\"]'")
    assert "search=paged-13" in await page.evaluate("location.hash")
    await page.evaluate("location.hash = '#/executions?label=paging&status=FAILED'")
    await page.wait_for(text_of("main p.muted") + " === 'No executions match.'")


async def test_a_token_revoked_while_signed_in_signs_the_tab_out(
    browser: Browser, proxy: Proxy, server: Server
) -> None:
    create = """
    mutation { createApiToken(input: {name: "console-revoked", role: VIEWER}) {
      ... on CreateApiTokenSuccess { secret token { id } } } }
    """
    created = (await execute(server, create))["createApiToken"]
    async with browser.page(f"{proxy.url}/") as page:
        await sign_in(page, created["secret"])
        await page.wait_for("document.querySelector('#executions-title')")
        assert await page.evaluate(text_of(".who")) == "default · viewer"
        revoke = "mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }"
        await execute(server, revoke, {"id": created["token"]["id"]})
        # The list's live subscription is closed by the server; the tab says why and signs out.
        alert = await page.wait_for(text_of("[role=alert]"))
        assert "refused" in alert
        assert await page.evaluate("!!document.querySelector('input[name=token]')")
        assert await page.evaluate("sessionStorage.length + localStorage.length") == 0


async def test_the_keyboard_alone_signs_in_and_answers_a_confirmation(
    browser: Browser, proxy: Proxy, server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(server, definition=definition(gated_step("hold", gate)))
    try:
        async with browser.page(f"{proxy.url}/#/executions/{execution_id}") as page:
            # The token field has the focus on arrival; Enter submits.
            await page.wait_for("document.activeElement?.name === 'token'")
            await page.browser.call("Input.insertText", {"text": server.token}, page.session)
            await page.press("Enter")
            await page.wait_for("document.querySelector('[data-execution-status=RUNNING]')")
            await page.evaluate(f"{BUTTONS}.find(b => b.textContent === 'Stop').focus()")
            await page.press("Enter")
            # The question takes the focus on its safe answer; Escape dismisses it, unanswered.
            await page.wait_for("document.activeElement?.textContent === 'Cancel'")
            assert await page.evaluate("document.activeElement.closest('dialog[open]') !== null")
            await page.press("Escape")
            await page.wait_for("!document.querySelector('dialog[open]')")
            assert await page.evaluate(
                "!!document.querySelector('[data-execution-status=RUNNING]')"
            )
    finally:
        gate.touch()
    await wait_for_status(server, execution_id, {"SUCCEEDED"})


def reporting_definition(gate: Path) -> str:
    """A step that reports model usage and agent entries on the report channel, in two rounds."""
    usage = '{"type":"usage","model":"gpt-4.1-mini","input_tokens":1200,"output_tokens":340}'
    call = (
        '{"type":"entry","entry":"TOOL_CALL","tool":"search","call_id":"t1",'
        '"data":{"input":{"q":"runwire"}}}'
    )
    said = '{"type":"entry","entry":"ASSISTANT_TEXT","text":"Found it."}'
    return "\n".join(
        [
            "name: agentic",
            "steps:",
            "  - key: agent",
            "    kind: shell",
            "    with:",
            "      shell: true",
            "      command: |",
            f"        printf '%s\\n' '{usage}' >&3",
            f"        printf '%s\\n' '{call}' >&3",
            f"        until [ -e {gate} ]; do sleep 0.02; done",
            f"        printf '%s\\n' '{said}' >&3",
            f"        printf '%s\\n' '{usage}' >&3",
            "        echo done",
        ]
    )


async def test_agent_entries_cost_and_tokens_arrive_live(
    browser: Browser, proxy: Proxy, server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    execution_id = await start(server, definition=reporting_definition(gate))
    page = await signed_in(browser, proxy, server, f"#/executions/{execution_id}")
    lines = "[...document.querySelectorAll('[role=log] .line')].map(l => l.textContent)"
    try:
        await page.wait_for(text_of("[data-tokens]") + " === '1200 in · 340 out'")
        # 1200 * $0.40 + 340 * $1.60 per million tokens (it can follow the tokens by a render).
        await page.wait_for(text_of("[data-cost]") + " === '$0.0010'")
        await page.wait_for(f"{lines}.some(t => t.includes('tool call') && t.includes('search('))")
    finally:
        gate.touch()
    await page.wait_for(text_of("[data-tokens]") + " === '2400 in · 680 out'")
    await page.wait_for(
        f"{lines}.some(t => t.includes('assistant text') && t.includes('Found it.'))"
    )
    await page.wait_for("document.querySelector('[data-execution-status=SUCCEEDED]')")
    await page.wait_for(text_of("[data-cost]") + " === '$0.0020'")


async def test_queue_positions(
    browser: Browser, proxy: Proxy, server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    page = await signed_in(browser, proxy, server, "#/executions?label=queue")
    try:
        running = [
            await start(server, definition=definition(gated_step("hold", gate)), labels=["queue"])
            for _ in range(2)
        ]
        for execution_id in running:
            await wait_for_status(server, execution_id, {"RUNNING"})
        waiting = [
            await start(server, definition=definition(gated_step("wait", gate)), labels=["queue"])
            for _ in range(2)
        ]
        for place, execution_id in enumerate(waiting, start=1):
            row = f"tr[data-execution={json.dumps(execution_id)}][data-status=QUEUED]"
            await page.wait_for(
                text_of(f"{row} [data-queue-position]") + f" === '#{place} in queue'"
            )
    finally:
        gate.touch()
    for execution_id in waiting:
        await wait_for_status(server, execution_id, {"SUCCEEDED"})
    await page.wait_for("!document.querySelector('[data-queue-position]')")


async def test_the_main_pages_at_tablet_width_and_in_the_dark(
    browser: Browser, proxy: Proxy, server: Server, tmp_path: Path
) -> None:
    """Runs last: the list has the module's executions in it, one of them running."""
    gate = tmp_path / "gate"
    failing = definition(
        '{key: check, kind: shell, with: {argv: ["sh", "-c", "echo no >&2; exit 3"]}}', name="lint"
    )
    failed_id = await start(server, definition=failing, labels=["nightly"])
    await wait_for_status(server, failed_id, {"FAILED"})
    execution_id = await start(
        server,
        definition=definition(
            printing_step("build", gate, 0.05), gated_step("deploy", gate), name="release"
        ),
        labels=["console", "demo"],
    )
    try:
        page = await signed_in(browser, proxy, server)
        await page.wait_for("document.querySelector('tr[data-status=RUNNING] [data-live]')")
        await page.screenshot(SCREENSHOTS / "executions.png")
        # A tablet: the page reflows, nothing sticks out sideways but the tables' own scroll.
        await page.resize(820, 1100)
        await page.wait_for("document.documentElement.scrollWidth <= innerWidth")
        await page.evaluate(f"location.hash = {json.dumps('#/executions/' + execution_id)}")
        await page.wait_for("document.querySelector('[role=log]')?.dataset.lines > 20")
        await page.wait_for("document.documentElement.scrollWidth <= innerWidth")
        await page.screenshot(SCREENSHOTS / "execution-tablet.png")
        dark = {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
        await browser.call("Emulation.setEmulatedMedia", dark, page.session)
        await page.resize(WIDTH, HEIGHT)
        background = "getComputedStyle(document.body).backgroundColor"
        await page.wait_for(f"{background} === 'rgb(13, 17, 23)'")
        await page.screenshot(SCREENSHOTS / "execution-dark.png")
    finally:
        gate.touch()
