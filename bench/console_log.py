"""C1 the console's execution page following a fast log, in headless Chromium, against a bare page.

One real `runwire serve` and one headless Chromium (Debian's, driven over the DevTools protocol
by tests/support/browser.py). An execution of one `shell` step prints `--rate` lines per second
for `--seconds` seconds (a paced `python3 -c` loop, one write per line, each line
`line <i> <wall-clock ns at print>`), after waiting for a go file that this benchmark creates
once the page follows the execution (its subscription has delivered the first events).

Variants, one after the other on the same server, each following an execution of its own:

- `console`: the console's execution page (`#/executions/<id>`, signed in with the admin token
  in the tab's session, 1280 x 900), as an operator sees it: the virtualised log following the
  end.
- `bare`: the baseline, the naive page the console's log replaces: a page of the server's own
  origin (its `/health` document, emptied) with no framework, one raw WebSocket speaking
  graphql-transport-ws, subscribed to the same `executionEvents(afterSeq: 0)`, that appends one
  `<div>` per output line to a scrolling box (a fragment per message) and scrolls to the end once
  per animation frame. Not virtualised: its DOM grows with the log.

Measured over the window from the go file to the final line shown, in each page:

- frames: requestAnimationFrame callbacks counted in the page (a probe that also reads the
  newest output line in the DOM each frame); CDP's Performance metrics have no rendered-frame
  count (their `Frames` is the number of frames in the frame tree).
- main-thread busy: CDP `Performance.getMetrics` TaskDuration (and ScriptDuration) deltas, sampled
  about each second, as a share of wall time; mean and worst second.
- lag: each time the newest output line in the DOM changes, now minus that line's print stamp;
  p50, p99, and at the end (the final line's print until the frame that first shows it).
- DOM: log rows in the DOM (most seen in a sample) and `Nodes` at the end; memory: JSHeapUsedSize
  at the end, and after a forced collection (HeapProfiler.collectGarbage).
- lines: the count the page received (the console's log model, `data-stdout-lines`, and its
  duplicate count; the bare page checks each line number follows the one before).

BENCHMARK FAILED if a page lost, duplicated or reordered lines, never showed the final line, the
console's end lag exceeded `--max-lag` seconds, or its log rows in the DOM exceeded `--max-rows`.

Usage: .venv/bin/python bench/console_log.py [--seconds 30] [--rate 2000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Run from the repository root or from bench/: the test support package lives at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import START, BenchmarkFailed, graphql
from tests.support.browser import Browser, Page
from tests.support.server import Server, running_server

WIDTH, HEIGHT = 1280, 900
LINE = r"/^line (\d+) (\d+)$/"

FOLLOW = """
subscription($id: ID!) {
  executionEvents(executionId: $id, afterSeq: 0) { events { seq type ... on OutputChunk { text } } }
}
"""


def printer(lines: int, rate: float) -> str:
    """The step's program: `lines` lines, line i printed at start + i / rate, each stamped."""
    return (
        "import sys, time\n"
        "start = time.monotonic()\n"
        f"for i in range({lines}):\n"
        f"    ahead = start + i / {rate} - time.monotonic()\n"
        "    if ahead > 0:\n"
        "        time.sleep(ahead)\n"
        "    sys.stdout.write(f'line {i} {time.time_ns()}\\n')\n"
        "    sys.stdout.flush()\n"
    )


def definition(go: Path, lines: int, rate: float) -> str:
    wait = f"until [ -e {go} ]; do sleep 0.005; done"
    argv = ["sh", "-c", f'{wait}; exec python3 -c "$0"', printer(lines, rate)]
    return json.dumps(
        {
            "name": "bench-console-log",
            "steps": [{"key": "print", "kind": "shell", "with": {"argv": argv}}],
        }
    )


# Counts frames and follows the newest output line in the DOM; `newest` finds its element.
PROBE = """
((newest, final) => {
  const b = window.__probe = {frames: 0, lags: [], shown: -1, finalLag: null, finalAt: null};
  const pattern = PATTERN;
  function tick() {
    b.frames += 1;
    const element = newest();
    const found = element && pattern.exec(element.textContent);
    if (found && Number(found[1]) !== b.shown) {
      const now = performance.timeOrigin + performance.now();
      b.shown = Number(found[1]);
      const lag = now - Number(found[2]) / 1e6;
      b.lags.push(lag);
      if (b.shown === final && b.finalAt === null) { b.finalAt = now; b.finalLag = lag; }
    }
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
  return true;
})
""".replace("PATTERN", LINE)

