"""The console's test panel, suites, review queue and metrics in headless Chromium, against a real
server and the executions it really runs.

One server and one browser for the module; each test saves its scenarios and suites through the
API, drives the page as a person would (fields filled, buttons clicked) and waits for the DOM to
reach each state, with a bound. With RUNWIRE_UPDATE_SCREENSHOTS=1 they rewrite the screenshots of
the pages in docs/console/ (shown in the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from tests.support.browser import Browser, Page
from tests.support.graphql import definition, execute, start, wait_for_status
from tests.support.server import Server, running_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The README's screenshots are rewritten only when asked (RUNWIRE_UPDATE_SCREENSHOTS=1), so a test
# run leaves the tree as it found it; otherwise they go to a temporary directory.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "console"
    if os.environ.get("RUNWIRE_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / f"runwire-console-screenshots-{os.getpid()}"
)
WIDTH, HEIGHT = 1280, 900

CREATE_SCENARIO = """
mutation($definition: String!) {
  createScenario(definition: $definition) { __typename ... on Error { message } }
}
"""
UPDATE_SCENARIO = """
mutation($definition: String!) {
  updateScenario(definition: $definition) { __typename ... on Error { message } }
}
"""
CREATE_SUITE = """
mutation($definition: String!) {
  createSuite(definition: $definition) { __typename ... on Error { message } }
}
"""
START_SUITE_RUN = """
mutation($input: StartSuiteRunInput!) {
  startSuiteRun(input: $input) {
    __typename ... on SuiteRunSuccess { run { id batchId total } } ... on Error { message }
  }
}
"""
SUITE_RUN = "query($id: ID!) { suiteRun(id: $id) { complete ended total } }"
SET_BASELINE = "mutation($run: ID!) { setSuiteBaseline(run: $run) { __typename } }"
SUBMIT_REVIEW = """
mutation($id: ID!, $step: String!, $values: JSON) {
  submitReview(executionId: $id, stepKey: $step, decision: "approve", values: $values) {
    __typename ... on Error { message }
  }
}
"""
EXECUTIONS = """
query($scenario: String!) {
  executions(filter: {scenario: $scenario}, first: 50) {
    edges { node { id mode stepKey status upstream inputs } }
  }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("sqlite", tmp_path_factory.mktemp("console-pages")) as found:
        yield found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    async with Browser.running(tmp_path_factory.mktemp("chromium")) as found:
        yield found


# The page's own ways of being driven: a value set as typing would set it (React hears the
# input event), and a click.
_FILL = """
((selector, value) => {
  const element = document.querySelector(selector);
  const prototype = Object.getPrototypeOf(element);
  Object.getOwnPropertyDescriptor(prototype, 'value').set.call(element, value);
  const type = element.tagName === 'SELECT' ? 'change' : 'input';
  element.dispatchEvent(new Event(type, {bubbles: true}));
  return true;
})
"""


async def fill(page: Page, selector: str, value: str) -> None:
    await page.wait_for(f"document.querySelector({json.dumps(selector)})")
    await page.evaluate(f"{_FILL}({json.dumps(selector)}, {json.dumps(value)})")


async def click(page: Page, selector: str) -> None:
    await page.wait_for(f"document.querySelector({json.dumps(selector)})")
    await page.evaluate(f"document.querySelector({json.dumps(selector)}).click()")


def text_of(selector: str) -> str:
    return f"(document.querySelector({json.dumps(selector)})?.textContent ?? '')"


@contextlib.asynccontextmanager
async def console(browser: Browser, server: Server, route: str) -> AsyncIterator[Page]:
    """A tab signed in (the token in the tab's session, as signing in leaves it) at `route`."""
    async with browser.page(f"{server.url}/") as page:
        await page.resize(WIDTH, HEIGHT)
        await page.evaluate(
            f"sessionStorage.setItem('runwire.token', {json.dumps(server.token)});"
            f"location.hash = {json.dumps(route)}; location.reload(); true"
        )
        await page.wait_for("document.querySelector('.who')")
        yield page


async def save(server: Server, document: str, text: str) -> None:
    result = await execute(server, document, {"definition": text})
    assert next(iter(result.values()))["__typename"].endswith("Success"), result


# A scenario with every kind of input the form makes a control for, and two steps, the second
# reading the first's output (what Step in context simulates).
PANEL = """
name: panel-demo
description: Greets someone, then shouts what the greeting said.
inputs:
  who: {type: string, required: true, description: Who to greet.}
  times: {type: integer, default: 2}
  tone: {type: string, enum: [plain, loud], default: plain}
  ratio: {type: number, default: 0.5}
  verbose: {type: boolean, default: false}
  extra: {type: object, required: false}
steps:
  - key: greet
    kind: shell
    with: {argv: ["echo", "hello {{ inputs.who }} x{{ inputs.times }} {{ inputs.tone }}"]}
  - key: shout
    kind: shell
    with: {argv: ["echo", "shouting {{ steps.greet.output.stdout | trim }}"]}
"""


async def test_the_generated_form_refuses_a_bad_value_and_shows_the_servers_refusal(
    browser: Browser, server: Server
) -> None:
    await save(server, CREATE_SCENARIO, PANEL.replace("panel-demo", "form-demo"))
    async with console(browser, server, "#/test/form-demo") as page:
        field = "[data-input={}]"
        await page.wait_for(f"document.querySelector('{field.format('who')}')")
        # One control per input, typed as declared, with the defaults filled in.
        kinds = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('[data-input]')]"
            ".map(e => [e.name, [e.tagName, e.value]]))"
        )
        assert kinds == {
            "who": ["INPUT", ""],
            "times": ["INPUT", "2"],
            "tone": ["SELECT", "0"],
            "ratio": ["INPUT", "0.5"],
            "verbose": ["SELECT", "false"],
            "extra": ["TEXTAREA", ""],
        }
        assert await page.evaluate(
            f"document.querySelector('{field.format('who')}').getAttribute('aria-required')"
        )
        labels = await page.evaluate(
            "[...document.querySelectorAll('.input-field label')].map(l => l.htmlFor"
            " && document.getElementById(l.htmlFor)?.name)"
        )
        assert labels == ["who", "times", "tone", "ratio", "verbose", "extra"]

        # Bad values are refused here, each named, and nothing is sent.
        await fill(page, field.format("times"), "2.5")
        await fill(page, field.format("extra"), "[1, 2]")
        await click(page, "[data-run-button]")
        problem = await page.wait_for(text_of("[data-problem]"))
        assert "who: required" in problem
        assert "times: expected integer" in problem
        assert "extra: expected object, got array" in problem
        assert await page.evaluate(text_of("[data-field-error=times]")) == (
            "times: expected integer, got number (2.5)"
        )
        assert await page.evaluate(
            f"document.querySelector('{field.format('times')}').getAttribute('aria-invalid')"
        )
        await page.screenshot(SCREENSHOTS / "test-panel-refused.png")
        found = await execute(server, EXECUTIONS, {"scenario": "form-demo"})
        assert found["executions"]["edges"] == []

        # A value the page accepts but the server refuses (the scenario changed under the form):
        # its typed error, in words.
        await save(
            server,
            UPDATE_SCENARIO,
            PANEL.replace("panel-demo", "form-demo").replace(
                "inputs:\n", "inputs:\n  region: {type: string, required: true}\n"
            ),
        )
        await fill(page, field.format("who"), "ann")
        await fill(page, field.format("times"), "3")
        await fill(page, field.format("extra"), '{"a": 1}')
        await click(page, "[data-run-button]")
        problem = text_of("[data-problem]")
        refused = await page.wait_for(f"{problem}.includes('server refused') && {problem}")
        assert "inputs.region: required" in refused, refused
        assert not await page.evaluate("!!document.querySelector('[data-field-error=times]')")


