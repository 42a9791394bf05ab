"""How volunteer tasks look: the posted message with its live roster, list lines, the leaderboard."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from bot.domain.tasks import CANCELLED, CONFIRMED, short_name, waitlist_shown
from bot.storage.models import Task
from bot.transport.port import Button, Keyboard
from bot.ui.dates import format_duration, format_when
from bot.ui.html import Html, esc, mention
from bot.ui.i18n import Translator

MAX_MENTIONS = 30  # members named for a task's skill in its post


@dataclass
class Roster:
    """Who is on a task, in order: claimers by claim time, the waitlist by press order."""

    claimers: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # the first names only
    waiting_total: int = 0
    anonymous: int = 0  # claimers who used /forget: counted, never named


def when_text(tr: Translator, task: Task, tz: str) -> Html:
    """`2026年12月1日 星期二 19:30（2小时）`: the date with its weekday, and the duration."""
    from datetime import timedelta

    return tr("task_when", when=format_when(task.starts_at, tr.locale, tz),
              duration=format_duration(timedelta(minutes=task.minutes), tr.locale))


def roster_lines(tr: Translator, task: Task, roster: Roster) -> list[Html]:
    """`已认领 2/5: 张三, 李四` and, when anyone waits, `候补: 王五 等 12 人`."""
    sep = str(tr("roster_sep"))
    names = [esc(short_name(n)) for n in roster.claimers]
    if names:
        line = tr("roster_claimed", n=task.claimed, slots=task.slots, names=Html(sep.join(names)))
    else:
        line = tr("roster_claimed_none", n=task.claimed, slots=task.slots)
    lines = [line]
    if roster.waiting_total:
        shown, more = waitlist_shown(roster.waiting, roster.waiting_total)
        text = sep.join(esc(short_name(n)) for n in shown)
        if more:
            text = Html(text + str(tr("roster_more", n=more)))
        lines.append(tr("roster_waiting", names=Html(text)))
    return lines


def task_keyboard(tr: Translator, task_id: int) -> Keyboard:
    return Keyboard.of([
        Button(str(tr("btn_task_claim")), f"task:c:{task_id}"),
        Button(str(tr("btn_task_unclaim")), f"task:u:{task_id}"),
    ])


def task_post(tr: Translator, task: Task, tz: str, roster: Roster,
              offered_by: list[tuple[int, str]] | None = None) -> tuple[Html, Keyboard]:
    """The message in the member chat; edited in place whenever its roster changes."""
    head = "task_post_cancelled" if task.state == CANCELLED else (
        "task_post_confirmed" if task.state == CONFIRMED else "task_post_head")
    lines = [tr(head, n=task.number, title=task.title)]
    if task.state == CANCELLED and task.cancel_reason:
        lines.append(tr("task_post_reason", reason=task.cancel_reason))
    lines.append(tr("task_post_when", when=when_text(tr, task, tz)))
    if task.place:
        lines.append(tr("task_post_place", place=task.place))
    if task.skill:
        lines.append(tr("task_post_skill", skill=task.skill))
    lines.append(tr("task_post_points", points=task.points, slots=task.slots))
    lines += roster_lines(tr, task, roster)
    if offered_by and task.state not in (CANCELLED, CONFIRMED):
        people = str(tr("roster_sep")).join(mention(uid, short_name(name)) for uid, name in offered_by[:MAX_MENTIONS])
        lines.append(tr("task_post_offered", skill=task.skill or "", people=Html(people)))
    return Html("\n".join(lines)), task_keyboard(tr, task.id)


def digest(text: str, keyboard: Keyboard | None) -> str:
    """What a message shows, in 40 characters: equal digests mean an edit would change nothing."""
    h = hashlib.sha1(text.encode())
    if keyboard is not None:
        h.update(repr(keyboard.to_json()).encode())
    return h.hexdigest()


def task_line(tr: Translator, task: Task, tz: str) -> Html:
    """One line of /tasks: number, title, time, free slots, and a clickable /claim_n."""
    return tr("tasks_line", n=task.number, title=task.title, when=format_when(task.starts_at, tr.locale, tz),
              claimed=task.claimed, slots=task.slots, points=task.points)


def hours(minutes: int) -> str:
    """Minutes as hours, at most one decimal: 120 -> '2', 90 -> '1.5'."""
    value = round(minutes / 60, 1)
    return f"{value:g}"
