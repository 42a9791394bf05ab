"""Reading the dates and times people type (Chinese first, English too). Pure: no I/O, no clock.

Grammar: an optional date part and a time part, in either order ("明天 19:30", "7pm tomorrow"),
or a relative instant ("2小时后", "in 30 min"). Everything is interpreted in the community's tz.
Hand-written on purpose: dateparser misses many Chinese forms and silently invents dates for
English ones it half understands ("at 7pm on the 3rd" -> a March date), which is worse than a
clear "unreadable" followed by examples.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Reason = Literal["unreadable", "past", "no_time"]

_MAX_LEN = 100  # nobody types a date longer than this; keeps regex work bounded
_MAX_DAYS = 3660  # "N天后" beyond ten years is a typo, not a plan


class DateParseError(ValueError):
    """`reason` is "unreadable", "past" or "no_time"; the caller turns it into a message with examples."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


def _bad() -> DateParseError:
    return DateParseError("unreadable")


# ---------------------------------------------------------------- numbers

_CN_DIGIT = {
    c: n
    for n, cs in enumerate(("零〇", "一", "二两兩", "三", "四", "五", "六", "七", "八", "九"))
    for c in cs
}
_CN = "零〇一二两兩三四五六七八九十"
_NUM = rf"[0-9]{{1,2}}|[{_CN}]{{1,3}}"  # 1-2 Arabic digits or a Chinese numeral below 100
_BIGNUM = rf"[0-9]{{1,4}}|[{_CN}]{{1,3}}"


def _int(tok: str) -> int:
    """Arabic or Chinese (一..九十九, 两, 零五) number; raises unreadable on nonsense like 十十."""
    if tok.isascii() and tok.isdigit():
        return int(tok)
    if "十" in tok:
        left, _, right = tok.partition("十")
        tens = 1 if left == "" else _CN_DIGIT.get(left, -1)
        ones = 0 if right == "" else _CN_DIGIT.get(right, -1)
        if len(left) > 1 or len(right) > 1 or tens <= 0 or ones < 0 or (right and ones == 0):
            raise _bad()
        return tens * 10 + ones
    if len(tok) == 2 and tok[0] in "零〇":  # 零五 (minutes)
        tok = tok[1]
    if len(tok) != 1 or tok not in _CN_DIGIT:
        raise _bad()
    return _CN_DIGIT[tok]


def _year(tok: str) -> int:
    if tok.isascii():
        return int(tok)
    return int("".join(str(_CN_DIGIT[c]) for c in tok))  # 二〇二六 reads digit by digit


# ---------------------------------------------------------------- normalisation


def _normalize(text: str) -> str:
    # NFKC folds full-width digits, colons, slashes, commas and the ideographic space.
    s = unicodedata.normalize("NFKC", text).lower()
    s = re.sub(r"\s+", " ", s).strip().rstrip("。!?~ ")
    return re.sub(r"(?<=[0-9])t(?=[0-9])", " ", s)  # ISO 2026-12-01T19:30


_CONNECTORS = re.compile(r"(?:\s+|,|at(?=[\s0-9])|on(?=\s)|@|的|于|於|在)*", re.ASCII)


def _skip(s: str) -> str:
    m = _CONNECTORS.match(s)
    return s[m.end() :] if m else s


# ---------------------------------------------------------------- times

# what a period word does to the hour: see _settle
_PERIOD_GROUPS = {
    "early": "凌晨 半夜",
    "am": "清晨 早上 早晨 上午 早 morning",
    "noon": "中午 正午",
    "pm": "下午 午后 午後 傍晚 afternoon",
    "evening": "晚上 晚间 晚間 夜晚 晚 evening tonight",
    "night": "夜里 夜裡 夜间 深夜 night",
}
_PERIOD_WORDS = {w: kind for kind, words in _PERIOD_GROUPS.items() for w in words.split()}
_PERIOD_ALT = "|".join(sorted(_PERIOD_WORDS, key=len, reverse=True))

