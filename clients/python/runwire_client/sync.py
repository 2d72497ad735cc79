"""SyncRunwireClient: the async client driven from blocking code, on a loop of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Coroutine, Generator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import suppress
from types import TracebackType
from typing import Any, Self, TypeVar

from runwire_client.client import RunwireClient
from runwire_client.models import (
    Artifact,
    Event,
    Execution,
    ExecutionFilter,
    ExecutionMode,
    ExecutionUpdate,
    HistoryPage,
    Review,
    ReviewStatus,
    ReviewUpdate,
    Scenario,
    SuiteComparison,
    SuiteRun,
    Trace,
)

T = TypeVar("T")


class SyncRunwireClient:
    """Blocking twin of RunwireClient; use as `with SyncRunwireClient(url, token) as client`.

    The async client runs on an event loop in a daemon thread owned by this object, so it
    works the same inside or outside of other event loops.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        reconnect_timeout: float = 60.0,
    ) -> None:
        self._client = RunwireClient(
            url, token, timeout=timeout, reconnect_timeout=reconnect_timeout
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SyncRunwireClient({self._client.url!r})"

    @property
    def url(self) -> str:
        """The server's GraphQL endpoint over HTTP."""
        return self._client.url

    def __enter__(self) -> Self:
        if self._loop is not None:
            raise RuntimeError("this SyncRunwireClient is already open")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="runwire-client", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._call(self._client.__aenter__())
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the loop's thread; the client cannot be reused."""
        if self._loop is None:
            return
        try:
            self._call(self._client.__aexit__(None, None, None))
        finally:
            self._stop_loop()

    # ---- the async client's methods, blocking -------------------------------------------

    def start(
        self,
        scenario: str | None = None,
        *,
        definition: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        labels: Sequence[str] | None = None,
        priority: int = 0,
        timeout_seconds: float | None = None,
        grace_seconds: float | None = None,
        mode: ExecutionMode = ExecutionMode.FULL,
        step_key: str | None = None,
        upstream: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> Execution:
        """Start a saved scenario (by name) or an inline definition (YAML or JSON text).

        `traceparent` (and `tracestate`): the caller's W3C trace context, which the execution's
        trace continues when the server sends traces over OTLP.
        """
        return self._call(
            self._client.start(
                scenario,
                definition=definition,
                inputs=inputs,
                labels=labels,
                priority=priority,
                timeout_seconds=timeout_seconds,
                grace_seconds=grace_seconds,
                mode=mode,
                step_key=step_key,
                upstream=upstream,
                idempotency_key=idempotency_key,
                traceparent=traceparent,
                tracestate=tracestate,
            )
        )

    def stop(self, execution_id: str, reason: str | None = None) -> Execution:
        """Stop an execution: queued or paused ones end at once, running ones are cancelled."""
        return self._call(self._client.stop(execution_id, reason))

    def delete(self, execution_id: str) -> None:
        """Delete an ended execution with its events, steps and artifacts (needs test:delete)."""
        self._call(self._client.delete(execution_id))

    def pause(self, execution_id: str, reason: str | None = None) -> Execution:
        """Hold a queued execution, or let a running one pause once its running steps end."""
        return self._call(self._client.pause(execution_id, reason))

    def resume(self, execution_id: str) -> Execution:
        """Let a paused (or pausing) execution continue where it stopped."""
        return self._call(self._client.resume(execution_id))

    def retry_step(self, execution_id: str, step_key: str) -> Execution:
        """Run a step again as a new attempt, then every later step that has not succeeded."""
        return self._call(self._client.retry_step(execution_id, step_key))

    def skip_step(self, execution_id: str, step_key: str) -> Execution:
        """Mark a failed or not yet started step SKIPPED; the execution continues after it."""
        return self._call(self._client.skip_step(execution_id, step_key))

    def submit_review(
        self,
        execution_id: str,
        step_key: str,
        decision: str,
        values: Mapping[str, Any] | None = None,
        comment: str | None = None,
    ) -> Execution:
        """See RunwireClient.submit_review."""
        return self._call(
            self._client.submit_review(execution_id, step_key, decision, values, comment)
        )

    def reviews(
        self,
        status: ReviewStatus | None = None,
        *,
        execution_id: str | None = None,
        first: int = 50,
    ) -> list[Review]:
        """See RunwireClient.reviews."""
        return self._call(self._client.reviews(status, execution_id=execution_id, first=first))

    def get(self, execution_id: str) -> Execution:
        """The execution with its steps; NotFoundError if this workspace has none with the id."""
        return self._call(self._client.get(execution_id))

    def history_page(
        self, filter: ExecutionFilter | None = None, *, first: int = 50, after: str | None = None
    ) -> HistoryPage:
        """One page of history, newest first; `after` is the previous page's end_cursor."""
        return self._call(self._client.history_page(filter, first=first, after=after))

    def history(
        self, filter: ExecutionFilter | None = None, *, page_size: int = 50
    ) -> Generator[Execution, None, None]:
        """Every execution matching `filter`, newest first, a page fetched when needed."""
        return self._iterate(self._client.history(filter, page_size=page_size))

    def download(self, artifact: Artifact) -> bytes:
        return self._call(self._client.download(artifact))

    def scenarios(self) -> list[Scenario]:
        """The latest version of every scenario of the workspace, by name."""
        return self._call(self._client.scenarios())

    def trace(self, execution_id: str) -> Trace:
        """The execution as a tree of timed spans; NotFoundError if there is no such one."""
        return self._call(self._client.trace(execution_id))

    def start_suite_run(
        self,
        suite: str,
        *,
        repeat: int = 1,
        concurrency: int = 10,
        labels: Sequence[str] | None = None,
        inputs: Mapping[str, Any] | None = None,
        priority: int = 0,
    ) -> SuiteRun:
        """See RunwireClient.start_suite_run."""
        return self._call(
            self._client.start_suite_run(
                suite,
                repeat=repeat,
                concurrency=concurrency,
                labels=labels,
                inputs=inputs,
                priority=priority,
            )
        )

    def suite_run(self, run_id: str) -> SuiteRun:
        """See RunwireClient.suite_run."""
        return self._call(self._client.suite_run(run_id))

    def compare_suite_runs(self, head: str, base: str | None = None) -> SuiteComparison:
        """See RunwireClient.compare_suite_runs."""
        return self._call(self._client.compare_suite_runs(head, base))

    def suite_report(self, run_id: str, kind: str = "junit", base: str | None = None) -> bytes:
        """See RunwireClient.suite_report."""
        return self._call(self._client.suite_report(run_id, kind, base))

    def follow(self, execution_id: str, after_seq: int = 0) -> Generator[Event, None, None]:
        """Every event with seq > after_seq exactly once, in order, then the iterator ends."""
        if after_seq < 0:  # at the call, as the async client's first step would
            raise ValueError("after_seq must be >= 0 (pass get(id).last_seq to follow from now)")
        return self._iterate(self._client.follow(execution_id, after_seq))

    def live(self, filter: ExecutionFilter | None = None) -> Generator[ExecutionUpdate, None, None]:
        """Status changes of executions matching `filter`, from now on; never ends by itself."""
        return self._iterate(self._client.live(filter))

    def review_updates(
        self, status: ReviewStatus | None = ReviewStatus.PENDING
    ) -> Generator[ReviewUpdate, None, None]:
        """The review queue live (see RunwireClient.review_updates); never ends by itself."""
        return self._iterate(self._client.review_updates(status))

    # ---- plumbing -------------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the client's loop and wait for it; Ctrl-C cancels it."""
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("use the client inside `with SyncRunwireClient(...) as client`")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result()
        except BaseException:
            # KeyboardInterrupt (or any exit of this thread's wait): stop the work there too.
            future.cancel()
            raise

    def _iterate(self, iterator: AsyncGenerator[T, None]) -> Generator[T, None, None]:
        """A blocking iterator over an async one; closing it early closes the async one."""

        async def step() -> list[T]:
            """The next item as a one-item list, or an empty list at the end."""
            try:
                return [await anext(iterator)]
            except StopAsyncIteration:
                return []

        def generate() -> Generator[T, None, None]:
            try:
                while True:
                    found = self._call(step())
                    if not found:
                        return
                    yield found[0]
            finally:
                if self._loop is not None:
                    # After Ctrl-C the cancelled step may still be unwinding the generator
                    # (which closes it anyway): then aclose finds it running and has no work.
                    with suppress(RuntimeError):
                        self._call(iterator.aclose())

        return generate()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
