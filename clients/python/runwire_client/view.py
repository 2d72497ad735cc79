"""What `rw` shows of an execution: a live view, plain lines or JSON events, and the summary."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from runwire_client import (
    AgentEntryReported,
    AgentEntryType,
    CallEventReported,
    CallEventType,
    Event,
    Execution,
    ExecutionStatus,
    ExecutionStatusChanged,
    OutputChunk,
    OutputTruncated,
    Review,
    ReviewStatus,
    SpanReported,
    StepRun,
    StepStatus,
    StepStatusChanged,
    Trace,
    UnknownEvent,
    UsageReported,
    UsageTotals,
)

STEP_ENDED = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.CANCELLED,
        StepStatus.TIMED_OUT,
        StepStatus.SKIPPED,
    }
)
EVENT_TYPES: Mapping[type, str] = {
    ExecutionStatusChanged: "EXECUTION_STATUS",
    StepStatusChanged: "STEP_STATUS",
    OutputChunk: "OUTPUT",
    OutputTruncated: "OUTPUT_TRUNCATED",
    SpanReported: "SPAN",
    AgentEntryReported: "AGENT_ENTRY",
    UsageReported: "USAGE",
    CallEventReported: "CALL",
}
STATUS_STYLES: Mapping[str, str] = {
    "SUCCEEDED": "bold green",
    "FAILED": "bold red",
    "TIMED_OUT": "bold red",
    "CANCELLED": "yellow",
    "SKIPPED": "dim",
    "RUNNING": "cyan",
    "PENDING": "dim",
    "QUEUED": "dim",
    "PAUSED": "magenta",
    "PAUSING": "magenta",
    "WAITING": "bold magenta",  # for a person: `rw review` decides it
    "STOPPING": "yellow",
}
TOKENS_INPUT, TOKENS_OUTPUT, COST_USD = "tokens_input", "tokens_output", "cost_usd"
# Step attempt attributes the server stores with reported usage (besides the three above).
USAGE_CALLS, USAGE_UNPRICED = "usage_calls", "usage_unpriced"
# Where transcript entries and usage go among a step's output lines.
AGENT, USAGE, CALL = "agent", "usage", "call"


# --- the state the views draw -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepProgress:
    """Where one step is, as far as the events seen so far tell."""

    key: str
    position: int
    kind: str | None = None
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    retry_in_seconds: float | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        """Ended, and no automatic retry is coming."""
        return self.status in STEP_ENDED and self.retry_in_seconds is None


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One complete line of a step's output."""

    seq: int
    step_key: str
    # stdout, stderr; or AGENT (a transcript entry), USAGE (a usage report), CALL (a call's moment)
    stream: str
    text: str
    error: bool = False  # a failed tool call or an agent's error result


