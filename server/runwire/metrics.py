"""Prometheus metrics: one registry per process, its instruments, and the text `/metrics` serves.

A `Metrics` object is made by the composition root (core.py) and handed to the parts that
observe: the runner, the event log, the publisher and the hub. Their calls are plain methods with
plain values, so no other module imports prometheus_client, and each call costs a dict lookup
and an add: label children are bound once per label values and kept, counters are increased by
a batch's size, never per event.

The registry is this object's own, not prometheus_client's global one, so two cores in one
process (tests, benchmarks) never register a series twice.

Label values stay few: `scenario` (names an operator saved, empty for inline definitions),
`workspace` (names), `status` (the status enums), `kind` (step kinds; token kinds).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# In the text format Prometheus stores each counter's and histogram's `_created` line as a series
# of its own: as many series again, saying only when the process started counting. The library
# keeps this switch process-wide; Runwire is its only user in the process.
disable_created_metrics()  # type: ignore[no-untyped-call]  # the library leaves it unannotated

CONTENT_TYPE = "text/plain; version=0.0.4"
"""The media type of `Metrics.exposition()`: the text format every Prometheus version reads (the
names here need none of 1.0.0's escaping, so the text is the same). The server adds the charset."""

LIVE_COUNTS_MAX_AGE = 1.0
"""Seconds a count of live executions is reused, so scrapes cannot hammer the database."""

# Seconds. Waits in the queue and step attempts run from milliseconds (a claim right away, an
# `echo`) to an hour (a backlog, a long build or call).
_LONG = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
# A batch's transaction and a notice's trip over the bus: sub-millisecond to seconds (outage).
_SHORT = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

LiveCounts = Callable[[], Awaitable[Iterable[tuple[str, str, int]]]]
"""Reads (workspace, status, count) of the executions not ended, from the database."""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    taken_at: float
    counts: Sequence[tuple[str, str, int]] | None  # None: the database did not answer


class _LiveExecutions(Collector):
    """`runwire_executions{workspace,status}` from the last count (series of gone rows vanish)."""

    def __init__(self) -> None:
        self.snapshot = _Snapshot(float("-inf"), None)

    def collect(self) -> Iterator[Metric]:
        counts = self.snapshot.counts
        if counts is None:
            return
        family = GaugeMetricFamily(
            "runwire_executions",
            "Executions not ended (queued, running, paused, ...) by workspace and status,"
            " counted in the database: every process reports the same figures",
            labels=("workspace", "status"),
        )
        for workspace, status, count in counts:
            family.add_metric((workspace, status), count)
        yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())  # computed at scrape time; nothing to check at registration