async def test_the_test_panel_runs_each_mode_and_shows_its_result(
    browser: Browser, server: Server
) -> None:
    await save(server, CREATE_SCENARIO, PANEL)
    async with console(browser, server, "#/test/panel-demo") as page:
        await fill(page, "[data-input=who]", "ann")
        await fill(page, "[data-input=tone]", "1")

        # Full: both steps, the second reading the first's output.
        await click(page, "[data-run-button]")
        await page.wait_for("document.querySelector('[data-run-status=SUCCEEDED]')")
        await page.wait_for(
            f"{text_of('[data-output=shout]')}.includes('shouting hello ann x2 loud')"
        )
        await page.wait_for(
            "document.querySelector('.run-watch [role=log]')?.dataset.stdoutLines == 2"
        )
        await page.wait_for("document.querySelectorAll('[data-recent]').length === 1")
        await page.screenshot(SCREENSHOTS / "test-panel.png")

        # Single step: only the chosen step runs.
        await click(page, "input[name=mode][value=STEP]")
        await fill(page, "select[name=step]", "greet")
        await click(page, "[data-run-button]")
        await page.wait_for("document.querySelectorAll('[data-recent]').length === 2")
        await page.wait_for("document.querySelector('[data-run-status=SUCCEEDED]')")
        assert await page.evaluate(
            "[...document.querySelectorAll('[data-step-result]')].map(e => e.dataset.stepResult)"
        ) == ["greet"]
        assert "hello ann x2 loud" in await page.evaluate(text_of("[data-output=greet]"))

        # Step in context: the step reads the upstream output written in the editor, which
        # starts as that step's latest real output.
        await click(page, "input[name=mode][value=STEP_IN_CONTEXT]")
        await fill(page, "select[name=step]", "shout")
        prefilled = await page.wait_for("document.querySelector('[data-upstream=greet]')?.value")
        assert json.loads(prefilled)["stdout"].startswith("hello ann x2 loud")
        await fill(page, "[data-upstream=greet]", "{not json")
        await click(page, "[data-run-button]")
        assert "upstream.greet: not valid JSON" in await page.wait_for(
            text_of("[data-field-error='upstream.greet']")
        )
        await fill(page, "[data-upstream=greet]", '{"stdout": "a simulated greeting"}')
        await click(page, "[data-run-button]")
        await page.wait_for("document.querySelectorAll('[data-recent]').length === 3")
        await page.wait_for("document.querySelector('[data-run-status=SUCCEEDED]')")
        await page.wait_for(
            f"{text_of('[data-output=shout]')}.includes('shouting a simulated greeting')"
        )
        await page.screenshot(SCREENSHOTS / "test-panel-in-context.png")
        # Tablet width: the recent runs go below the form, and nothing scrolls sideways.
        await page.resize(800, 1000)
        await page.wait_for("document.documentElement.scrollWidth <= 800")
        form = "document.querySelector('.panel-form').getBoundingClientRect()"
        recent = "document.querySelector('.panel-recent').getBoundingClientRect()"
        assert await page.evaluate(f"{recent}.top >= {form}.bottom")

    runs = (await execute(server, EXECUTIONS, {"scenario": "panel-demo"}))["executions"]["edges"]
    assert [(r["node"]["mode"], r["node"]["stepKey"], r["node"]["status"]) for r in runs] == [
        ("STEP_IN_CONTEXT", "shout", "SUCCEEDED"),
        ("STEP", "greet", "SUCCEEDED"),
        ("FULL", None, "SUCCEEDED"),
    ]
    assert runs[0]["node"]["upstream"] == {"greet": {"stdout": "a simulated greeting"}}
    assert runs[2]["node"]["inputs"]["tone"] == "loud"


