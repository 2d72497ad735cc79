"""Piccolo tables. Indexes and unique constraints live in the migrations, not here."""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    BigInt,
    Bytea,
    DoublePrecision,
    Float,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class Organization(Table, tablename="runwire_organization"):
    """A tenant: it owns workspaces."""

    id = Varchar(length=36, primary_key=True)
    name = Varchar(length=100)
    created_at = Timestamptz()


class Workspace(Table, tablename="runwire_workspace"):
    """Where scenarios, executions, batches and activities live; names are unique."""

    id = Varchar(length=36, primary_key=True)
    organization_id = Varchar(length=36)
    name = Varchar(length=100)
    created_at = Timestamptz()


class Member(Table, tablename="runwire_member"):
    """A person's role in one workspace; (workspace_id, subject) is unique."""

    id = Serial(primary_key=True)
    workspace_id = Varchar(length=36)
    # The identity provider's `sub` claim.
    subject = Varchar(length=200)
    role = Varchar(length=16)
    created_at = Timestamptz()
    created_by = Varchar(length=200, default="")


class ApiToken(Table, tablename="runwire_api_token"):
    """An API token: only the SHA-256 of its secret is stored (the secret is shown once)."""

    id = Varchar(length=36, primary_key=True)
    workspace_id = Varchar(length=36)
    name = Varchar(length=100)
    role = Varchar(length=16)
    secret_hash = Varchar(length=64)
    created_at = Timestamptz()
    created_by = Varchar(length=200, default="")
    expires_at = Timestamptz(null=True, default=None)
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class ServerSecret(Table, tablename="runwire_server_secret"):
    """Keys every process of a deployment shares, such as the one that signs SSE tickets."""

    name = Varchar(length=50, primary_key=True)
    value = Text()


class WorkspaceSecret(Table, tablename="runwire_workspace_secret"):
    """A value steps receive by name; (workspace_id, name) is unique. Never returned by the API."""

    id = Serial(primary_key=True)
    workspace_id = Varchar(length=36)
    name = Varchar(length=128)
    value = Text()
    created_at = Timestamptz()
    updated_at = Timestamptz()
    updated_by = Varchar(length=200, default="")


class Scenario(Table, tablename="runwire_scenario"):
    """One version of a named scenario; (workspace_id, name, version) is unique."""

    id = Serial(primary_key=True)
    workspace_id = Varchar(length=36, default="")
    name = Varchar(length=100, index=True)
    version = Integer()
    description = Text(default="")
    definition = JSON()
    created_at = Timestamptz()
    created_by = Varchar(length=200, default="")


class Suite(Table, tablename="runwire_suite"):
    """One version of a named suite; (workspace_id, name, version) is unique."""

    id = Serial(primary_key=True)
    workspace_id = Varchar(length=36)
    name = Varchar(length=100)
    version = Integer()
    description = Text(default="")
    tags = JSON()
    definition = JSON()
    created_at = Timestamptz()
    created_by = Varchar(length=200, default="")


class SuiteRun(Table, tablename="runwire_suite_run"):
    """Every case of one suite version, run `repeat` times as the executions of one batch."""

    id = Varchar(length=36, primary_key=True)
    workspace_id = Varchar(length=36)
    suite_name = Varchar(length=100)
    suite_version = Integer()
    batch_id = Varchar(length=36)
    repeat = Integer()
    concurrency = Integer()
    labels = JSON()
    inputs = JSON()
    # The run's cases in order, as [{name, scenario, expected_status}]: what it was asked to run.
    cases = JSON()
    created_at = Timestamptz()
    created_by = Varchar(length=200, default="")
    # Unique per workspace when set; the fingerprint tells a retry from another request.
    idempotency_key = Varchar(length=200, null=True, default=None)
    request_fingerprint = Varchar(length=64, null=True, default=None)
    trigger_type = Varchar(length=20, default="API")


class SuiteRunExecution(Table, tablename="runwire_suite_run_execution"):
    """Which case, repeat and attempt of a suite run an execution is."""

    execution_id = Varchar(length=36, primary_key=True)
    run_id = Varchar(length=36)
    case_index = Integer()
    case_name = Varchar(length=200)
    repeat = Integer()
    attempt = Integer()
    expected_status = Varchar(length=16)