_TIME_RE = re.compile(
    rf"(?:(?P<period>{_PERIOD_ALT})\s*)?"
    r"(?:"
    r"(?P<h1>[0-9]{1,2})\s*:\s*(?P<m1>[0-9]{2})(?:\s*:\s*(?P<s1>[0-9]{2}))?(?![0-9])"
    rf"|(?P<h2>{_NUM})\s*(?:点钟|點鐘|点|點|时|時)\s*"
    rf"(?:(?P<frac>半|一刻|三刻|整)|(?P<m2>{_NUM})(?![0-9])\s*(?:分钟|分鐘|分)?)?"
    r"|(?P<h3>[0-9]{1,2})(?![0-9:])"
    r")"
    r"(?:\s*(?P<ampm>[ap])\.?m\b\.?)?",
    re.ASCII,
)
_NOON_RE = re.compile(r"(?:12\s*)?(?:noon|midday)\b|中午|正午", re.ASCII)
_PERIOD_ONLY = re.compile(rf"(?:{_PERIOD_ALT})", re.ASCII)
_FRACTION = {"半": 30, "一刻": 15, "三刻": 45, "整": 0}


@dataclass(frozen=True, slots=True)
class _Time:
    hour: int
    minute: int
    second: int = 0
    next_day: bool = False  # 晚上12点 is the midnight that ends the day


@dataclass(frozen=True, slots=True)
class _RawTime:
    hour: int
    minute: int
    second: int
    period: str | None
    ampm: str | None
    bare: bool  # a lone number ("8"): only a time with am/pm or a period word


def _raw_time(m: re.Match[str]) -> _RawTime:
    g = m.groupdict()
    period = _PERIOD_WORDS[g["period"]] if g["period"] else None
    if g["h1"] is not None:
        return _RawTime(int(g["h1"]), int(g["m1"]), int(g["s1"] or 0), period, g["ampm"], False)
    if g["h2"] is not None:
        minute = _FRACTION[g["frac"]] if g["frac"] else _int(g["m2"]) if g["m2"] else 0
        return _RawTime(_int(g["h2"]), minute, 0, period, g["ampm"], False)
    return _RawTime(int(g["h3"]), 0, 0, period, g["ampm"], True)


def _settle(raw: _RawTime, hint: str | None) -> _Time:
    """Apply am/pm or the period word (下午, 晚上, or 今晚's hint) to a 0-23 or 1-12 hour."""
    h, nxt = raw.hour, False
    period = raw.period or hint
    if raw.bare and not (raw.ampm or period):
        raise _bad()
    if raw.ampm:
        if not 1 <= h <= 12:
            raise _bad()
        h = h % 12 + (12 if raw.ampm == "p" else 0)
    elif period == "early":
        if h > 12:
            raise _bad()
        h %= 12
    elif period == "am":
        if h > 12:
            raise _bad()
    elif period == "noon":
        if 1 <= h <= 5:
            h += 12
    elif period == "pm":
        if 1 <= h <= 11:
            h += 12
    elif period in ("evening", "night"):
        if h in (0, 12):
            h, nxt = 0, True
        elif 1 <= h <= 11 and (period == "evening" or h >= 6):
            h += 12
    if not (0 <= h <= 23 and 0 <= raw.minute <= 59 and 0 <= raw.second <= 59):
        raise _bad()
    return _Time(h, raw.minute, raw.second, nxt)


def _time_prefix(s: str, hint: str | None) -> tuple[_Time, str] | None:
    """A time at the start of s, and what follows it."""
    m = _TIME_RE.match(s)
    if m and (m.end() == len(s) or not s[m.end()].isalnum() or not s[m.end()].isascii()):
        return _settle(_raw_time(m), hint), s[m.end() :]
    m = _NOON_RE.match(s)
    if m:
        return _Time(12, 0), s[m.end() :]
    return None


def _time_full(s: str, hint: str | None) -> _Time | None:
    got = _time_prefix(s, hint)
    if got is None or got[1].strip():
        return None
    return got[0]


# ---------------------------------------------------------------- days

_DayKind = Literal["fixed", "yearless", "dayonly", "weekday", "soon"]


@dataclass(frozen=True, slots=True)
class _Day:
    kind: _DayKind
    day: date | None = None  # fixed
    month: int = 0  # yearless
    dom: int = 0  # yearless, dayonly
    weekday: int = -1  # weekday: the next one, today included while the time is ahead
    check: int | None = None  # weekday written beside an explicit date; must agree
    period: str | None = None  # 今晚 / 明早 / tonight imply a period for the time


