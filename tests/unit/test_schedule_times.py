"""Schedules' fire-time arithmetic with an injected clock: cron in a zone across DST changes,
intervals from their anchor, and what a missed slot does under each policy."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from runwire.domain.schedules import (
    Fire,
    MissedFirePolicy,
    Timing,
    due_fire,
    fire_key,
    fire_time_of,
)

ANCHOR = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def cron(expression: str, zone: str = "UTC") -> Timing:
    return Timing(expression, None, zone, anchor=ANCHOR)


def every(seconds: float) -> Timing:
    return Timing(None, seconds, "UTC", anchor=ANCHOR)


def test_a_daily_cron_in_berlin_keeps_local_time_across_the_spring_change() -> None:
    timing = cron("0 9 * * *", "Europe/Berlin")
    # Berlin moves from UTC+1 to UTC+2 on 29 March 2026: 09:00 local is 08:00 then 07:00 UTC.
    fires = timing.upcoming(datetime(2026, 3, 27, 12, tzinfo=UTC), 4)
    assert fires == [
        datetime(2026, 3, 28, 8, tzinfo=UTC),
        datetime(2026, 3, 29, 7, tzinfo=UTC),
        datetime(2026, 3, 30, 7, tzinfo=UTC),
        datetime(2026, 3, 31, 7, tzinfo=UTC),
    ]


def test_an_hourly_cron_in_new_york_is_hourly_in_utc_across_the_autumn_change() -> None:
    timing = cron("0 * * * *", "America/New_York")
    # 1 November 2026: 01:00-02:00 local happens twice; hourly slots stay an hour apart in UTC.
    fires = timing.upcoming(datetime(2026, 11, 1, 4, 30, tzinfo=UTC), 4)
    assert [b - a for a, b in itertools.pairwise(fires)] == [timedelta(hours=1)] * 3
    assert all(fire.tzinfo is not None and fire.utcoffset() == timedelta(0) for fire in fires)


def test_a_cron_slot_at_now_is_not_next_but_is_the_latest() -> None:
    timing = cron("*/5 * * * *")
    at = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    assert timing.next_after(at) == datetime(2026, 3, 1, 12, 10, tzinfo=UTC)
    assert timing.latest_at_or_before(at) == at
    assert timing.latest_at_or_before(at + timedelta(seconds=59)) == at


def test_interval_slots_count_from_the_anchor() -> None:
    timing = every(1.5)
    assert timing.next_after(ANCHOR - timedelta(days=1)) == ANCHOR
    assert timing.next_after(ANCHOR) == ANCHOR + timedelta(seconds=1.5)
    assert timing.next_after(ANCHOR + timedelta(seconds=2)) == ANCHOR + timedelta(seconds=3)
    assert timing.latest_at_or_before(ANCHOR + timedelta(seconds=4)) == ANCHOR + timedelta(
        seconds=3
    )


def test_a_slot_not_yet_due_does_not_fire() -> None:
    timing = every(10)
    slot = ANCHOR + timedelta(seconds=10)
    assert due_fire(timing, slot, MissedFirePolicy.SKIP, slot - timedelta(seconds=1)) is None


def test_a_due_slot_on_time_fires_under_either_policy() -> None:
    timing = every(10)
    slot = ANCHOR + timedelta(seconds=10)
    now = slot + timedelta(seconds=0.5)
    expected = Fire(slot, ANCHOR + timedelta(seconds=20))
    assert due_fire(timing, slot, MissedFirePolicy.SKIP, now) == expected
    assert due_fire(timing, slot, MissedFirePolicy.RUN_ONCE, now) == expected


def test_after_downtime_skip_runs_nothing_and_moves_to_the_next_future_slot() -> None:
    timing = cron("0 * * * *")  # hourly
    missed_since = datetime(2026, 3, 1, 13, tzinfo=UTC)
    now = datetime(2026, 3, 1, 17, 20, tzinfo=UTC)  # 13:00 .. 17:00 passed while down
    fire = due_fire(timing, missed_since, MissedFirePolicy.SKIP, now)
    assert fire == Fire(None, datetime(2026, 3, 1, 18, tzinfo=UTC))
    # Found within MISSED_AFTER of the latest slot, that slot is on time and runs.
    fire = due_fire(timing, missed_since, MissedFirePolicy.SKIP, now - timedelta(minutes=19.5))
    assert fire == Fire(datetime(2026, 3, 1, 17, tzinfo=UTC), datetime(2026, 3, 1, 18, tzinfo=UTC))


def test_after_downtime_run_once_runs_one_execution_for_all_missed_slots() -> None:
    timing = cron("0 * * * *")
    missed_since = datetime(2026, 3, 1, 13, tzinfo=UTC)
    now = datetime(2026, 3, 1, 17, 20, tzinfo=UTC)
    fire = due_fire(timing, missed_since, MissedFirePolicy.RUN_ONCE, now)
    # One fire, keyed by the latest missed slot, then on with the schedule.
    assert fire == Fire(datetime(2026, 3, 1, 17, tzinfo=UTC), datetime(2026, 3, 1, 18, tzinfo=UTC))


def test_skip_still_runs_the_latest_slot_when_it_is_not_yet_missed() -> None:
    timing = every(1)
    # Three one-second slots passed (a slow round), the latest only just: it is on time.
    now = ANCHOR + timedelta(seconds=3.2)
    fire = due_fire(timing, ANCHOR + timedelta(seconds=1), MissedFirePolicy.SKIP, now)
    assert fire == Fire(ANCHOR + timedelta(seconds=3), ANCHOR + timedelta(seconds=4))


def test_a_fire_key_names_its_slot() -> None:
    from dataclasses import dataclass

    @dataclass
    class Keyed:
        idempotency_key: str | None

    slot = datetime(2026, 3, 1, 12, 0, 1, 500000, tzinfo=UTC)
    key = fire_key("0b1c", slot)
    assert fire_time_of(Keyed(key)) == slot  # type: ignore[arg-type]
    assert fire_time_of(Keyed("user-chosen")) is None  # type: ignore[arg-type]
