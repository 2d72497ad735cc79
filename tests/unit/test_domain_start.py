"""Starting an execution: what is checked, what is stored, what is published and signalled."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.domain import EDITOR, OUTSIDER, WORKSPACE, Domain

from runwire.domain.executions import StartRequest
from runwire.domain.models import Event, EventType, Execution, ExecutionMode, ExecutionStatus
from runwire.domain.trace_context import TraceContext
from runwire.errors import FieldError, Invalid, InvalidDefinition, NotFound

PIPELINE = """
name: pipeline
inputs:
  target: {type: string, enum: [staging, production]}
  count: {type: integer, default: 3}
  phone: {type: string, required: false}
concurrency: {key: "line-{{ inputs.target }}", limit: 2}
steps:
  - {key: login, kind: http, with: {url: "http://127.0.0.1:9/login"}}
  - {key: build, needs: [login], kind: shell, with: {argv: [make]}}
  - {key: report, needs: [login, build], kind: shell, with: {argv: [echo, done]}}
"""
VALID_INPUTS = {"target": "staging"}


def pipeline(**fields: Any) -> StartRequest:
    """A valid start of the inline pipeline, with `fields` changed."""
    return StartRequest(**{"definition": PIPELINE, "inputs": VALID_INPUTS, **fields})


def paths(error: Invalid) -> list[str]:
    return [field.path for field in error.errors]


async def refused(domain: Domain, request: StartRequest) -> Invalid:
    """The start's validation error, after checking that nothing was queued."""
    with pytest.raises(Invalid) as refusal:
        await domain.executions.start(request, EDITOR)
    domain.assert_nothing_queued()
    return refusal.value


async def test_a_start_queues_the_execution_publishes_seq_1_and_signals_once(
    domain: Domain,
) -> None:
    execution = await domain.executions.start(
        pipeline(labels=["nightly", "eu", "nightly"], priority=7, timeout_seconds=60),
        EDITOR,
    )

    assert execution.status is ExecutionStatus.QUEUED
    assert (execution.workspace_id, execution.triggered_by) == (WORKSPACE, "user:editor")
    assert execution.inputs == {"target": "staging", "count": 3, "phone": None}
    assert execution.labels == ("nightly", "eu")  # once each, in the order given
    assert (execution.priority, execution.timeout_seconds, execution.last_seq) == (7, 60, 1)
    assert (execution.scenario_name, execution.scenario_version) == (None, None)
    assert await domain.store.execution(execution.id, workspace=WORKSPACE) == execution
    queued = Event(
        execution.id,
        1,
        execution.queued_at,
        EventType.EXECUTION_STATUS,
        {"status": ExecutionStatus.QUEUED},
    )
    assert domain.published.batches == [[queued]]
    assert await domain.store.events(execution.id, 0) == [queued]
    assert domain.signals.queued_count == 1


async def test_a_saved_scenario_starts_at_its_latest_version(domain: Domain) -> None:
    await domain.scenarios.save(PIPELINE, EDITOR)
    await domain.scenarios.save(PIPELINE.replace("limit: 2", "limit: 3"), EDITOR)

    execution = await domain.executions.start(
        StartRequest(scenario="pipeline", inputs=VALID_INPUTS), EDITOR
    )

    assert (execution.scenario_name, execution.scenario_version) == ("pipeline", 2)
    assert execution.concurrency_limit == 3


async def test_an_unknown_scenario_is_not_found(domain: Domain) -> None:
    with pytest.raises(NotFound, match="scenario nope not found"):
        await domain.executions.start(StartRequest(scenario="nope"), EDITOR)
    await domain.scenarios.save(PIPELINE, EDITOR)
    with pytest.raises(NotFound, match="scenario pipeline not found"):
        await domain.executions.start(StartRequest(scenario="pipeline"), OUTSIDER)
    assert domain.published.batches == []


@pytest.mark.parametrize(
    "request_",
    [StartRequest(), StartRequest(scenario="pipeline", definition=PIPELINE)],
    ids=["neither", "both"],
)
async def test_a_start_names_a_scenario_or_gives_a_definition(
    domain: Domain, request_: StartRequest
) -> None:
    error = await refused(domain, request_)
    assert error.errors == (FieldError("input", "give exactly one of scenario or definition"),)


