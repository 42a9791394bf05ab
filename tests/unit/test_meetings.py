"""Meeting rules: the /meeting arguments, reminder offsets, the monthly rule, the check-in window,
and how a meeting looks (post, live line, reminders, .ics)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from bot.domain.meetings import (
    DEFAULT_OFFSETS,
    MeetingInputError,
    Timing,
    checkin_state,
    next_monthly,
    parse_kind,
    parse_meeting,
    parse_remind,
)
from bot.storage.models import Meeting
from bot.storage.models import User as UserRow
from bot.ui.i18n import Translator
from bot.ui.meetings import Counts, meeting_ics, post_keyboard, post_text, reminder_text

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=SH)  # a Monday


def parse(args: str) -> object:
    return parse_meeting(args, now=NOW, tz=SH)


def error(args: str) -> MeetingInputError:
    with pytest.raises(MeetingInputError) as exc:
        parse_meeting(args, now=NOW, tz=SH)
    return exc.value


# ---------------------------------------------------------------- /meeting arguments


def test_full_command() -> None:
    d = parse_meeting("2026-12-01 19:30 | 学习二十大 | 社区活动室 | 支部党员大会 | remind=1d,1h", now=NOW, tz=SH)
    assert d.starts_at == datetime(2026, 12, 1, 11, 30, tzinfo=UTC)
    assert (d.title, d.place, d.kind, d.audience, d.offsets, d.repeat) == (
        "学习二十大", "社区活动室", "congress", "member", (86400, 3600), None)


def test_defaults_one_day_and_one_hour_and_a_plain_meeting() -> None:
    d = parse_meeting("明天 19:30 | 学习", now=NOW, tz=SH)
    assert d.offsets == DEFAULT_OFFSETS == (86400, 3600)
    assert (d.kind, d.place, d.audience) == ("meeting", None, "member")


@pytest.mark.parametrize("args", [
    "明天 19:30 | 协商 | remind=2h | 3号楼 | every=month | 议事协商会",
    "明天 19:30｜协商｜议事协商会｜3号楼｜every＝month｜remind：2h",
    "明天 19:30 | 协商 | every=monthly | 3号楼 | Consultation | REMIND=2h",
])
def test_remind_and_every_stand_anywhere_after_the_title_and_a_kind_is_found_by_name(args: str) -> None:
    d = parse_meeting(args, now=NOW, tz=SH)
    assert (d.place, d.kind, d.audience, d.offsets, d.repeat) == ("3号楼", "consultation", "resident", (7200,), "month")


@pytest.mark.parametrize(("name", "kind"), [
    ("支部党员大会", "congress"), ("支部委员会", "committee"), ("党小组会", "group"), ("党课", "lecture"),
    ("主题党日", "theme_day"), ("议事协商会", "consultation"), ("Party Lecture", "lecture"), ("theme_day", "theme_day"),
    ("茶话会", None),
])
def test_kinds(name: str, kind: str | None) -> None:
    assert parse_kind(name) == kind


def test_remind_offsets_deduplicated_largest_first() -> None:
    assert parse_remind("30m,1d, 1h,60m") == (86400, 3600, 1800)
    assert parse_remind("１ｄ") == (86400,)  # full-width, as a Chinese IME types it


@pytest.mark.parametrize(("args", "key"), [
    ("明天 19:30", "err_meeting_usage"),
    (" | 学习", "err_meeting_usage"),
    ("明天 19:30 | ", "err_meeting_usage"),
    ("随便什么时候 | 学习", "err_meeting_when_unreadable"),
    ("2026-11-29 19:30 | 学习", "err_meeting_when_past"),
    ("明天 | 学习", "err_meeting_when_no_time"),
    ("明天 19:30 | 学习 | 活动室 | 茶话会", "err_meeting_kind_unknown"),
    ("明天 19:30 | 学习 | remind=abc", "err_meeting_remind_bad"),
    ("明天 19:30 | 学习 | remind=0h", "err_meeting_remind_bad"),
    ("明天 19:30 | 学习 | remind=", "err_meeting_remind_bad"),
    ("明天 19:30 | 学习 | remind=1w", "err_meeting_remind_bad"),
    ("明天 19:30 | 学习 | remind=1d,12h,6h,1h,30m,10m", "err_meeting_remind_too_many"),
    ("明天 19:30 | 学习 | every=week", "err_meeting_every_bad"),
    ("明天 19:30 | " + "长" * 101, "err_meeting_title_too_long"),
    ("明天 19:30 | 学习 | " + "长" * 101, "err_meeting_place_too_long"),
])
def test_bad_input_names_what_is_wrong(args: str, key: str) -> None:
    assert error(args).key == key


def test_errors_carry_what_was_typed() -> None:
    assert error("后天晚上 | 学习").params == {"text": "后天晚上"}
    assert error("明天 19:30 | 学习 | remind=abc").params == {"value": "abc"}
    assert error("明天 19:30 | 学习 | remind=1d,12h,6h,1h,30m,10m").params == {"count": 6, "limit": 5}


# ---------------------------------------------------------------- timing

START = datetime(2026, 12, 1, 11, 30, tzinfo=UTC)


def test_reminders_ahead_skip_offsets_already_past() -> None:
    t = Timing()
    now = START - timedelta(hours=5)
    assert t.reminders(START, [86400, 3600], now) == [(3600, START - timedelta(hours=1))]
    assert t.reminders(START, [86400, 3600], START - timedelta(days=2)) == [
        (86400, START - timedelta(days=1)), (3600, START - timedelta(hours=1))]
    assert t.reminders(START, [3600], START - timedelta(hours=1)) == []  # due now is not ahead


def test_a_late_reminder_gives_way_to_a_later_one_due_too() -> None:
    t = Timing()
    offsets = [86400, 3600]
    assert not t.superseded(START, 86400, offsets, START - timedelta(hours=2))
    assert t.superseded(START, 86400, offsets, START - timedelta(minutes=30))
    assert not t.superseded(START, 3600, offsets, START - timedelta(minutes=30))


def test_checkin_window_30_minutes_before_to_2_hours_after() -> None:
    t = Timing()
    assert checkin_state(START - timedelta(minutes=30, seconds=1), START, t) == "early"
    assert checkin_state(START - timedelta(minutes=30), START, t) == "open"
    assert checkin_state(START + timedelta(hours=2), START, t) == "open"
    assert checkin_state(START + timedelta(hours=2, seconds=1), START, t) == "closed"


def test_scaled_timing_makes_minutes_seconds() -> None:
    t = Timing(1 / 60)
    assert t.reminder_at(START, 300) == START - timedelta(seconds=5)
    assert t.checkin_window(START) == (START - timedelta(seconds=30), START + timedelta(seconds=120))
    assert t.ends_at(START) == START + timedelta(seconds=120)


def test_minutes_nudge_the_next_morning_in_community_time() -> None:
    t = Timing()
    end = datetime(2026, 12, 1, 21, 30, tzinfo=SH)
    assert t.minutes_due(START, end, SH) == datetime(2026, 12, 2, 9, 0, tzinfo=SH)
    late = datetime(2026, 12, 1, 23, 59, tzinfo=SH)  # ends before midnight: still the next morning
    assert t.minutes_due(START, late, SH) == datetime(2026, 12, 2, 9, 0, tzinfo=SH)


# ---------------------------------------------------------------- monthly (same day of the month)


def _local(dt: datetime, tz: ZoneInfo = SH) -> tuple[int, int, int, int, int]:
    x = dt.astimezone(tz)
    return x.year, x.month, x.day, x.hour, x.minute


def series(first: datetime, n: int, tz: ZoneInfo = SH) -> list[tuple[int, int, int, int, int]]:
    out, planned, anchor = [_local(first, tz)], first, first.astimezone(tz).day
    for _ in range(n):
        planned = next_monthly(planned, anchor, tz, after=planned)
        out.append(_local(planned, tz))
    return out


def test_the_31st_falls_on_the_last_day_of_shorter_months_and_comes_back() -> None:
    first = datetime(2027, 1, 31, 15, 0, tzinfo=SH)
    assert [d[1:3] for d in series(first, 6)] == [(1, 31), (2, 28), (3, 31), (4, 30), (5, 31), (6, 30), (7, 31)]


def test_february_of_a_leap_year_and_the_year_end() -> None:
    first = datetime(2027, 11, 30, 9, 0, tzinfo=SH)
    assert series(first, 4) == [(2027, 11, 30, 9, 0), (2027, 12, 30, 9, 0), (2028, 1, 30, 9, 0),
                                (2028, 2, 29, 9, 0), (2028, 3, 30, 9, 0)]


def test_the_29th_in_a_common_year() -> None:
    assert [d[1:3] for d in series(datetime(2026, 1, 29, 9, 0, tzinfo=SH), 2)] == [(1, 29), (2, 28), (3, 29)]


def test_months_missed_while_down_are_skipped() -> None:
    planned = datetime(2027, 1, 15, 15, 0, tzinfo=SH)
    nxt = next_monthly(planned, 15, SH, after=datetime(2027, 3, 20, tzinfo=SH))
    assert _local(nxt) == (2027, 4, 15, 15, 0)


def test_local_time_kept_across_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    first = datetime(2027, 3, 15, 19, 30, tzinfo=berlin)  # before the change (UTC+1)
    nxt = next_monthly(first, 15, berlin, after=first)
    assert _local(nxt, berlin) == (2027, 4, 15, 19, 30)  # after it (UTC+2): same wall time
    assert nxt.utcoffset() == timedelta(0) and nxt.hour == 17


# ---------------------------------------------------------------- how it looks


def meeting(**kw: object) -> Meeting:
    values: dict[str, object] = dict(
        id=7, community_id=1, number=3, kind="congress", audience="member", title="学习<b>党章</b>",
        place="活动室 & 会议室", starts_at=START, ends_at=START + timedelta(hours=2), planned_at=START,
        offsets=[86400, 3600], repeat=None, repeat_day=None, status="scheduled", cancel_reason=None, version=1,
    )
    values.update(kw)
    return Meeting(**values)


def test_post_shows_weekday_place_and_live_line_escaped() -> None:
    zh = Translator("zh")
    text = post_text(zh, meeting(), "Asia/Shanghai", Counts(5, 1, 0))
    assert "2026年12月1日 星期二 19:30" in text and "参加 5 · 请假 1" in text
    assert "学习&lt;b&gt;党章&lt;/b&gt;" in text and "活动室 &amp; 会议室" in text
    en = post_text(Translator("en"), meeting(), "Asia/Shanghai", Counts(2, 0, 1))
    assert "Tue, 1 Dec 2026 19:30" in en and "Attend 2 · Leave 0 · Checked in 1" in en


def test_buttons_carry_the_contract_words_and_fit_telegram() -> None:
    for locale, words in (("zh", ("参加", "请假", "签到")), ("en", ("Attend", "Leave", "Check in"))):
        kb = post_keyboard(Translator(locale), meeting(id=2_000_000_000))
        assert kb is not None
        buttons = [b for row in kb.rows for b in row]
        for word in words:
            assert any(word in b.text for b in buttons)
        assert all(b.data and len(b.data.encode()) <= 64 for b in buttons)
    assert post_keyboard(Translator("zh"), meeting(status="cancelled")) is None


def test_cancelled_post_says_so_without_a_live_line() -> None:
    text = post_text(Translator("zh"), meeting(status="cancelled", cancel_reason="下雨"), "Asia/Shanghai", Counts(3))
    assert "已取消" in text and "下雨" in text and "参加 3" not in text


def test_chat_reminder_names_those_it_cannot_reach_privately() -> None:
    judy = UserRow(id=10, first_name="<Judy>")
    text = reminder_text(Translator("zh"), meeting(), "Asia/Shanghai", 3600, Counts(2), [judy])
    assert "1小时后开始" in text and 'href="tg://user?id=10"' in text and "&lt;Judy&gt;" in text


def test_ics_never_floating_and_alarm_per_offset() -> None:
    data = meeting_ics(meeting(), community="幸福里", tz="Asia/Shanghai", timing=Timing(), now=NOW)
    cal = Calendar.from_ical(data)
    (ev,) = cal.walk("VEVENT")
    assert b"DTSTART;TZID=Asia/Shanghai:20261201T193000" in data
    assert ev.decoded("dtstart").astimezone(UTC) == START
    assert len(ev.walk("VALARM")) == 2 and str(ev["status"]) == "CONFIRMED"
    cancelled = Calendar.from_ical(meeting_ics(meeting(status="cancelled", version=3), community="幸福里",
                                               tz="Asia/Shanghai", timing=Timing(), now=NOW))
    (ev,) = cancelled.walk("VEVENT")
    assert str(ev["status"]) == "CANCELLED" and int(ev["sequence"]) == 2