@dataclass
class RunState:
    """An execution folded from its events: statuses, step timers and the latest output lines."""

    execution_id: str
    name: str
    status: ExecutionStatus
    steps: dict[str, StepProgress]
    tail: deque[OutputLine] = field(default_factory=lambda: deque(maxlen=200))
    last_seq: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # True once an ended execution ran again (a retry): started_at is then the retry's start.
    restarted: bool = False
    # The latest usage totals: the execution's, and each step's (over its attempts).
    usage: UsageTotals | None = None
    step_usage: dict[str, UsageTotals] = field(default_factory=dict)
    # Tool names by call id, so a tool's result names the tool it answers.
    _tools: dict[str, str] = field(default_factory=dict)
    # Output arrives in chunks that need not end at a line break: the unfinished line waits here
    # per (step, attempt, stream) until its break arrives or the step ends.
    _partial: dict[tuple[str, int | None, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, execution: Execution, after_seq: int = 0) -> RunState:
        """The state to follow `execution` from `after_seq`: every step, and, when joining midway,
        where each step was at the snapshot."""
        steps: dict[str, StepProgress] = {}
        for run in sorted(execution.steps, key=lambda r: (r.position, r.attempt)):
            steps[run.key] = StepProgress(key=run.key, position=run.position, kind=run.kind)
            if after_seq > 0:
                steps[run.key] = replace(
                    steps[run.key],
                    status=run.status,
                    attempt=run.attempt,
                    started_at=run.started_at,
                    finished_at=run.finished_at,
                    error=run.error,
                )
        state = cls(
            execution_id=execution.id,
            name=execution.name,
            status=ExecutionStatus.QUEUED,
            steps=steps,
            last_seq=after_seq,
        )
        if after_seq > 0:
            state.status = execution.status
            state.started_at = execution.started_at
        return state

    @property
    def retry_ms(self) -> int | None:
        """From a followed retry's start to the end: what the live view's clock showed."""
        if not self.restarted or self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds() * 1000)

    @property
    def done_steps(self) -> int:
        return sum(1 for step in self.steps.values() if step.done)

    @property
    def running_steps(self) -> list[StepProgress]:
        """Steps running now, review steps waiting for their decision, and failed ones that
        wait for an automatic retry."""
        return [
            step
            for step in self.steps.values()
            if step.status in (StepStatus.RUNNING, StepStatus.WAITING)
            or step.retry_in_seconds is not None
        ]

    def apply(self, event: Event) -> list[OutputLine]:
        """Fold one event in; the output lines it completed."""
        self.last_seq = event.seq
        completed: list[OutputLine] = []
        match event:
            case ExecutionStatusChanged():
                # A retried execution runs again after it ended: its clock starts again too.
                restarted = self.status.is_terminal and not event.status.is_terminal
                self.restarted = self.restarted or restarted
                if restarted or self.started_at is None:
                    self.started_at = event.at if event.status is ExecutionStatus.RUNNING else None
                self.status = event.status
                self.finished_at = event.at if event.terminal else None
            case StepStatusChanged(step_key=str(key)):
                step = self.steps.get(key) or StepProgress(key=key, position=len(self.steps))
                step = replace(
                    step,
                    kind=event.kind or step.kind,
                    status=event.status,
                    attempt=event.attempt or step.attempt,
                    retry_in_seconds=event.retry_in_seconds,
                    error=event.error,
                )
                if event.status in (StepStatus.RUNNING, StepStatus.WAITING):
                    # A review step goes WAITING without running: its timer is the wait's.
                    step = replace(step, started_at=event.at, finished_at=None)
                elif event.status in STEP_ENDED:
                    step = replace(step, finished_at=event.at)
                    completed = self._flush(key, event.seq)
                self.steps[key] = step
            case OutputChunk(step_key=str(key)):
                completed = self._lines(event, key)
            case AgentEntryReported(step_key=str(key)):
                if event.entry is AgentEntryType.TOOL_CALL and event.call_id and event.tool:
                    self._tools[event.call_id] = event.tool
                tool = self._tools.get(event.call_id or "")
                failed = event.is_error
                completed = [
                    OutputLine(event.seq, key, AGENT, line, failed)
                    for line in entry_lines(event, tool)
                ]
            case CallEventReported(step_key=str(key)):
                failed = event.call is CallEventType.FAILED
                completed = [OutputLine(event.seq, key, CALL, call_line(event), failed)]
            case UsageReported(step_key=str(key)):
                self.usage = event.execution_totals
                self.step_usage[key] = event.step_totals
                completed = [OutputLine(event.seq, key, USAGE, usage_line(event))]
            case _:
                pass
        self.tail.extend(completed)
        return completed

    def _lines(self, chunk: OutputChunk, key: str) -> list[OutputLine]:
        slot = (key, chunk.attempt, chunk.stream)
        text = self._partial.pop(slot, "") + chunk.text.replace("\r\n", "\n")
        *whole, rest = text.split("\n")
        if rest:
            self._partial[slot] = rest
        return [OutputLine(chunk.seq, key, chunk.stream, line) for line in whole]

    def unfinished(self) -> list[OutputLine]:
        """Lines still being written (no line break yet), such as a model's answer as it
        streams: shown below the complete lines until their break or their step's end."""
        return [
            OutputLine(self.last_seq, slot[0], slot[2], text)
            for slot, text in self._partial.items()
            if text
        ]

    def _flush(self, key: str, seq: int) -> list[OutputLine]:
        """An ended step's unfinished lines: nothing more will complete them."""
        slots = [slot for slot in self._partial if slot[0] == key]
        return [OutputLine(seq, key, slot[2], self._partial.pop(slot)) for slot in slots]


# --- the summary --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepSummary:
    """One step's row: its latest attempt, how many it took, and what it reported spending."""

    key: str
    status: StepStatus
    attempts: int
    duration_ms: int | None
    error: str | None = None
    cost_usd: float | None = None
    tokens: int | None = None
    # Usage reports whose model had no price: the cost is unknown, not the priced part's sum.
    unpriced: int = 0


