"""Volunteer-task rules without I/O: reading /task's fields, skills, and the roster's shape."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.domain.dates import DateParseError, parse_when

MAX_TITLE = 100
MAX_PLACE = 100
MAX_SKILL = 20
MAX_SKILLS = 10
MAX_SLOTS = 100  # every claimer is named in the post; 100 names stay well inside 4096 characters
MAX_POINTS = 10_000
MAX_NOTE = 1000
MAX_REASON = 500
DEFAULT_MINUTES = 120
MAX_MINUTES = 24 * 60
WAITLIST_NAMES = 10  # the waitlist line names this many, then "等 N 人"
NAME_CHARS = 16  # a name in a roster is cut to this many characters

OPEN = "open"
CANCELLED = "cancelled"
CONFIRMED = "confirmed"

# Field separators people type: ASCII bar, full-width bar (Chinese IME).
_BAR = re.compile(r"[|｜]")
_SKILL_SEP = re.compile(r"[,，、;；/]")
# "周六 9:00-11:30": a start with a time, then an end time the same day.
_RANGE = re.compile(r"^(?P<start>.*\d{1,2}\s*[:：]\s*\d{2})\s*(?:-|~|～|—|–|至|到)\s*(?P<h>\d{1,2})\s*[:：]\s*(?P<m>\d{2})$")


class TaskInputError(ValueError):
    """What was wrong with the input, as a catalog key and its parameters."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


@dataclass(frozen=True)
class When:
    starts_at: datetime
    minutes: int
    ranged: bool = False  # the end was typed ("9:00-11:30"); else `minutes` is the default


@dataclass(frozen=True)
class TaskDraft:
    title: str
    when: When
    slots: int
    points: int
    place: str | None
    skill: str | None


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def parse_int(raw: str) -> int | None:
    """'5', '５', ' 5 ' -> 5; '-1' -> -1; anything else None."""
    s = _nfkc(raw)
    if re.fullmatch(r"[+-]?\d{1,9}", s):
        return int(s)
    return None


def parse_slots(raw: str) -> int:
    n = parse_int(raw)
    if n is None or n <= 0 or n > MAX_SLOTS:
        raise TaskInputError("err_task_slots", value=raw.strip(), limit=MAX_SLOTS)
    return n


def parse_points(raw: str) -> int:
    n = parse_int(raw)
    if n is None or n < 0 or n > MAX_POINTS:
        raise TaskInputError("err_task_points", value=raw.strip(), limit=MAX_POINTS)
    return n


def parse_time(text: str, *, now: datetime, tz: ZoneInfo) -> When:
    """A start in the future, optionally with an end time the same day ("周六 9:00-11:30")."""
    raw = text.strip()
    if not raw:
        raise TaskInputError("err_task_date_unreadable", value=raw)
    m = _RANGE.match(_nfkc(raw))
    start_text = m["start"] if m else raw
    try:
        start = parse_when(start_text, now=now, tz=tz, future=True)
    except DateParseError as exc:
        key = "err_task_date_past" if exc.reason == "past" else "err_task_date_unreadable"
        raise TaskInputError(key, value=raw) from None
    minutes = DEFAULT_MINUTES
    if m:
        local = start.astimezone(tz)
        hour, minute = int(m["h"]), int(m["m"])
        if hour > 23 or minute > 59:
            raise TaskInputError("err_task_date_unreadable", value=raw)
        end = local.replace(hour=hour, minute=minute)
        if end <= local:
            raise TaskInputError("err_task_end_before_start", value=raw)
        minutes = int((end - local).total_seconds() // 60)
    return When(start, min(minutes, MAX_MINUTES), ranged=m is not None)


def _text_field(raw: str, limit: int, too_long: str) -> str | None:
    value = " ".join(raw.split())
    if not value:
        return None
    if len(value) > limit:
        raise TaskInputError(too_long, limit=limit, length=len(value))
    return value


def parse_task(args: str, *, now: datetime, tz: ZoneInfo) -> TaskDraft:
    """`<title> | <when> | <slots> | <points> [| <place>] [| <skill>]`."""
    fields = [f.strip() for f in _BAR.split(args)] if args.strip() else []
    if len(fields) < 4 or len(fields) > 6:
        raise TaskInputError("err_task_usage")
    title = _text_field(fields[0], MAX_TITLE, "err_task_title_too_long")
    if title is None:
        raise TaskInputError("err_task_missing_title")
    for name, value in (("when", fields[1]), ("slots", fields[2]), ("points", fields[3])):
        if not value:
            raise TaskInputError(f"err_task_missing_{name}")
    when = parse_time(fields[1], now=now, tz=tz)
    slots = parse_slots(fields[2])
    points = parse_points(fields[3])
    place = _text_field(fields[4], MAX_PLACE, "err_task_place_too_long") if len(fields) > 4 else None
    skill = None
    if len(fields) > 5 and fields[5].strip():
        skills = parse_skills(fields[5])
        if len(skills) != 1:
            raise TaskInputError("err_task_one_skill")
        skill = skills[0]
    return TaskDraft(title, when, slots, points, place, skill)


def skill_key(name: str) -> str:
    """What two spellings of one skill share: width, case and inner spaces do not matter."""
    return re.sub(r"\s+", "", _nfkc(name).casefold())


def parse_skills(text: str) -> list[str]:
    """'水电维修, 理发、陪护就医' -> the names, in order, each once."""
    names: list[str] = []
    seen: set[str] = set()
    for part in _SKILL_SEP.split(text):
        name = " ".join(_nfkc(part).split())
        if not name:
            continue
        if len(name) > MAX_SKILL:
            raise TaskInputError("err_skill_too_long", skill=name, limit=MAX_SKILL)
        if not re.search(r"\w", name):
            raise TaskInputError("err_skills_usage")
        key = skill_key(name)
        if key not in seen:
            seen.add(key)
            names.append(name)
    if not names:
        raise TaskInputError("err_skills_usage")
    if len(names) > MAX_SKILLS:
        raise TaskInputError("err_skills_too_many", limit=MAX_SKILLS)
    return names


def short_name(name: str) -> str:
    flat = " ".join(name.split())
    return flat if len(flat) <= NAME_CHARS else flat[: NAME_CHARS - 1] + "…"


def waitlist_shown(names: list[str], total: int, limit: int = WAITLIST_NAMES) -> tuple[list[str], int]:
    """The first names of a waitlist of `total` people, and how many more are not named."""
    shown = names[:limit]
    return shown, max(0, total - len(shown))


def reminder_due(starts_at: datetime, offsets: list[timedelta], now: datetime) -> list[tuple[timedelta, datetime]]:
    """(offset, due time) of each reminder still ahead; an offset already past is skipped."""
    out = []
    for off in offsets:
        due = starts_at - off
        if due > now:
            out.append((off, due))
    return out


def period_start(period: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """The start of 'month' or 'year' in the community's time; None for all time."""
    local = now.astimezone(tz)
    if period == "month":
        return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if period == "year":
        return local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return None
