"""The rules of the shared send windows, without a database."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from bot.transport.limits import Rate
from bot.transport.shared_limits import key_name, window_delay
from config.settings import SettingsError, load_settings

NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_key_names_are_stable_strings() -> None:
    assert key_name("global") == "global"
    assert key_name(("chat", -100123)) == "chat:-100123"
    assert key_name(("group", -5)) == "group:-5"


def test_room_while_the_window_is_not_full() -> None:
    assert window_delay(Rate(3, 1.0), NOW, [ago(0.5), ago(0.2)], 0) == 0.0
    assert window_delay(Rate(3, 1.0), NOW, [ago(0.5)], 1) == 0.0


def test_a_full_window_frees_when_its_oldest_answer_is_a_window_old() -> None:
    assert window_delay(Rate(3, 1.0), NOW, [ago(0.7), ago(0.5), ago(0.2)], 0) == pytest.approx(0.3)
    # Two answered, one in flight: the in-flight one counts as the newest; the oldest frees first.
    assert window_delay(Rate(3, 1.0), NOW, [ago(0.5), ago(0.2)], 1) == pytest.approx(0.5)
    # More in the log than the count (another instance's): the count-th newest decides.
    assert window_delay(Rate(2, 1.0), NOW, [ago(0.9), ago(0.8), ago(0.1)], 0) == pytest.approx(0.2)


def test_every_place_in_flight_waits_for_an_answer() -> None:
    assert window_delay(Rate(2, 1.0), NOW, [], 2) == math.inf
    assert window_delay(Rate(2, 1.0), NOW, [ago(0.1)], 2) == math.inf


def test_an_answer_exactly_a_window_ago_no_longer_counts() -> None:
    assert window_delay(Rate(1, 1.0), NOW, [ago(1.0)], 0) == 0.0


def test_shared_windows_need_postgresql() -> None:
    with pytest.raises(SettingsError, match="SEND_LIMITER=database needs PostgreSQL"):
        load_settings(bot_token="1:x", send_limiter="database")
    assert load_settings(bot_token="1:x").send_limiter == "auto"