class SuiteBaseline(Table, tablename="runwire_suite_baseline"):
    """A run set as its suite's baseline; the newest row per suite is the baseline now."""

    id = Serial(primary_key=True)
    workspace_id = Varchar(length=36)
    suite_name = Varchar(length=100)
    run_id = Varchar(length=36)
    set_at = Timestamptz()
    set_by = Varchar(length=200, default="")


class Execution(Table, tablename="runwire_execution"):
    """One execution; status and timing are projections of its events."""

    id = Varchar(length=36, primary_key=True)
    workspace_id = Varchar(length=36, default="")
    name = Varchar(length=100, default="")
    status = Varchar(length=16)
    scenario_name = Varchar(length=100, null=True, default=None)
    scenario_version = Integer(null=True, default=None)
    definition = JSON()
    inputs = JSON()
    labels = JSON()
    priority = Integer(default=0)
    timeout_seconds = Float(null=True, default=None)
    grace_seconds = Float(null=True, default=None)
    queued_at = Timestamptz()
    started_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)
    error = Text(null=True, default=None)
    last_seq = Integer(default=0)
    owner = Varchar(length=64, null=True, default=None)
    lease_expires_at = Timestamptz(null=True, default=None)
    # The fencing token: each claim or takeover gives the execution the next generation, and
    # an owner's writes state theirs (see queue/store.py, db/events.py).
    lease_generation = Integer(default=0)
    created_by = Varchar(length=200, default="")
    # FULL, STEP or STEP_IN_CONTEXT; the test-panel modes run only `step_key`.
    mode = Varchar(length=16, default="FULL")
    step_key = Varchar(length=100, null=True, default=None)
    upstream = JSON(null=True, default=None)
    idempotency_key = Varchar(length=200, null=True, default=None)
    request_fingerprint = Varchar(length=64, null=True, default=None)
    # At most `concurrency_limit` executions with the same key run at once; the same for a batch.
    concurrency_key = Varchar(length=200, null=True, default=None)
    concurrency_limit = Integer(null=True, default=None)
    batch_id = Varchar(length=36, null=True, default=None)
    batch_limit = Integer(null=True, default=None)
    # What started it (TriggerType); see migration 2026-12-05T13:00.
    trigger_type = Varchar(length=20, default="API")
    duration_ms = BigInt(null=True, default=None)
    # Usage totals (see migration 2026-12-03): kept up to date from USAGE events.
    usage_calls = Integer(default=0)
    usage_input = BigInt(default=0)
    usage_output = BigInt(default=0)
    usage_cached = BigInt(default=0)
    usage_reasoning = BigInt(default=0)
    usage_cost_usd = DoublePrecision(default=0.0)
    usage_unpriced = Integer(default=0)
    # The W3C trace context the caller started it in (see migration 2026-12-05); null: none.
    trace_parent = Varchar(length=55, null=True, default=None)
    trace_state = Varchar(length=512, null=True, default=None)


class ExecutionLabel(Table, tablename="runwire_execution_label"):
    """One label of one execution, so label filters use an index on both databases."""

    id = Serial(primary_key=True)
    execution_id = Varchar(length=36)
    label = Varchar(length=200)


class StepRun(Table, tablename="runwire_step_run"):
    """One attempt of one step; (execution_id, key, attempt) is unique."""

    id = Serial(primary_key=True)
    execution_id = Varchar(length=36)
    key = Varchar(length=100)
    kind = Varchar(length=50)
    position = Integer()
    attempt = Integer()
    status = Varchar(length=16)
    started_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)
    exit_code = Integer(null=True, default=None)
    output = JSON(null=True, default=None)
    error = Text(null=True, default=None)
    # Assertion results of `expect:` and what the step reported (latency, tokens, cost, ...).
    assertions = JSON(null=True, default=None)
    attributes = JSON(null=True, default=None)
    # Usage totals (see migration 2026-12-03): kept up to date from USAGE events.
    usage_calls = Integer(default=0)
    usage_input = BigInt(default=0)
    usage_output = BigInt(default=0)
    usage_cached = BigInt(default=0)
    usage_reasoning = BigInt(default=0)
    usage_cost_usd = DoublePrecision(default=0.0)
    usage_unpriced = Integer(default=0)