# The console's newest output row: the last stdout row rendered (status lines follow the output).
CONSOLE_NEWEST = """() => {
  let row = document.querySelector('.log .log-space')?.lastElementChild;
  while (row && !row.classList.contains('line-stdout')) row = row.previousElementSibling;
  return row && row.querySelector('.line-text');
}"""
CONSOLE_ROWS = "document.querySelectorAll('.log .line').length"

BARE_PAGE = """
((url, token, query, id) => {
  document.documentElement.innerHTML = '<head><title>bare</title></head><body style="margin:0">'
    + '<div id="rows" style="height:860px;overflow:auto;font:13px monospace;white-space:pre">'
    + '</div></body>';
  const box = document.getElementById('rows');
  const b = window.__bare = {lines: 0, next: 0, disorder: 0, messages: 0, done: false, error: null};
  let pending = '', frame = 0;
  const socket = new WebSocket(url, 'graphql-transport-ws');
  socket.onopen = () => socket.send(JSON.stringify(
    {type: 'connection_init', payload: {Authorization: 'Bearer ' + token}}));
  socket.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.type === 'connection_ack') {
      socket.send(JSON.stringify(
        {id: '1', type: 'subscribe', payload: {query, variables: {id}}}));
    } else if (data.type === 'next') {
      b.messages += 1;
      const fragment = document.createDocumentFragment();
      for (const event of data.payload.data.executionEvents.events) {
        if (event.type !== 'OUTPUT') continue;
        const parts = (pending + event.text).split('\\n');
        pending = parts.pop();
        for (const text of parts) {
          const found = PATTERN.exec(text);
          if (found) {
            if (Number(found[1]) !== b.next) b.disorder += 1;
            b.next = Number(found[1]) + 1;
          }
          const row = document.createElement('div');
          row.textContent = text;
          fragment.appendChild(row);
          b.lines += 1;
        }
      }
      box.appendChild(fragment);
      if (frame === 0) frame = requestAnimationFrame(() => {
        frame = 0;
        box.scrollTop = box.scrollHeight;
      });
    } else if (data.type === 'complete') {
      b.done = true;
    } else if (data.type === 'error') {
      b.error = JSON.stringify(data.payload);
    }
  };
  socket.onclose = (event) => { if (!b.done) b.error = 'closed ' + event.code; };
  return true;
})
""".replace("PATTERN", LINE)
BARE_NEWEST = "() => document.getElementById('rows')?.lastElementChild"
BARE_ROWS = "document.getElementById('rows').childElementCount"


@dataclass
class Figures:
    variant: str
    lines: int
    shown: int
    frames: int
    seconds: float
    busy: list[float]
    script: list[float]
    layout: float
    style: float
    lags: list[float]
    final_lag: float
    rows_max: int
    nodes: int
    nodes_after_gc: int
    heap: float
    heap_after_gc: float
    # The tab's renderer process (all its threads): CPU share over the window, RSS at the end.
    renderer_cpu: float
    renderer_rss: float


async def renderers(browser: Browser) -> dict[int, float]:
    """Each renderer process's pid and the CPU seconds it has used."""
    found = await browser.call("SystemInfo.getProcessInfo")
    return {
        int(process["id"]): float(process["cpuTime"])
        for process in found["processInfo"]
        if process["type"] == "renderer"
    }


def rss_bytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) * 1024
    raise BenchmarkFailed(f"no VmRSS for {pid}")


async def metrics(page: Page) -> dict[str, float]:
    found = await page.browser.call("Performance.getMetrics", {}, page.session)
    return {metric["name"]: float(metric["value"]) for metric in found["metrics"]}


