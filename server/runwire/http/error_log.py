"""Litestar's part in logging: none of the setup (logs.py has it), only its unexpected errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from litestar.exceptions import HTTPException
from litestar.logging.config import BaseLoggingConfig
from litestar.types import Scope
from litestar.types.protocols import Logger


class UnexpectedErrorsLogged(BaseLoggingConfig):
    """Litestar's logging: leave the setup to logs.py; log an unexpected error, once, with its
    traceback; not an HTTP error raised on purpose (a 404, a 503 during an outage), which says
    what it is to the client."""

    def __init__(self) -> None:
        self.log_exceptions = "always"
        self.traceback_line_limit = -1
        self.exception_logging_handler = _log_unexpected
        self.disable_stack_trace = set()

    def configure(self) -> Callable[[str], logging.Logger]:
        return logging.getLogger

    @staticmethod
    def set_level(logger: Any, level: int) -> None:
        logger.setLevel(level)


def _log_unexpected(logger: Logger, scope: Scope, traceback: list[str]) -> None:
    # Called in Litestar's `except` block, so `exception` finds the error being handled.
    error = sys.exc_info()[1]
    if isinstance(error, HTTPException):
        return
    logger.exception("unexpected error serving %s %s", scope["type"], scope["path"])
