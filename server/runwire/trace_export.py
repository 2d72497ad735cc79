"""OpenTelemetry: each ended execution's trace, sent to an OTLP/HTTP collector off the event loop.

The runner that ends an execution hands its id here once the execution's events are stored; the
trace is then read back as `Execution.trace` reads it (domain/trace.py) — so an execution that
ran in several processes (paused, handed over, taken over) is sent whole, once, by the process
that ended it — and its spans are made with the SDK's tracer at their recorded times: the root
(the execution) under the caller's span when it was started with a W3C trace context, a span
per step attempt under it, and what the steps reported under those.

Sending is the SDK's BatchSpanProcessor: spans wait in a bounded queue (the oldest dropped when
it is full) for a thread that posts them, so a slow or unreachable collector never holds up a
run; that it cannot be reached is logged once, and again once it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import threading
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
    set_span_in_context,
)

from runwire import __version__
from runwire.db.executions import ExecutionRepository
from runwire.domain.models import Execution
from runwire.domain.trace import Trace, TraceSpan, build_trace, step_span_id
from runwire.faults import is_outage
from runwire.settings import Settings

logger = logging.getLogger(__name__)

# Spans waiting to be sent; past this the oldest are dropped (a trace is a few to a few hundred
# spans, so this holds the traces of many executions while a collector is slow).
QUEUE_SPANS = 8192
BATCH_SPANS = 512
# How soon an ended execution's spans leave (each post then retries for the settings' timeout).
SCHEDULE_DELAY_MS = 500
# On server stop: how long queued spans may take to be sent before the process goes on exiting.
SHUTDOWN_SECONDS = 5.0

_ERROR_STATUSES = frozenset({"FAILED", "TIMED_OUT"})
_OK_STATUSES = frozenset({"SUCCEEDED"})
# Reported operations that call out of the process (an HTTP request's phases, a model call).
_CLIENT_KINDS = frozenset({"http", "llm"})
_TOKENS = {
    "tokens_input": "gen_ai.usage.input_tokens",
    "tokens_output": "gen_ai.usage.output_tokens",
}

# The trace id the root span being started must have (None: the SDK's random one).
_root_trace_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "runwire_root_trace_id", default=None
)


class TraceExport:
    """Sends the traces of ended executions; one per process, when a collector is configured."""

    def __init__(self, executions: ExecutionRepository, provider: TracerProvider) -> None:
        self._executions = executions
        self._provider = provider
        self._tracer = provider.get_tracer("runwire", __version__)
        self._pending: set[asyncio.Task[None]] = set()
        self._read_failing = False

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, settings: Settings, executions: ExecutionRepository
    ) -> AsyncIterator[TraceExport | None]:
        """Export for the block (None when no collector is configured); leaving it flushes."""
        endpoint = settings.otlp_traces_endpoint
        if endpoint is None:
            yield None
            return
        exporter = _ReportingExporter(
            OTLPSpanExporter(
                endpoint=endpoint,
                headers=dict(settings.otlp_headers),
                timeout=settings.otlp_timeout_seconds,
            ),
            _shown(endpoint),
        )
        provider = tracer_provider(settings.otel_service_name)
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=QUEUE_SPANS,
                schedule_delay_millis=SCHEDULE_DELAY_MS,
                max_export_batch_size=BATCH_SPANS,
            )
        )
        logger.info("sending execution traces over OTLP to %s", _shown(endpoint))
        export = cls(executions, provider)
        try:
            yield export
        finally:
            await export._stop()

    def ended(self, execution_id: str) -> None:
        """Send the execution's trace if it has ended (its events must be stored by now)."""
        task = asyncio.get_running_loop().create_task(
            self._send(execution_id), name=f"trace-export-{execution_id}"
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, execution_id: str) -> None:
        try:
            execution = await self._executions.execution(execution_id, workspace=None)
            if execution is None or not execution.status.is_terminal:
                return  # paused or handed over: whoever ends it sends it
            spans = await self._executions.spans(execution_id)
        except Exception as error:
            # The runner's own reads and writes report the outage; one line here is enough.
            if not self._read_failing:
                self._read_failing = True
                logger.warning(
                    "trace of execution %s not sent: reading it failed (%s)",
                    execution_id,
                    type(error).__name__ if is_outage(error) else error,
                )
            return
        self._read_failing = False
        record_spans(self._tracer, execution, build_trace(execution, execution.steps, spans))

    async def _stop(self) -> None:
        """Finish reading ended executions, then send what is queued, for a few seconds at most."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=SHUTDOWN_SECONDS)
        for task in self._pending:
            task.cancel()
        # The provider's shutdown joins the sending thread, which may be waiting on a collector:
        # in a daemon thread of its own, so neither the loop nor the process's exit waits on it.
        finished = asyncio.get_running_loop().create_future()

        def shut_down() -> None:
            try:
                self._provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                    finished.get_loop().call_soon_threadsafe(_set_done, finished)

        threading.Thread(target=shut_down, name="runwire-trace-export-stop", daemon=True).start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_SECONDS):
                await asyncio.shield(finished)


def tracer_provider(service_name: str) -> TracerProvider:
    """A provider for record_spans: a root without a caller gets its execution's trace id."""
    return TracerProvider(
        resource=Resource({"service.name": service_name, "service.version": __version__}),
        sampler=ParentBased(ALWAYS_ON),  # a caller's "not sampled" is followed
        id_generator=_ExecutionTraceIds(),
        shutdown_on_exit=False,  # TraceExport.running shuts it down, within a bound
    )