async def measure(
    page: Page,
    variant: str,
    newest: str,
    rows: str,
    go: Path,
    lines: int,
    budget: float,
) -> Figures:
    """Start the clock (the go file), sample each second until the final line shows.

    The tab's renderer is the renderer process that used the most CPU over the window.
    """
    await page.browser.call("Performance.enable", {}, page.session)
    await page.evaluate(f"{PROBE}({newest}, {lines - 1})")
    cpu_before = await renderers(page.browser)
    before = await metrics(page)
    await asyncio.to_thread(go.touch)
    started = time.monotonic()
    busy: list[float] = []
    script: list[float] = []
    rows_max = 0
    previous = before
    while True:
        await asyncio.sleep(1.0)
        now = await metrics(page)
        wall = now["Timestamp"] - previous["Timestamp"]
        busy.append((now["TaskDuration"] - previous["TaskDuration"]) / wall)
        script.append((now["ScriptDuration"] - previous["ScriptDuration"]) / wall)
        previous = now
        rows_max = max(rows_max, int(await page.evaluate(rows)))
        probe = await page.evaluate("({shown: __probe.shown, finalAt: __probe.finalAt})")
        if probe["finalAt"] is not None:
            break
        if time.monotonic() - started > budget:
            raise BenchmarkFailed(
                f"{variant}: line {probe['shown']} shown after {budget:.0f} s,"
                f" the last printed is {lines - 1}"
            )
    probe = await page.evaluate("__probe")
    end = await metrics(page)
    cpu_after = await renderers(page.browser)
    used = {pid: cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after}
    busiest = max(used, key=lambda pid: used[pid])
    renderer_cpu = used[busiest] / (end["Timestamp"] - before["Timestamp"])
    renderer_rss = rss_bytes(busiest)
    await page.browser.call("HeapProfiler.collectGarbage", {}, page.session)
    collected = await metrics(page)
    wall = end["Timestamp"] - before["Timestamp"]
    return Figures(
        variant=variant,
        lines=0,
        shown=int(probe["shown"]) + 1,
        frames=int(probe["frames"]),
        seconds=wall,
        busy=busy,
        script=script,
        layout=(end["LayoutDuration"] - before["LayoutDuration"]) / wall,
        style=(end["RecalcStyleDuration"] - before["RecalcStyleDuration"]) / wall,
        lags=[float(lag) for lag in probe["lags"]],
        final_lag=float(probe["finalLag"]) / 1000,
        rows_max=rows_max,
        nodes=int(end["Nodes"]),
        nodes_after_gc=int(collected["Nodes"]),
        heap=end["JSHeapUsedSize"],
        heap_after_gc=collected["JSHeapUsedSize"],
        renderer_cpu=renderer_cpu,
        renderer_rss=renderer_rss,
    )


def start_execution(server: Server, go: Path, lines: int, rate: float) -> str:
    started = graphql(server, START, {"definition": definition(go, lines, rate)})
    answer = started["startExecution"]
    if answer["__typename"] != "StartExecutionSuccess":
        raise BenchmarkFailed(f"startExecution: {answer}")
    return str(answer["execution"]["id"])


async def console(
    browser: Browser, server: Server, folder: Path, lines: int, rate: float, budget: float
) -> Figures:
    go = folder / "go-console"
    execution_id = start_execution(server, go, lines, rate)
    async with browser.page(f"{server.url}/") as page:
        await page.resize(WIDTH, HEIGHT)
        route = f"#/executions/{execution_id}"
        await page.evaluate(
            f"sessionStorage.setItem('runwire.token', {json.dumps(server.token)});"
            f"location.hash = {json.dumps(route)}; location.reload(); true"
        )
        # Following: the subscription has delivered the execution's first events.
        await page.wait_for("Number(document.querySelector('.log')?.dataset.lines) > 0", 60)
        figures = await measure(page, "console", CONSOLE_NEWEST, CONSOLE_ROWS, go, lines, budget)
        log = await page.evaluate(
            "(({stdoutLines, duplicates}) => ({stdoutLines, duplicates}))"
            "(document.querySelector('.log').dataset)"
        )
        if int(log["duplicates"]) != 0:
            raise BenchmarkFailed(f"console: {log['duplicates']} duplicate events")
        figures.lines = int(log["stdoutLines"])
    return figures


async def bare(
    browser: Browser, server: Server, folder: Path, lines: int, rate: float, budget: float
) -> Figures:
    go = folder / "go-bare"
    execution_id = start_execution(server, go, lines, rate)
    async with browser.page(f"{server.url}/health") as page:
        await page.resize(WIDTH, HEIGHT)
        arguments = [server.graphql_ws, server.token, FOLLOW, execution_id]
        await page.evaluate(f"{BARE_PAGE}(...{json.dumps(arguments)})")
        await page.wait_for("window.__bare.messages > 0 || window.__bare.error", 60)
        figures = await measure(page, "bare", BARE_NEWEST, BARE_ROWS, go, lines, budget)
        state = await page.evaluate("window.__bare")
        if state["error"] or state["disorder"]:
            raise BenchmarkFailed(f"bare: {state}")
        figures.lines = int(state["lines"])
    return figures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


KEEPING_UP = (
    f"{'variant':8} {'lines':>7} {'shown':>7} {'frames':>6} {'fps':>5}"
    f" {'lag p50':>7} {'lag p99':>7} {'end lag':>7} {'rows':>6}"
)
COST = (
    f"{'variant':8} {'busy%':>6} {'worst%':>6} {'js%':>5} {'layout%':>7} {'style%':>6}"
    f" {'cpu%':>5} {'nodes':>7} {'GCnodes':>7} {'heapMB':>6} {'GC MB':>6} {'rssMB':>6}"
)


