"""What every resolver can reach: the services of this process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strawberry.types import Info as StrawberryInfo

from runwire.core import Core
from runwire.graphql.relay import Relays


@dataclass(frozen=True, slots=True)
class Services:
    """Built once per process by app.py; shared by every request."""

    core: Core
    relays: Relays


def services(info: Info) -> Services:
    """The process's services, put into every request's context by app.py."""
    found = info.context["services"]
    assert isinstance(found, Services)
    return found


def core(info: Info) -> Core:
    """The process's core: its stores and domain services."""
    return services(info).core


Info = StrawberryInfo[dict[str, Any], None]
