"""Closes reviews whose time ran out, for a process's lifetime (domain/reviews.py decides how)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from runwire.background import in_background
from runwire.domain.reviews import ReviewService
from runwire.faults import is_outage

logger = logging.getLogger(__name__)

# How late a review's timeout may close it. Every process sweeps: closing is a transition on
# the execution, so a review two processes find due is closed once.
POLL_SECONDS = 1.0


@contextlib.asynccontextmanager
async def review_timeouts(service: ReviewService) -> AsyncIterator[None]:
    """Sweep due reviews every POLL_SECONDS while the block runs."""
    async with in_background(_sweeping(service), "runwire-review-timeouts"):
        yield


async def _sweeping(service: ReviewService) -> None:
    while True:
        try:
            while await service.expire_due() > 0:
                pass  # a full page: there may be more
        except Exception as error:
            if not is_outage(error):
                logger.exception("review timeouts: closing due reviews failed")
        await asyncio.sleep(POLL_SECONDS)
