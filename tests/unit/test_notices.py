"""Notices on the wire: the optional status and usage flags, splitting, and notices from a batch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runwire.domain.models import Event, EventType, ExecutionStatus
from runwire.events.bus import MAX_MESSAGE_BYTES
from runwire.events.notices import (
    Notice,
    decode_message,
    decode_notices,
    encode_notices,
    notices_of,
)

AT = datetime(2026, 11, 21, tzinfo=UTC)


def test_the_flag_round_trips_and_unflagged_notices_keep_their_form() -> None:
    notices = [Notice("a", 1, 3, status_changed=True), Notice("b", 2, 2)]
    [message] = encode_notices(notices)
    assert message == '[["a",1,3,true],["b",2,2]]'
    assert decode_notices(message) == notices


def test_the_usage_flag_comes_sixth_and_round_trips() -> None:
    notices = [
        Notice("a", 1, 3, usage_changed=True),
        Notice("b", 4, 4, status_changed=True, usage_changed=True),
    ]
    [message] = encode_notices(notices)
    # The fifth element was another flag once; it stays false, so no process misreads it.
    assert message == '[["a",1,3,false,false,true],["b",4,4,true,false,true]]'
    assert decode_notices(message) == notices


def test_a_three_element_notice_has_no_status_change() -> None:
    assert decode_notices('[["a",1,3]]') == [Notice("a", 1, 3, status_changed=False)]


@pytest.mark.parametrize("message", ['[["a",1,3,1]]', '[["a",1,3,"yes"]]', '[["a",0,3,true]]'])
def test_a_bad_flag_or_range_is_malformed(message: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        decode_notices(message)


def test_notices_flag_the_executions_whose_status_changed() -> None:
    def event(execution_id: str, seq: int, kind: EventType) -> Event:
        data = {"status": ExecutionStatus.RUNNING} if kind is EventType.EXECUTION_STATUS else {}
        return Event(execution_id, seq, AT, kind, data)

    batch = [
        event("quiet", 4, EventType.OUTPUT),
        event("busy", 1, EventType.EXECUTION_STATUS),
        event("quiet", 5, EventType.OUTPUT),
        event("busy", 2, EventType.OUTPUT),
    ]
    assert notices_of(batch) == [Notice("quiet", 4, 5), Notice("busy", 1, 2, status_changed=True)]


def test_notices_flag_the_executions_whose_usage_changed() -> None:
    batch = [
        Event("spent", 7, AT, EventType.USAGE, {"tokens_input": 1}, "s", 1),
        Event("idle", 3, AT, EventType.OUTPUT, {"text": "x"}, "s", 1),
        Event("spent", 8, AT, EventType.OUTPUT, {"text": "y"}, "s", 1),
    ]
    assert notices_of(batch) == [Notice("spent", 7, 8, usage_changed=True), Notice("idle", 3, 3)]


def test_a_long_list_is_split_into_messages_under_the_bus_limit() -> None:
    notices = [Notice(f"execution-{i:04d}-{'x' * 16}", i + 1, i + 9) for i in range(2_000)]
    messages = encode_notices(notices)
    assert len(messages) > 1
    assert all(len(message.encode()) < MAX_MESSAGE_BYTES for message in messages)
    assert [n for message in messages for n in decode_notices(message)] == notices


def test_an_old_control_element_is_ignored() -> None:
    # Processes of the previous version sent a fifth element for control wake-ups.
    assert decode_notices('[["a",1,3,false,true]]') == [Notice("a", 1, 3)]


def test_each_message_says_when_it_was_published_on_its_first_notice_only() -> None:
    notices = [Notice(f"execution-{i:04d}-{'x' * 16}", i + 1, i + 9) for i in range(2_000)]
    messages = encode_notices(notices, published_at_ms=1_764_755_000_123)
    assert len(messages) > 1
    assert all(len(message.encode()) < MAX_MESSAGE_BYTES for message in messages)
    decoded = [decode_message(message) for message in messages]
    assert [when for _, when in decoded] == [1_764_755_000_123] * len(messages)
    assert [n for found, _ in decoded for n in found] == notices
    # The stamp travels once per message: the other notices keep the three-element form.
    assert messages[0].count("1764755000123") == 1
    assert messages[0].startswith(f'[["{notices[0].execution_id}",1,9,false,false,false,')
    assert f'["{notices[1].execution_id}",2,10],' in messages[0]


def test_a_message_without_a_publication_time_says_0() -> None:
    assert decode_message('[["a",1,3,true]]') == ([Notice("a", 1, 3, status_changed=True)], 0)