_WD_ZH = {c: n for n, cs in enumerate(("一1", "二2", "三3", "四4", "五5", "六6", "日天七7")) for c in cs}
_WD_EN_NAMES = (
    "monday mon",
    "tuesday tues tue",
    "wednesday wed",
    "thursday thurs thur thu",
    "friday fri",
    "saturday sat",
    "sunday sun",
)
_WD_EN = {w: n for n, ws in enumerate(_WD_EN_NAMES) for w in ws.split()}
_MONTHS = {m: n for n, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_MON_ALT = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_WD_EN_ALT = "|".join(sorted(_WD_EN, key=len, reverse=True))
_ZH_WEEK = r"(?:周|週|星期|礼拜|禮拜)"

# day offset and implied period of the relative day words
_REL_GROUPS: dict[tuple[int, str | None], str] = {
    (0, None): "今天|今日|今儿|today",
    (1, None): "明天|明日|明儿|tomorrow|tmrw|tmr",
    (2, None): "后天|後天|day after tomorrow|the day after tomorrow",
    (3, None): "大后天|大後天",
    (-1, None): "昨天|昨日|yesterday",
    (-2, None): "前天",
    (0, "evening"): "今晚|今夜|tonight",
    (1, "evening"): "明晚|明夜",
    (0, "am"): "今早|今晨",
    (1, "am"): "明早|明晨",
}
_REL_WORDS = {w: key for key, words in _REL_GROUPS.items() for w in words.split("|")}
_REL_ALT = "|".join(re.escape(w) for w in sorted(_REL_WORDS, key=len, reverse=True))
_AFTER = r"(?:以后|以後|之后|之後|后|後)"

_RE_YMD = re.compile(
    r"(?P<y>[0-9]{4})\s*(?P<sep>[-/.])\s*(?P<m>[0-9]{1,2})\s*(?P=sep)\s*(?P<d>[0-9]{1,2})"
    r"(?![0-9])",
    re.ASCII,
)
_RE_ZH_MD = re.compile(
    r"(?:(?P<y>[0-9]{4}|[〇零一二三四五六七八九]{4})\s*年\s*|(?P<yrel>今年|明年|后年|後年)\s*)?"
    rf"(?P<m>[0-9]{{1,2}}|[{_CN}]{{1,3}})\s*月(?:份)?\s*(?P<d>{_NUM})\s*(?:日|号|號|(?![0-9]))",
    re.ASCII,
)
_RE_MONTH_DAY = re.compile(  # 下个月3号, 本月20日, 3号
    rf"(?:(?P<rel>本月|这个月|這個月|下下个?月|下個?月|下个?月)\s*)?(?P<d>{_NUM})\s*(?:日|号|號)(?!{_AFTER})",
    re.ASCII,
)
_RE_MD = re.compile(r"(?P<m>[0-9]{1,2})\s*[-/.]\s*(?P<d>[0-9]{1,2})(?![0-9./-])", re.ASCII)
_RE_EN_MD = re.compile(
    rf"(?P<mon>{_MON_ALT})\.?\s*(?:the\s+)?(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?\b"
    r"(?:,?\s*(?P<y>[0-9]{4})(?![0-9:]))?",
    re.ASCII,
)
_RE_EN_DM = re.compile(
    rf"(?:the\s+)?(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?\s*(?:of\s+)?(?P<mon>{_MON_ALT})\b\.?"
    r"(?:,?\s*(?P<y>[0-9]{4})(?![0-9:]))?",
    re.ASCII,
)
_RE_REL = re.compile(rf"(?P<w>{_REL_ALT})(?![a-z])", re.ASCII)
_RE_IN_DAYS = re.compile(
    rf"(?P<n>{_BIGNUM})\s*(?:个|個)?\s*(?P<u>天|日|周|週|星期|礼拜|禮拜)\s*{_AFTER}"
    r"|in\s+(?P<en>[0-9]{1,4})\s*(?P<eu>days?|weeks?)\b"
    r"|(?P<en2>[0-9]{1,4})\s*(?P<eu2>days?|weeks?)\s+(?:later|from\s+now)\b",
    re.ASCII,
)
_RE_WD_ZH = re.compile(
    rf"(?P<pre>下下个?|下下個?|下个?|下個?|上上个?|上个?|上個?|本|这个?|這個?|这|這)?\s*{_ZH_WEEK}(?P<wd>[一二三四五六日天七1-7])",
    re.ASCII,
)
_RE_WD_EN = re.compile(rf"(?:(?P<pre>next|this|coming|last)\s+)?(?P<wd>{_WD_EN_ALT})\b\.?", re.ASCII)
_RE_WD_NOTE = re.compile(  # "(周二)", "星期二", "tue" written beside an explicit date
    rf"\s*\(?\s*(?:{_ZH_WEEK}(?P<zh>[一二三四五六日天七])|(?P<en>{_WD_EN_ALT})\b\.?)\s*\)?",
    re.ASCII,
)
_WEEK_SHIFT = {"下下": 2, "下": 1, "上上": -2, "上": -1, "本": 0, "这": 0, "這": 0}


def _yearless_day(month: int, dom: int, today: date, future: bool) -> date:
    """This year's date; when the future is wanted, the first one not before today (29 Feb waits)."""
    if not future:
        return date(today.year, month, dom)
    for year in range(today.year, today.year + 9):
        try:
            d = date(year, month, dom)
        except ValueError:
            continue
        if d >= today:
            return d
    raise _bad()


def _month_start(today: date, months: int) -> tuple[int, int]:
    idx = today.year * 12 + today.month - 1 + months
    return idx // 12, idx % 12 + 1


def _explicit_date(s: str, today: date) -> tuple[_Day, str] | None:
    """A date naming its month and day (with or without the year), and what follows."""
    if m := _RE_YMD.match(s):
        d = date(int(m["y"]), int(m["m"]), int(m["d"]))
        return _Day("fixed", day=d), s[m.end() :]
    if m := _RE_ZH_MD.match(s):
        month, dom = _int(m["m"]), _int(m["d"])
        if m["y"] or m["yrel"]:
            year = _year(m["y"]) if m["y"] else today.year + {"今年": 0, "明年": 1}.get(m["yrel"], 2)
            return _Day("fixed", day=date(year, month, dom)), s[m.end() :]
        date(2000, month, dom)  # 2月30日 is unreadable in any year (2000 is a leap year)
        return _Day("yearless", month=month, dom=dom), s[m.end() :]
    for rx in (_RE_EN_MD, _RE_EN_DM):
        if m := rx.match(s):
            month, dom = _MONTHS[m["mon"][:3]], int(m["d"])
            if m["y"]:
                return _Day("fixed", day=date(int(m["y"]), month, dom)), s[m.end() :]
            date(2000, month, dom)
            return _Day("yearless", month=month, dom=dom), s[m.end() :]
    if m := _RE_MONTH_DAY.match(s):
        dom = _int(m["d"])
        if not 1 <= dom <= 31:
            raise _bad()
        rel = m["rel"]
        if rel is None:
            return _Day("dayonly", dom=dom), s[m.end() :]
        shift = 0 if rel[0] in "本这這" else 2 if rel.startswith("下下") else 1
        y, mo = _month_start(today, shift)
        return _Day("fixed", day=date(y, mo, dom)), s[m.end() :]
    if m := _RE_MD.match(s):
        month, dom = int(m["m"]), int(m["d"])
        date(2000, month, dom)
        return _Day("yearless", month=month, dom=dom), s[m.end() :]
    return None


def _with_note(day: _Day, rest: str) -> tuple[_Day, str]:
    """Accept a weekday after an explicit date (as format_when echoes it), to check it agrees."""
    m = _RE_WD_NOTE.match(rest)
    if m is None or (m["en"] is None and m["zh"] is None):
        return day, rest
    wd = _WD_EN[m["en"]] if m["en"] else _WD_ZH[m["zh"]]
    return _Day(day.kind, day.day, day.month, day.dom, day.weekday, wd, day.period), rest[m.end() :]


def _week_day(today: date, weeks: int, wd: int) -> date:
    monday = today - timedelta(days=today.weekday())  # Chinese weeks start on Monday
    return monday + timedelta(weeks=weeks, days=wd)


def _day_prefix(s: str, today: date) -> tuple[_Day, str] | None:
    """Any date part at the start of s, and what follows it."""
    got = _explicit_date(s, today)
    if got:
        return _with_note(*got)
    if m := _RE_IN_DAYS.match(s):
        if m["n"] is not None:
            n, unit = _int(m["n"]), m["u"]
            days = n if unit in ("天", "日") else 7 * n
        else:
            n, unit = int(m["en"] or m["en2"]), m["eu"] or m["eu2"]
            days = n if unit.startswith("day") else 7 * n
        if days > _MAX_DAYS:
            raise _bad()
        return _Day("fixed", day=today + timedelta(days=days)), s[m.end() :]
    if m := _RE_REL.match(s):
        offset, period = _REL_WORDS[m["w"]]
        return _Day("fixed", day=today + timedelta(days=offset), period=period), s[m.end() :]
    m = _RE_WD_ZH.match(s)
    if m:
        wd = _WD_ZH[m["wd"]]
        pre = m["pre"]
    elif m := _RE_WD_EN.match(s):
        wd = _WD_EN[m["wd"]]
        pre = {"next": "下", "this": "本", "last": "上", "coming": None, None: None}[m["pre"]]
    else:
        return None
    rest = s[m.end() :]
    if pre is None:
        # "Tue, 1 Dec 2026": a weekday in front of an explicit date is a check, not the date.
        got = _explicit_date(_skip(rest), today)
        if got:
            day, after = got
            return _Day(day.kind, day.day, day.month, day.dom, check=wd), after
        return _Day("weekday", weekday=wd), rest
    weeks = _WEEK_SHIFT[pre.rstrip("个個")]
    return _Day("fixed", day=_week_day(today, weeks, wd)), rest


def _day_full(s: str, today: date) -> _Day | None:
    got = _day_prefix(s, today)
    if got is None or got[1].strip(" ,"):
        return None
    return got[0]


# ---------------------------------------------------------------- instants

_RE_INSTANT = re.compile(
    rf"(?:(?P<h>{_NUM})\s*(?:个|個)?\s*(?P<hh>半)?\s*(?:小时|小時|钟头|鐘頭)\s*(?:(?P<hm>{_NUM})\s*(?:分钟|分鐘|分))?"
    rf"|(?P<half>半)\s*(?:个|個)?\s*(?:小时|小時|钟头|鐘頭)"
    rf"|(?P<m>{_BIGNUM})\s*(?:分钟|分鐘))\s*{_AFTER}"
    r"|in\s+(?:(?P<eh>[0-9]{1,3})\s*(?:hours?|hrs?|h)(?![a-z])\s*(?:and\s*)?)?"
    r"(?:(?P<em>[0-9]{1,4})\s*(?:minutes?|mins?|m)(?![a-z]))?",
    re.ASCII,
)


def _instant(s: str, local_now: datetime, tz: ZoneInfo) -> datetime | None:
    """'2小时后', '半小时后', 'in 1 h 30 min': from now, to the minute."""
    m = _RE_INSTANT.fullmatch(s)
    if m is None or not any(m.groupdict().values()):
        return None
    g = m.groupdict()
    if g["eh"] or g["em"]:
        minutes = int(g["eh"] or 0) * 60 + int(g["em"] or 0)
    elif g["half"]:
        minutes = 30
    elif g["m"]:
        minutes = _int(g["m"])
    elif g["h"]:
        minutes = _int(g["h"]) * 60 + (30 if g["hh"] else 0) + (_int(g["hm"]) if g["hm"] else 0)
    else:
        return None
    if minutes > _MAX_DAYS * 1440:
        raise _bad()
    start = local_now.replace(second=0, microsecond=0)
    return (start + timedelta(minutes=minutes)).astimezone(UTC).astimezone(tz)


# ---------------------------------------------------------------- assembling


def _at(d: date, t: _Time, tz: ZoneInfo) -> datetime:
    naive = datetime.combine(d, time(t.hour, t.minute, t.second)) + timedelta(days=int(t.next_day))
    # the UTC round trip turns a wall time skipped by a DST jump into a real one
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


def _resolve(day: _Day, t: _Time, local_now: datetime, tz: ZoneInfo, future: bool) -> datetime:
    today = local_now.date()
    roll = 0  # days to move on when the time has passed today (bare weekday, time alone)
    if day.kind == "weekday":
        d = today + timedelta(days=(day.weekday - today.weekday()) % 7)
        roll = 7
    elif day.kind == "soon":  # a time alone: today, or tomorrow once it has passed
        d = today
        roll = 1
    elif day.kind == "yearless":
        d = _yearless_day(day.month, day.dom, today, future)
    elif day.kind == "dayonly":
        d = _day_of_month(day.dom, today, future)
    else:
        assert day.day is not None
        d = day.day
    if day.check is not None and d.weekday() != day.check:
        raise _bad()
    dt = _at(d, t, tz)
    if future and roll and dt <= local_now:
        dt = _at(d + timedelta(days=roll), t, tz)
    return dt


def _day_of_month(dom: int, today: date, future: bool) -> date:
    """'3号': this month's, or when that has gone (or doesn't exist), the next month that has it."""
    for shift in range(0, 13 if future else 1):
        y, m = _month_start(today, shift)
        try:
            d = date(y, m, dom)
        except ValueError:
            continue
        if not future or d >= today:
            return d
    raise _bad()


def _grammar(s: str, local_now: datetime, tz: ZoneInfo, future: bool) -> datetime:
    today = local_now.date()
    s = _skip(s)
    got = _day_prefix(s, today)
    if got is not None:
        day, rest = got
        rest = _skip(rest)
        if not rest:
            raise DateParseError("no_time")
        t = _time_full(rest, day.period)
        if t is None:
            if _PERIOD_ONLY.fullmatch(rest):
                raise DateParseError("no_time")  # 明天下午
            raise _bad()
        return _resolve(day, t, local_now, tz, future)
    tgot = _time_prefix(s, None)
    if tgot is None:
        if _PERIOD_ONLY.fullmatch(s):
            raise DateParseError("no_time")
        raise _bad()
    _, rest = tgot
    rest = _skip(rest)
    if not rest:
        return _resolve(_Day("soon"), tgot[0], local_now, tz, future)
    day2 = _day_full(rest, today)
    if day2 is None:
        raise _bad()
    m = _TIME_RE.match(s)  # "8:00 tonight": re-read the time with the day's period hint
    t = _settle(_raw_time(m), day2.period) if m and day2.period else tgot[0]
    return _resolve(day2, t, local_now, tz, future)


_RE_ISO_OFFSET = re.compile(
    r"(?P<dt>[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)\s*"
    r"(?P<off>z|[+-][0-9]{2}:?[0-9]{2})",
    re.ASCII,
)


def _parse(text: str, now: datetime, tz: ZoneInfo, future: bool) -> datetime:
    if not isinstance(text, str) or len(text) > _MAX_LEN:
        raise _bad()
    s = _normalize(text)
    if not s:
        raise _bad()
    if now.tzinfo is None:  # callers pass aware times; a naive one is read as local, not as an error
        now = now.replace(tzinfo=tz)
    local_now = now.astimezone(tz)
    if m := _RE_ISO_OFFSET.fullmatch(s):  # machine-written, with its own offset
        stamp = datetime.fromisoformat(m["dt"].replace(" ", "T") + m["off"].upper())
        result = stamp.astimezone(tz).replace(microsecond=0)
    else:
        result = _instant(s, local_now, tz) or _grammar(s, local_now, tz, future)
    if future and result <= now:
        raise DateParseError("past")
    return result


def parse_when(text: str, *, now: datetime, tz: ZoneInfo, future: bool = True) -> datetime:
    """The moment `text` names, aware in `tz`. Raises DateParseError and nothing else.

    future=True: a bare weekday, a time alone and a year-less date move forward to their next
    occurrence, and a result not after `now` is "past". A date without a time is "no_time".
    """
    try:
        return _parse(text, now, tz, future)
    except DateParseError:
        raise
    except Exception as exc:  # invalid dates (ValueError), overflow: all mean "can't read that"
        raise DateParseError("unreadable") from exc


# ---------------------------------------------------------------- reminder offsets

_RE_OFFSET = re.compile(r"([0-9]{1,6})\s*([mhd])", re.ASCII)
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_MAX_OFFSET = timedelta(days=366)


def parse_offsets(text: str) -> list[timedelta]:
    """'1d,1h,30m' -> [1 day, 1 hour, 30 minutes], in the order written; each > 0 and <= 366 days."""
    try:
        s = unicodedata.normalize("NFKC", text).lower().strip()
    except TypeError as exc:
        raise _bad() from exc
    if not s:
        raise _bad()
    out: list[timedelta] = []
    for part in s.split(","):
        m = _RE_OFFSET.fullmatch(part.strip())
        if m is None:
            raise _bad()
        delta = int(m[1]) * _UNIT[m[2]]
        if not timedelta(0) < delta <= _MAX_OFFSET:
            raise _bad()
        out.append(delta)
    return out