class Metrics:
    """This process's instruments; the methods are what the observing parts call."""

    def __init__(
        self, *, process: bool = False, live_counts_max_age: float = LIVE_COUNTS_MAX_AGE
    ) -> None:
        """`process` adds the process, platform and garbage-collector series (a real server)."""
        self._live_counts_max_age = live_counts_max_age
        self.registry = registry = CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self._executions_ended = Counter(
            "runwire_executions_ended",
            "Executions this process's runner ended, by scenario and terminal status",
            ("scenario", "status"),
            registry=registry,
        )
        self._queue_wait = Histogram(
            "runwire_queue_wait_seconds",
            "From queued to claimed by this process's runner (first claims only)",
            buckets=_LONG,
            registry=registry,
        )
        self._step_attempts = Histogram(
            "runwire_step_attempt_duration_seconds",
            "Step attempts this process's runner ended, by step kind and status",
            ("kind", "status"),
            buckets=_LONG,
            registry=registry,
        )
        self._events = Counter(
            "runwire_events_appended",
            "Events this process stored (then published): rate() is events per second",
            registry=registry,
        )
        self._flushes = Histogram(
            "runwire_event_log_flush_seconds",
            "One batch of the event log written to the database (one transaction)",
            buckets=_SHORT,
            registry=registry,
        )
        self._bus_lag = Histogram(
            "runwire_bus_lag_seconds",
            "From a notice's publication (any process) to its receipt by this process's bus"
            " listener; across hosts it includes their clocks' difference",
            buckets=_SHORT,
            registry=registry,
        )
        self._subscribers = Gauge(
            "runwire_subscribers", "Live subscriptions and SSE streams", registry=registry
        )
        self._slots = Gauge(
            "runwire_runner_slots", "Executions this process runs at once", registry=registry
        )
        self._slots_in_use = Gauge(
            "runwire_runner_slots_in_use",
            "Executions this process's runner is running now",
            registry=registry,
        )
        self._tokens = Counter(
            "runwire_llm_tokens",
            "LLM tokens reported by steps this process ran, by scenario and kind (input, output)",
            ("scenario", "kind"),
            registry=registry,
        )
        self._cost = Counter(
            "runwire_llm_cost_usd",
            "LLM cost in US dollars reported or priced for steps this process ran, by scenario"
            " (usage without a price adds nothing)",
            ("scenario",),
            registry=registry,
        )
        self._live = _LiveExecutions()
        registry.register(self._live)
        self._count_live: LiveCounts | None = None
        self._counting = asyncio.Lock()
        self._ended_children: dict[tuple[str, str], Counter] = {}
        self._attempt_children: dict[tuple[str, str], Histogram] = {}
        self._token_children: dict[str, tuple[Counter, Counter, Counter]] = {}

    # ---- wiring (core.py, app.py, worker.py) ----------------------------------------------

    def count_live_executions(self, count: LiveCounts) -> None:
        """Where `runwire_executions` comes from (read at most every LIVE_COUNTS_MAX_AGE)."""
        self._count_live = count

    def watch_subscribers(self, count: Callable[[], int]) -> None:
        self._subscribers.set_function(count)

    def watch_runner(self, slots: int, in_use: Callable[[], int]) -> None:
        self._slots.set(slots)
        self._slots_in_use.set_function(in_use)

    def watch_pool(self, size: Callable[[], int], in_use: Callable[[], int]) -> None:
        """The database pool's series (Postgres; SQLite has no pool to report)."""
        Gauge(
            "runwire_db_pool_size",
            "Connections the database pool holds now (open, idle or in use)",
            registry=self.registry,
        ).set_function(size)
        Gauge(
            "runwire_db_pool_connections_in_use",
            "Connections of the database pool in use now",
            registry=self.registry,
        ).set_function(in_use)

    # ---- observations ---------------------------------------------------------------------

    def execution_ended(self, scenario: str | None, status: str) -> None:
        key = (scenario or "", status)
        child = self._ended_children.get(key)
        if child is None:
            child = self._ended_children[key] = self._executions_ended.labels(*key)
        child.inc()

    def claimed(self, waited_seconds: float) -> None:
        self._queue_wait.observe(max(0.0, waited_seconds))

    def step_attempt_ended(self, kind: str, status: str, seconds: float) -> None:
        key = (kind, status)
        child = self._attempt_children.get(key)
        if child is None:
            child = self._attempt_children[key] = self._step_attempts.labels(*key)
        child.observe(seconds)

    def usage_reported(
        self, scenario: str | None, input_tokens: int, output_tokens: int, cost_usd: float | None
    ) -> None:
        name = scenario or ""
        children = self._token_children.get(name)
        if children is None:
            children = self._token_children[name] = (
                self._tokens.labels(name, "input"),
                self._tokens.labels(name, "output"),
                self._cost.labels(name),
            )
        inputs, outputs, cost = children
        inputs.inc(max(0, input_tokens))
        outputs.inc(max(0, output_tokens))
        if cost_usd is not None and cost_usd > 0:
            cost.inc(cost_usd)

    def events_stored(self, count: int) -> None:
        self._events.inc(count)

    def flushed(self, seconds: float) -> None:
        self._flushes.observe(seconds)

    def notices_arrived(self, lag_seconds: float) -> None:
        self._bus_lag.observe(max(0.0, lag_seconds))

    # ---- the scrape -----------------------------------------------------------------------

    async def exposition(self) -> bytes:
        """Every series in the text format, the live counts at most LIVE_COUNTS_MAX_AGE old."""
        await self._refresh_live_counts()
        return generate_latest(self.registry)

    async def _refresh_live_counts(self) -> None:
        if self._count_live is None:
            return
        # Scrapes at once share one count: the second waits for the first's.
        async with self._counting:
            if time.monotonic() - self._live.snapshot.taken_at < self._live_counts_max_age:
                return
            try:
                counts: Sequence[tuple[str, str, int]] | None = list(await self._count_live())
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The database is down: /ready and the log say so; the series goes missing
                # rather than showing stale figures.
                logger.debug("metrics: counting live executions failed (%r)", error)
                counts = None
            self._live.snapshot = _Snapshot(time.monotonic(), counts)
