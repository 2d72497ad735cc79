"""Batches: every run checked like a start, all queued or none; stopping stops what is left."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.domain import (
    EDITOR,
    OPERATOR,
    OUTSIDER,
    WORKSPACE,
    Domain,
    status_changed,
)

from runwire.domain.batches import BatchRequest, BatchRun
from runwire.domain.models import Batch, ExecutionStatus
from runwire.errors import FieldError, Invalid, NotFound

S = ExecutionStatus
DIAL = """
name: dial
inputs:
  phone: {type: string}
  retries: {type: integer, default: 0}
steps:
  - {key: call, kind: shell, with: {argv: [echo, "{{ inputs.phone }}"]}}
"""


def dial(*runs: BatchRun, **fields: Any) -> BatchRequest:
    """A batch of the inline `dial` definition, two at a time unless `fields` say otherwise."""
    values: dict[str, Any] = {"scenario": None, "definition": DIAL, "concurrency": 2, **fields}
    return BatchRequest(runs=runs, **values)


def phones(*numbers: str) -> list[BatchRun]:
    return [BatchRun(inputs={"phone": number}) for number in numbers]


def queued_ids(domain: Domain) -> list[str]:
    """The executions the batch queued, in run order (as their first events were published)."""
    return [event.execution_id for event in domain.published.events]


async def refused(domain: Domain, request: BatchRequest) -> Invalid:
    """The batch's validation error, after checking that nothing was stored or published."""
    with pytest.raises(Invalid) as refusal:
        await domain.batches.start(request, EDITOR)
    domain.assert_nothing_queued()
    return refusal.value


async def test_a_batch_queues_every_run_publishes_them_together_and_signals_once(
    domain: Domain,
) -> None:
    batch = await domain.batches.start(
        dial(
            BatchRun({"phone": "555-1"}, ["first"]),
            BatchRun({"phone": "555-2", "retries": 2}, ["nightly", "second"]),
            labels=["nightly"],
            priority=3,
        ),
        EDITOR,
    )

    assert batch == Batch(
        batch.id,
        "dial",
        None,
        2,
        2,
        batch.created_at,
        "user:editor",
        workspace_id=WORKSPACE,
    )
    assert await domain.store.batch(batch.id, workspace=WORKSPACE) == batch
    first, second = [await domain.read(i) for i in queued_ids(domain)]
    assert (first.inputs, first.labels) == ({"phone": "555-1", "retries": 0}, ("nightly", "first"))
    assert (second.inputs, second.labels) == (
        {"phone": "555-2", "retries": 2},
        ("nightly", "second"),
    )
    for execution in (first, second):
        assert (execution.batch_id, execution.batch_limit) == (batch.id, 2)
        assert (execution.status, execution.priority, execution.last_seq) == (S.QUEUED, 3, 1)
    assert len(domain.published.batches) == 1
    assert [(e.seq, e.data["status"]) for e in domain.published.events] == [
        (1, "QUEUED"),
        (1, "QUEUED"),
    ]
    assert domain.signals.queued_count == 1


async def test_a_batch_of_a_saved_scenario_is_named_as_asked(domain: Domain) -> None:
    await domain.scenarios.save(DIAL, EDITOR)

    batch = await domain.batches.start(
        dial(*phones("1"), scenario="dial", definition=None, name="monday calls"), EDITOR
    )

    assert (batch.name, batch.scenario_name) == ("monday calls", "dial")
    execution = await domain.read((queued_ids(domain))[0])
    assert (execution.scenario_name, execution.scenario_version) == ("dial", 1)


async def test_each_invalid_run_is_named_by_its_index_and_none_is_queued(domain: Domain) -> None:
    error = await refused(
        domain,
        dial(
            BatchRun({"phone": "555-1"}),
            BatchRun({}),
            BatchRun({"phone": "555-3", "colour": "red"}, ["x" * 201]),
        ),
    )
    assert error.errors == (
        FieldError("runs[1].inputs.phone", "required"),
        FieldError("runs[2].labels[0]", "must be at most 200 characters (got 201)"),
        FieldError("runs[2].inputs.colour", "unknown input; expected one of phone, retries"),
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"runs": []}, FieldError("runs", "expected 1..1000 runs")),
        ({"concurrency": 0}, FieldError("concurrency", "expected 1..1000")),
        ({"concurrency": 1001}, FieldError("concurrency", "expected 1..1000")),
        ({"name": ""}, FieldError("name", "expected 1..200 characters")),
        ({"name": "n" * 201}, FieldError("name", "expected 1..200 characters")),
    ],
)
async def test_batch_options_out_of_range_are_named(
    domain: Domain, fields: dict[str, Any], expected: FieldError
) -> None:
    options = dict(fields)
    runs = options.pop("runs", phones("1"))
    error = await refused(domain, dial(*runs, **options))
    assert error.errors == (expected,)


