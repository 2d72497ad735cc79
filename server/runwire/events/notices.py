"""Notices on the bus's EVENTS channel: "events first_seq..last_seq of execution X are stored".

A notice carries no event: a process that follows the execution reads the range from the
database, so payloads stay small whatever the events hold. The first notice of each message also
carries when it was published (Unix milliseconds), so a receiver can measure the bus's lag; the
others do not repeat it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

import msgspec

from runwire.domain.models import Event, EventType
from runwire.events.bus import EVENTS, MAX_MESSAGE_BYTES, Bus, Resync

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Notice:
    """Events first_seq..last_seq of one execution were committed to the database.

    `status_changed` says the range holds an EXECUTION_STATUS event and `usage_changed` a USAGE
    event, so a process can refresh its live list of executions without reading the events of
    every notice.
    """

    execution_id: str
    first_seq: int
    last_seq: int
    status_changed: bool = False
    usage_changed: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.first_seq <= self.last_seq:
            raise ValueError(f"bad seq range {self.first_seq}..{self.last_seq}")


class _WireNotice(msgspec.Struct, array_like=True):
    """A notice as sent: [execution_id, first_seq, last_seq], [..., true] when status changed,
    [..., status_changed, false, true] when usage changed."""

    execution_id: str
    first_seq: int
    last_seq: int
    # Trailing and optional: unflagged notices keep the three-element form and size, and a
    # decoder ignores elements after the ones it knows.
    status_changed: bool = False
    # Processes of an earlier version sent `true` here for control wake-ups: it means nothing
    # now, and is sent as false.
    retired: bool = False
    # Last, for the same reason as status_changed: a process that predates it reads the rest.
    usage_changed: bool = False
    # When the message was published, in Unix milliseconds (0: not said); on its first notice.
    published_at_ms: int = 0


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[_WireNotice]).decode


def notices_of(events: Sequence[Event]) -> list[Notice]:
    """One notice per execution in `events` (each range from its first to its last seq)."""
    ranges: dict[str, list[int]] = {}
    status_changed: set[str] = set()
    usage_changed: set[str] = set()
    for event in events:
        bounds = ranges.get(event.execution_id)
        if bounds is None:
            ranges[event.execution_id] = [event.seq, event.seq]
        else:
            bounds[1] = event.seq
        if event.type is EventType.EXECUTION_STATUS:
            status_changed.add(event.execution_id)
        elif event.type is EventType.USAGE:
            usage_changed.add(event.execution_id)
    return [
        Notice(
            execution_id,
            first,
            last,
            execution_id in status_changed,
            execution_id in usage_changed,
        )
        for execution_id, (first, last) in ranges.items()
    ]


def encode_notices(notices: Sequence[Notice], published_at_ms: int = 0) -> list[str]:
    """Wire messages under the bus's limit: JSON lists of [execution_id, first_seq, last_seq].

    `published_at_ms` (if not 0) goes on the first notice of each message.
    """
    messages: list[str] = []
    batch: list[bytes] = []
    size = 1  # "[" now; each part then adds its length plus one "," or the closing "]"
    for notice in notices:
        part = _encode(_wire(notice, 0 if batch else published_at_ms))
        if size + len(part) + 1 >= MAX_MESSAGE_BYTES and batch:
            messages.append((b"[%b]" % b",".join(batch)).decode())
            batch, size = [], 1
            part = _encode(_wire(notice, published_at_ms))  # it opens the next message
        if size + len(part) + 1 >= MAX_MESSAGE_BYTES:
            raise ValueError(f"a notice of {len(part)} bytes cannot fit in one bus message")
        batch.append(part)
        size += len(part) + 1
    if batch:
        messages.append((b"[%b]" % b",".join(batch)).decode())
    return messages


def _wire(n: Notice, published_at_ms: int = 0) -> tuple[str | int | bool, ...]:
    """The shortest list that says it: the flags only when set, each after the one before."""
    if published_at_ms:
        return (
            n.execution_id,
            n.first_seq,
            n.last_seq,
            n.status_changed,
            False,
            n.usage_changed,
            published_at_ms,
        )
    if n.usage_changed:
        return (n.execution_id, n.first_seq, n.last_seq, n.status_changed, False, True)
    if n.status_changed:
        return (n.execution_id, n.first_seq, n.last_seq, True)
    return (n.execution_id, n.first_seq, n.last_seq)


def decode_notices(message: str) -> list[Notice]:
    """The notices in one wire message; ValueError if it is malformed."""
    return decode_message(message)[0]


def decode_message(message: str) -> tuple[list[Notice], int]:
    """The notices in one wire message and when it was published (Unix ms, 0 if not said)."""
    try:
        wires = _decode(message)
        notices = [
            Notice(
                wire.execution_id,
                wire.first_seq,
                wire.last_seq,
                wire.status_changed,
                wire.usage_changed,
            )
            for wire in wires
        ]
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ValueError(str(exc)) from None
    return notices, wires[0].published_at_ms if wires else 0


async def publish_notices(bus: Bus, notices: Sequence[Notice]) -> None:
    """Announce committed events to every process; a long list travels as several messages."""
    for message in encode_notices(notices, time.time_ns() // 1_000_000):
        await bus.publish(EVENTS, message)


async def receive_notices(
    bus: Bus, lag: Callable[[float], None] | None = None
) -> AsyncGenerator[list[Notice] | Resync, None]:
    """Each batch of notices from any process, or RESYNC after a possible loss.

    `lag` is told, per message that says when it was published, the seconds since then.
    """
    async for message in bus.receive(EVENTS):
        if isinstance(message, Resync):
            yield message
            continue
        try:
            notices, published_at_ms = decode_message(message)
        except ValueError:
            # Never log the payload: it is not ours to trust, and could be large.
            logger.warning("bus: skipped a malformed notice message of %d chars", len(message))
            continue
        if lag is not None and published_at_ms:
            lag(time.time() - published_at_ms / 1000)
        if notices:
            yield notices
