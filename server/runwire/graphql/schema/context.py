"""What every resolver can reach: the services of this process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strawberry.types import Info as StrawberryInfo

from runwire.db.access import AccessRepository
from runwire.db.repository import Repository
from runwire.domain.batches import BatchService
from runwire.domain.control import ExecutionControl
from runwire.domain.identity import Authenticator
from runwire.domain.services import ExecutionService
from runwire.domain.sessions import LiveSessions
from runwire.domain.tokens import TokenService
from runwire.events.hub import Hub
from runwire.graphql.fanout.send_groups import SendGroups


@dataclass(frozen=True, slots=True)
class Services:
    """Built once per process by app.py; shared by every request."""

    repository: Repository
    executions: ExecutionService
    control: ExecutionControl
    batches: BatchService
    hub: Hub
    send_groups: SendGroups
    runner_slots: int
    access: AccessRepository
    tokens: TokenService
    authenticator: Authenticator
    sessions: LiveSessions


def services(info: Info) -> Services:
    """The process's services, put into every request's context by the controller."""
    found = info.context["services"]
    assert isinstance(found, Services)
    return found


Info = StrawberryInfo[dict[str, Any], None]