async def test_a_thousand_runs_are_accepted(domain: Domain) -> None:
    batch = await domain.batches.start(dial(*phones(*map(str, range(1000)))), EDITOR)
    assert batch.total == len(domain.store.execution_ids) == 1000
    assert domain.signals.queued_count == 1


async def test_a_batch_of_an_unknown_scenario_is_not_found(domain: Domain) -> None:
    with pytest.raises(NotFound, match="scenario dial not found"):
        await domain.batches.start(dial(*phones("1"), scenario="dial", definition=None), EDITOR)
    assert domain.store.execution_ids == ()


async def test_a_batch_priority_out_of_range_is_named_once(domain: Domain) -> None:
    error = await refused(domain, dial(*phones("1", "2"), priority=5000))
    assert error.errors == (FieldError("priority", "expected -1000..1000"),)


async def test_a_bad_label_of_a_run_is_named_by_its_index_in_that_run(domain: Domain) -> None:
    error = await refused(
        domain, dial(BatchRun({"phone": "1"}, [" ", "ok"]), labels=["nightly", "eu"])
    )
    assert error.errors == (FieldError("runs[0].labels[0]", "must not be blank"),)


# ---- stop --------------------------------------------------------------------------------


async def test_stopping_a_batch_stops_every_execution_that_has_not_ended(domain: Domain) -> None:
    batch = await domain.batches.start(dial(*phones("1", "2", "3", "4", "5")), EDITOR)
    waiting, paused, ended, running, stopping = queued_ids(domain)
    domain.run(paused, status_changed(S.RUNNING), status_changed(S.PAUSED))
    domain.run(ended, status_changed(S.RUNNING), status_changed(S.FAILED, error="no answer"))
    domain.run(running, status_changed(S.RUNNING), release=False)
    domain.run(stopping, status_changed(S.RUNNING), status_changed(S.STOPPING), release=False)

    domain.answer_controls(status_changed(S.STOPPING))

    stopped = await domain.batches.stop(batch.id, None, OPERATOR)

    assert stopped.stopped_at is not None
    assert stopped == await domain.store.batch(batch.id, workspace=WORKSPACE)
    reason = f"stopped: batch {batch.id} stopped"
    assert [((e := await domain.read(i)).status, e.error) for i in (waiting, paused)] == [
        (S.CANCELLED, reason),
        (S.CANCELLED, reason),
    ]
    assert (await domain.read(ended)).status is S.FAILED
    assert (await domain.read(running)).status is S.STOPPING
    assert (await domain.read(stopping)).status is S.STOPPING
    assert [(r.execution_id, r.action) for r in domain.store.control_requests] == [
        (running, "stop")
    ]
    assert await domain.store.unfinished_in_batch(batch.id) == [stopping, running]


async def test_a_batch_stopped_with_a_reason_gives_it_to_each_execution(domain: Domain) -> None:
    batch = await domain.batches.start(dial(*phones("1")), EDITOR)

    await domain.batches.stop(batch.id, "wrong list", OPERATOR)

    execution = await domain.read((queued_ids(domain))[0])
    assert (execution.status, execution.error) == (S.CANCELLED, "stopped: wrong list")


async def test_another_workspace_s_batch_is_not_found_and_not_stopped(domain: Domain) -> None:
    batch = await domain.batches.start(dial(*phones("1")), EDITOR)

    with pytest.raises(NotFound, match=f"batch {batch.id} not found"):
        await domain.batches.stop(batch.id, None, OUTSIDER)
    with pytest.raises(NotFound, match="batch nope not found"):
        await domain.batches.stop("nope", None, OPERATOR)

    assert await domain.store.batch(batch.id, workspace=WORKSPACE) == batch
    assert await domain.store.unfinished_in_batch(batch.id) == queued_ids(domain)


async def test_every_run_continues_the_callers_trace(domain: Domain) -> None:
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    batch = await domain.batches.start(dial(*phones("1", "2"), traceparent=caller), EDITOR)
    executions = [await domain.store.execution(i, workspace=WORKSPACE) for i in queued_ids(domain)]
    assert [e.trace_id for e in executions if e is not None and e.batch_id == batch.id] == [
        "4bf92f3577b34da6a3ce929d0e0e4736"
    ] * 2


async def test_a_bad_trace_context_is_named_once_not_per_run(domain: Domain) -> None:
    error = await refused(domain, dial(*phones("1", "2"), traceparent="garbage"))
    assert [e.path for e in error.errors] == ["trace_context.traceparent"]
