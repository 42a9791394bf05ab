"""Meetings (三会一课, 主题党日, 议事协商会): kinds, the /meeting arguments, reminder offsets, the
monthly rule and the check-in window. Plain rules, no I/O.

Times are aware datetimes. `scale` shortens every duration measured from a meeting's start
(reminder offsets, check-in window, length, the minutes reminder) for tests: 1.0 in production,
1/60 when a minute should last a second (settings.meeting_minute_seconds / 60).
"""

from __future__ import annotations

import re
import unicodedata
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.domain.dates import DateParseError, parse_offsets, parse_when

MAX_TITLE = 100
MAX_PLACE = 100
MAX_REASON = 200
MAX_MINUTES = 3000
MAX_OFFSETS = 5
DEFAULT_OFFSETS = (86_400, 3_600)  # 24 h and 1 h before, in seconds
LENGTH = timedelta(hours=2)  # a meeting's length; /meeting has no end time
CHECKIN_OPENS = timedelta(minutes=30)  # before the start
CHECKIN_CLOSES = timedelta(hours=2)  # after the start
MINUTES_NUDGE_AT = time(9, 0)  # the morning after a meeting without minutes, community time

MEMBER = "member"
RESIDENT = "resident"

# kind -> (audience, names people type). The first name of each locale is in the catalogs.
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "congress": (MEMBER, ("支部党员大会", "党员大会", "branch general meeting", "general meeting", "congress")),
    "committee": (MEMBER, ("支部委员会", "支委会", "branch committee", "committee")),
    "group": (MEMBER, ("党小组会", "党小组", "party group meeting", "group meeting")),
    "lecture": (MEMBER, ("党课", "party lecture", "lecture")),
    "theme_day": (MEMBER, ("主题党日", "主题党日活动", "party theme day", "theme day")),
    "consultation": (RESIDENT, ("议事协商会", "协商议事会", "议事会", "协商会", "consultation meeting", "consultation")),
    "meeting": (MEMBER, ("会议", "meeting")),  # when no kind is given
}
DEFAULT_KIND = "meeting"
REPEAT_WORDS = {"month": "month", "monthly": "month", "每月": "month", "月": "month", "每个月": "month"}

_SEP = re.compile(r"[|｜]")
_KEY_VALUE = re.compile(r"(?P<key>remind|every|提醒|重复)\s*[=＝:：]\s*(?P<value>.*)", re.IGNORECASE | re.DOTALL)


class MeetingInputError(ValueError):
    """What was wrong with the input: a catalog key and its parameters (the service renders it)."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


def _fold(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()


_KIND_NAMES = {_fold(name): key for key, (_, names) in KINDS.items() for name in (key, *names)}


def parse_kind(text: str) -> str | None:
    return _KIND_NAMES.get(_fold(text))


def audience(kind: str) -> str:
    return KINDS[kind][0]


@dataclass(frozen=True)
class Draft:
    """A /meeting command, read and checked."""

    starts_at: datetime
    title: str
    place: str | None
    kind: str
    offsets: tuple[int, ...]  # seconds before the start, largest first
    repeat: str | None  # "month" or None

    @property
    def audience(self) -> str:
        return audience(self.kind)


def parse_remind(value: str) -> tuple[int, ...]:
    """`1d,1h,30m` -> seconds, largest first, each once; at most MAX_OFFSETS."""
    try:
        deltas = parse_offsets(value)
    except DateParseError:
        raise MeetingInputError("err_meeting_remind_bad", value=value.strip()) from None
    if len(deltas) > MAX_OFFSETS:
        raise MeetingInputError("err_meeting_remind_too_many", count=len(deltas), limit=MAX_OFFSETS)
    return tuple(sorted({int(d.total_seconds()) for d in deltas}, reverse=True))


def parse_repeat(value: str) -> str:
    repeat = REPEAT_WORDS.get(_fold(value))
    if repeat is None:
        raise MeetingInputError("err_meeting_every_bad", value=value.strip())
    return repeat


def read_when(text: str, *, now: datetime, tz: ZoneInfo) -> datetime:
    """A meeting's time: readable, with a time of day, in the future."""
    try:
        return parse_when(text, now=now, tz=tz, future=True)
    except DateParseError as exc:
        raise MeetingInputError(f"err_meeting_when_{exc.reason}", text=text.strip()) from None


