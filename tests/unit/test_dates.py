"""Table-driven tests for the date parser (bot/domain/dates.py) and formatter (bot/ui/dates.py)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.dates import DateParseError, parse_offsets, parse_when
from bot.ui.dates import format_date, format_duration, format_when

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=SH)  # a Wednesday


def when(text: str, *, now: datetime = NOW, tz: ZoneInfo = SH, future: bool = True) -> datetime:
    return parse_when(text, now=now, tz=tz, future=future)


def reason(text: str, **kw: object) -> str:
    with pytest.raises(DateParseError) as info:
        when(text, **kw)  # type: ignore[arg-type]
    return info.value.reason


# (input, expected local wall time in Asia/Shanghai) with NOW = Wed 2026-11-25 10:00
ACCEPTED: list[tuple[str, tuple[int, int, int, int, int]]] = [
    # numeric dates
    ("2026-12-01 19:30", (2026, 12, 1, 19, 30)),
    ("2026/12/01 19:30", (2026, 12, 1, 19, 30)),
    ("2026.12.1 19:30", (2026, 12, 1, 19, 30)),
    ("2026-12-01T19:30", (2026, 12, 1, 19, 30)),
    ("2026-12-01T19:30:00", (2026, 12, 1, 19, 30)),
    ("12-01 19:30", (2026, 12, 1, 19, 30)),
    ("12/01 19:30", (2026, 12, 1, 19, 30)),
    ("12.1 19:30", (2026, 12, 1, 19, 30)),
    # Chinese dates
    ("12月1日 19:30", (2026, 12, 1, 19, 30)),
    ("12月1日19:30", (2026, 12, 1, 19, 30)),
    ("12月1号 晚上7点", (2026, 12, 1, 19, 0)),
    ("2026年12月1日 19:30", (2026, 12, 1, 19, 30)),
    ("十二月一日 19:30", (2026, 12, 1, 19, 30)),
    ("二〇二六年十二月一日 晚上七点", (2026, 12, 1, 19, 0)),
    ("明年1月5日 10:00", (2027, 1, 5, 10, 0)),
    ("5号 晚上7点", (2026, 12, 5, 19, 0)),
    ("30号 9:00", (2026, 11, 30, 9, 0)),
    ("下个月3号 9点", (2026, 12, 3, 9, 0)),
    # relative days
    ("今天 19:30", (2026, 11, 25, 19, 30)),
    ("明天 19:30", (2026, 11, 26, 19, 30)),
    ("后天 9:00", (2026, 11, 27, 9, 0)),
    ("大后天 9点", (2026, 11, 28, 9, 0)),
    ("3天后 9:00", (2026, 11, 28, 9, 0)),
    ("三天后 9:00", (2026, 11, 28, 9, 0)),
    ("2周后 9:00", (2026, 12, 9, 9, 0)),
    # weekdays
    ("下周三 9:00", (2026, 12, 2, 9, 0)),
    ("下个星期三 9:00", (2026, 12, 2, 9, 0)),
    ("周五 14:00", (2026, 11, 27, 14, 0)),
    ("星期五 14:00", (2026, 11, 27, 14, 0)),
    ("礼拜五 14:00", (2026, 11, 27, 14, 0)),
    ("礼拜五下午2点", (2026, 11, 27, 14, 0)),
    ("周三 11:00", (2026, 11, 25, 11, 0)),  # today counts while the time is ahead
    ("周三 9:00", (2026, 12, 2, 9, 0)),  # ... and not once it has passed
    ("周日 10:00", (2026, 11, 29, 10, 0)),
    ("星期天 10:00", (2026, 11, 29, 10, 0)),
    ("本周五 14:00", (2026, 11, 27, 14, 0)),
    ("这周日 14:00", (2026, 11, 29, 14, 0)),
    ("下周日 10:00", (2026, 12, 6, 10, 0)),
    ("下下周一 9:00", (2026, 12, 7, 9, 0)),
    # periods and Chinese numerals
    ("明天下午3点", (2026, 11, 26, 15, 0)),
    ("明天下午3点半", (2026, 11, 26, 15, 30)),
    ("明天 下午 3:00", (2026, 11, 26, 15, 0)),
    ("明天上午十点", (2026, 11, 26, 10, 0)),
    ("明晚8点", (2026, 11, 26, 20, 0)),
    ("今晚七点半", (2026, 11, 25, 19, 30)),
    ("明天中午12点", (2026, 11, 26, 12, 0)),
    ("明天中午", (2026, 11, 26, 12, 0)),
    ("中午1点", (2026, 11, 25, 13, 0)),
    ("明天凌晨3点", (2026, 11, 26, 3, 0)),
    ("明天早上八点", (2026, 11, 26, 8, 0)),
    ("明天傍晚6点", (2026, 11, 26, 18, 0)),
    ("今晚12点", (2026, 11, 26, 0, 0)),  # the midnight that ends tonight
    ("明天十一点", (2026, 11, 26, 11, 0)),
    ("明天两点", (2026, 11, 26, 2, 0)),
    ("明天下午两点一刻", (2026, 11, 26, 14, 15)),
    ("明天下午两点三刻", (2026, 11, 26, 14, 45)),
    ("明天8点30分", (2026, 11, 26, 8, 30)),
    ("明天八点零五", (2026, 11, 26, 8, 5)),
    ("明天下午15点", (2026, 11, 26, 15, 0)),
    ("明天的下午3点", (2026, 11, 26, 15, 0)),
    # a time alone: today if still ahead, else tomorrow
    ("晚上8点", (2026, 11, 25, 20, 0)),
    ("下午两点一刻", (2026, 11, 25, 14, 15)),
    ("19:30", (2026, 11, 25, 19, 30)),
    ("9点", (2026, 11, 26, 9, 0)),
    ("9am", (2026, 11, 26, 9, 0)),
    # relative instants
    ("2小时后", (2026, 11, 25, 12, 0)),
    ("半小时后", (2026, 11, 25, 10, 30)),
    ("两个半小时后", (2026, 11, 25, 12, 30)),
    ("45分钟后", (2026, 11, 25, 10, 45)),
    ("in 90 min", (2026, 11, 25, 11, 30)),
    ("in 1h30m", (2026, 11, 25, 11, 30)),
    ("in 2 hours", (2026, 11, 25, 12, 0)),
    # English
    ("tomorrow 19:30", (2026, 11, 26, 19, 30)),
    ("today 7pm", (2026, 11, 25, 19, 0)),
    ("today noon", (2026, 11, 25, 12, 0)),
    ("tomorrow 3:30 pm", (2026, 11, 26, 15, 30)),
    ("Tomorrow at 7 p.m.", (2026, 11, 26, 19, 0)),
    ("tonight 8:30", (2026, 11, 25, 20, 30)),
    ("8:00 tonight", (2026, 11, 25, 20, 0)),
    ("7pm tomorrow", (2026, 11, 26, 19, 0)),
    ("next wednesday 9:00", (2026, 12, 2, 9, 0)),
    ("next friday 9am", (2026, 12, 4, 9, 0)),  # next week's, like 下周五
    ("wednesday 9am", (2026, 12, 2, 9, 0)),
    ("wednesday 11am", (2026, 11, 25, 11, 0)),
    ("Fri 14:00", (2026, 11, 27, 14, 0)),
    ("on friday at 2pm", (2026, 11, 27, 14, 0)),
    ("in 3 days 9:00", (2026, 11, 28, 9, 0)),
    ("Dec 1 19:30", (2026, 12, 1, 19, 30)),
    ("December 1st, 2026 7:30pm", (2026, 12, 1, 19, 30)),
    ("1 Dec 2026 19:30", (2026, 12, 1, 19, 30)),
    ("the 1st of december at 7pm", (2026, 12, 1, 19, 0)),
    ("at 7:30pm on dec 1", (2026, 12, 1, 19, 30)),
    ("12am tomorrow", (2026, 11, 26, 0, 0)),
    ("12pm tomorrow", (2026, 11, 26, 12, 0)),
    # time first, Chinese
    ("19:30 明天", (2026, 11, 26, 19, 30)),
    # the formatter's own output reads back, weekday included
    ("2026年12月1日 星期二 19:30", (2026, 12, 1, 19, 30)),
    ("12月1日(周二) 19:30", (2026, 12, 1, 19, 30)),
    ("Tue, 1 Dec 2026 19:30", (2026, 12, 1, 19, 30)),
    # full-width and odd spacing
    ("１９：３０", (2026, 11, 25, 19, 30)),
    ("12月1日\u300019：30", (2026, 12, 1, 19, 30)),
    ("２０２６－１２－０１　１９：３０", (2026, 12, 1, 19, 30)),
    ("  明天   19:30  ", (2026, 11, 26, 19, 30)),
    ("明天 19:30。", (2026, 11, 26, 19, 30)),
    # an explicit offset is honoured, then shown in tz
    ("2026-12-01T11:30Z", (2026, 12, 1, 19, 30)),
    ("2026-12-01T19:30+08:00", (2026, 12, 1, 19, 30)),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_accepted(text: str, expected: tuple[int, int, int, int, int]) -> None:
    got = when(text)
    assert got.tzinfo == SH
    assert (got.year, got.month, got.day, got.hour, got.minute) == expected
    assert got.second == 0 and got.microsecond == 0


REJECTED: list[tuple[str, str]] = [
    # a date without a time
    ("2026-12-01", "no_time"),
    ("12月1日", "no_time"),
    ("明天", "no_time"),
    ("tomorrow", "no_time"),
    ("礼拜五", "no_time"),
    ("下周三", "no_time"),
    ("Dec 1", "no_time"),
    ("3天后", "no_time"),
    ("今晚", "no_time"),
    ("明天下午", "no_time"),
    ("下午", "no_time"),
    # in the past
    ("今天 9:00", "past"),
    ("2026-11-25 10:00", "past"),  # exactly now is not the future
    ("昨天 19:30", "past"),
    ("2025-12-01 19:30", "past"),
    ("11-25 09:00", "past"),  # today's date with a passed time is a mistake, not next year
    ("本周一 9:00", "past"),
    ("上周五 9:00", "past"),
    ("0分钟后", "past"),
    # out of range
    ("25:00", "unreadable"),
    ("明天 25:00", "unreadable"),
    ("明天 19:60", "unreadable"),
    ("2月30日 10:00", "unreadable"),
    ("2026-02-30 10:00", "unreadable"),
    ("13月1日 10:00", "unreadable"),
    ("12-32 10:00", "unreadable"),
    ("0-10 10:00", "unreadable"),
    ("周八 10:00", "unreadable"),
    ("明天 13pm", "unreadable"),
    ("明天上午15点", "unreadable"),
    ("99999天后 9:00", "unreadable"),
    # junk
    ("", "unreadable"),
    ("   ", "unreadable"),
    ("foo", "unreadable"),
    ("明天 19:30 foo", "unreadable"),
    ("明天 8", "unreadable"),  # a bare number is no time
    ("19:3", "unreadable"),
    ("12月119:30", "unreadable"),
    ("2026年12月1日 星期三 19:30", "unreadable"),  # weekday disagrees with the date
    ("Wed, 1 Dec 2026 19:30", "unreadable"),
    ("x" * 500, "unreadable"),
]


@pytest.mark.parametrize(("text", "why"), REJECTED, ids=[t[:30] for t, _ in REJECTED])
def test_rejected(text: str, why: str) -> None:
    assert reason(text) == why


@pytest.mark.parametrize("bad", [None, 5, b"19:30", ["明天 19:30"]])
def test_non_text_is_unreadable(bad: object) -> None:
    with pytest.raises(DateParseError) as info:
        parse_when(bad, now=NOW, tz=SH)  # type: ignore[arg-type]
    assert info.value.reason == "unreadable"


def test_error_is_a_value_error_with_reason() -> None:
    err = DateParseError("past")
    assert isinstance(err, ValueError) and err.reason == "past"


# year rollover: NOW2 = Wed 2026-12-30 10:00
NOW2 = datetime(2026, 12, 30, 10, 0, tzinfo=SH)
ROLLOVER: list[tuple[str, tuple[int, int, int, int, int]]] = [
    ("1月5日 10:00", (2027, 1, 5, 10, 0)),
    ("01-05 10:00", (2027, 1, 5, 10, 0)),
    ("Jan 5 10:00", (2027, 1, 5, 10, 0)),
    ("12-31 9:00", (2026, 12, 31, 9, 0)),
    ("12月29日 10:00", (2027, 12, 29, 10, 0)),
    ("2月29日 10:00", (2028, 2, 29, 10, 0)),  # the next 29 February
    ("5号 9点", (2027, 1, 5, 9, 0)),
    ("31号 9点", (2026, 12, 31, 9, 0)),
    ("明天 9:00", (2026, 12, 31, 9, 0)),
    ("后天 9:00", (2027, 1, 1, 9, 0)),
    ("下周一 9:00", (2027, 1, 4, 9, 0)),
]


@pytest.mark.parametrize(("text", "expected"), ROLLOVER, ids=[t for t, _ in ROLLOVER])
def test_year_rollover(text: str, expected: tuple[int, int, int, int, int]) -> None:
    got = when(text, now=NOW2)
    assert (got.year, got.month, got.day, got.hour, got.minute) == expected


# future=False: no rolling forward and no "past" error
PAST_OK: list[tuple[str, tuple[int, int, int, int, int]]] = [
    ("昨天 19:30", (2026, 11, 24, 19, 30)),
    ("今天 9:00", (2026, 11, 25, 9, 0)),
    ("3月1日 9:00", (2026, 3, 1, 9, 0)),
    ("8:00", (2026, 11, 25, 8, 0)),
    ("上周五 9:00", (2026, 11, 20, 9, 0)),
    ("yesterday 7pm", (2026, 11, 24, 19, 0)),
]


@pytest.mark.parametrize(("text", "expected"), PAST_OK, ids=[t for t, _ in PAST_OK])
def test_future_false(text: str, expected: tuple[int, int, int, int, int]) -> None:
    got = when(text, future=False)
    assert (got.year, got.month, got.day, got.hour, got.minute) == expected


def test_future_false_still_wants_a_time() -> None:
    assert reason("昨天", future=False) == "no_time"


@pytest.mark.parametrize(
    "now",
    [NOW, NOW.astimezone(UTC), NOW.astimezone(NY), NOW.replace(tzinfo=None)],
    ids=["shanghai", "utc", "new_york", "naive_is_local"],
)
@pytest.mark.parametrize("text", ["明天 19:30", "晚上8点", "周五 14:00", "12-01 19:30", "2小时后"])
def test_now_in_any_zone_is_the_same_instant(now: datetime, text: str) -> None:
    got = when(text, now=now)
    assert got == when(text)
    assert got.tzinfo == SH


def test_day_boundaries_follow_tz_not_now() -> None:
    # 2026-11-25 20:00 UTC is already Thursday 04:00 in Shanghai: 明天 is Friday there.
    now = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    assert when("明天 9:00", now=now) == datetime(2026, 11, 27, 9, 0, tzinfo=SH)
    assert when("明天 9:00", now=now, tz=NY) == datetime(2026, 11, 26, 9, 0, tzinfo=NY)


def test_result_in_another_tz() -> None:
    got = when("2026-12-01 19:30", tz=NY)
    assert got.tzinfo == NY
    assert got == datetime(2026, 12, 2, 0, 30, tzinfo=UTC)


def test_dst_gap_becomes_a_real_time() -> None:
    # 2027-03-14 02:30 does not exist in New York; the result is a real, unambiguous instant.
    got = when("2027-03-14 02:30", tz=NY)
    assert got.astimezone(UTC).astimezone(NY) == got
    assert got.hour == 3


@pytest.mark.parametrize("locale", ["zh", "en"])
@pytest.mark.parametrize("text", ["明天 19:30", "12-01 7:05", "下下周一 23:59", "2027-02-28 00:00"])
def test_format_when_reads_back(locale: str, text: str) -> None:
    got = when(text)
    assert when(format_when(got, locale, SH)) == got


def test_parser_never_raises_anything_else() -> None:
    pieces = [
        "明天",
        "下周",
        "三",
        "周",
        "日",
        "号",
        "月",
        "年",
        "2026",
        "12",
        "-",
        "/",
        ".",
        ":",
        "30",
        "点",
        "半",
        "一刻",
        "十",
        "两",
        "后",
        "天",
        "小时",
        " ",
        "pm",
        "in",
        "dec",
        "1st",
        "tonight",
        "晚上",
        "at",
        ",",
        "(",
        "9",
        "0",
        "99999",
        "T",
        "+08:00",
        "１",
        "：",
        "\u3000",
        "\x00",
        "😀",
    ]
    rng = random.Random(7)
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 7)))
        try:
            got = when(text)
        except DateParseError:
            continue
        assert got.tzinfo == SH and got > NOW


OFFSETS: list[tuple[str, list[timedelta]]] = [
    ("1d,1h,30m", [timedelta(days=1), timedelta(hours=1), timedelta(minutes=30)]),
    ("1h", [timedelta(hours=1)]),
    (" 2d , 90m ", [timedelta(days=2), timedelta(minutes=90)]),
    ("1D,1H", [timedelta(days=1), timedelta(hours=1)]),
    ("１ｄ，１ｈ", [timedelta(days=1), timedelta(hours=1)]),
    ("15 m", [timedelta(minutes=15)]),
]


@pytest.mark.parametrize(("text", "expected"), OFFSETS, ids=[t for t, _ in OFFSETS])
def test_parse_offsets(text: str, expected: list[timedelta]) -> None:
    assert parse_offsets(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "1",
        "d",
        "1x",
        "1d,",
        ",1d",
        "1d,,1h",
        "0m",
        "-1h",
        "1.5h",
        "1d1h",
        "1w",
        "1 day",
        "999999d",
        "abc",
        "1h;30m",
    ],
)
def test_parse_offsets_junk(text: str) -> None:
    with pytest.raises(DateParseError) as info:
        parse_offsets(text)
    assert info.value.reason == "unreadable"


def test_parse_offsets_non_text() -> None:
    with pytest.raises(DateParseError):
        parse_offsets(None)  # type: ignore[arg-type]


DT = datetime(2026, 12, 1, 11, 30, tzinfo=UTC)  # 19:30 in Shanghai
WHEN: list[tuple[datetime, str, ZoneInfo | str, str]] = [
    (DT, "zh", SH, "2026年12月1日 星期二 19:30"),
    (DT, "en", SH, "Tue, 1 Dec 2026 19:30"),
    (DT, "zh", "Asia/Shanghai", "2026年12月1日 星期二 19:30"),
    (DT, "zh", NY, "2026年12月1日 星期二 06:30"),
    (DT, "en", "America/New_York", "Tue, 1 Dec 2026 06:30"),
    (datetime(2026, 12, 1, 17, 0, tzinfo=UTC), "zh", SH, "2026年12月2日 星期三 01:00"),  # day follows tz
    (datetime(2026, 12, 1, 11, 30), "en", SH, "Tue, 1 Dec 2026 19:30"),  # naive means UTC
    (datetime(2026, 9, 6, 8, 5, tzinfo=SH), "en", SH, "Sun, 6 Sep 2026 08:05"),
    (datetime(2026, 9, 6, 8, 5, tzinfo=SH), "zh", SH, "2026年9月6日 星期日 08:05"),
    (DT, "zh_CN", SH, "2026年12月1日 星期二 19:30"),
    (DT, "en_GB", SH, "Tue, 1 Dec 2026 19:30"),
]


@pytest.mark.parametrize(("dt", "locale", "tz", "expected"), WHEN)
def test_format_when(dt: datetime, locale: str, tz: ZoneInfo | str, expected: str) -> None:
    assert format_when(dt, locale, tz) == expected


DATES: list[tuple[date | datetime, str, ZoneInfo | str, str]] = [
    (DT, "zh", SH, "2026年12月1日 星期二"),
    (DT, "en", SH, "Tue, 1 Dec 2026"),
    (datetime(2026, 12, 1, 17, 0, tzinfo=UTC), "en", SH, "Wed, 2 Dec 2026"),
    (date(2026, 12, 1), "zh", "UTC", "2026年12月1日 星期二"),
    (date(2027, 1, 3), "en", SH, "Sun, 3 Jan 2027"),
]


@pytest.mark.parametrize(("d", "locale", "tz", "expected"), DATES)
def test_format_date(d: date | datetime, locale: str, tz: ZoneInfo | str, expected: str) -> None:
    assert format_date(d, locale, tz) == expected


DURATIONS: list[tuple[timedelta, str, str]] = [
    (timedelta(hours=2, minutes=15), "zh", "2小时15分"),
    (timedelta(hours=2, minutes=15), "en", "2 h 15 min"),
    (timedelta(days=3, hours=4), "zh", "3天4小时"),
    (timedelta(days=3, hours=4, minutes=59), "en", "3 d 4 h"),
    (timedelta(minutes=45), "zh", "45分钟"),
    (timedelta(minutes=45, seconds=59), "en", "45 min"),
    (timedelta(hours=1), "zh", "1小时"),
    (timedelta(hours=1), "en", "1 h"),
    (timedelta(days=2, minutes=30), "zh", "2天"),
    (timedelta(days=2), "en", "2 d"),
    (timedelta(0), "zh", "0分钟"),
    (timedelta(seconds=30), "en", "0 min"),
    (-timedelta(minutes=5), "en", "-5 min"),
]


@pytest.mark.parametrize(("td", "locale", "expected"), DURATIONS)
def test_format_duration(td: timedelta, locale: str, expected: str) -> None:
    assert format_duration(td, locale) == expected