@dataclass(frozen=True, slots=True)
class Summary:
    """The table shown when an execution ends (and by `rw show`)."""

    execution_id: str
    name: str
    status: ExecutionStatus
    duration_ms: int | None
    error: str | None
    steps: tuple[StepSummary, ...]
    cost_usd: float | None = None
    tokens: int | None = None
    tokens_input: int | None = None
    tokens_output: int | None = None
    unpriced: int = 0
    retry_ms: int | None = None
    """For a followed retry: its own duration; `duration_ms` is then from the first start."""

    @property
    def reports_spending(self) -> bool:
        """True when a step reported cost or tokens: only then are those columns shown."""
        return self.cost_usd is not None or self.tokens is not None or self.unpriced > 0


def summarize(
    execution: Execution, trace: Trace | None = None, *, retry_ms: int | None = None
) -> Summary:
    """Rows per step from `execution.steps` (all attempts), with cost and tokens from `trace`;
    `retry_ms`, the duration of the retry that was followed (RunState.retry_ms), if one was."""
    latest: dict[str, StepRun] = {}
    for run in sorted(execution.steps, key=lambda r: (r.position, r.attempt)):
        latest[run.key] = run
    costs = _per_step(trace, (COST_USD,))
    tokens = _per_step(trace, (TOKENS_INPUT, TOKENS_OUTPUT))
    unpriced = _per_step(trace, (USAGE_UNPRICED,))
    rows = tuple(
        StepSummary(
            key=run.key,
            status=run.status,
            attempts=run.attempt,
            duration_ms=run.duration_ms,
            error=run.error,
            cost_usd=costs.get(run.key),
            tokens=None if run.key not in tokens else int(tokens[run.key]),
            unpriced=int(unpriced.get(run.key, 0)),
        )
        for run in latest.values()
    )
    found = None if trace is None else trace.tokens
    return Summary(
        execution_id=execution.id,
        name=execution.name,
        status=execution.status,
        duration_ms=execution.duration_ms,
        error=execution.error,
        steps=rows,
        cost_usd=None if trace is None else trace.cost,
        tokens=None if found is None else found.total,
        tokens_input=None if found is None else found.input,
        tokens_output=None if found is None else found.output,
        unpriced=sum(row.unpriced for row in rows),
        retry_ms=retry_ms,
    )


def _per_step(trace: Trace | None, names: Sequence[str]) -> dict[str, float]:
    """Sum the attributes `names` per step over every attempt, counting a figure only where no
    enclosing span reported it too (a span's figure already covers what is beneath it), the rule
    the server's trace totals follow."""
    if trace is None:
        return {}
    by_id = {span.id: span for span in trace.spans}
    totals: dict[str, float] = {}
    for span in trace.spans:
        if span.step_key is None:
            continue
        for name in names:
            value = _number(span.attributes.get(name))
            if value is None or _reported_above(span.parent_id, by_id, name):
                continue
            totals[span.step_key] = totals.get(span.step_key, 0.0) + value
    return totals


