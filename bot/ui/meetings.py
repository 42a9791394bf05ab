"""How meetings look: the post with its live line and buttons, reminders, notices, lists, .ics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Event

from bot.domain.meetings import Timing
from bot.storage.models import User as UserRow
from bot.transport.port import Button, Keyboard
from bot.ui.dates import format_duration, format_when
from bot.ui.html import Html, esc, mention
from bot.ui.i18n import Translator

MENTIONS = 20  # attendees named in a chat reminder (those the bot cannot reach privately)


class MeetingLike(Protocol):
    """A meeting as rendering reads it: the ORM row, or a plain result row of its table."""

    id: int
    community_id: int
    number: int
    kind: str
    title: str
    place: str | None
    starts_at: datetime
    ends_at: datetime
    offsets: list[int]
    repeat: str | None
    repeat_day: int | None
    status: str
    cancel_reason: str | None
    version: int
    minutes: str | None


@dataclass(frozen=True)
class Counts:
    attend: int = 0
    leave: int = 0
    checked_in: int = 0


def join(tr: Translator, items: Sequence[str]) -> Html:
    """A list as the language writes it: 张三、李四 / Zhang, Li (items are safe HTML already)."""
    return Html(("、" if tr.locale == "zh" else ", ").join(items))


def names(tr: Translator, users: Sequence[UserRow]) -> Html:
    return join(tr, [esc(u.display_name) for u in users])


def mentions_of(tr: Translator, users: Sequence[UserRow]) -> Html:
    return join(tr, [mention(u.id, u.display_name) for u in users[:MENTIONS]])


def kind_name(tr: Translator, kind: str) -> Html:
    return tr(f"mtg_kind_{kind}")


def when(tr: Translator, dt: datetime, tz: str) -> Html:
    return Html(format_when(dt, tr.locale, tz))


def offset_name(tr: Translator, seconds: int) -> str:
    """How long before the start, as people say it: 1天, 1小时, 30分钟 / 1 d, 1 h, 30 min."""
    return format_duration(timedelta(seconds=seconds), tr.locale)


def live_line(tr: Translator, counts: Counts) -> Html:
    line = tr("mtg_live", attend=counts.attend, leave=counts.leave)
    if counts.checked_in:
        line = Html(line + tr("mtg_live_checked_in", count=counts.checked_in))
    return line


def head_lines(tr: Translator, m: MeetingLike, tz: str) -> list[Html]:
    """What, when, where: the first lines of every message about a meeting."""
    lines = [
        tr("mtg_post_head", n=m.number, kind=kind_name(tr, m.kind), title=m.title),
        tr("mtg_post_when", when=when(tr, m.starts_at, tz)),
    ]
    if m.place:
        lines.append(tr("mtg_post_place", place=m.place))
    return lines


def post_text(tr: Translator, m: MeetingLike, tz: str, counts: Counts, *, moved: bool = False) -> Html:
    """The message in the meeting's chat: what, when, where, and `参加 5 · 请假 1`."""
    lines = head_lines(tr, m, tz)
    if m.repeat == "month" and m.repeat_day:
        lines.append(tr("mtg_post_monthly", day=m.repeat_day))
    if m.status == "cancelled":
        lines.append(tr("mtg_post_cancelled", reason=m.cancel_reason or "-"))
        return Html("\n".join(lines))
    if moved:
        lines.append(tr("mtg_post_moved"))
    lines.append(live_line(tr, counts))
    return Html("\n".join(lines))


def post_keyboard(tr: Translator, m: MeetingLike) -> Keyboard | None:
    if m.status == "cancelled":
        return None
    return Keyboard.of(
        [Button(str(tr("mtg_btn_attend")), f"mtg:a:{m.id}"), Button(str(tr("mtg_btn_leave")), f"mtg:l:{m.id}")],
        [Button(str(tr("mtg_btn_checkin")), f"mtg:c:{m.id}")],
    )


