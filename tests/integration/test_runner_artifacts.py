"""A step kind stores artifacts through its context, on SQLite and Postgres: binary content kept
byte for byte, a name stored again replaced, secrets masked in text, bad ones refused; writes
of a runner that lost the execution refused; retention deletes old ones, periodically too."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.core import Core
from runwire.db.engine import Database
from runwire.domain.access import Actor, Role
from runwire.domain.artifacts import InvalidArtifact
from runwire.domain.clock import utc_now
from runwire.domain.executions import StartRequest
from runwire.domain.models import Execution, ExecutionStatus, OutputStream
from runwire.retention import ArtifactRetention
from runwire.runner.redaction import MASK
from runwire.runner.steps import STEP_KINDS
from runwire.runner.steps.base import StepContext, StepResult
from runwire.settings import Settings
from runwire.voice.codecs import wav_bytes

SECRET = "s3cret-token-value"
# One second of two-channel 8 kHz audio, as a call's recording holds.
RECORDING = wav_bytes([bytes(range(256)) * 62 + bytes(128), bytes(16000)])
MAX_BYTES = 100_000


class KeepingStep:
    """Stores artifacts as a call step does: a recording, then a transcript, rewritten once."""

    name = "keep"
    runs_processes = False

    def parse(self, params: Any, path: str) -> Any:
        return params

    def idempotent(self, params: Any) -> bool:
        return True

    async def run(self, params: Any, context: StepContext) -> StepResult:
        await context.artifact("call.wav", "audio/wav", RECORDING)
        await context.artifact("transcript.txt", "text/plain", b"so far")
        secret = context.secrets.get("TOKEN", "")
        await context.artifact("transcript.txt", "text/plain", f"said {secret}\n".encode())
        refused = []
        for name, media_type, size in (
            ("../up", "text/plain", 1),
            ("big.bin", "application/octet-stream", MAX_BYTES + 1),
            ("x.txt", "not a type", 1),
        ):
            try:
                await context.artifact(name, media_type, b"x" * size)
            except InvalidArtifact as error:
                refused.append(error.message)
        context.output(OutputStream.LOG, "\n".join(refused))
        return StepResult(output={"refused": refused})


@contextlib.asynccontextmanager
async def running_core(url: str, data: Path, retention_days: float) -> AsyncIterator[Core]:
    settings = Settings(
        database_url=url,
        bus_url=f"memory://{uuid.uuid4().hex}",
        data_dir=data,
        load_examples=False,
        poll_seconds=0.05,
        artifact_max_bytes=MAX_BYTES,
        artifact_retention_days=retention_days,
    )
    async with Database.open(url, migrate=True):
        pass
    async with Core.running(settings, {**STEP_KINDS, "keep": KeepingStep()}) as core:
        yield core


@contextlib.asynccontextmanager
async def core_on(backend: str, tmp_path: Path, retention_days: float) -> AsyncIterator[Core]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'a.sqlite'}"
        async with running_core(url, tmp_path, retention_days) as found:
            yield found
        return
    async with postgres.fresh_database() as url, running_core(url, tmp_path, retention_days) as c:
        yield c


async def admin_of(core: Core) -> Actor:
    workspace = await core.store.access.workspace("default")
    assert workspace is not None
    return Actor(workspace_id=workspace.id, label="test", role=Role.ADMIN)


async def settled(core: Core, actor: Actor, execution_id: str) -> Execution:
    async with asyncio.timeout(10):
        while True:
            found = await core.store.executions.execution(
                execution_id, workspace=actor.workspace_id
            )
            assert found is not None
            if found.status.is_terminal and found.owner is None:
                return found
            await asyncio.sleep(0.02)


DEFINITION = "name: keep\nsteps:\n  - {key: call, kind: keep, secrets: [TOKEN], with: {}}\n"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_step_stores_artifacts_through_its_context(backend: str, tmp_path: Path) -> None:
    async with core_on(backend, tmp_path, retention_days=30) as core:
        actor = await admin_of(core)
        await core.secrets.set(actor, "TOKEN", SECRET)
        started = await core.executions.start(StartRequest(definition=DEFINITION), actor)
        execution = await settled(core, actor, started.id)
        assert execution.status is ExecutionStatus.SUCCEEDED, execution.error
        store = core.store.artifacts
        listed = await store.artifacts(execution.id, "call", 1)
        assert [(a.name, a.media_type, a.bytes) for a in listed] == [
            ("call.wav", "audio/wav", len(RECORDING)),
            ("transcript.txt", "text/plain", len(f"said {MASK}\n")),
        ]
        wav, transcript = listed
        assert {a.workspace_id for a in listed} == {actor.workspace_id}
        found = await store.artifact_content(wav.id, actor.workspace_id)
        assert found is not None
        assert found[1] == RECORDING
        found = await store.artifact_content(transcript.id, actor.workspace_id)
        assert found is not None
        assert found[1] == f"said {MASK}\n".encode()
        assert await store.artifact_content(wav.id, "another-workspace") is None
        [step] = execution.steps
        refused = step.output["refused"]
        assert refused[0].startswith("artifact name '../up': must be 1 to 128 letters")
        assert refused[1] == (
            "artifact big.bin: 100,001 bytes, over the 100,000-byte limit"
            " (RUNWIRE_ARTIFACT_MAX_BYTES)"
        )
        assert refused[2] == "artifact x.txt: media type 'not a type' is not type/subtype"

        # A runner whose lease generation is past stores nothing (as for its events).
        stale = await store.put_artifact(
            execution.id, "call", 1, "late.txt", "text/plain", b"late", utc_now(), -1
        )
        assert stale is None
        assert len(await store.artifacts(execution.id, "call", 1)) == 2

        # Retention by age: an artifact stored long ago goes, today's stay.
        old = await store.put_artifact(
            execution.id,
            "call",
            1,
            "old.txt",
            "text/plain",
            b"old",
            utc_now() - timedelta(days=40),
            None,
        )
        assert old is not None
        assert await ArtifactRetention(store, timedelta(days=30)).sweep() == 1
        assert [a.name for a in await store.artifacts(execution.id, "call", 1)] == [
            "call.wav",
            "transcript.txt",
        ]


async def test_the_retention_sweep_runs_in_the_server_lifetime(tmp_path: Path) -> None:
    # Two seconds of retention: swept every second (a tenth of it, at least a second).
    async with core_on("sqlite", tmp_path, retention_days=2 / 86400) as core:
        actor = await admin_of(core)
        await core.secrets.set(actor, "TOKEN", SECRET)
        started = await core.executions.start(StartRequest(definition=DEFINITION), actor)
        execution = await settled(core, actor, started.id)
        # SUCCEEDED: each of its artifacts was stored (a write not stored fails the step).
        assert execution.status is ExecutionStatus.SUCCEEDED
        async with asyncio.timeout(10):
            while await core.store.artifacts.artifacts(execution.id, "call", 1):
                await asyncio.sleep(0.1)
