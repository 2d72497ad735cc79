"""W3C trace context: what startExecution accepts, the OTEL_* settings, and the spans made."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from runwire.db.executions import ExecutionRepository
from runwire.domain.models import Execution, ExecutionStatus, Span, StepRun, StepStatus
from runwire.domain.trace import build_trace
from runwire.domain.trace_context import (
    TraceContext,
    header_trace_context,
    trace_context_errors,
    trace_id_of,
)
from runwire.settings import Settings
from runwire.trace_export import TraceExport, record_spans, tracer_provider

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"


def test_a_valid_traceparent_and_tracestate_are_read() -> None:
    found, errors = trace_context_errors(VALID, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "tc")
    assert errors == []
    assert found == TraceContext(TRACE, PARENT, 1, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    assert found is not None
    assert found.sampled
    assert found.traceparent == VALID
    # A later version is read as 00 (fields it adds after a dash are ignored).
    later, errors = trace_context_errors(f"01-{TRACE}-{PARENT}-00-what-comes-next", None, "tc")
    assert errors == []
    assert later is not None
    assert not later.sampled


@pytest.mark.parametrize(
    "traceparent",
    [
        "",
        "garbage",
        f"00-{TRACE.upper()}-{PARENT}-01",  # uppercase hex
        f"00-{'0' * 32}-{PARENT}-01",  # zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # zero parent id
        f"ff-{TRACE}-{PARENT}-01",  # version ff
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-{PARENT}-01",  # short trace id
        f"01-{TRACE}-{PARENT}-01x",  # a later version's extra part must follow a dash
    ],
)
def test_a_bad_traceparent_is_named_at_its_field(traceparent: str) -> None:
    found, errors = trace_context_errors(traceparent, None, "trace_context")
    assert found is None
    assert [error.path for error in errors] == ["trace_context.traceparent"]
    assert "00-<32 hex trace id>" in errors[0].message


@pytest.mark.parametrize(
    "tracestate",
    ["no-equals", "Upper=1", "a=1,a=2", "a=" + "x" * 300, ",".join(f"k{i}=v" for i in range(33))],
)
def test_a_bad_tracestate_is_named_at_its_field(tracestate: str) -> None:
    found, errors = trace_context_errors(VALID, tracestate, "trace_context")
    assert found is None
    assert [error.path for error in errors] == ["trace_context.tracestate"]


def test_headers_are_read_leniently_as_the_w3c_spec_asks() -> None:
    assert header_trace_context(None, "a=1") is None
    assert header_trace_context("garbage", "a=1") is None  # ignored: a new trace
    found = header_trace_context(f" {VALID} ", "Bad State")
    assert found == TraceContext(TRACE, PARENT, 1, None)  # a bad tracestate alone is dropped


def test_an_execution_without_a_caller_has_a_trace_of_its_own() -> None:
    execution_id = str(uuid.uuid4())
    assert trace_id_of(execution_id, None) == uuid.UUID(execution_id).hex
    assert trace_id_of(execution_id, TraceContext(TRACE, PARENT)) == TRACE
    # Ids in other spellings (upper case, braces, no dashes) or not UUIDs still get one.
    upper = execution_id.upper()
    assert trace_id_of(upper, None) == uuid.UUID(execution_id).hex
    assert trace_id_of("{" + execution_id + "}", None) == uuid.UUID(execution_id).hex
    assert trace_id_of("not-a-uuid", None) == uuid.uuid5(uuid.NAMESPACE_URL, "not-a-uuid").hex


def test_the_otel_variables_configure_export() -> None:
    assert Settings.from_env({}).otlp_traces_endpoint is None
    base = Settings.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s%3Dcret, Tenant = acme",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_SERVICE_NAME": "runwire-eu",
        }
    )
    assert base.otlp_traces_endpoint == "http://collector:4318/v1/traces"
    assert dict(base.otlp_headers) == {"x-api-key": "s=cret", "tenant": "acme"}
    assert (base.otlp_timeout_seconds, base.otel_service_name) == (2.5, "runwire-eu")
    assert "s=cret" not in repr(base)
    signal = Settings.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector/custom/path",
        }
    )
    assert signal.otlp_traces_endpoint == "https://collector/custom/path"
    for off in ({"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}):
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", **off}
        assert Settings.from_env(env).otlp_traces_endpoint is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "OTEL_EXPORTER_OTLP_TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "x-api-key"}, "OTEL_EXPORTER_OTLP_HEADERS: entry 1"),
    ],
)
def test_bad_otel_variables_are_named_without_their_secrets(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match=named) as raised:
        Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **env})
    assert "x-api-key" not in str(raised.value)


T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def ended(caller: TraceContext | None) -> Execution:
    execution_id = str(uuid.uuid4())
    steps = (
        StepRun(execution_id, "fetch", "http", 1, 0, StepStatus.SUCCEEDED, at(10), at(60)),
        StepRun(
            execution_id, "check", "shell", 1, 1, StepStatus.FAILED, at(70), at(90), error="exit 3"
        ),
    )
    return Execution(
        id=execution_id,
        status=ExecutionStatus.FAILED,
        definition={"name": "nightly"},
        inputs={},
        queued_at=at(0),
        started_at=at(5),
        finished_at=at(100),
        error="step check failed",
        steps=steps,
        workspace_id="ws-1",
        scenario_name="nightly",
        scenario_version=3,
        trace_context=caller,
    )


def exported(execution: Execution) -> list[ReadableSpan]:
    provider = tracer_provider("runwire")
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    phase = Span(
        execution.id, "p1", None, "fetch", 1, "connect", "http", "SUCCEEDED", at(12), at(20), {}
    )
    failed = Span(
        execution.id, "p2", None, "check", 1, "probe", "tool", "FAILED", at(72), at(80), {}
    )
    record_spans(
        provider.get_tracer("test"),
        execution,
        build_trace(execution, execution.steps, [phase, failed]),
    )
    return list(memory.get_finished_spans())


def test_spans_continue_the_callers_trace_at_their_recorded_times() -> None:
    execution = ended(TraceContext(TRACE, PARENT, 1, "vendor=x"))
    spans = {span.name: span for span in exported(execution)}
    assert set(spans) == {"nightly", "fetch", "check", "connect", "probe"}
    root, fetch, check, connect = (spans[name] for name in ("nightly", "fetch", "check", "connect"))
    assert {format(s.context.trace_id, "032x") for s in spans.values()} == {TRACE}
    assert root.parent is not None
    assert format(root.parent.span_id, "016x") == PARENT
    assert root.parent.is_remote
    assert root.context.trace_state.to_header() == "vendor=x"
    assert root.kind is SpanKind.CONSUMER
    assert (root.status.status_code, root.status.description) == (
        StatusCode.ERROR,
        "step check failed",
    )
    assert root.attributes["runwire.execution.id"] == execution.id
    assert root.attributes["runwire.scenario.version"] == 3
    assert fetch.parent.span_id == check.parent.span_id == root.context.span_id
    assert connect.parent.span_id == fetch.context.span_id
    assert connect.kind is SpanKind.CLIENT
    assert (check.status.status_code, check.status.description) == (StatusCode.ERROR, "exit 3")
    assert fetch.status.status_code is StatusCode.OK
    # An operation a step reported has its own status, not its step's error.
    probe = spans["probe"]
    assert probe.parent is not None
    assert probe.parent.span_id == check.context.span_id
    assert (probe.status.status_code, probe.status.description) == (StatusCode.ERROR, "failed")
    ns = 1_000_000
    t0 = int(T0.timestamp()) * 1_000_000_000
    assert (root.start_time - t0, root.end_time - t0) == (5 * ns, 100 * ns)
    assert (fetch.start_time - t0, fetch.end_time - t0) == (10 * ns, 60 * ns)
    assert (connect.start_time - t0, connect.end_time - t0) == (12 * ns, 20 * ns)


def test_a_run_without_a_caller_is_its_own_trace() -> None:
    execution = ended(None)
    spans = exported(execution)
    assert {format(s.context.trace_id, "032x") for s in spans} == {execution.trace_id}
    roots = [s for s in spans if s.parent is None]
    assert [s.name for s in roots] == ["nightly"]


def test_a_caller_that_does_not_sample_gets_no_spans() -> None:
    assert exported(ended(TraceContext(TRACE, PARENT, 0))) == []


async def test_without_a_collector_nothing_is_set_up() -> None:
    threads = threading.active_count()
    repository = cast(ExecutionRepository, object())  # never read: nothing is exported
    async with TraceExport.running(Settings.from_env({}), repository) as export:
        assert export is None
        assert threading.active_count() == threads  # no sending thread