def checkin_keyboard(tr: Translator, m: MeetingLike) -> Keyboard:
    return Keyboard.of([Button(str(tr("mtg_btn_checkin")), f"mtg:c:{m.id}")])


def reminder_text(tr: Translator, m: MeetingLike, tz: str, offset: int, counts: Counts | None = None,
                  mentions: Sequence[UserRow] = (), *, head: list[Html] | None = None) -> Html:
    lines = [tr("mtg_reminder_head", offset=offset_name(tr, offset)), *(head or head_lines(tr, m, tz))]
    if counts is not None:
        lines.append(live_line(tr, counts))
    if mentions:
        lines.append(tr("mtg_reminder_mentions", names=mentions_of(tr, mentions)))
    return Html("\n".join(lines))


def private_reminder_text(tr: Translator, m: MeetingLike, tz: str, offset: int, community: str, *,
                          head: list[Html] | None = None) -> Html:
    lines = [tr("mtg_reminder_private_head", offset=offset_name(tr, offset), community=community),
             *(head or head_lines(tr, m, tz))]
    lines.append(tr("mtg_reminder_private_tail"))
    return Html("\n".join(lines))


def moved_text(tr: Translator, m: MeetingLike, tz: str, old: datetime, mentions: Sequence[UserRow] = ()) -> Html:
    text = tr("mtg_moved", n=m.number, kind=kind_name(tr, m.kind), title=m.title, old=when(tr, old, tz),
              new=when(tr, m.starts_at, tz))
    if mentions:
        text = Html(text + "\n" + tr("mtg_notice_mentions", names=mentions_of(tr, mentions)))
    return text


def cancelled_text(tr: Translator, m: MeetingLike, tz: str, mentions: Sequence[UserRow] = ()) -> Html:
    text = tr("mtg_cancelled", n=m.number, kind=kind_name(tr, m.kind), title=m.title,
              when=when(tr, m.starts_at, tz), reason=m.cancel_reason or "-")
    if mentions:
        text = Html(text + "\n" + tr("mtg_notice_mentions", names=mentions_of(tr, mentions)))
    return text


def minutes_text(tr: Translator, m: MeetingLike, tz: str) -> Html:
    return tr("mtg_minutes_post", n=m.number, kind=kind_name(tr, m.kind), title=m.title,
              when=when(tr, m.starts_at, tz), text=m.minutes or "")


def meeting_line(tr: Translator, m: MeetingLike, tz: str, counts: Counts) -> Html:
    """One line of /meetings, with the clickable /ics_n."""
    place = tr("mtg_line_place", place=m.place) if m.place else Html("")
    return tr("mtg_line", n=m.number, when=when(tr, m.starts_at, tz), kind=kind_name(tr, m.kind), title=m.title,
              place=place, attend=counts.attend)


# ---------------------------------------------------------------- .ics (RFC 5545)


def meeting_ics(m: MeetingLike, *, community: str, tz: str, timing: Timing, now: datetime, host: str = "linli") -> bytes:
    """One VEVENT in the community's timezone (with its VTIMEZONE, never floating), a VALARM for
    each reminder offset, and SEQUENCE following moves so calendars replace the old copy."""
    zone = ZoneInfo(tz)
    cal = Calendar()
    cal.add("prodid", "-//Linli//meetings//ZH")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    ev = Event()
    ev.add("uid", f"meeting-{m.id}-{m.community_id}@{host}")
    ev.add("dtstamp", now.astimezone(UTC))
    ev.add("dtstart", m.starts_at.astimezone(zone))
    ev.add("dtend", m.ends_at.astimezone(zone))
    ev.add("summary", f"#{m.number} {m.title}")
    if m.place:
        ev.add("location", m.place)
    ev.add("description", community)
    ev.add("sequence", m.version - 1)
    ev.add("status", "CANCELLED" if m.status == "cancelled" else "CONFIRMED")
    for offset in m.offsets:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", m.title)
        alarm.add("trigger", -timing.span(timedelta(seconds=offset)))
        ev.add_component(alarm)
    cal.add_component(ev)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())
