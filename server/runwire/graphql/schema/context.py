"""What every resolver can reach: the process's core (stores and services) and its send groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strawberry.types import Info as StrawberryInfo

from runwire.core import Core
from runwire.graphql.fanout.send_groups import SendGroups


@dataclass(frozen=True, slots=True)
class Services:
    """Built once per process by app.py; shared by every request."""

    core: Core
    send_groups: SendGroups


def services(info: Info) -> Services:
    """The process's services, put into every request's context by the controller."""
    found = info.context["services"]
    assert isinstance(found, Services)
    return found


def core(info: Info) -> Core:
    """The process's core: its stores and domain services."""
    return services(info).core


Info = StrawberryInfo[dict[str, Any], None]