async def _run_suite(server: Server, suite: str) -> tuple[str, str]:
    result = await execute(
        server, START_SUITE_RUN, {"input": {"suite": suite, "repeat": 2, "concurrency": 1}}
    )
    run = result["startSuiteRun"]
    assert run["__typename"] == "SuiteRunSuccess", run
    async with asyncio.timeout(60):
        while not (await execute(server, SUITE_RUN, {"id": run["run"]["id"]}))["suiteRun"][
            "complete"
        ]:
            await asyncio.sleep(0.1)
    return str(run["run"]["id"]), str(run["run"]["batchId"])


async def test_a_suite_run_compares_with_its_baseline_and_its_batch_shows_progress(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    # `check` passes while its file exists; `toggle` passes every other time (run one at a
    # time, its two repeats split): so between two runs a case regresses, one is fixed, one is
    # flaky and one keeps passing.
    await save(
        server,
        CREATE_SCENARIO,
        definition(
            '{key: check, kind: shell, with: {argv: ["test", "-e", "{{ inputs.path }}"]}}',
            name="check",
            extra="inputs:\n  path: {type: string, required: true}",
        ),
    )
    await save(
        server,
        CREATE_SCENARIO,
        definition(
            '{key: flip, kind: shell, with: {argv: ["sh", "-c",'
            ' "if [ -e {{ inputs.path }} ]; then rm {{ inputs.path }}; exit 1; fi;'
            ' touch {{ inputs.path }}"]}}',
            name="toggle",
            extra="inputs:\n  path: {type: string, required: true}",
        ),
    )
    worse, better, flip, steady = (
        tmp_path / name for name in ("worse", "better", "flip", "steady")
    )
    await save(
        server,
        CREATE_SUITE,
        json.dumps(
            {
                "name": "nightly",
                "description": "what we run after every change",
                "tags": ["nightly"],
                "cases": [
                    {"name": "to-regress", "scenario": "check", "inputs": {"path": str(worse)}},
                    {"name": "to-fix", "scenario": "check", "inputs": {"path": str(better)}},
                    {"name": "to-flake", "scenario": "toggle", "inputs": {"path": str(flip)}},
                    {"name": "steady", "scenario": "check", "inputs": {"path": str(steady)}},
                ],
            }
        ),
    )
    worse.touch()
    steady.touch()
    base, _ = await _run_suite(server, "nightly")
    assert (await execute(server, SET_BASELINE, {"run": base}))["setSuiteBaseline"][
        "__typename"
    ] == "SetSuiteBaselineSuccess"
    worse.unlink()
    better.touch()
    head, batch = await _run_suite(server, "nightly")

    async with console(browser, server, f"#/suite-runs/{head}") as page:
        await page.wait_for("document.querySelector('[data-suite-run-complete=true]')")
        await page.wait_for("document.querySelector('[data-comparison=regressed]')")
        changes = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('[data-compared-case]')]"
            ".map(r => [r.dataset.comparedCase, r.dataset.change]))"
        )
        assert changes == {
            "to-regress": "REGRESSED",
            "to-fix": "FIXED",
            "to-flake": "FLAKY",
            "steady": "UNCHANGED_PASS",
        }
        verdict = await page.evaluate(text_of("[data-verdict]"))
        assert "1 regressed (to-regress)" in verdict, verdict
        statuses = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('[data-case]')]"
            ".map(r => [r.dataset.case, r.dataset.caseStatus]))"
        )
        assert statuses == {
            "to-regress": "FAILED",
            "to-fix": "PASSED",
            "to-flake": "FLAKY",
            "steady": "PASSED",
        }
        # Each repeat links to its execution.
        assert await page.evaluate("document.querySelectorAll('[data-case] a.repeat').length") == 8
        await page.screenshot(SCREENSHOTS / "suite-run.png")

        await page.evaluate(f"location.hash = '#/batches/{batch}'; true")
        await page.wait_for(
            "document.querySelector('[data-batch-total]')?.dataset.batchEnded === '8'"
        )
        counts = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('[data-batch-count]')]"
            ".map(c => [c.dataset.batchCount, Number(c.querySelector('strong').textContent)]))"
        )
        # to-fix and steady passed twice, to-flake once; to-regress failed twice, to-flake once.
        assert counts["Succeeded"] == 5
        assert counts["Failed"] == 3
        assert await page.evaluate("document.querySelectorAll('tr[data-execution]').length") == 8
        await page.screenshot(SCREENSHOTS / "batch.png")

        await page.evaluate("location.hash = '#/suites/nightly'; true")
        await page.wait_for("document.querySelectorAll('[data-suite-run]').length === 2")
        await page.wait_for("document.querySelector('[data-chart=suite-trend]')")