async def test_a_malformed_definition_names_its_field(domain: Domain) -> None:
    text = "name: x\nsteps: [{key: a, kind: teleport}]"
    with pytest.raises(InvalidDefinition) as refusal:
        await domain.executions.start(StartRequest(definition=text), EDITOR)
    assert paths(refusal.value) == ["steps[0].kind"]


SECONDS_RANGE = "expected more than 0 and at most 1000000000 seconds"


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"priority": 1001}, "priority", "expected -1000..1000"),
        ({"priority": -1001}, "priority", "expected -1000..1000"),
        ({"timeout_seconds": 0}, "timeout_seconds", SECONDS_RANGE),
        ({"timeout_seconds": 1e308}, "timeout_seconds", SECONDS_RANGE),
        ({"grace_seconds": -1}, "grace_seconds", "expected 0..3600 seconds"),
        ({"grace_seconds": 3600.5}, "grace_seconds", "expected 0..3600 seconds"),
        ({"labels": [f"l{n}" for n in range(21)]}, "labels", "must be at most 20 labels (got 21)"),
        ({"labels": ["ok", "  "]}, "labels[1]", "must not be blank"),
        ({"labels": ["x" * 201]}, "labels[0]", "must be at most 200 characters (got 201)"),
        ({"idempotency_key": ""}, "idempotency_key", "expected 1..200 characters"),
        ({"idempotency_key": "k" * 201}, "idempotency_key", "expected 1..200 characters"),
    ],
)
async def test_options_out_of_range_are_named(
    domain: Domain, fields: dict[str, Any], path: str, message: str
) -> None:
    error = await refused(domain, pipeline(**fields))
    assert error.errors == (FieldError(path, message),)


async def test_options_at_their_limits_are_accepted(domain: Domain) -> None:
    execution = await domain.executions.start(
        pipeline(
            priority=-1000,
            timeout_seconds=0.001,
            grace_seconds=3600,
            labels=["x" * 200] + [f"l{n}" for n in range(19)],
            idempotency_key="k" * 200,
        ),
        EDITOR,
    )
    assert execution.grace_seconds == 3600


async def test_every_invalid_field_is_reported_at_once(domain: Domain) -> None:
    error = await refused(
        domain,
        pipeline(priority=5000, grace_seconds=-1, inputs={"count": "three"}, step_key="build"),
    )
    assert paths(error) == [
        "priority",
        "grace_seconds",
        "step_key",
        "inputs.target",
        "inputs.count",
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"step_key": "build"},
            FieldError("step_key", "only for modes STEP and STEP_IN_CONTEXT"),
        ),
        ({"upstream": {}}, FieldError("upstream", "only for mode STEP_IN_CONTEXT")),
        ({"mode": ExecutionMode.STEP}, FieldError("step_key", "required for mode STEP")),
        (
            {"mode": ExecutionMode.STEP_IN_CONTEXT},
            FieldError("step_key", "required for mode STEP_IN_CONTEXT"),
        ),
        (
            {"mode": ExecutionMode.STEP, "step_key": "deploy"},
            FieldError("step_key", 'no step "deploy"; expected one of login, build, report'),
        ),
        (
            {"mode": ExecutionMode.STEP, "step_key": "build", "upstream": {"login": {}}},
            FieldError("upstream", "only for mode STEP_IN_CONTEXT"),
        ),
    ],
)
async def test_a_mode_takes_only_its_own_fields(
    domain: Domain, fields: dict[str, Any], expected: FieldError
) -> None:
    error = await refused(domain, pipeline(**fields))
    assert error.errors == (expected,)


async def test_step_in_context_needs_upstream_for_exactly_the_steps_it_needs(
    domain: Domain,
) -> None:
    request = pipeline(
        mode=ExecutionMode.STEP_IN_CONTEXT,
        step_key="report",
        upstream={"build": {"artifact": "a.tgz"}, "deploy": {}},
    )
    error = await refused(domain, request)
    assert error.errors == (
        FieldError("upstream.login", 'required: step "report" needs it'),
        FieldError("upstream.deploy", 'step "report" does not need it'),
    )


