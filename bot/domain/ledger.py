"""Ledger (台账) rules: which period a /stats or /export covers, and the three rates. Plain rules, no I/O.

Definitions (the contract, per period, by filing date; rejected and duplicate demands are excluded
from both the response and the resolution rate; a demand resolved and then rated counts as resolved):
- 响应率 response rate = demands accepted within the SLA ÷ demands filed
- 解决率 resolution rate = demands resolved ÷ demands filed
- 满意率 satisfaction rate = ratings of 4 or 5 ÷ ratings given
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

# The earliest and latest month a command may name: a typo like 0226-01 is refused, not searched.
MIN_YEAR = 1900
MAX_YEAR = 2999
MONTHS_CHARTED = 12

_MONTH = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*月?")
_ALIASES = {
    "": "month", "month": "month", "本月": "month", "这个月": "month", "当月": "month",
    "all": "all", "全部": "all", "所有": "all", "总": "all",
}


class PeriodError(ValueError):
    """The argument names no period; `key` is the catalog key of the reply."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC; `kind` is month | all | week; `label` as the user reads it (e.g. 2026-03)."""

    kind: str
    start: datetime
    end: datetime
    label: str
    tz: str
    month: date | None = None  # the first day of the month, for kind == "month"


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def month_start(year: int, month: int, tz: ZoneInfo) -> datetime:
    return _local_midnight(date(year, month, 1), tz)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def month_period(first: date, tz_name: str) -> Period:
    tz = ZoneInfo(tz_name)
    nxt = add_months(first, 1)
    return Period("month", _local_midnight(first, tz), _local_midnight(nxt, tz), f"{first.year}-{first.month:02d}",
                  tz_name, first)


def parse_month(raw: str) -> date | None:
    """`2026-03`, `2026/3`, `2026年3月` -> date(2026, 3, 1); PeriodError for a month that cannot be."""
    text = unicodedata.normalize("NFKC", raw.strip())
    m = _MONTH.fullmatch(text)
    if not m:
        return None
    year, month = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12:
        raise PeriodError("err_ledger_bad_month")
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise PeriodError("err_ledger_bad_year")
    return date(year, month, 1)


def parse_period(raw: str, *, now: datetime, tz_name: str, allow_all: bool = True) -> Period:
    """The period of `/stats [month|YYYY-MM|all]` (and `/export [YYYY-MM]` with allow_all=False)."""
    tz = ZoneInfo(tz_name)
    key = _ALIASES.get(unicodedata.normalize("NFKC", raw.strip()).lower())
    if key == "month":
        local = now.astimezone(tz)
        return month_period(date(local.year, local.month, 1), tz_name)
    if key == "all" and allow_all:
        return Period("all", datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC), "all", tz_name)
    first = parse_month(raw)
    if first is None:
        raise PeriodError("err_ledger_usage_stats" if allow_all else "err_ledger_usage_export")
    return month_period(first, tz_name)


def last_week(now: datetime, tz_name: str) -> Period:
    """Monday 00:00 to Monday 00:00 of the week before the one `now` is in, community time."""
    tz = ZoneInfo(tz_name)
    today = now.astimezone(tz).date()
    this_monday = today - timedelta(days=today.weekday())
    start = this_monday - timedelta(days=7)
    end_day = this_monday - timedelta(days=1)
    return Period("week", _local_midnight(start, tz), _local_midnight(this_monday, tz),
                  f"{start.isoformat()} – {end_day.isoformat()}", tz_name)


def next_digest_at(now: datetime, tz_name: str, hour: int = 9) -> datetime:
    """The next Monday `hour`:00 in the community's time strictly after `now` (UTC)."""
    tz = ZoneInfo(tz_name)
    local = now.astimezone(tz)
    monday = local.date() - timedelta(days=local.weekday())
    for week in range(3):
        at = datetime.combine(monday + timedelta(days=7 * week), time(hour), tzinfo=tz)
        if at > local:
            return at.astimezone(UTC)
    raise AssertionError("unreachable")


def chart_months(end_month: date, tz_name: str, count: int = MONTHS_CHARTED) -> list[Period]:
    """The `count` months up to and including `end_month`, oldest first."""
    return [month_period(add_months(end_month, -i), tz_name) for i in range(count - 1, -1, -1)]


@dataclass(frozen=True)
class Rate:
    """A rate as the fraction it is: 2/3 -> 66.7% (2/3). No denominator -> shown as —."""

    num: int
    den: int

    @property
    def fraction(self) -> Fraction | None:
        return Fraction(self.num, self.den) if self.den else None

    @property
    def value(self) -> float | None:
        return self.num / self.den if self.den else None

    def percent(self) -> str:
        if not self.den:
            return "—"
        tenths = (self.num * 2000 + self.den) // (2 * self.den)  # exact, half up: 2/3 -> 66.7
        return f"{tenths // 10}.{tenths % 10}%"

    def text(self) -> str:
        return f"{self.percent()} ({self.num}/{self.den})" if self.den else "— (0/0)"


@dataclass(frozen=True)
class Rates:
    filed: int  # all demands filed in the period
    counted: int  # filed minus rejected and duplicates: the denominator of two rates
    accepted_in_sla: int
    resolved: int
    ratings: int
    satisfied: int  # ratings of 4 or 5

    @property
    def response(self) -> Rate:
        return Rate(self.accepted_in_sla, self.counted)

    @property
    def resolution(self) -> Rate:
        return Rate(self.resolved, self.counted)

    @property
    def satisfaction(self) -> Rate:
        return Rate(self.satisfied, self.ratings)


def median(sorted_middle: list[float], count: int) -> float | None:
    """The median from the one or two middle values of `count` sorted values."""
    if not count or not sorted_middle:
        return None
    if count % 2 or len(sorted_middle) == 1:
        return sorted_middle[0]
    return (sorted_middle[0] + sorted_middle[1]) / 2


def duration_text(seconds: float | None, locale: str) -> str:
    """3h 20m / 3小时20分 / 2d 4h / 2天4小时; — for none."""
    if seconds is None:
        return "—"
    minutes = int(round(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if locale == "zh":
        if days:
            return f"{days}天{hours}小时"
        return f"{hours}小时{mins}分" if hours else f"{mins}分钟"
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {mins}m" if hours else f"{mins}m"
