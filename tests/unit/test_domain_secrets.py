"""Workspace secrets: who may set, delete and list them; starts that name them; inline commands."""

from __future__ import annotations

import pytest
from tests.support.domain import ADMIN, EDITOR, OPERATOR, OUTSIDER, WORKSPACE, Domain

from runwire.domain.access import Actor, Forbidden, Role
from runwire.domain.batches import BatchRequest, BatchRun
from runwire.domain.executions import StartRequest
from runwire.domain.models import ExecutionMode
from runwire.domain.secrets import MAX_SECRET_BYTES, SecretService
from runwire.errors import Invalid, InvalidDefinition, NotFound

VIEWER = Actor(workspace_id=WORKSPACE, label="token:eyes", role=Role.VIEWER)

DEPLOY = """
name: deploy
steps:
  - {key: build, kind: shell, with: {argv: [make]}}
  - {key: push, kind: shell, secrets: [REGISTRY_TOKEN, SIGNING_KEY], with: {argv: [make, push]}}
"""
SLEEPS = "name: naps\nsteps: [{key: nap, kind: sleep, with: {seconds: 1}}]"


@pytest.fixture
def secrets(domain: Domain) -> SecretService:
    return SecretService(domain.store)


def paths(error: Invalid) -> list[str]:
    return [field.path for field in error.errors]


async def test_set_replaces_lists_names_only_and_delete_removes(
    domain: Domain, secrets: SecretService
) -> None:
    first = await secrets.set(ADMIN, "REGISTRY_TOKEN", "one")
    again = await secrets.set(ADMIN, "REGISTRY_TOKEN", "two")
    assert (again.created_at, again.updated_by) == (first.created_at, "token:root")
    assert again.updated_at >= first.updated_at
    await secrets.set(ADMIN, "A_FIRST", "x")
    assert [info.name for info in await secrets.list(EDITOR)] == ["A_FIRST", "REGISTRY_TOKEN"]
    assert "two" not in repr(await secrets.list(EDITOR))
    assert await domain.store.secret_values(WORKSPACE, ["REGISTRY_TOKEN", "NOPE"]) == {
        "REGISTRY_TOKEN": "two"
    }
    await secrets.delete(ADMIN, "REGISTRY_TOKEN")
    assert [info.name for info in await secrets.list(ADMIN)] == ["A_FIRST"]
    with pytest.raises(NotFound, match="secret REGISTRY_TOKEN not found"):
        await secrets.delete(ADMIN, "REGISTRY_TOKEN")


async def test_only_admins_set_and_delete_and_editors_list(secrets: SecretService) -> None:
    for actor in (VIEWER, OPERATOR, EDITOR):
        with pytest.raises(Forbidden, match="permission admin required"):
            await secrets.set(actor, "X", "v")
        with pytest.raises(Forbidden):
            await secrets.delete(actor, "X")
    for actor in (VIEWER, OPERATOR):
        with pytest.raises(Forbidden, match="permission scenario:write required"):
            await secrets.list(actor)
    assert await secrets.list(EDITOR) == []


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("lower", "v", "name"),
        ("1ST", "v", "name"),
        ("A-B", "v", "name"),
        ("A" * 129, "v", "name"),
        ("OK", "", "value"),
        ("OK", "a\x00b", "value"),
        ("OK", "\ud800", "value"),
        ("OK", "x" * (MAX_SECRET_BYTES + 1), "value"),
        ("OK", "é" * (MAX_SECRET_BYTES // 2 + 1), "value"),
    ],
)
async def test_bad_names_and_values_are_named_and_never_echoed(
    secrets: SecretService, name: str, value: str, expected: str
) -> None:
    with pytest.raises(Invalid) as refusal:
        await secrets.set(ADMIN, name, value)
    assert paths(refusal.value) == [expected]
    if value:
        assert value not in refusal.value.message
    assert await secrets.list(ADMIN) == []


async def test_limits_are_accepted_at_their_edge(secrets: SecretService) -> None:
    await secrets.set(ADMIN, "_" + "A" * 127, "x" * MAX_SECRET_BYTES)
    assert len(await secrets.list(ADMIN)) == 1


