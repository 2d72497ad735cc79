"""Artifacts through a real server: a shell step stores them (report channel), the step run lists
them with a ticketed url, httpx and the Python client download them; bad tickets are refused."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import subprocess
import sys
from typing import Any

import httpx
import jwt
import pytest
from runwire_client import AuthenticationError, PermissionDeniedError, RunwireClient
from tests.support.graphql import definition, execute, start, wait_for_status
from tests.support.server import Server

# The content is a row on both databases (bytea, blob): both must store and serve it.
SERVER_BACKENDS = ("sqlite", "postgres")

QUERY = """
query($id: ID!) {
  execution(id: $id) {
    steps { key attempt artifacts { id name mediaType bytes createdAt url } }
  }
}
"""

# Bytes no text codec would keep: every byte value, as a WAV's samples have.
BINARY = bytes(range(256)) * 4
RECORDS = [
    {
        "type": "artifact",
        "name": "call.wav",
        "media_type": "audio/wav",
        "content_base64": base64.b64encode(BINARY).decode(),
    },
    {"type": "artifact", "name": "transcript.txt", "text": "first"},
    # The same name again replaces it: the last one wins.
    {"type": "artifact", "name": "transcript.txt", "text": "IVR: press 1\nus: 1\n"},
    {"type": "artifact", "name": "../escape", "text": "refused"},
]


def artifact_step(key: str) -> str:
    script = "".join(f"printf '%s\\n' '{json.dumps(record)}' >&3\n" for record in RECORDS)
    return f"{{key: {key}, kind: shell, with: {json.dumps({'shell': True, 'command': script})}}}"


@pytest.fixture(scope="module")
def stored(server: Server) -> dict[str, Any]:
    """One execution whose step stored the artifacts; its step run as the API lists it."""

    async def run() -> dict[str, Any]:
        execution_id = await start(server, definition=definition(artifact_step("record")))
        found = await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})
        assert found["status"] == "SUCCEEDED", found
        data = await execute(server, QUERY, {"id": execution_id})
        [step] = data["execution"]["steps"]
        return {"execution_id": execution_id, **step}

    return asyncio.run(run())


def _by_name(step: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {artifact["name"]: artifact for artifact in step["artifacts"]}


async def test_a_step_run_lists_its_artifacts_and_each_url_downloads_it(
    server: Server, stored: dict[str, Any]
) -> None:
    artifacts = _by_name(stored)
    # The bad name was refused (and said so in the step's log); the others are listed by name.
    assert list(artifacts) == ["call.wav", "transcript.txt"]
    wav, transcript = artifacts["call.wav"], artifacts["transcript.txt"]
    assert (wav["mediaType"], wav["bytes"]) == ("audio/wav", len(BINARY))
    assert transcript["mediaType"] == "text/plain; charset=utf-8"
    assert server.token not in wav["url"]  # never the bearer token in a URL
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(wav["url"])  # no header: the ticket is the credential
        assert response.status_code == 200, response.text
        assert response.content == BINARY
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["content-length"] == str(len(BINARY))
        assert response.headers["content-disposition"] == 'attachment; filename="call.wav"'
        text = await http.get(transcript["url"])
        assert text.text == "IVR: press 1\nus: 1\n"
        # With the bearer header instead of a ticket (curl), too.
        path = wav["url"].split("?")[0]
        assert (await http.get(path, headers=server.headers)).content == BINARY


async def test_the_refused_record_is_named_in_the_step_log(
    server: Server, stored: dict[str, Any]
) -> None:
    query = """query($id: ID!) { execution(id: $id) { events(first: 1000) {
      type ... on OutputChunk { stream text } } } }"""
    events = (await execute(server, query, {"id": stored["execution_id"]}))["execution"]["events"]
    log = "".join(e["text"] for e in events if e["type"] == "OUTPUT" and e["stream"] == "log")
    assert "report channel: ignored 1 of 4 records (1 bad field)" in log
    assert "artifact name '../escape'" in log


async def test_forged_expired_and_other_artifacts_tickets_are_refused(
    server: Server, stored: dict[str, Any]
) -> None:
    artifacts = _by_name(stored)
    wav, transcript = artifacts["call.wav"], artifacts["transcript.txt"]
    path = f"/artifacts/{wav['id']}"
    ticket = wav["url"].split("ticket=")[1]
    claims = jwt.decode(ticket, options={"verify_signature": False})
    async with httpx.AsyncClient(base_url=server.url) as http:
        missing = await http.get(path)
        assert missing.status_code == 401
        assert "Bearer" in missing.json()["detail"]
        forged = jwt.encode(claims, "not the key the server signs with, at all", algorithm="HS256")
        refused = await http.get(path, params={"ticket": forged})
        assert refused.status_code == 401
        assert refused.json()["detail"] == "invalid ticket: Signature verification failed"
        # A ticket for the transcript does not open the recording.
        other = transcript["url"].split("ticket=")[1]
        wrong = await http.get(path, params={"ticket": other})
        assert wrong.status_code == 403
        assert wrong.json()["detail"] == "the ticket is for another artifact"
        # Expired: signed with the server's key (read as only the server could), in the past.
        key = _ticket_key(server)
        expired = jwt.encode({**claims, "exp": claims["exp"] - 3600}, key, algorithm="HS256")
        late = await http.get(path, params={"ticket": expired})
        assert late.status_code == 401
        assert late.json()["detail"] == "invalid ticket: Signature has expired"
        # A good ticket for an id that is not there (deleted): 404, no trace of a stack.
        valid_elsewhere = jwt.encode({**claims, "art": "0" * 36}, key, algorithm="HS256")
        gone = await http.get(f"/artifacts/{'0' * 36}", params={"ticket": valid_elsewhere})
        assert gone.status_code == 404
        assert "Traceback" not in gone.text
        assert (await http.get(path, params={"token": server.token})).status_code == 401


async def test_another_workspace_sees_no_artifacts(server: Server, stored: dict[str, Any]) -> None:
    token_b = _workspace_token(server)
    data = await execute(server, QUERY, {"id": stored["execution_id"]}, token=token_b)
    assert data["execution"] is None
    wav = _by_name(stored)["call.wav"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        path = wav["url"].split("?")[0]
        response = await http.get(path, headers={"Authorization": f"Bearer {token_b}"})
        assert response.status_code == 404  # like a missing one: nothing of A shows


async def test_the_python_client_lists_and_downloads_artifacts(
    server: Server, stored: dict[str, Any]
) -> None:
    async with RunwireClient(server.url, server.token) as client:
        execution = await client.get(stored["execution_id"])
        [step] = execution.steps
        artifacts = {artifact.name: artifact for artifact in step.artifacts}
        assert await client.download(artifacts["call.wav"]) == BINARY
        assert artifacts["transcript.txt"].bytes == len("IVR: press 1\nus: 1\n")
        broken = artifacts["call.wav"].url.replace("ticket=", "ticket=x")
        with pytest.raises(AuthenticationError, match="invalid ticket"):
            await client.download(_with_url(artifacts["call.wav"], broken))
        # The recording's ticket does not open the transcript.
        other = artifacts["call.wav"].url.replace(
            artifacts["call.wav"].id, artifacts["transcript.txt"].id
        )
        with pytest.raises(PermissionDeniedError, match="another artifact"):
            await client.download(_with_url(artifacts["call.wav"], other))


def _with_url(artifact: Any, url: str) -> Any:
    return dataclasses.replace(artifact, url=url)


def _cli(server: Server, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "runwire.cli", *arguments],
        env=server.env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _workspace_token(server: Server) -> str:
    _cli(server, "workspace", "create", "team-b")
    return _cli(
        server, "token", "create", "--workspace", "team-b", "--name", "b-reader", "--role", "viewer"
    )


def _ticket_key(server: Server) -> str:
    """The key the server signs tickets with, read from its database as the server would."""
    code = (
        "import asyncio\n"
        "from runwire.db.engine import Database\n"
        "from runwire.db.access import AccessRepository\n"
        "from runwire.settings import Settings\n"
        "async def main():\n"
        "    settings = Settings.from_env()\n"
        "    async with Database.open(settings.effective_database_url) as database:\n"
        "        print(await AccessRepository(database).secret('event-stream-tickets'))\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=server.env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()
