"""The composition root: `Core.running(settings)` builds and runs everything but the web layer.

Database, stores, bus, hub, publisher, event log, queue signals, runner and the domain's services,
each started inside the one before it needs it and stopped in reverse. The web app (app.py), the
CLI's commands, the integration tests and the benchmarks all start a process's parts here, so
there is one wiring to read and to test.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runwire.db.access import AccessRepository
from runwire.db.artifacts import ArtifactRepository
from runwire.db.audit import AuditRepository
from runwire.db.batches import BatchRepository
from runwire.db.deletion import DeletionRepository
from runwire.db.engine import Database
from runwire.db.events import EventRepository
from runwire.db.executions import ExecutionRepository
from runwire.db.history import HistoryRepository
from runwire.db.metrics import MetricsRepository
from runwire.db.reviews import ReviewRepository
from runwire.db.runners import RunnerRepository
from runwire.db.scenarios import ScenarioRepository
from runwire.db.schedules import ScheduleRepository
from runwire.db.secrets import SecretRepository
from runwire.db.suites import SuiteRepository, SuiteRunRepository
from runwire.db.webhooks import WebhookRepository
from runwire.domain.access import system_actor
from runwire.domain.batches import BatchService
from runwire.domain.control import ExecutionControl
from runwire.domain.deletion import ExecutionDeletion
from runwire.domain.executions import ExecutionService
from runwire.domain.identity import Authenticator, JwtSettings
from runwire.domain.models import Event
from runwire.domain.retention import RetentionService
from runwire.domain.reviews import ReviewService
from runwire.domain.runners import QueueHealthService
from runwire.domain.scenarios import ScenarioService
from runwire.domain.schedules import ScheduleService
from runwire.domain.secrets import SecretService
from runwire.domain.sessions import LiveSessions
from runwire.domain.suites import SuiteService
from runwire.domain.tokens import TokenService
from runwire.domain.webhooks import WebhookService
from runwire.errors import FieldError, Invalid, InvalidDefinition
from runwire.events.bus import Bus
from runwire.events.hub import Hub
from runwire.events.log import EventLog
from runwire.events.publisher import Publisher
from runwire.health import Health
from runwire.metrics import Metrics
from runwire.queue.signals import QueueSignals
from runwire.queue.store import ExecutionQueue
from runwire.retention import ArtifactRetention, ExecutionRetention
from runwire.review_timeouts import review_timeouts
from runwire.runner.presence import announced
from runwire.runner.runner import Runner
from runwire.runner.steps import step_kinds
from runwire.runner.steps.base import StepKind
from runwire.scenarios.catalog import examples_directory, load_directory, load_suite_directory
from runwire.scenarios.limits import InputLimits
from runwire.scheduler import Scheduler
from runwire.settings import Settings
from runwire.trace_export import TraceExport
from runwire.webhook_delivery import WebhookSender

logger = logging.getLogger(__name__)

# What the first start on an empty database creates.
DEFAULT_ORGANIZATION = "default"
DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True, slots=True)
class Stores:
    """Every store of the process, one per noun; the only code that touches tables."""

    scenarios: ScenarioRepository
    suites: SuiteRepository
    suite_runs: SuiteRunRepository
    executions: ExecutionRepository
    events: EventRepository
    batches: BatchRepository
    audit: AuditRepository
    history: HistoryRepository
    metrics: MetricsRepository
    access: AccessRepository
    secrets: SecretRepository
    artifacts: ArtifactRepository
    queue: ExecutionQueue
    runners: RunnerRepository
    webhooks: WebhookRepository
    deletion: DeletionRepository
    schedules: ScheduleRepository
    reviews: ReviewRepository

    @classmethod
    def on(cls, database: Database) -> Stores:
        return cls(
            scenarios=ScenarioRepository(database),
            suites=SuiteRepository(database),
            suite_runs=SuiteRunRepository(database),
            executions=ExecutionRepository(database),
            events=EventRepository(database),
            batches=BatchRepository(database),
            audit=AuditRepository(database),
            history=HistoryRepository(database),
            metrics=MetricsRepository(database),
            access=AccessRepository(database),
            secrets=SecretRepository(database),
            artifacts=ArtifactRepository(database),
            queue=ExecutionQueue(database),
            runners=RunnerRepository(database),
            webhooks=WebhookRepository(database),
            deletion=DeletionRepository(database),
            schedules=ScheduleRepository(database),
            reviews=ReviewRepository(database),
        )


@dataclass(frozen=True, slots=True)
class Core:
    """One process's running parts; built once, shared by every request."""

    settings: Settings
    database: Database
    store: Stores
    bus: Bus
    health: Health
    metrics: Metrics
    queue_health: QueueHealthService
    hub: Hub
    publisher: Publisher
    log: EventLog
    signals: QueueSignals
    runner: Runner | None
    scenarios: ScenarioService
    executions: ExecutionService
    control: ExecutionControl
    batches: BatchService
    suites: SuiteService
    tokens: TokenService
    secrets: SecretService
    webhooks: WebhookService
    deletion: ExecutionDeletion
    retention: RetentionService
    schedules: ScheduleService
    reviews: ReviewService
    authenticator: Authenticator
    sessions: LiveSessions

    @property
    def runner_slots(self) -> int:
        """Executions this process runs at once (0 without a runner)."""
        return self.runner.slots if self.runner is not None else 0

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, settings: Settings, kinds: Mapping[str, StepKind[Any]] | None = None
    ) -> AsyncIterator[Core]:
        """Open, bootstrap and start everything for the block; leaving it stops in reverse.

        `kinds` are the step kinds definitions may use and the runner runs (default: the
        shipped ones, confined as the settings say).
        """
        if kinds is None:
            kinds = step_kinds(settings)
        _keep_data_directory_private(settings)
        async with contextlib.AsyncExitStack() as stack:
            database = await stack.enter_async_context(
                Database.open(
                    settings.effective_database_url,
                    # The embedded default migrates itself; shared Postgres uses `runwire migrate`
                    # once, so replicas starting together do not race on the schema.
                    migrate=settings.effective_database_url.startswith("sqlite"),
                )
            )
            store = Stores.on(database)
            metrics = Metrics(process=True)
            metrics.count_live_executions(store.metrics.live_counts)
            if database.is_postgres:
                metrics.watch_pool(database.pool_size, database.pool_in_use)
            issued = await store.access.bootstrap(DEFAULT_ORGANIZATION, DEFAULT_WORKSPACE)
            if issued is not None:
                _hand_over_admin_token(settings, issued.secret)
            tokens = TokenService(store.access)
            authenticator = Authenticator(
                tokens,
                store.access.workspace,
                await store.access.secret("event-stream-tickets"),
                _identity_provider(settings),
            )
            sessions = await stack.enter_async_context(
                LiveSessions.running(authenticator.still_valid, settings.session_check_seconds)
            )
            bus = await stack.enter_async_context(Bus.connect(settings.bus_url))
            # Judged against this process's lease: work waiting longer than that has missed
            # what a starting worker or a takeover would have claimed.
            queue_health = QueueHealthService(
                store.runners, store.history, settings.lease_seconds, settings.runner_enabled
            )
            health = await stack.enter_async_context(Health.running(database, bus, queue_health))
            hub = await stack.enter_async_context(
                Hub.running(
                    store.executions,
                    store.events,
                    store.history,
                    bus,
                    settings.subscriber_buffer,
                    metrics.notices_arrived,
                )
            )
            # The app counts subscriptions the hub does not see (app.py); a worker has the hub's.
            metrics.watch_subscribers(lambda: hub.follower_count)
            publisher = Publisher(hub, bus, metrics)
            log = await stack.enter_async_context(
                EventLog.running(
                    store.events, publisher, settings.flush_interval_ms / 1000, metrics=metrics
                )
            )
            signals = await stack.enter_async_context(QueueSignals.running(bus))
            if database.is_postgres and bus.is_database(database.url):
                # A start's notices go out with its rows, in its own statement (one round trip).
                def announce(events: Sequence[Event]) -> list[tuple[str, str]]:
                    return [*publisher.notifications(events), signals.queued_notification()]

                store.executions.announce_starts(announce)
            # Left before the bus and the database: starts being written finish first.
            await stack.enter_async_context(store.executions.running())
            await stack.enter_async_context(
                ArtifactRetention.running(store.artifacts, settings.artifact_retention_days)
            )
            retention = RetentionService(store.deletion)
            await stack.enter_async_context(ExecutionRetention.running(retention))
            # Entered before the runner, so the traces of the executions it ends while draining
            # are still sent.
            traces = await stack.enter_async_context(
                TraceExport.running(settings, store.executions)
            )
            # Entered before the runner too: the executions it ends while draining queue their
            # deliveries, which this process's sender (or another's) posts.
            sender = await stack.enter_async_context(
                WebhookSender.running(settings, store.webhooks, store.history, store.reviews)
            )

            def ended(execution_id: str) -> None:
                if traces is not None:
                    traces.ended(execution_id)
                sender.ended(execution_id)

            runner = None
            if settings.runner_enabled:
                runner = await stack.enter_async_context(
                    Runner.running(
                        store.queue,
                        store.executions,
                        log,
                        signals,
                        kinds,
                        settings,
                        store.secrets.secret_values,
                        store.artifacts,
                        metrics,
                        settled=ended,
                    )
                )
                running = runner
                metrics.watch_runner(runner.slots, lambda: running.busy)
                # Entered after the runner claims, left before it drains: a draining runner
                # claims nothing, so queued work must not count on it.
                await stack.enter_async_context(announced(runner, store.runners, settings))
            else:
                metrics.watch_runner(0, lambda: 0)
            limits = InputLimits.of(settings)
            scenarios = ScenarioService(store.scenarios, kinds, limits)
            executions = ExecutionService(
                store.executions, scenarios, publisher, signals, store.secrets, limits
            )
            control = ExecutionControl(
                store.executions, store.queue, kinds, publisher, signals, limits, ended
            )
            suites = SuiteService(
                store.suites,
                store.suite_runs,
                scenarios,
                executions,
                store.secrets,
                publisher,
                signals,
                limits,
            )
            schedules = ScheduleService(store.schedules, scenarios, executions, suites)
            await stack.enter_async_context(Scheduler.running(schedules, store.schedules))
            reviews = ReviewService(store.reviews, control, kinds, store.audit.record_activity)
            await stack.enter_async_context(review_timeouts(reviews))
            core = cls(
                settings=settings,
                database=database,
                store=store,
                bus=bus,
                health=health,
                metrics=metrics,
                queue_health=queue_health,
                hub=hub,
                publisher=publisher,
                log=log,
                signals=signals,
                runner=runner,
                scenarios=scenarios,
                executions=executions,
                control=control,
                batches=BatchService(
                    store.batches, scenarios, executions, control, publisher, signals, limits
                ),
                suites=suites,
                tokens=tokens,
                secrets=SecretService(store.secrets),
                webhooks=WebhookService(
                    store.webhooks, settings.webhook_allow_private, sender.wake
                ),
                deletion=ExecutionDeletion(store.deletion),
                retention=retention,
                schedules=schedules,
                reviews=reviews,
                authenticator=authenticator,
                sessions=sessions,
            )
            await core._load_scenarios(kinds)
            yield core

    async def _load_scenarios(self, kinds: Mapping[str, StepKind[Any]]) -> None:
        """Save shipped examples and the scenarios directory into the default workspace.

        Unchanged files add no version.
        """
        directories = [examples_directory()] if self.settings.load_examples else []
        if self.settings.scenarios_dir is not None:
            directories.append(self.settings.scenarios_dir)
        workspace = await self.store.access.workspace(DEFAULT_WORKSPACE)
        if workspace is None:
            if directories:
                logger.warning("no workspace %r: shipped scenarios not loaded", DEFAULT_WORKSPACE)
            return
        for directory in directories:
            for definition in load_directory(directory, kinds):
                await self.scenarios.save(definition.source, system_actor(workspace.id))
        if self.settings.suites_dir is not None:
            await self._load_suites(self.settings.suites_dir, kinds, workspace.id)

    async def _load_suites(
        self, directory: Path, kinds: Mapping[str, StepKind[Any]], workspace: str
    ) -> None:
        """Save the suite files into the default workspace, naming the file of each error."""
        errors: list[FieldError] = []
        for file_name, suite in load_suite_directory(directory, kinds):
            try:
                await self.suites.save(suite.source, system_actor(workspace))
            except Invalid as error:
                errors.extend(FieldError(f"{file_name}: {e.path}", e.message) for e in error.errors)
        if errors:
            raise InvalidDefinition(errors)