async def test_a_start_naming_a_missing_secret_is_refused_at_its_path(
    domain: Domain, secrets: SecretService
) -> None:
    await secrets.set(ADMIN, "SIGNING_KEY", "k")
    with pytest.raises(Invalid) as refusal:
        await domain.executions.start(StartRequest(definition=DEPLOY), EDITOR)
    assert [(e.path, e.message) for e in refusal.value.errors] == [
        ("steps[1].secrets[0]", "no secret REGISTRY_TOKEN in this workspace")
    ]
    domain.assert_nothing_queued()
    await secrets.set(ADMIN, "REGISTRY_TOKEN", "t")
    execution = await domain.executions.start(StartRequest(definition=DEPLOY), EDITOR)
    assert execution.definition["steps"][1]["secrets"] == ["REGISTRY_TOKEN", "SIGNING_KEY"]


async def test_another_workspace_s_secret_does_not_count(
    domain: Domain, secrets: SecretService
) -> None:
    await secrets.set(OUTSIDER, "REGISTRY_TOKEN", "theirs")
    await secrets.set(OUTSIDER, "SIGNING_KEY", "theirs")
    with pytest.raises(Invalid) as refusal:
        await domain.executions.start(StartRequest(definition=DEPLOY), EDITOR)
    assert paths(refusal.value) == ["steps[1].secrets[0]", "steps[1].secrets[1]"]
    assert await secrets.list(EDITOR) == []
    assert await domain.store.secret_values(WORKSPACE, ["REGISTRY_TOKEN"]) == {}


async def test_a_test_panel_start_needs_only_its_own_step_s_secrets(domain: Domain) -> None:
    request = StartRequest(definition=DEPLOY, mode=ExecutionMode.STEP, step_key="build")
    assert (await domain.executions.start(request, EDITOR)).step_key == "build"


async def test_a_batch_naming_a_missing_secret_is_refused_at_its_path(domain: Domain) -> None:
    with pytest.raises(Invalid) as refusal:
        await domain.batches.start(
            BatchRequest(scenario=None, definition=DEPLOY, runs=[BatchRun()], concurrency=1),
            EDITOR,
        )
    assert paths(refusal.value) == ["steps[1].secrets[0]", "steps[1].secrets[1]"]
    domain.assert_nothing_queued()


async def test_inline_commands_need_scenario_write_saved_ones_do_not(domain: Domain) -> None:
    shell = StartRequest(definition="name: c\nsteps: [{key: a, kind: shell, with: {argv: [id]}}]")
    with pytest.raises(Forbidden, match="permission scenario:write required; role operator"):
        await domain.executions.start(shell, OPERATOR)
    with pytest.raises(Forbidden):
        await domain.batches.start(
            BatchRequest(None, shell.definition, [BatchRun()], concurrency=1), OPERATOR
        )
    domain.assert_nothing_queued()
    # No process: an operator may start it inline.
    await domain.executions.start(StartRequest(definition=SLEEPS), OPERATOR)
    # Saved by an editor: an operator may run it.
    assert shell.definition is not None
    await domain.scenarios.save(shell.definition, EDITOR)
    await domain.executions.start(StartRequest(scenario="c"), OPERATOR)
    await domain.executions.start(shell, EDITOR)


@pytest.mark.parametrize(
    ("secrets_field", "expected"),
    [
        ("REGISTRY_TOKEN", "steps[0].secrets"),
        ("[ok_lower]", "steps[0].secrets[0]"),
        ("[GOOD, 7BAD]", "steps[0].secrets[1]"),
        ("[GOOD, 42]", "steps[0].secrets[1]"),
    ],
)
async def test_a_definition_s_secrets_must_be_a_list_of_names(
    domain: Domain, secrets_field: str, expected: str
) -> None:
    text = (
        f"name: s\nsteps: [{{key: a, kind: sleep, with: {{seconds: 0}}, secrets: {secrets_field}}}]"
    )
    with pytest.raises(InvalidDefinition) as refusal:
        await domain.executions.start(StartRequest(definition=text), EDITOR)
    assert paths(refusal.value) == [expected]