async def test_the_review_queue_decides_with_its_generated_form(
    browser: Browser, server: Server
) -> None:
    judged = definition(
        '{key: call, kind: shell, with: {argv: ["echo", "the caller said hello"]}}',
        '{key: judge, kind: review, with: {title: "Judge the call", show: [call],'
        " form: {score: {type: integer}, notes: {type: string, required: false}}}}",
        '{key: after, kind: shell, with: {argv: ["echo", "score {{ steps.judge.output.score }}"]}}',
        name="judged",
    )
    execution_id = await start(server, definition=judged)
    second = await start(server, definition=judged)
    await wait_for_status(server, second, {"WAITING"})
    async with console(browser, server, "#/reviews") as page:
        card = f"[data-review='{execution_id}/judge']"
        other = f"[data-review='{second}/judge']"
        await page.wait_for(f"document.querySelector({json.dumps(card)})")
        assert "the caller said hello" in await page.evaluate(text_of(f"{card} .output"))
        await fill(page, f"{card} [data-input=score]", "high")
        await click(page, f"{card} [data-decision=approve]")
        assert "score: expected integer" in await page.wait_for(text_of(f"{card} [role=alert]"))
        await page.screenshot(SCREENSHOTS / "reviews.png")
        await fill(page, f"{card} [data-input=score]", "9")
        # The edited field's error goes with the edit.
        score_error = json.dumps(f"{card} [data-field-error=score]")
        await page.wait_for(f"!document.querySelector({score_error})")
        await click(page, f"{card} [data-decision=approve]")
        # Decided here: it leaves the queue.
        await page.wait_for(f"!document.querySelector({json.dumps(card)})")
        # Decided elsewhere: the page hears it, and it leaves the queue too.
        await page.wait_for(f"document.querySelector({json.dumps(other)})")
        submitted = await execute(
            server,
            SUBMIT_REVIEW,
            {"id": second, "step": "judge", "values": {"score": 3}},
        )
        assert submitted["submitReview"]["__typename"] == "SubmitReviewSuccess", submitted
        await page.wait_for(f"!document.querySelector({json.dumps(other)})")
        await page.wait_for(text_of(".reviews") + ".includes('Nothing waits for a review')")
    found = await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})
    assert found["status"] == "SUCCEEDED"