def parse_meeting(args: str, *, now: datetime, tz: ZoneInfo) -> Draft:
    """`<when> | <title> [| <place>] [| <kind>] [| remind=1d,1h] [| every=month]`.

    `remind=` and `every=` may stand anywhere after the title. Of the other parts, the first is
    the place and the second the kind; a part that names a kind is the kind wherever it stands.
    """
    parts = [p.strip() for p in _SEP.split(args)]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise MeetingInputError("err_meeting_usage")
    when_text, title, rest = parts[0], parts[1], parts[2:]
    if len(title) > MAX_TITLE:
        raise MeetingInputError("err_meeting_title_too_long", limit=MAX_TITLE, length=len(title))
    offsets: tuple[int, ...] | None = None
    repeat: str | None = None
    place: str | None = None
    kind: str | None = None
    positional: list[str] = []
    for part in rest:
        if not part:
            continue
        m = _KEY_VALUE.fullmatch(part)
        if m is None:
            positional.append(part)
            continue
        key = m["key"].lower()
        if key in ("remind", "提醒"):
            offsets = parse_remind(m["value"])
        else:
            repeat = parse_repeat(m["value"])
    for part in positional:
        found = parse_kind(part)
        if found is not None and kind is None:
            kind = found
        elif place is None:
            place = part
        else:  # a second free part must be a kind
            raise MeetingInputError("err_meeting_kind_unknown", kind=part)
    if place is not None and len(place) > MAX_PLACE:
        raise MeetingInputError("err_meeting_place_too_long", limit=MAX_PLACE, length=len(place))
    starts_at = read_when(when_text, now=now, tz=tz)
    return Draft(
        starts_at=starts_at.astimezone(UTC),
        title=title,
        place=place,
        kind=kind or DEFAULT_KIND,
        offsets=offsets if offsets is not None else DEFAULT_OFFSETS,
        repeat=repeat,
    )


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Durations measured from a meeting's start, shortened by `scale` (1.0 in production)."""

    scale: float = 1.0

    def span(self, delta: timedelta) -> timedelta:
        return delta * self.scale

    def ends_at(self, start: datetime) -> datetime:
        return start + self.span(LENGTH)

    def reminder_at(self, start: datetime, offset_seconds: int) -> datetime:
        return start - self.span(timedelta(seconds=offset_seconds))

    def reminders(self, start: datetime, offsets: tuple[int, ...] | list[int], now: datetime) -> list[tuple[int, datetime]]:
        """(offset, due) of the reminders still ahead; an offset already past is skipped, not fired late."""
        out = [(o, self.reminder_at(start, o)) for o in offsets]
        return [(o, due) for o, due in out if due > now]

    def superseded(self, start: datetime, offset: int, offsets: tuple[int, ...] | list[int], now: datetime) -> bool:
        """A reminder that comes late (the bot was down) gives way to a later one that is due too:
        after a long outage the members get one reminder, not two at once."""
        return any(o < offset and self.reminder_at(start, o) <= now for o in offsets)

    def checkin_window(self, start: datetime) -> tuple[datetime, datetime]:
        return start - self.span(CHECKIN_OPENS), start + self.span(CHECKIN_CLOSES)

    def minutes_due(self, start: datetime, end: datetime, tz: ZoneInfo) -> datetime:
        """9:00 on the day after the meeting ended, community time (shortened around the start)."""
        local_end = end.astimezone(tz)
        morning = datetime.combine(local_end.date() + timedelta(days=1), MINUTES_NUDGE_AT).replace(tzinfo=tz)
        return start + self.span(morning.astimezone(UTC) - start)


def checkin_state(now: datetime, start: datetime, timing: Timing) -> str:
    """"early", "open" or "closed"."""
    opens, closes = timing.checkin_window(start)
    if now < opens:
        return "early"
    if now > closes:
        return "closed"
    return "open"


# ---------------------------------------------------------------- monthly (主题党日)


def next_monthly(planned: datetime, anchor_day: int, tz: ZoneInfo, *, after: datetime) -> datetime:
    """The next occurrence of a monthly meeting: the same day of the month at the same local time.

    A month without that day (the 31st in April, the 29th-31st in February) has it on its last
    day; the month after goes back to the anchor day (31 Jan -> 28 Feb -> 31 Mar). Months whose
    occurrence would not be after `after` (the bot was down for long) are skipped.
    """
    local = planned.astimezone(tz)
    year, month = local.year, local.month
    while True:
        year, month = (year, month + 1) if month < 12 else (year + 1, 1)
        day = min(anchor_day, monthrange(year, month)[1])
        candidate = datetime(year, month, day, local.hour, local.minute, tzinfo=tz).astimezone(UTC)
        if candidate > after:
            return candidate
