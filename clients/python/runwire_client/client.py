"""RunwireClient: the typed async client (HTTP for queries and mutations, a socket per follow)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing, asynccontextmanager, suppress
from types import TracebackType
from typing import Any, Self
from urllib.parse import urljoin

import httpx
from gql import Client
from gql.client import AsyncClientSession
from gql.transport.exceptions import TransportQueryError

from runwire_client import decode, documents
from runwire_client.decode import decoded
from runwire_client.errors import (
    AuthenticationError,
    ConnectionFailedError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    RunwireError,
    from_result,
)
from runwire_client.models import (
    Artifact,
    Event,
    Execution,
    ExecutionFilter,
    ExecutionMode,
    ExecutionUpdate,
    HistoryPage,
    QueueHealth,
    Review,
    ReviewStatus,
    ReviewUpdate,
    Scenario,
    SuiteComparison,
    SuiteRun,
    Trace,
)
from runwire_client.reconnect import Reconnects
from runwire_client.transport import (
    TRANSPORT_ERRORS,
    Endpoint,
    http_transport,
    is_connection_problem,
    redact_in_logs,
    socket_transport,
    translated,
)


class RunwireClient:
    """A Runwire server's API, typed; use as `async with RunwireClient(url, token) as client`."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        reconnect_timeout: float = 60.0,
    ) -> None:
        if not token or any(c.isspace() for c in token):
            raise ValueError("token must be a non-empty API token without whitespace")
        self._endpoint = Endpoint.of(url)
        self._token = token
        self._timeout = timeout
        self._reconnect_timeout = reconnect_timeout
        self._exit_stack: AsyncExitStack | None = None
        self._session: AsyncClientSession | None = None
        redact_in_logs(token)

    def __repr__(self) -> str:
        return f"RunwireClient({self._endpoint.http!r})"  # never the token

    @property
    def url(self) -> str:
        """The server's GraphQL endpoint over HTTP."""
        return self._endpoint.http

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("this RunwireClient is already open")
        client = Client(
            transport=http_transport(self._endpoint, self._token, self._timeout),
            execute_timeout=self._timeout,
        )
        stack = AsyncExitStack()
        # Connecting the HTTP transport only opens its connection pool: nothing is sent yet.
        self._session = await stack.enter_async_context(client)
        self._exit_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._exit_stack, self._session = self._exit_stack, None, None
        if stack is not None:
            await stack.aclose()

    # ---- mutations ------------------------------------------------------------------------

    async def start(
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
        given: dict[str, Any] = {
            "scenario": scenario,
            "definition": definition,
            "inputs": None if inputs is None else dict(inputs),
            "labels": None if labels is None else list(labels),
            "priority": priority,
            "timeoutSeconds": timeout_seconds,
            "graceSeconds": grace_seconds,
            "mode": str(mode),
            "stepKey": step_key,
            "upstream": None if upstream is None else dict(upstream),
            "idempotencyKey": idempotency_key,
            "traceContext": None
            if traceparent is None
            else {"traceparent": traceparent, "tracestate": tracestate},
        }
        variables = {"input": {key: value for key, value in given.items() if value is not None}}
        return await self._change("StartExecution", "startExecution", variables)

    async def stop(self, execution_id: str, reason: str | None = None) -> Execution:
        """Stop an execution: queued or paused ones end at once, running ones are cancelled."""
        return await self._change(
            "StopExecution", "stopExecution", {"id": execution_id, "reason": reason}
        )

    async def pause(self, execution_id: str, reason: str | None = None) -> Execution:
        """Hold a queued execution, or let a running one pause once its running steps end."""
        return await self._change(
            "PauseExecution", "pauseExecution", {"id": execution_id, "reason": reason}
        )

    async def resume(self, execution_id: str) -> Execution:
        """Let a paused (or pausing) execution continue where it stopped."""
        return await self._change("ResumeExecution", "resumeExecution", {"id": execution_id})

    async def delete(self, execution_id: str) -> None:
        """Delete an ended execution with its events, steps and artifacts (needs test:delete)."""
        payload = (await self._execute("DeleteExecution", {"id": execution_id}))["deleteExecution"]
        if payload.get("__typename") != "DeleteExecutionSuccess":
            raise from_result(payload)

    async def retry_step(self, execution_id: str, step_key: str) -> Execution:
        """Run a step again as a new attempt, then every later step that has not succeeded."""
        return await self._change(
            "RetryStep", "retryStep", {"executionId": execution_id, "stepKey": step_key}
        )

    async def skip_step(self, execution_id: str, step_key: str) -> Execution:
        """Mark a failed or not yet started step SKIPPED; the execution continues after it."""
        return await self._change(
            "SkipStep", "skipStep", {"executionId": execution_id, "stepKey": step_key}
        )

    async def submit_review(
        self,
        execution_id: str,
        step_key: str,
        decision: str,
        values: Mapping[str, Any] | None = None,
        comment: str | None = None,
    ) -> Execution:
        """Decide a review step that is WAITING (needs review:write): `decision` one of the
        review's decisions, `values` its form's fields. The execution goes on (QUEUED), or ends
        if the decision fails the step. ValidationError names each wrong field (`decision`,
        `values.<name>`, `comment`); InvalidTransitionError when the step no longer waits."""
        variables = {
            "executionId": execution_id,
            "stepKey": step_key,
            "decision": decision,
            "values": None if values is None else dict(values),
            "comment": comment,
        }
        return await self._change("SubmitReview", "submitReview", variables)

    async def start_suite_run(
        self,
        suite: str,
        *,
        repeat: int = 1,
        concurrency: int = 10,
        labels: Sequence[str] | None = None,
        inputs: Mapping[str, Any] | None = None,
        priority: int = 0,
    ) -> SuiteRun:
        """Run every case of the suite `repeat` times as one batch (all queued, or none)."""
        given: dict[str, Any] = {
            "suite": suite,
            "repeat": repeat,
            "concurrency": concurrency,
            "labels": None if labels is None else list(labels),
            "inputs": None if inputs is None else dict(inputs),
            "priority": priority,
        }
        variables = {"input": {key: value for key, value in given.items() if value is not None}}
        payload = (await self._execute("StartSuiteRun", variables))["startSuiteRun"]
        if payload.get("__typename") != "SuiteRunSuccess":
            raise from_result(payload)
        return decoded(decode.suite_run, payload["run"])

    # ---- queries --------------------------------------------------------------------------

    async def suite_run(self, run_id: str) -> SuiteRun:
        """The suite run as it stands; NotFoundError if this workspace has none with the id."""
        found = (await self._execute("GetSuiteRun", {"id": run_id})).get("suiteRun")
        if found is None:
            raise NotFoundError(f"suite run {run_id} not found")
        return decoded(decode.suite_run, found)

    async def compare_suite_runs(self, head: str, base: str | None = None) -> SuiteComparison:
        """Each case of run `head` against run `base` (default: the suite's baseline);
        NotFoundError when there is no baseline, SuiteMismatchError for two suites' runs."""
        found = await self._execute("CompareSuiteRuns", {"head": head, "base": base})
        payload = found["compareSuiteRuns"]
        if payload.get("__typename") != "SuiteComparison":
            raise from_result(payload)
        return decoded(decode.suite_comparison, payload)

    async def suite_report(
        self, run_id: str, kind: str = "junit", base: str | None = None
    ) -> bytes:
        """A suite run's report: `junit` (XML) or `json`; with `base` (a run id, or "baseline")
        it carries the comparison."""
        name = {"junit": "junit.xml", "json": "report.json"}[kind]
        url = urljoin(self._endpoint.http, f"/suite-runs/{run_id}/{name}")
        headers = {"Authorization": f"Bearer {self._token}"}
        params = {} if base is None else {"base": base}
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as http:
                response = await http.get(url, headers=headers, params=params)
        except httpx.HTTPError as error:
            raise ConnectionFailedError(f"could not download the report: {error}") from error
        if response.status_code == 200:
            return response.content
        detail = _detail(response)
        if response.status_code == 401:
            raise AuthenticationError(detail)
        if response.status_code == 403:
            raise PermissionDeniedError(detail, "execution:read")
        if response.status_code == 404:
            raise NotFoundError(detail)
        raise QueryError(f"suite run report: HTTP {response.status_code}: {detail}")

    async def get(self, execution_id: str) -> Execution:
        """The execution with its steps; NotFoundError if this workspace has none with the id."""
        found = (await self._execute("GetExecution", {"id": execution_id})).get("execution")
        if found is None:
            raise NotFoundError(f"execution {execution_id} not found")
        return decoded(decode.execution, found)

    async def queue_health(self) -> QueueHealth:
        """The workspace's queue and the runners alive to run it."""
        found = (await self._execute("QueueHealth", {}))["queue"]
        return QueueHealth(
            queued=int(found["queued"]),
            runners_alive=int(found["runnersAlive"]),
            oldest_queued_age_seconds=found["oldestQueuedAgeSeconds"],
            warning=found["warning"],
        )

    async def history_page(
        self, filter: ExecutionFilter | None = None, *, first: int = 50, after: str | None = None
    ) -> HistoryPage:
        """One page of history, newest first; `after` is the previous page's end_cursor."""
        variables = {
            "filter": None if filter is None else filter.to_variables(),
            "first": first,
            "after": after,
        }
        data = await self._execute("ExecutionHistory", variables)
        return decoded(lambda found: decode.history_page(found["executions"]), data)

    async def history(
        self, filter: ExecutionFilter | None = None, *, page_size: int = 50
    ) -> AsyncGenerator[Execution, None]:
        """Every execution matching `filter`, newest first, a page fetched when needed."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        after: str | None = None
        while True:
            page = await self.history_page(filter, first=page_size, after=after)
            for execution in page.executions:
                yield execution
            if not page.has_next_page or page.end_cursor is None:
                return
            after = page.end_cursor

    async def download(self, artifact: Artifact) -> bytes:
        """An artifact's content, by the ticket its `url` carries (the token stays out of it)."""
        url = urljoin(self._endpoint.http, artifact.url)
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as http:
                response = await http.get(url)
        except httpx.HTTPError as error:
            raise ConnectionFailedError(f"could not download {artifact.name}: {error}") from error
        if response.status_code == 200:
            return response.content
        detail = _detail(response)
        if response.status_code == 401:
            raise AuthenticationError(f"{artifact.name}: {detail} (get the execution again)")
        if response.status_code == 403:
            raise PermissionDeniedError(detail, "execution:read")
        if response.status_code == 404:
            raise NotFoundError(f"{artifact.name}: {detail}")
        raise QueryError(f"{artifact.name}: HTTP {response.status_code}: {detail}")

    async def scenarios(self) -> list[Scenario]:
        """The latest version of every scenario of the workspace, by name."""
        found = (await self._execute("ListScenarios", {}))["scenarios"]
        return [decoded(decode.scenario, data) for data in found]

    async def trace(self, execution_id: str) -> Trace:
        """The execution as a tree of timed spans; NotFoundError if there is no such one."""
        found = (await self._execute("ExecutionTrace", {"id": execution_id})).get("execution")
        if found is None:
            raise NotFoundError(f"execution {execution_id} not found")
        return decoded(decode.trace, found)

    async def reviews(
        self,
        status: ReviewStatus | None = None,
        *,
        execution_id: str | None = None,
        first: int = 50,
    ) -> list[Review]:
        """The workspace's reviews, oldest request first, at most `first` (0..200): of `status`
        (None: every status; `ReviewStatus.PENDING` is the review queue), and of one execution
        if `execution_id` is given."""
        variables = {
            "status": None if status is None else str(status),
            "executionId": execution_id,
            "first": first,
        }
        found = (await self._execute("Reviews", variables))["reviews"]
        return [decoded(decode.review, data) for data in found]

    # ---- subscriptions --------------------------------------------------------------------

    async def follow(self, execution_id: str, after_seq: int = 0) -> AsyncGenerator[Event, None]:
        """Every event with seq > after_seq exactly once, in order, ending after the terminal one.

        A dropped connection is reopened (with backoff) and the subscription resumed from the
        last seq yielded; ConnectionFailedError only after `reconnect_timeout` seconds without
        a working connection. Refusals (not found, unauthenticated, forbidden) raise at once.
        """
        if after_seq < 0:
            raise ValueError("after_seq must be >= 0 (pass get(id).last_seq to follow from now)")
        self._open_session()
        last = after_seq
        reconnects = Reconnects(self._reconnect_timeout)
        while True:
            try:
                async with self._socket() as socket:
                    reconnects.connected()
                    request = documents.request(
                        "FollowExecutionEvents", {"executionId": execution_id, "afterSeq": last}
                    )
                    async with aclosing(socket.subscribe(request)) as messages:
                        async for message in messages:
                            batch = decoded(
                                lambda found: decode.event_batch(found["executionEvents"]),
                                message,
                            )
                            for event in batch:
                                if event.seq <= last:
                                    continue  # already yielded (a resumed stream overlaps)
                                reconnects.progressed()
                                yield event
                                last = event.seq
                                if event.terminal:
                                    return
                # Completed without a terminal event: right when the execution had ended at or
                # before `last`; otherwise the server let go early (shutting down), so resume.
                if await self._ended_by(execution_id, last):
                    return
                problem = "the server completed the subscription before the terminal event"
            except TransportQueryError as error:
                raise await self._subscription_refused(error, execution_id) from error
            except ConnectionFailedError as error:  # from _ended_by's query
                problem = error.message
            except TRANSPORT_ERRORS as error:
                if not is_connection_problem(error):
                    raise translated(error, self._endpoint) from error
                problem = f"{type(error).__name__}: {error}"
            await reconnects.wait(problem)

    async def live(
        self, filter: ExecutionFilter | None = None
    ) -> AsyncGenerator[ExecutionUpdate, None]:
        """Status changes of executions matching `filter`, from now on, and (as CHANGED updates
        with the same status, at most every half second) changes of a running one's usage
        totals; never ends by itself.

        Not resumed after a dropped connection (ConnectionFailedError): read the list again
        (history) and call live again.
        """
        self._open_session()
        variables = {"filter": None if filter is None else filter.to_variables()}
        request = documents.request("LiveExecutions", variables)
        try:
            async with self._socket() as socket, aclosing(socket.subscribe(request)) as messages:
                async for message in messages:
                    yield decoded(
                        lambda found: decode.execution_update(found["executionUpdates"]), message
                    )
        except TRANSPORT_ERRORS as error:
            raise translated(error, self._endpoint) from error

    async def review_updates(
        self, status: ReviewStatus | None = ReviewStatus.PENDING
    ) -> AsyncGenerator[ReviewUpdate, None]:
        """The review queue live: whenever an execution starts or stops waiting for a review,
        its reviews of `status` (None: every status) now; never ends by itself.

        Subscribe, then read the queue (`reviews`) to start from. Not resumed after a dropped
        connection (ConnectionFailedError): read the queue again and call this again.
        """
        self._open_session()
        request = documents.request(
            "ReviewUpdates", {"status": None if status is None else str(status)}
        )
        try:
            async with self._socket() as socket, aclosing(socket.subscribe(request)) as messages:
                async for message in messages:
                    yield decoded(
                        lambda found: decode.review_update(found["reviewUpdates"]), message
                    )
        except TRANSPORT_ERRORS as error:
            raise translated(error, self._endpoint) from error

    # ---- plumbing -------------------------------------------------------------------------

    def _open_session(self) -> AsyncClientSession:
        if self._session is None:
            raise RuntimeError("use the client inside `async with RunwireClient(...) as client`")
        return self._session

    async def _execute(self, name: str, variables: dict[str, Any]) -> dict[str, Any]:
        session = self._open_session()
        try:
            result: dict[str, Any] = await session.execute(documents.request(name, variables))
        except TRANSPORT_ERRORS as error:
            raise translated(error, self._endpoint) from error
        return result

    async def _change(self, name: str, field: str, variables: dict[str, Any]) -> Execution:
        """Run a mutation whose result union has an `execution` on success."""
        payload = (await self._execute(name, variables))[field]
        if payload.get("__typename") != f"{name}Success":
            raise from_result(payload)
        return decoded(decode.execution, payload["execution"])

    @asynccontextmanager
    async def _socket(self) -> AsyncIterator[AsyncClientSession]:
        """A graphql-transport-ws connection, acknowledged by the server."""
        client = Client(
            transport=socket_transport(self._endpoint, self._token, self._timeout),
            execute_timeout=self._timeout,
        )
        async with AsyncExitStack() as stack:
            try:
                session: AsyncClientSession = await stack.enter_async_context(client)
            except BaseException:
                # A refused connection_init leaves gql's transport half open: close it.
                with suppress(Exception):
                    await client.transport.close()
                raise
            yield session

    async def _ended_by(self, execution_id: str, seq: int) -> bool:
        """The execution ended with an event at or before `seq`."""
        execution = await self.get(execution_id)
        return execution.status.is_terminal and execution.last_seq <= seq

    async def _subscription_refused(
        self, error: TransportQueryError, execution_id: str
    ) -> RunwireError:
        """The typed error for a subscription the server refused."""
        refused = translated(error, self._endpoint)
        if isinstance(refused, QueryError):
            # The server reports a missing execution as a plain error: ask whether it exists.
            try:
                await self.get(execution_id)
            except NotFoundError:
                return NotFoundError(refused.message)
        return refused


def _detail(response: httpx.Response) -> str:
    """The server's message in an error answer (Litestar's `detail`), else its text."""
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