def keeping_up(f: Figures) -> str:
    return (
        f"{f.variant:8} {f.lines:7,} {f.shown:7,} {f.frames:6,} {f.frames / f.seconds:5.1f}"
        f" {percentile(f.lags, 0.5) / 1000:7.3f} {percentile(f.lags, 0.99) / 1000:7.3f}"
        f" {f.final_lag:7.3f} {f.rows_max:6,}"
    )


def cost(f: Figures) -> str:
    return (
        f"{f.variant:8} {100 * statistics.mean(f.busy):6.1f} {100 * max(f.busy):6.1f}"
        f" {100 * statistics.mean(f.script):5.1f} {100 * f.layout:7.1f} {100 * f.style:6.1f}"
        f" {100 * f.renderer_cpu:5.1f} {f.nodes:7,} {f.nodes_after_gc:7,} {f.heap / 1e6:6.1f}"
        f" {f.heap_after_gc / 1e6:6.1f} {f.renderer_rss / 1e6:6.0f}"
    )


async def run(args: argparse.Namespace, server: Server, folder: Path) -> list[Figures]:
    lines = round(args.seconds * args.rate)
    budget = args.seconds + args.max_lag + 60
    async with Browser.running(folder / "browser") as browser:
        found = [
            await console(browser, server, folder, lines, args.rate, budget),
            await bare(browser, server, folder, lines, args.rate, budget),
        ]
    problems = [
        f"{f.variant}: {f.lines:,} lines received, {f.shown:,} shown, {lines:,} printed"
        for f in found
        if f.lines != lines or f.shown != lines
    ]
    (mine, _) = found
    if mine.final_lag > args.max_lag:
        problems.append(f"console: the final line showed {mine.final_lag:.3f} s after its print")
    if mine.rows_max > args.max_rows:
        problems.append(f"console: {mine.rows_max:,} log rows in the DOM (bound {args.max_rows})")
    if problems:
        raise BenchmarkFailed("; ".join(problems))
    return found


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="lines per second")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--max-lag", type=float, default=2.0, help="seconds the final line may take to show"
    )
    parser.add_argument("--max-rows", type=int, default=200, help="log rows the DOM may hold")
    parser.add_argument("--quick", action="store_true", help="2 s at 200 lines/s: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rate = 2.0, 200.0
    load = loadavg()
    with tempfile.TemporaryDirectory(prefix="runwire-bench-console-") as name:
        folder = Path(name)
        # The runner's steps wait for go files in this directory.
        os.chmod(folder, 0o755)
        settings = {"RUNWIRE_LOAD_EXAMPLES": "false"}
        with running_server(args.backend, folder / "server", settings) as server:
            print(
                f"C1 console following a fast log: {args.rate:,.0f} lines/s x {args.seconds:g} s"
                f" = {round(args.seconds * args.rate):,} lines, {args.backend},"
                f" load average {' '.join(load)} at the start"
            )
            try:
                found = asyncio.run(run(args, server, folder))
            except BenchmarkFailed as failed:
                sys.exit(f"BENCHMARK FAILED: {failed}")
    print("keeping up (lags in seconds from print to shown)")
    print(KEEPING_UP)
    for figures in found:
        print(keeping_up(figures))
    print("cost (shares of wall time over the window; memory at the end)")
    print(COST)
    for figures in found:
        print(cost(figures))
    for figures in found:
        series = " ".join(f"{100 * share:.0f}" for share in figures.busy)
        print(f"{figures.variant} main-thread busy % by second: {series}")
    mine, base = found
    print(
        f"console / bare: main-thread busy"
        f" {statistics.mean(mine.busy) / statistics.mean(base.busy):.2f} x,"
        f" frames {mine.frames / base.frames:.2f} x,"
        f" DOM nodes after GC {mine.nodes_after_gc / base.nodes_after_gc:.3f} x,"
        f" JS heap after GC {mine.heap_after_gc / base.heap_after_gc:.2f} x"
    )
    print(f"load average {' '.join(loadavg())} at the end")
    print(
        "lines: received by the page; shown: the final line number shown + 1; frames, fps:"
        " requestAnimationFrame callbacks in the page; rows: most log rows in the DOM;"
        " busy%/worst%: main-thread TaskDuration per second, mean/worst second; js%, layout%,"
        " style%: ScriptDuration, LayoutDuration, RecalcStyleDuration; cpu%: the tab's renderer"
        " process, all threads; GC: after HeapProfiler.collectGarbage; rssMB: renderer RSS"
    )


if __name__ == "__main__":
    main()