def _reported_above(parent_id: str | None, by_id: Mapping[str, Any], name: str) -> bool:
    seen: set[str] = set()
    while parent_id is not None and parent_id in by_id and parent_id not in seen:
        seen.add(parent_id)
        parent = by_id[parent_id]
        if _number(parent.attributes.get(name)) is not None:
            return True
        parent_id = parent.parent_id
    return False


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --- formatting ---------------------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    """0.51s, 12.3s, 2m 05s, 1h 02m 03s."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {rest:02d}s"


def format_ms(ms: int | None) -> str:
    return "-" if ms is None else format_seconds(ms / 1000)


def format_cost(cost: float | None) -> str:
    """$0.5300; a cost under a cent keeps its significant digits ($0.000042), so a small cost
    never reads as $0."""
    if cost is None:
        return "-"
    if 0 < abs(cost) < 0.01:
        return f"${cost:.6f}".rstrip("0")
    return f"${cost:.4f}"


def format_tokens(tokens: int | None) -> str:
    return "-" if tokens is None else f"{tokens:,}"


# --- agent transcripts and usage ----------------------------------------------------------------

SUMMARY_CHARS = 100  # of a tool's input or result on its one line


def entry_lines(event: AgentEntryReported, tool: str | None = None) -> list[str]:
    """A transcript entry as readable lines; `tool` names the call a TOOL_RESULT answers."""
    data = event.data or {}
    text = event.text or ""
    match event.entry:
        case AgentEntryType.INIT:
            details = [str(data["model"])] if data.get("model") else []
            tools = data.get("tools")
            if isinstance(tools, list):
                details.append(f"{len(tools)} tools")
            return ["agent started" + (f" ({', '.join(details)})" if details else "")]
        case AgentEntryType.ASSISTANT_TEXT:
            first, *rest = text.splitlines() or [""]
            return [f"assistant: {first}", *(f"  {line}" for line in rest)]
        case AgentEntryType.TOOL_CALL:
            return [f"→ {event.tool or 'tool'}({input_summary(data.get('input'))})"]
        case AgentEntryType.TOOL_RESULT:
            name = tool or event.tool or "tool"
            head = f"✗ {name} failed" if event.is_error else f"← {name}"
            return [f"{head}: {_one_line(text)}" if text else head]
        case AgentEntryType.RESULT:
            outcome = data.get("outcome") or ("error" if event.is_error else "done")
            facts = []
            if isinstance(data.get("turns"), int):
                facts.append(f"{data['turns']} turns")
            duration = data.get("duration_ms")
            if isinstance(duration, int | float) and not isinstance(duration, bool):
                facts.append(format_seconds(duration / 1000))
            head = f"result {outcome}" + (f" ({', '.join(facts)})" if facts else "")
            first, *rest = text.splitlines() or [""]
            return [f"{head}: {first}" if first else head, *(f"  {line}" for line in rest)]
        case AgentEntryType.UNKNOWN:
            return [f"? {_one_line(str(data.get('raw', text)))}"]
        case _:  # a kind of entry this client does not know yet
            return [f"{str(event.entry).lower()}: {_one_line(text)}" if text else str(event.entry)]


def call_line(event: CallEventReported) -> str:
    """A moment of a call as one transcript line: `IVR: Welcome to … (0.82)`, `→ pressed 1`."""
    match event.call:
        case CallEventType.PROMPT:
            confidence = "" if event.confidence is None else f" ({event.confidence:.2f})"
            latency = (
                "" if event.latency_ms is None else f" after {format_ms(round(event.latency_ms))}"
            )
            return f"IVR: {event.transcript or ''}{confidence}{latency}"
        case CallEventType.DTMF_SENT:
            method = " (in-band)" if event.method == "inband" else ""
            return f"→ pressed {event.digits}{method}"
        case CallEventType.SPEECH_SENT:
            return f"→ said: {event.text}"
        case CallEventType.MATCHED:
            if event.intent and event.matched == f"intent {event.intent}":
                return f"✓ matched intent {event.intent}"
            return f"✓ matched {event.matched}"
        case CallEventType.NO_INPUT:
            return "IVR: (silence: no input)"
        case CallEventType.HUNG_UP:
            who = "us" if event.by == "US" else "far end"
            return f"hung up by {who}" + (f" ({event.cause})" if event.cause else "")
        case CallEventType.FAILED:
            return f"call failed: {event.sip_status} {event.reason}"
        case CallEventType.TRANSFERRED:
            return "↪ transferred" + (f" to {event.target}" if event.target else "")
        case _:  # DIALING, RINGING, ANSWERED, and moments this client does not know yet
            return str(event.call).lower().replace("_", " ")


def input_summary(value: Any) -> str:
    """A tool's input on one short line: `command='ls -la', timeout=5`."""
    if isinstance(value, Mapping):
        shown = ", ".join(f"{key}={_short(item)}" for key, item in value.items())
    elif value is None:
        shown = ""
    else:
        shown = _short(value)
    return _cut(shown)


def _short(value: Any) -> str:
    if isinstance(value, str):
        return repr(_cut(_one_line(value), 60))
    return _cut(json.dumps(value, default=str, ensure_ascii=False), 60)


def _one_line(text: str) -> str:
    """The first line, cut to fit, saying how many more there were."""
    lines = text.splitlines() or [""]
    more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
    return _cut(lines[0]) + more


