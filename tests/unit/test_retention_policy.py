"""The retention policy's arithmetic: validation, cut-offs, and which ended executions expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runwire.domain.retention import MAX_KEEP_DAYS, RetentionPolicy, SweepRules

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_no_limit_keeps_everything() -> None:
    policy = RetentionPolicy()
    assert policy.keeps_everything
    assert policy.errors() == []
    rules = policy.rules(NOW)
    assert not rules.expires(False, NOW - 10_000 * DAY, newer_ended=10**9)
    assert not rules.expires(True, NOW - 10_000 * DAY, newer_ended=10**9)


def test_limits_are_positive_bounded_and_failed_ones_kept_no_shorter() -> None:
    errors = RetentionPolicy(keep_days=0, keep_executions=-1, keep_failed_days=MAX_KEEP_DAYS + 1)
    assert [error.path for error in errors.errors()] == [
        "keepDays",
        "keepExecutions",
        "keepFailedDays",
    ]
    shorter = RetentionPolicy(keep_days=30, keep_failed_days=7).errors()
    assert [(e.path, e.message) for e in shorter] == [
        ("keepFailedDays", "must be at least keepDays (30)")
    ]
    assert RetentionPolicy(keep_days=7, keep_failed_days=7, keep_executions=1).errors() == []


def test_cut_offs_are_days_before_now() -> None:
    rules = RetentionPolicy(keep_days=7, keep_executions=100, keep_failed_days=30).rules(NOW)
    assert rules == SweepRules(
        older_than=NOW - 7 * DAY, keep_newest=100, failed_older_than=NOW - 30 * DAY
    )
    assert RetentionPolicy(keep_executions=5).rules(NOW) == SweepRules(None, 5, None)


def test_older_than_keep_days_or_beyond_the_newest_n_expires() -> None:
    rules = RetentionPolicy(keep_days=7, keep_executions=3).rules(NOW)
    assert not rules.expires(False, NOW - 6 * DAY, newer_ended=2)  # young, among the newest 3
    assert rules.expires(False, NOW - 8 * DAY, newer_ended=0)  # too old, however new
    assert rules.expires(False, NOW - DAY, newer_ended=3)  # the 4th newest
    # Without keepFailedDays, failed ones follow the same limits.
    assert rules.expires(True, NOW - 8 * DAY, newer_ended=0)


def test_failed_ones_follow_only_keep_failed_days_when_set() -> None:
    rules = RetentionPolicy(keep_days=7, keep_executions=3, keep_failed_days=30).rules(NOW)
    assert not rules.expires(True, NOW - 20 * DAY, newer_ended=1000)
    assert rules.expires(True, NOW - 31 * DAY, newer_ended=0)
    assert rules.expires(False, NOW - 20 * DAY, newer_ended=0)
    # Alone, keepFailedDays deletes old failed ones and keeps every other.
    alone = RetentionPolicy(keep_failed_days=30).rules(NOW)
    assert alone.expires(True, NOW - 31 * DAY, newer_ended=0)
    assert not alone.expires(False, NOW - 3000 * DAY, newer_ended=10**6)
