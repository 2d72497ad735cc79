"""Piccolo's configuration module; `Database` sets `DB` to the engine this process uses."""

from typing import Any

from piccolo.conf.apps import AppRegistry
from piccolo.engine.base import Engine

# Piccolo's migration runner finds its engine here (`engine_finder`), so the process's one
# engine is assigned by runwire.db.engine.Database before anything runs.
DB: Engine[Any] | None = None

APP_REGISTRY = AppRegistry(apps=["runwire.db.piccolo_app"])