class Span(Table, tablename="runwire_span"):
    """A sub-operation a step attempt reported (an HTTP phase, later LLM and tool calls)."""

    id = Serial(primary_key=True)
    execution_id = Varchar(length=36)
    span_id = Varchar(length=64)
    parent_id = Varchar(length=64, null=True, default=None)
    step_key = Varchar(length=100)
    attempt = Integer()
    name = Varchar(length=200)
    kind = Varchar(length=50)
    status = Varchar(length=16)
    started_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)
    attributes = JSON(null=True, default=None)


class Artifact(Table, tablename="runwire_artifact"):
    """A file a step attempt kept; (execution_id, step_key, attempt, name) is unique."""

    id = Varchar(length=36, primary_key=True)
    workspace_id = Varchar(length=36)
    execution_id = Varchar(length=36)
    step_key = Varchar(length=100)
    attempt = Integer()
    name = Varchar(length=128)
    media_type = Varchar(length=100)
    bytes = BigInt()
    content = Bytea()
    created_at = Timestamptz()


class Batch(Table, tablename="runwire_batch"):
    """Executions started together, at most `concurrency` running at a time."""

    id = Varchar(length=36, primary_key=True)
    workspace_id = Varchar(length=36, default="")
    name = Varchar(length=200, default="")
    scenario_name = Varchar(length=100, null=True, default=None)
    concurrency = Integer()
    total = Integer()
    created_at = Timestamptz()
    created_by = Varchar(length=200, default="")
    stopped_at = Timestamptz(null=True, default=None)


class Event(Table, tablename="runwire_event"):
    """The event log; (execution_id, seq) is unique and seqs have no gaps."""

    id = Serial(primary_key=True)
    execution_id = Varchar(length=36)
    seq = Integer()
    at = Timestamptz()
    type = Varchar(length=24)
    step_key = Varchar(length=100, null=True, default=None)
    attempt = Integer(null=True, default=None)
    data = JSON()


class ControlRequest(Table, tablename="runwire_control_request"):
    """A request to the runner that owns an execution (stop, pause, resume, skip)."""

    id = Serial(primary_key=True)
    execution_id = Varchar(length=36, index=True)
    action = Varchar(length=16)
    step_key = Varchar(length=100, null=True, default=None)
    reason = Text(default="")
    actor = Varchar(length=200, default="")
    grace_seconds = Float(null=True, default=None)
    requested_at = Timestamptz()
    handled_at = Timestamptz(null=True, default=None)


class Activity(Table, tablename="runwire_activity"):
    """Audit: who did what, when, and with what result."""

    id = Serial(primary_key=True)
    workspace_id = Varchar(length=36, default="")
    at = Timestamptz()
    actor = Varchar(length=200)
    action = Varchar(length=50)
    # The mutation's result type: its success type or the error it answered with.
    result = Varchar(length=50, default="")
    execution_id = Varchar(length=36, null=True, default=None, index=True)
    detail = JSON()


class RetentionPolicy(Table, tablename="runwire_retention_policy"):
    """How long a workspace keeps its ended executions; a null limit is no limit."""

    workspace_id = Varchar(length=36, primary_key=True)
    keep_days = Integer(null=True, default=None)
    keep_executions = Integer(null=True, default=None)
    keep_failed_days = Integer(null=True, default=None)
    updated_at = Timestamptz()
    updated_by = Varchar(length=200, default="")


class Runner(Table, tablename="runwire_runner"):
    """A runner process's record: alive while `alive_until` (heartbeat + lease) is ahead."""

    id = Varchar(length=100, primary_key=True)
    host = Varchar(length=255)
    pid = Integer()
    started_at = Timestamptz()
    last_seen_at = Timestamptz()
    alive_until = Timestamptz()
    slots = Integer()
    busy = Integer(default=0)


ALL_TABLES: list[type[Table]] = [
    Organization,
    Workspace,
    Member,
    ApiToken,
    ServerSecret,
    WorkspaceSecret,
    Scenario,
    Suite,
    SuiteRun,
    SuiteRunExecution,
    SuiteBaseline,
    Execution,
    ExecutionLabel,
    StepRun,
    Span,
    Artifact,
    Batch,
    Event,
    ControlRequest,
    Activity,
    RetentionPolicy,
    Runner,
]