async def test_a_test_panel_start_keeps_its_step_and_upstream(domain: Domain) -> None:
    upstream = {"login": {"token": "t"}, "build": {"artifact": "a.tgz"}}
    in_context = await domain.executions.start(
        pipeline(mode=ExecutionMode.STEP_IN_CONTEXT, step_key="report", upstream=upstream),
        EDITOR,
    )
    alone = await domain.executions.start(
        pipeline(mode=ExecutionMode.STEP, step_key="login"), EDITOR
    )
    full = await domain.executions.start(pipeline(), EDITOR)

    assert (in_context.mode, in_context.step_key, in_context.upstream) == (
        ExecutionMode.STEP_IN_CONTEXT,
        "report",
        upstream,
    )
    assert (alone.mode, alone.step_key, alone.upstream) == (ExecutionMode.STEP, "login", None)
    assert (full.mode, full.step_key, full.upstream) == (ExecutionMode.FULL, None, None)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({}, [FieldError("inputs.target", "required")]),
        ({"target": None}, [FieldError("inputs.target", "required")]),
        (
            {"target": "moon"},
            [FieldError("inputs.target", '"moon" is not one of "staging", "production"')],
        ),
        (
            {"target": "staging", "count": "3", "colour": "red"},
            [
                FieldError("inputs.count", "expected integer, got string"),
                FieldError("inputs.colour", "unknown input; expected one of target, count, phone"),
            ],
        ),
    ],
)
async def test_inputs_that_do_not_bind_are_named(
    domain: Domain, inputs: dict[str, Any], expected: list[FieldError]
) -> None:
    error = await refused(domain, pipeline(inputs=inputs))
    assert list(error.errors) == expected


async def test_the_concurrency_key_is_rendered_from_the_inputs(domain: Domain) -> None:
    execution = await domain.executions.start(pipeline(inputs={"target": "production"}), EDITOR)
    assert (execution.concurrency_key, execution.concurrency_limit) == ("line-production", 2)


def _keyed(template: str) -> str:
    return PIPELINE.replace("line-{{ inputs.target }}", template)


@pytest.mark.parametrize(
    ("template", "inputs", "message"),
    [
        ("{{ inputs.phone or '' }}", {}, "rendered to 0 characters; expected 1..200"),
        ("{{ inputs.phone }}", {"phone": "9" * 201}, "rendered to 201 characters; expected 1..200"),
    ],
)
async def test_a_concurrency_key_that_renders_empty_or_too_long_is_invalid(
    domain: Domain, template: str, inputs: dict[str, Any], message: str
) -> None:
    request = StartRequest(definition=_keyed(template), inputs={"target": "staging", **inputs})
    error = await refused(domain, request)
    assert error.errors == (FieldError("concurrency.key", message),)


async def test_a_concurrency_key_is_rendered_only_once_the_inputs_bind(domain: Domain) -> None:
    request = StartRequest(definition=_keyed("{{ inputs.phone or '' }}"), inputs={"count": 1.5})
    error = await refused(domain, request)
    assert paths(error) == ["inputs.target", "inputs.count"]


async def test_a_concurrency_key_that_cannot_render_names_its_path_once(domain: Domain) -> None:
    request = StartRequest(definition=_keyed("{{ inputs.target.missing }}"), inputs=VALID_INPUTS)
    error = await refused(domain, request)
    assert [field.path for field in error.errors] == ["concurrency.key"]
    assert not error.errors[0].message.startswith("concurrency.key")


async def test_the_same_idempotency_key_and_request_return_the_first_execution(
    domain: Domain,
) -> None:
    first = await domain.executions.start(
        pipeline(idempotency_key="deploy-42", labels=["a", "b"]), EDITOR
    )
    published = list(domain.published.batches)

    # The same request: labels in another order, the default of an input spelled out.
    again = await domain.executions.start(
        pipeline(
            idempotency_key="deploy-42",
            labels=["b", "a"],
            inputs={**VALID_INPUTS, "count": 3},
        ),
        EDITOR,
    )

    assert again == await domain.store.execution(first.id, workspace=WORKSPACE)
    assert domain.store.execution_ids == (first.id,)
    assert domain.published.batches == published
    assert domain.signals.queued_count == 1


