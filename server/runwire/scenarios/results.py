"""How a step attempt ended, as its kind reports it and its `expect:` assertions judge it.

Shared by the runner (whose step kinds produce results) and the scenarios package (whose
assertions check them), so neither imports the other for it.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Observed:
    """What a completed step showed, for its `expect:` assertions to check; not stored."""

    exit_code: int | None = None
    status: int | None = None
    latency_ms: float | None = None
    text: str | None = None
    """What output_contains, output_matches and json check: stdout, or the response body."""
    # Filled in by the runner from the attempt's reported usage (cost_usd_below, tokens_below).
    tokens: int | None = None
    cost_usd: float | None = None
    unpriced: str | None = None
    """Why `cost_usd` is None although usage was reported (a model with no price)."""


@dataclass(frozen=True, slots=True)
class StepResult:
    """How a step ended: `error is None` means it succeeded.

    A kind sets `error` only when the step could not complete (could not start or connect, timed
    out). Whether a completed step passed — exit code, status, `expect:` — is decided afterwards
    by `runwire.scenarios.expectations.assess` from `observed`.
    """

    output: Any = None
    error: str | None = None
    exit_code: int | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    observed: Observed | None = None
    retry_after: float | None = None
    """Seconds the far end asked to wait before trying again (an HTTP Retry-After); a retry
    waits at least this long, within the policy's max_delay."""
    retryable: bool = True
    """False when another attempt cannot succeed (a request the far end refuses as it is: a bad
    key, a bad request): the step fails at once, its `retries:` unspent; `error` says why."""


def describe_exit(code: int) -> str:
    """`exited with code 3` or `killed by signal SIGKILL` for a subprocess return code."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"killed by signal {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"