def _cut(text: str, limit: int = SUMMARY_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cost_text(cost: float | None, unpriced: str | None) -> str:
    """A usage's cost, or why there is none: never $0 for a model without a price."""
    if cost is not None:
        return format_cost(cost)
    return f"cost unknown ({unpriced})" if unpriced else "cost unknown"


def totals_text(totals: UsageTotals) -> str:
    """`$0.0123, 1,540 tokens`; the cost is unknown while any report in it has no price."""
    if totals.cost_usd is not None:
        cost = format_cost(totals.cost_usd)
    else:
        cost = f"cost unknown ({totals.unpriced} of {totals.calls} unpriced)"
    return f"{cost}, {format_tokens(totals.tokens)} tokens"


def usage_line(event: UsageReported) -> str:
    """One usage report: model, tokens, cost, speed, and the step's and execution's totals."""
    tokens = f"{event.tokens_input:,} in / {event.tokens_output:,} out tokens"
    if event.tokens_cached:
        tokens += f", {event.tokens_cached:,} cached"
    if event.tokens_reasoning:
        tokens += f", {event.tokens_reasoning:,} reasoning"
    parts = [tokens, cost_text(event.cost_usd, event.unpriced)]
    if event.ttft_ms is not None:
        parts.append(f"TTFT {format_seconds(event.ttft_ms / 1000)}")
    if event.tokens_per_second is not None:
        parts.append(f"{event.tokens_per_second:,.1f} tokens/s")
    return (
        f"{event.model or '(no model)'}: {', '.join(parts)}"
        f"; step {totals_text(event.step_totals)}"
        f"; execution {totals_text(event.execution_totals)}"
    )


def _summary_rows(summary: Summary) -> tuple[list[str], list[list[str]]]:
    header = ["step", "status", "duration", "attempts"]
    if summary.reports_spending:
        header += ["cost", "tokens"]
    rows = []
    for step in summary.steps:
        row = [step.key, step.status.value, format_ms(step.duration_ms), str(step.attempts)]
        if summary.reports_spending:
            cost = "unknown" if step.unpriced else format_cost(step.cost_usd)
            row += [cost, format_tokens(step.tokens)]
        rows.append(row)
    return header, rows


def _summary_headline(summary: Summary) -> str:
    line = f"{summary.name} {summary.status.value} in {format_ms(summary.duration_ms)}"
    if summary.retry_ms is not None:
        # The execution's duration spans its first run, the wait and the retry: say which is which.
        line = (
            f"{summary.name} {summary.status.value} in {format_ms(summary.retry_ms)} after the"
            f" retry, {format_ms(summary.duration_ms)} since its first start"
        )
    if summary.reports_spending:
        line += f", {_summary_cost(summary)}, tokens {format_tokens(summary.tokens)}"
        if summary.tokens_input is not None or summary.tokens_output is not None:
            line += (
                f" ({format_tokens(summary.tokens_input or 0)} in"
                f" / {format_tokens(summary.tokens_output or 0)} out)"
            )
    return f"{line} (execution {summary.execution_id})"


def _summary_cost(summary: Summary) -> str:
    """The total cost; unknown (never the priced part alone) when some usage had no price."""
    if not summary.unpriced:
        return f"cost {format_cost(summary.cost_usd)}"
    priced = "" if summary.cost_usd is None else f"; {format_cost(summary.cost_usd)} priced"
    return f"cost unknown ({summary.unpriced} usage report(s) without a price{priced})"


def summary_lines(summary: Summary) -> list[str]:
    """The summary as plain aligned text."""
    header, rows = _summary_rows(summary)
    lines = [_summary_headline(summary)]
    lines += aligned([header, *rows])
    if summary.error:
        lines.append(f"error: {summary.error}")
    return lines


def summary_table(summary: Summary) -> RenderableType:
    """The summary as a rich table under a headline."""
    header, rows = _summary_rows(summary)
    table = Table(title=None, show_edge=True, header_style="bold")
    for name in header:
        table.add_column(
            name, justify="right" if name in {"attempts", "cost", "tokens"} else "left"
        )
    for row in rows:
        cells: list[RenderableType] = list(row)
        cells[1] = Text(row[1], style=STATUS_STYLES.get(row[1], ""))
        table.add_row(*cells)
    parts: list[RenderableType] = [
        Text(_summary_headline(summary), style=STATUS_STYLES.get(summary.status.value, "")),
        table,
    ]
    if summary.error:
        parts.append(Text(f"error: {summary.error}", style="red"))
    return Group(*parts)


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines with aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, datetimes and tuples as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    return value


def event_json(event: Event) -> str:
    """One event as one line of JSON: `type` (as the server names it) and the event's fields."""
    if isinstance(event, UnknownEvent):
        name = event.type or event.typename
    else:
        name = EVENT_TYPES[type(event)]
    return json.dumps({"type": name, **to_jsonable(event)})


# --- the three ways to show events --------------------------------------------------------------


class EventView(Protocol):
    """Shows one execution's events as they arrive, then its summary."""

    state: RunState

    def start(self) -> None:
        """Begin showing (the live view takes over the terminal here)."""

    def show(self, event: Event) -> None:
        """Fold in and show one event."""

    def suspend(self) -> None:
        """Stop drawing for a moment (to ask a question); `start` continues."""

    def finish(self, summary: Summary | None) -> None:
        """Stop drawing and show the summary (None: detached, no summary)."""

    def note(self, message: str) -> None:
        """A remark of `rw`'s own (stopping, detached), not part of the event stream."""


class PlainView:
    """One line per event on a stream; for pipes, files and CI logs."""

    def __init__(self, state: RunState, out: TextIO) -> None:
        self.state = state
        self._out = out

    def start(self) -> None:
        # The id first, on stderr: if a CI job dies midway, its log still says what to watch.
        self.note(_following(self.state))

    def suspend(self) -> None:
        pass

    def show(self, event: Event) -> None:
        before = self.state.steps.get(event.step_key or "")
        lines = self.state.apply(event)
        match event:
            case ExecutionStatusChanged():
                self._line(event.seq, _execution_line(event))
            case StepStatusChanged(step_key=str(key)):
                for line in lines:
                    self._line(line.seq, _output_line(line))
                self._line(event.seq, _step_line(event, key, before))
            case OutputChunk() | AgentEntryReported() | UsageReported() | CallEventReported():
                for line in lines:
                    self._line(line.seq, _output_line(line))
            case UnknownEvent():
                self._line(event.seq, _unknown_line(event))
            case OutputTruncated():
                self._line(event.seq, f"{event.step_key} | … {event.message}")
            case SpanReported():
                span = event.span
                took = "" if span.duration_ms is None else f" in {format_ms(span.duration_ms)}"
                self._line(event.seq, f"{event.step_key} span {span.name} {span.status}{took}")

    def finish(self, summary: Summary | None) -> None:
        if summary is not None:
            self._out.write("\n".join(["", *summary_lines(summary)]) + "\n")
            self._out.flush()

    def note(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def _line(self, seq: int, text: str) -> None:
        self._out.write(f"[{seq}] {text}\n")
        self._out.flush()


def _following(state: RunState) -> str:
    return f"following execution {state.execution_id} ({state.name})"


def _execution_line(event: ExecutionStatusChanged) -> str:
    line = f"execution {event.status.value}"
    if event.reason:
        line += f" ({event.reason})"
    if event.error:
        line += f": {event.error}"
    return line


def _step_line(event: StepStatusChanged, key: str, before: StepProgress | None) -> str:
    attempt = f"attempt {event.attempt}"
    if event.status is StepStatus.RUNNING:
        kind = f", {event.kind}" if event.kind else ""
        return f"step {key} started ({attempt}{kind})"
    if event.status is StepStatus.WAITING:
        return f"step {key} waiting for a review ({attempt})"
    line = f"step {key} {event.status.value.lower().replace('_', ' ')} ({attempt}"
    if before is not None and before.started_at is not None and event.status in STEP_ENDED:
        line += f", {format_seconds((event.at - before.started_at).total_seconds())}"
    line += ")"
    if event.reason:
        line += f" ({event.reason})"
    if event.error:
        line += f": {event.error}"
    if event.retry_in_seconds is not None:
        line += f"; retrying in {format_seconds(event.retry_in_seconds)}"
    return line


def _output_line(line: OutputLine) -> str:
    stream = "" if line.stream == "stdout" else f" ({line.stream})"
    return f"{line.step_key}{stream} | {line.text}"


def _unknown_line(event: UnknownEvent) -> str:
    where = f"{event.step_key} " if event.step_key else ""
    return (
        f"{where}event {event.type or event.typename}"
        " (a type this rw does not know: upgrade runwire-client to see it)"
    )


class JsonView:
    """One JSON object per event on stdout and nothing else there; remarks and the summary go to
    stderr, so `rw … --json | jq` reads events only."""

    def __init__(self, state: RunState, out: TextIO, err: TextIO) -> None:
        self.state = state
        self._out = out
        self._err = err

    def start(self) -> None:
        self.note(_following(self.state))

    def suspend(self) -> None:
        pass

    def show(self, event: Event) -> None:
        self.state.apply(event)
        self._out.write(event_json(event) + "\n")
        self._out.flush()

    def finish(self, summary: Summary | None) -> None:
        if summary is not None:
            self._err.write("\n".join(summary_lines(summary)) + "\n")
            self._err.flush()

    def note(self, message: str) -> None:
        print(message, file=self._err, flush=True)


class LiveView:
    """The terminal view: a progress bar over steps, the running steps with their timers, the
    latest output lines (stderr in red), and at the end the summary table."""

    def __init__(self, state: RunState, console: Console) -> None:
        self.state = state
        self._console = console
        self._live: Live | None = None
        self._spinners: dict[str, Spinner] = {}

    def start(self) -> None:
        if self._live is None:
            self._live = Live(
                console=self._console,
                get_renderable=self.render,
                refresh_per_second=8,
                transient=False,
            )
            self._live.start()

    def suspend(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def show(self, event: Event) -> None:
        self.state.apply(event)

    def finish(self, summary: Summary | None) -> None:
        if self._live is not None:
            self._live.refresh()
        self.suspend()
        if summary is not None:
            self._console.print()
            self._console.print(summary_table(summary))

    def note(self, message: str) -> None:
        self._console.print(Text(message, style="yellow"), soft_wrap=True)

    def render(self) -> RenderableType:
        """The current frame; called by rich on each refresh, so timers move between events."""
        state, now = self.state, datetime.now(UTC)
        total, done = len(state.steps), state.done_steps
        headline = Text.assemble(
            (state.name, "bold"),
            "  ",
            (state.status.value, STATUS_STYLES.get(state.status.value, "")),
            "  ",
            (state.execution_id, "dim"),
        )
        if state.started_at is not None:
            until = state.finished_at or now
            headline.append(f"  {format_seconds((until - state.started_at).total_seconds())}")
        if state.usage is not None:
            headline.append(f"  {totals_text(state.usage)}", style="yellow")
        progress = Table.grid(padding=(0, 1))
        progress.add_row(
            ProgressBar(total=max(total, 1), completed=done, width=40),
            Text(f"{done}/{total} steps"),
        )
        parts: list[RenderableType] = [headline, progress]
        width = max((len(key) for key in state.steps), default=0)
        for step in state.running_steps:
            parts.append(self._running(step, now, width))
        lines = [*state.tail, *state.unfinished()][-self._tail_size(len(parts)) :]
        if lines:
            parts.append(Text("output", style="dim"))
            parts.extend(_tail_line(line, width) for line in lines)
        return Group(*parts)

    def _running(self, step: StepProgress, now: datetime, width: int) -> RenderableType:
        if step.retry_in_seconds is not None:
            waiting = Text.assemble(
                "↻ ",
                (step.key.ljust(width), "bold"),
                f"  attempt {step.attempt} failed, retrying in "
                f"{format_seconds(step.retry_in_seconds)}",
                style="yellow",
                no_wrap=True,
                overflow="ellipsis",
            )
            if step.error:
                waiting.append(f": {step.error}", style="dim")
            return waiting
        started = step.started_at or now
        if step.status is StepStatus.WAITING:
            return Text.assemble(
                "◷ ",
                (step.key.ljust(width), "bold"),
                "  waiting for a review  ",
                (format_seconds((now - started).total_seconds()), "magenta"),
                style="magenta",
                no_wrap=True,
                overflow="ellipsis",
            )
        label = Text.assemble(
            (step.key.ljust(width), "bold"),
            f"  attempt {step.attempt}  ",
            (format_seconds((now - started).total_seconds()), "cyan"),
        )
        if (usage := self.state.step_usage.get(step.key)) is not None:
            label.append(f"  {totals_text(usage)}", style="yellow")
        spinner = self._spinners.setdefault(step.key, Spinner("dots", style="cyan"))
        spinner.update(text=label)
        return spinner

    def _tail_size(self, used: int) -> int:
        """As many output lines as fit under the rest of the frame (3 to 15)."""
        return max(3, min(15, self._console.size.height - used - 3))


def _tail_line(line: OutputLine, width: int) -> Text:
    text = Text(f"{line.step_key.ljust(width)} │ ", style="dim")
    # Output may carry colour codes (shown) and other escape sequences (dropped, so a step's
    # output cannot move the cursor or retitle the terminal); a bare \r rewrites a line.
    shown = Text.from_ansi(line.text.rsplit("\r", 1)[-1])
    if line.stream == "stderr" or line.error:
        shown.stylize("red")
    elif line.stream == AGENT:
        shown.stylize("cyan")
    elif line.stream == CALL:
        shown.stylize("magenta")
    elif line.stream == USAGE:
        shown = Text("$ ", style="yellow").append_text(shown)
        shown.stylize("yellow")
    text.append_text(shown)
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def execution_rows(executions: Iterable[Execution]) -> tuple[list[str], list[list[str]]]:
    """`rw ls` columns: id, name, status, queued at (local time), duration."""
    header = ["id", "name", "status", "queued", "duration"]
    rows = [
        [
            execution.id,
            execution.name,
            execution.status.value,
            execution.queued_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            format_ms(execution.duration_ms),
        ]
        for execution in executions
    ]
    return header, rows


def execution_table(executions: Iterable[Execution]) -> Table:
    header, rows = execution_rows(executions)
    table = Table(header_style="bold")
    for name in header:
        table.add_column(name, no_wrap=name == "id")
    for row in rows:
        table.add_row(row[0], row[1], Text(row[2], style=STATUS_STYLES.get(row[2], "")), *row[3:])
    return table


def execution_details(execution: Execution) -> list[tuple[str, str]]:
    """`rw show`'s facts about an execution, as (label, value) pairs."""
    scenario = execution.scenario
    facts = [
        ("id", execution.id),
        ("name", execution.name),
        ("status", execution.status.value),
        ("scenario", f"{scenario.name} v{scenario.version}" if scenario else "(inline)"),
        ("inputs", json.dumps(execution.inputs, sort_keys=True)),
        ("labels", ", ".join(execution.labels) or "-"),
        ("triggered by", execution.triggered_by),
        ("queued", _local(execution.queued_at)),
        ("started", _local(execution.started_at)),
        ("finished", _local(execution.finished_at)),
        ("duration", format_ms(execution.duration_ms)),
        ("events", str(execution.last_seq)),
    ]
    if execution.step_key is not None:  # a test-panel run (`rw run --step`): only this step
        facts.insert(4, ("mode", f"{execution.mode.value}, step {execution.step_key}"))
    if execution.error:
        facts.append(("error", execution.error))
    return facts


def _local(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


# --- reviews ------------------------------------------------------------------------------------


def review_hint(review: Review) -> str:
    """One line on what a followed execution waits for, and the command that decides it."""
    decision = review.decisions[0] if review.decisions else "DECISION"
    command = f"rw review {review.execution_id} {review.step_key} {decision}"
    for field_ in review.form:
        if field_.required and field_.default is None:
            command += f" --value {field_.name}=VALUE"
    line = (
        f"waiting for review of step {review.step_key} ({_one_line(review.title)});"
        f" decide it with: {command}"
    )
    facts = [f"decisions: {', '.join(review.decisions)}"]
    if review.expires_at is not None:
        facts.append(f"expires {_local(review.expires_at)}")
    return f"{line} ({'; '.join(facts)})"


def review_rows(
    reviews: Iterable[Review], closed: bool = False
) -> tuple[list[str], list[list[str]]]:
    """`rw reviews` columns: execution, step, title, requested and expires (local time); with
    `closed`, also its status, decision and who decided."""
    header = ["execution", "step", "title", "requested", "expires"]
    if closed:
        header += ["status", "decision", "by"]
    rows = []
    for review in reviews:
        row = [
            review.execution_id,
            review.step_key,
            " ".join(review.title.split()),
            _short_local(review.requested_at),
            _short_local(review.expires_at),
        ]
        if closed:
            row += [review.status.value, review.decision or "-", review.decided_by or "-"]
        rows.append(row)
    return header, rows


def review_table(reviews: Iterable[Review], closed: bool = False) -> Table:
    header, rows = review_rows(reviews, closed)
    table = Table(header_style="bold")
    for name in header:
        table.add_column(name, no_wrap=name in {"execution", "requested", "expires"})
    for row in rows:
        cells: list[RenderableType] = list(row)
        if closed:
            cells[5] = Text(row[5], style=REVIEW_STYLES.get(row[5], ""))
        table.add_row(*cells)
    return table


REVIEW_STYLES: Mapping[str, str] = {
    ReviewStatus.PENDING.value: STATUS_STYLES["WAITING"],
    ReviewStatus.DECIDED.value: "green",
    ReviewStatus.TIMED_OUT.value: "red",
    ReviewStatus.CANCELLED.value: "yellow",
}


def _short_local(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