def record_spans(tracer: Tracer, execution: Execution, trace: Trace) -> None:
    """Make the trace's spans with `tracer`, at their recorded times, parents first."""
    caller = execution.trace_context
    if caller is not None:
        parent = set_span_in_context(
            NonRecordingSpan(
                SpanContext(
                    int(caller.trace_id, 16),
                    int(caller.parent_id, 16),
                    is_remote=True,
                    trace_flags=TraceFlags(caller.flags),
                    trace_state=_trace_state(caller.state),
                )
            )
        )
    else:
        parent = Context()  # a new trace, with the execution's own trace id
    errors: dict[tuple[str | None, int | None], str | None] = {
        (step.key, step.attempt): step.error for step in execution.steps
    }
    fallback_end = execution.finished_at or execution.started_at or execution.queued_at
    made: dict[str, Span] = {}
    for node in trace.spans:  # parents come before their children
        if node.parent_id is None:
            context, start = parent, node.started_at or execution.queued_at
            attributes = _root_attributes(execution)
            error = execution.error
        else:
            context = set_span_in_context(made[node.parent_id])
            start = node.started_at or fallback_end
            attributes = _span_attributes(execution, node)
            # A step attempt's error is the step's; a reported operation says only its status.
            error = errors.get((node.step_key, node.attempt)) if _is_attempt(node) else None
        token = _root_trace_id.set(int(execution.trace_id, 16) if node.parent_id is None else None)
        try:
            span = tracer.start_span(
                node.name or node.kind,
                context=context,
                kind=_kind_of(node),
                attributes=attributes,
                start_time=_nanoseconds(start),
            )
        finally:
            _root_trace_id.reset(token)
        if node.status in _ERROR_STATUSES:
            span.set_status(Status(StatusCode.ERROR, error or node.status.lower()))
        elif node.status in _OK_STATUSES:
            span.set_status(Status(StatusCode.OK))
        made[node.id] = span
    # Ended children first, as a live tracer would; each with its recorded end.
    for node in reversed(trace.spans):
        end = node.finished_at or fallback_end
        made[node.id].end(end_time=max(_nanoseconds(end), _nanoseconds(node.started_at or end)))


def _kind_of(node: TraceSpan) -> SpanKind:
    if node.parent_id is None:
        # Work the caller queued and this process picked up later: a consumer of that request.
        return SpanKind.CONSUMER
    if _is_attempt(node):
        return SpanKind.INTERNAL
    return SpanKind.CLIENT if node.kind in _CLIENT_KINDS else SpanKind.INTERNAL


def _is_attempt(node: TraceSpan) -> bool:
    """Whether the node is a step attempt (not the root, not an operation a step reported)."""
    return (
        node.step_key is not None
        and node.attempt is not None
        and node.id == step_span_id(node.step_key, node.attempt)
    )


def _root_attributes(execution: Execution) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "runwire.execution.id": execution.id,
        "runwire.workspace.id": execution.workspace_id,
        "runwire.span.status": execution.status.value,
    }
    if execution.scenario_name is not None:
        attributes["runwire.scenario.name"] = execution.scenario_name
        attributes["runwire.scenario.version"] = execution.scenario_version or 0
    if execution.batch_id is not None:
        attributes["runwire.batch.id"] = execution.batch_id
    return attributes


def _span_attributes(execution: Execution, node: TraceSpan) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "runwire.execution.id": execution.id,
        "runwire.step.key": node.step_key or "",
        "runwire.step.attempt": node.attempt or 0,
        "runwire.span.kind": node.kind,
        "runwire.span.status": node.status,
    }
    for key, value in node.attributes.items():
        attributes[f"runwire.{key}"] = _attribute_value(value)
        if key in _TOKENS and isinstance(value, int) and not isinstance(value, bool):
            attributes[_TOKENS[key]] = value
    return attributes


def _attribute_value(value: Any) -> Any:
    """OTLP takes strings, numbers, booleans and lists of one of those; the rest as JSON."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and value:
        first = type(value[0])
        if first in {str, bool, int, float} and all(type(item) is first for item in value):
            return list(value)
    return json.dumps(value, default=str, separators=(",", ":"))


def _trace_state(state: str | None) -> TraceState | None:
    if state is None:
        return None
    pairs = [member.strip().partition("=") for member in state.split(",") if member.strip()]
    return TraceState([(key, value) for key, _, value in pairs])


def _nanoseconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MICROSECOND * 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = _EPOCH - datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def _shown(url: str) -> str:
    """The endpoint without credentials a URL may carry (user:password@, a query's keys)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _ExecutionTraceIds(IdGenerator):
    """Random span ids; the execution's own trace id for a root that has no caller."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        return _root_trace_id.get() or self._random.generate_trace_id()


class _ReportingExporter(SpanExporter):
    """The OTLP exporter, whose failures are logged here once per outage instead of per batch."""

    def __init__(self, exporter: SpanExporter, shown_endpoint: str) -> None:
        self._exporter = exporter
        self._endpoint = shown_endpoint
        self._failing = False
        # The exporter logs each retry and each failed batch; this class says it once.
        logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._exporter.export(spans)
        if result is SpanExportResult.SUCCESS:
            if self._failing:
                self._failing = False
                logger.info("OTLP collector %s answers again", self._endpoint)
        elif not self._failing:
            self._failing = True
            logger.warning(
                "OTLP collector %s did not take %d spans; execution traces are dropped until it"
                " does (said once)",
                self._endpoint,
                len(spans),
            )
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)
