"""Showing dates and durations: always with the weekday, so a mistyped date is seen at once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date as _babel_date
from babel.dates import format_datetime as _babel_datetime

_ZH_WEEKDAYS = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
# Explicit patterns: en's CLDR medium format ("Dec 1, 2026") has no weekday
_EN_DATE = "EEE, d MMM y"
_EN_WHEN = "EEE, d MMM y HH:mm"


def _zh(locale: str) -> bool:
    return locale.lower().replace("-", "_").startswith("zh")


def _zone(tz: ZoneInfo | str) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def _local(dt: datetime, tz: ZoneInfo | str) -> datetime:
    # A naive datetime is stored UTC (SQLite drops the offset); never read it as local time.
    aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    return aware.astimezone(_zone(tz))


def format_when(dt: datetime, locale: str, tz: ZoneInfo | str) -> str:
    """zh `2026年12月1日 星期二 19:30`, en `Tue, 1 Dec 2026 19:30`, in tz."""
    local = _local(dt, tz)
    if _zh(locale):
        return f"{format_date(local, locale, tz)} {local:%H:%M}"
    return _babel_datetime(local, _EN_WHEN, tzinfo=local.tzinfo, locale="en")


def format_date(d: date | datetime, locale: str, tz: ZoneInfo | str) -> str:
    """zh `2026年12月1日 星期二`, en `Tue, 1 Dec 2026`; a datetime is first moved to tz."""
    day = _local(d, tz).date() if isinstance(d, datetime) else d
    if _zh(locale):
        return f"{day.year}年{day.month}月{day.day}日 {_ZH_WEEKDAYS[day.weekday()]}"
    return _babel_date(day, _EN_DATE, locale="en")


def format_duration(td: timedelta, locale: str) -> str:
    """The two largest units, whole minutes (floored): zh `3天4小时`, `2小时15分`, `45分钟`;
    en `3 d 4 h`, `2 h 15 min`, `45 min`."""
    sign = "-" if td < timedelta(0) else ""
    minutes = int(abs(td).total_seconds()) // 60
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    zh = _zh(locale)
    day_u, hour_u, min_u, min_alone = ("天", "小时", "分", "分钟") if zh else (" d", " h", " min", " min")
    if days:
        parts = [(days, day_u), (hours, hour_u)]
    elif hours:
        parts = [(hours, hour_u), (mins, min_u)]
    else:
        return f"{sign}{mins}{min_alone}"
    return sign + ("" if zh else " ").join(f"{n}{unit}" for n, unit in parts if n)