async def test_a_scenario_saved_again_between_two_starts_is_the_same_request(
    domain: Domain,
) -> None:
    await domain.scenarios.save(PIPELINE, EDITOR)
    request = StartRequest(scenario="pipeline", inputs=VALID_INPUTS, idempotency_key="k")
    first = await domain.executions.start(request, EDITOR)
    await domain.scenarios.save(PIPELINE.replace("limit: 2", "limit: 3"), EDITOR)

    again = await domain.executions.start(request, EDITOR)

    assert (again.id, again.scenario_version) == (first.id, 1)


@pytest.mark.parametrize(
    "changed",
    [
        {"inputs": {"target": "production"}},
        {"labels": ["other"]},
        {"priority": 1},
        {"mode": ExecutionMode.STEP, "step_key": "login"},
        {"definition": PIPELINE.replace("[make]", "[make, all]")},
    ],
    ids=["inputs", "labels", "priority", "mode", "definition"],
)
async def test_the_same_idempotency_key_with_another_request_is_invalid(
    domain: Domain, changed: dict[str, Any]
) -> None:
    first = await domain.executions.start(pipeline(idempotency_key="deploy-42"), EDITOR)

    with pytest.raises(Invalid) as refusal:
        await domain.executions.start(pipeline(idempotency_key="deploy-42", **changed), EDITOR)

    assert refusal.value.errors == (
        FieldError(
            "idempotency_key",
            f"already used for a different request (execution {first.id})",
        ),
    )
    assert domain.store.execution_ids == (first.id,)
    assert len(domain.published.batches) == domain.signals.queued_count == 1


@pytest.mark.parametrize("changed", [{"timeout_seconds": 5}, {"grace_seconds": 0}])
async def test_an_idempotent_retry_with_another_timeout_is_invalid(
    domain: Domain, changed: dict[str, Any]
) -> None:
    await domain.executions.start(pipeline(idempotency_key="deploy-42"), EDITOR)
    with pytest.raises(Invalid):
        await domain.executions.start(pipeline(idempotency_key="deploy-42", **changed), EDITOR)


async def test_an_idempotency_key_belongs_to_its_workspace(domain: Domain) -> None:
    mine = await domain.executions.start(pipeline(idempotency_key="deploy-42"), EDITOR)
    theirs = await domain.executions.start(pipeline(idempotency_key="deploy-42"), OUTSIDER)

    assert mine.id != theirs.id
    assert theirs.workspace_id == OUTSIDER.workspace_id
    assert domain.signals.queued_count == 2


async def test_an_execution_of_another_workspace_is_not_readable(domain: Domain) -> None:
    execution: Execution = await domain.executions.start(pipeline(), EDITOR)
    assert await domain.store.execution(execution.id, workspace=OUTSIDER.workspace_id) is None


CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HEADER = TraceContext("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")


async def test_an_execution_is_stored_with_its_callers_trace_context(domain: Domain) -> None:
    own = await domain.executions.start(pipeline(), EDITOR)
    assert (own.trace_context, own.trace_id) == (None, own.id.replace("-", ""))

    from_header = await domain.executions.start(pipeline(header_trace=HEADER), EDITOR)
    assert from_header.trace_id == HEADER.trace_id
    # The explicit context wins over the header's.
    given = await domain.executions.start(
        pipeline(traceparent=CALLER, tracestate="vendor=x", header_trace=HEADER), EDITOR
    )
    assert given.trace_context is not None
    assert (given.trace_context.traceparent, given.trace_context.state) == (CALLER, "vendor=x")
    for execution in (from_header, given):
        assert await domain.store.execution(execution.id, workspace=WORKSPACE) == execution


async def test_a_bad_trace_context_is_refused_at_its_field(domain: Domain) -> None:
    error = await refused(domain, pipeline(traceparent="00-abc-01", tracestate="="))
    assert paths(error) == ["trace_context.traceparent", "trace_context.tracestate"]


async def test_a_retried_start_in_another_trace_is_the_same_request(domain: Domain) -> None:
    first = await domain.executions.start(pipeline(idempotency_key="deploy-7"), EDITOR)
    again = await domain.executions.start(
        pipeline(idempotency_key="deploy-7", traceparent=CALLER), EDITOR
    )
    assert again.id == first.id
