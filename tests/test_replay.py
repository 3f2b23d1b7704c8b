"""The replay guard: remembers request identifiers while they could replay, within bounds."""

from __future__ import annotations

import logging
import uuid

import pytest

from flask_retention.realtime.replay import ReplayGuard

NOW = 1_800_000_000.0


def new_id() -> uuid.UUID:
    """A request identifier as the endpoint passes it: parsed by the request's schema."""
    return uuid.uuid4()


def test_first_time_then_replay() -> None:
    guard = ReplayGuard(300)
    rid = new_id()
    assert guard.first_time(rid, NOW, NOW)
    assert not guard.first_time(rid, NOW, NOW + 1)


def test_different_identifiers_are_independent() -> None:
    guard = ReplayGuard(300)
    assert guard.first_time(new_id(), NOW, NOW)
    assert guard.first_time(new_id(), NOW, NOW)


def test_identifier_is_remembered_until_its_signed_date_leaves_the_window() -> None:
    guard = ReplayGuard(300)
    rid = new_id()
    signed_in_future = NOW + 200
    assert guard.first_time(rid, signed_in_future, NOW)
    assert not guard.first_time(rid, signed_in_future, NOW + 499)


def test_expired_entries_are_dropped() -> None:
    guard = ReplayGuard(300)
    for _ in range(10):
        guard.first_time(new_id(), NOW, NOW)
    guard.first_time(new_id(), NOW + 301, NOW + 301)
    assert len(guard) == 1


def test_size_is_capped_and_the_oldest_forgotten_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = ReplayGuard(300, max_entries=3)
    ids = [new_id() for _ in range(5)]
    with caplog.at_level(logging.WARNING, logger="flask_retention"):
        for i, rid in enumerate(ids):
            assert guard.first_time(rid, NOW + i, NOW + i)
    assert len(guard) == 3
    assert guard.first_time(ids[0], NOW + 5, NOW + 5)  # forgotten: no longer refused
    assert not guard.first_time(ids[4], NOW + 5, NOW + 5)
    assert caplog.text.count("forgetting the oldest") == 1


def test_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReplayGuard(300, max_entries=0)


def test_out_of_order_expiries_never_count_an_expired_entry_and_are_dropped_later() -> None:
    guard = ReplayGuard(300)
    late, early = new_id(), new_id()
    assert guard.first_time(late, NOW + 200, NOW)  # signed "in the future": expires NOW + 500
    assert guard.first_time(early, NOW - 200, NOW)  # arrived after it, expires NOW + 100
    # Past its expiry, early is not a replay, though it still waits behind late for removal.
    assert guard.first_time(early, NOW + 150, NOW + 150)
    assert not guard.first_time(late, NOW + 200, NOW + 150)
    guard.first_time(new_id(), NOW + 600, NOW + 600)  # everything earlier has expired
    assert len(guard) == 1
