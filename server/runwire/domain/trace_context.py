"""W3C trace context (https://www.w3.org/TR/trace-context/): a caller's trace, continued by a run.

An execution started with a caller's `traceparent` joins that trace: its root span has the
caller's trace id, and the caller's span as its parent. One started without gets a trace of its
own, whose id is its execution id's 32 hex digits (a random UUID), so it needs no column and
executions stored before traces existed have one too.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from runwire.errors import FieldError

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
# A UUID as Runwire writes ids (str(uuid4())): its hex digits are the text without the dashes.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ZERO_SPAN = "0" * 16
# Implementations must pass on at least 512 characters of tracestate; a longer one is refused
# rather than cut, which could leave a vendor's entry half there.
TRACESTATE_CHARS = 512
_SAMPLED = 0x01


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A caller's span: the trace it belongs to, its id, its flags and its vendors' state."""

    trace_id: str
    parent_id: str
    flags: int = _SAMPLED
    state: str | None = None

    @property
    def sampled(self) -> bool:
        """Whether the caller records this trace; a run follows its caller's decision."""
        return bool(self.flags & _SAMPLED)

    @property
    def traceparent(self) -> str:
        """The header value of version 00, as stored."""
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags:02x}"


def trace_id_of(execution_id: str, caller: TraceContext | None) -> str:
    """The trace an execution's spans belong to: its caller's, else its own id's hex digits."""
    if caller is not None:
        return caller.trace_id
    # Every history row asks for it: parsing a UUID object costs ~10x this check.
    if _CANONICAL_UUID.fullmatch(execution_id):
        return execution_id.replace("-", "")
    try:
        return uuid.UUID(execution_id).hex
    except ValueError:  # ids are UUIDs; any other string still gets a stable valid trace id
        return uuid.uuid5(uuid.NAMESPACE_URL, execution_id).hex


def trace_context_errors(
    traceparent: str, tracestate: str | None, path: str
) -> tuple[TraceContext | None, list[FieldError]]:
    """The context a caller gave explicitly, or what is wrong with it, at `path`.traceparent/…"""
    errors: list[FieldError] = []
    parent = _parse_traceparent(traceparent)
    if parent is None:
        errors.append(
            FieldError(
                f"{path}.traceparent",
                "expected a W3C traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex"
                " flags>, lowercase, ids not all zero",
            )
        )
    if tracestate is not None and not _valid_tracestate(tracestate):
        errors.append(
            FieldError(
                f"{path}.tracestate",
                f"expected a W3C tracestate: at most 32 key=value entries separated by commas,"
                f" at most {TRACESTATE_CHARS} characters",
            )
        )
    if errors or parent is None:
        return None, errors
    trace_id, parent_id, flags = parent
    return TraceContext(trace_id, parent_id, flags, tracestate or None), []


def header_trace_context(traceparent: str | None, tracestate: str | None) -> TraceContext | None:
    """The context of a request's `traceparent` and `tracestate` headers, if valid.

    As the W3C spec asks of a receiver, an invalid traceparent is ignored (a new trace is
    started) rather than refused: headers are often set by proxies and instrumentation the
    caller does not control. An invalid tracestate alone is dropped.
    """
    if traceparent is None:
        return None
    parent = _parse_traceparent(traceparent.strip())
    if parent is None:
        return None
    trace_id, parent_id, flags = parent
    state = tracestate.strip() if tracestate is not None else None
    if not state or not _valid_tracestate(state):
        state = None
    return TraceContext(trace_id, parent_id, flags, state)


def stored_trace_context(traceparent: str | None, tracestate: str | None) -> TraceContext | None:
    """The context as stored with an execution (written by TraceContext.traceparent)."""
    if traceparent is None:
        return None
    return header_trace_context(traceparent, tracestate)


def _parse_traceparent(text: str) -> tuple[str, str, int] | None:
    """(trace id, parent id, flags), or None if `text` is not a valid traceparent."""
    found = _TRACEPARENT.match(text)
    if found is None:
        return None
    version, trace_id, parent_id, flags = found.groups()
    # Version ff is invalid; 00 is exactly 55 characters; a later version may add fields after
    # a dash, and is read as 00 (the spec's forward compatibility).
    if version == "ff" or (version == "00" and len(text) != 55):
        return None
    if len(text) > 55 and text[55] != "-":
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, int(flags, 16)


_KEY = re.compile(
    r"[a-z0-9][_0-9a-z\-*/]{0,255}"  # a simple key, or a multi-tenant one: tenant@system
    r"|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13}"
)
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


def _valid_tracestate(text: str) -> bool:
    if len(text) > TRACESTATE_CHARS:
        return False
    members = [member.strip() for member in text.split(",")]
    members = [member for member in members if member]  # empty members are allowed, ignored
    if len(members) > 32:
        return False
    keys: set[str] = set()
    for member in members:
        key, equals, value = member.partition("=")
        if not equals or _KEY.fullmatch(key) is None or _VALUE.fullmatch(value) is None:
            return False
        if key in keys:
            return False
        keys.add(key)
    return True