async def test_the_metrics_page_charts_real_executions(browser: Browser, server: Server) -> None:
    await save(
        server,
        CREATE_SCENARIO,
        definition('{key: ok, kind: shell, with: {argv: ["true"]}}', name="metric-ok"),
    )
    await save(
        server,
        CREATE_SCENARIO,
        definition('{key: no, kind: shell, with: {argv: ["false"]}}', name="metric-fail"),
    )
    started = [await start(server, scenario="metric-ok") for _ in range(3)]
    started.append(await start(server, scenario="metric-fail"))
    for execution_id in started:
        await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})

    async with console(browser, server, "#/metrics?window=1h") as page:
        await page.wait_for(
            "document.querySelector('[data-metrics-window=\"1h\"][data-loaded=true]')"
        )
        finished = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('[data-scenario-metrics]')].map(r =>"
            " [r.dataset.scenarioMetrics, Number(r.querySelector('[data-finished]').textContent)]))"
        )
        assert finished["metric-ok"] == 3
        assert finished["metric-fail"] == 1
        # Every chart drew its bars, from the figures the server answered.
        success = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll("
            "'[data-chart=scenario-success] [data-bar]')]"
            ".map(b => [b.dataset.bar, Number(b.dataset.value)]))"
        )
        assert success["metric-ok"] == 1
        assert success["metric-fail"] == 0
        counts = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('[data-chart=counts] [data-bar]')]"
            ".map(b => [b.dataset.bar, Number(b.dataset.value)]))"
        )
        assert counts["Succeeded"] >= 3
        assert counts["Failed"] >= 1
        for chart in ("scenario-p50", "scenario-p95", "scenario-cost"):
            bars = await page.evaluate(
                f"document.querySelectorAll('[data-chart={chart}] [data-bar]').length"
            )
            assert bars >= 2, chart
        columns = await page.evaluate(
            "[...document.querySelectorAll('[data-chart=finished-over-time] [data-column]')]"
            ".map(c => Number(c.dataset.value))"
        )
        assert len(columns) == 12
        assert sum(columns) >= 4
        assert await page.evaluate(
            "[...document.querySelectorAll('.chart svg')].every(s =>"
            " s.getAttribute('role') === 'img'"
            " && document.getElementById(s.getAttribute('aria-labelledby')))"
        )
        await page.screenshot(SCREENSHOTS / "metrics.png")
        # Tablet width: the charts stack in one column and nothing scrolls sideways.
        await page.resize(800, 1000)
        await page.wait_for("document.documentElement.scrollWidth <= 800")
        # Dark: the charts' text follows the scheme (light on dark).
        dark = {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
        await browser.call("Emulation.setEmulatedMedia", dark, page.session)
        label = "getComputedStyle(document.querySelector('.chart-label')).fill"
        background = "getComputedStyle(document.body).backgroundColor"
        await page.wait_for(f"{background} === 'rgb(13, 17, 23)'")
        assert await page.evaluate(label) == "rgb(230, 237, 243)"