def _hand_over_admin_token(settings: Settings, secret: str) -> None:
    """Write the first admin token to a file only the user can read, and show it once."""
    path = settings.admin_token_file
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(secret + "\n")
    # Straight to the terminal, never through logging: log files outlive this moment.
    sys.stderr.write(
        f"\nRunwire created workspace {DEFAULT_WORKSPACE!r} and its first admin API token"
        f" (shown once):\n\n    {secret}\n\nIt is also in {path.resolve()} (readable only by"
        " you). Send it as: Authorization: Bearer <token>\n\n"
    )
    sys.stderr.flush()


def _keep_data_directory_private(settings: Settings) -> None:
    """Make an existing data directory the server user's alone (0700): steps may not read it."""
    # New ones are created 0700 (here for the admin token, in db/engine.py for SQLite); older
    # installs made it 0755, which let any local user, and so any step, read the database.
    with contextlib.suppress(FileNotFoundError):
        found = settings.data_dir.stat()
        if found.st_mode & 0o077 and found.st_uid == os.geteuid():
            settings.data_dir.chmod(0o700)


def _identity_provider(settings: Settings) -> JwtSettings | None:
    if settings.jwt_issuer is None and settings.jwt_key is None:
        return None
    if settings.jwt_issuer is None or settings.jwt_key is None:
        raise ValueError("RUNWIRE_JWT_ISSUER and RUNWIRE_JWT_KEY must be set together")
    return JwtSettings(
        issuer=settings.jwt_issuer,
        key=settings.jwt_key,
        algorithms=settings.jwt_algorithms,
        audience=settings.jwt_audience,
        workspace_claim=settings.jwt_workspace_claim,
        role_claim=settings.jwt_role_claim,
    )
