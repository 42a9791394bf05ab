"""How demands look: list lines, the card with its timeline, the rating buttons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.domain.demands import OPEN, State, excerpt, is_overdue
from bot.storage.models import Demand, DemandEvent
from bot.storage.models import User as UserRow
from bot.transport.port import Button, Keyboard
from bot.ui.dates import format_when
from bot.ui.html import Html, esc
from bot.ui.i18n import Translator

STAR = "⭐"


class Shown(StrEnum):
    """How much of a demand a chat may see."""

    FULL = "full"
    EXCERPT = "excerpt"  # number, category and an excerpt: a form demand its submitter let be shown
    HIDDEN = "hidden"  # a form demand its submitter kept private


def shown_in(d: Demand, chat_kind: str | None) -> Shown:
    """Resident chats see what was typed there, and of form demands only what the submitter chose."""
    if chat_kind != "resident" or (d.origin_chat_id is not None and d.origin_chat_id < 0):
        return Shown.FULL
    return Shown.EXCERPT if d.public else Shown.HIDDEN


@dataclass
class DemandView:
    """A demand with the people and timeline a card shows."""

    demand: Demand
    timezone: str
    submitter: UserRow | None
    assignee: UserRow | None
    duplicate_of: int | None  # the number of the demand this one duplicates
    events: list[tuple[DemandEvent, UserRow | None]]
    secretary: bool  # the viewer is a secretary: sees who filed it


def stars(k: int) -> str:
    return STAR * k


def category_name(tr: Translator, key: str) -> Html:
    return tr(f"cat_{key}")


def state_name(tr: Translator, state: str) -> Html:
    return tr(f"state_{state}")


def urgency_name(tr: Translator, urgency: str) -> Html:
    return tr(f"urg_{urgency}")


def person(tr: Translator, user: UserRow | None) -> Html:
    return esc(user.display_name) if user is not None else tr("someone_anonymous")


def demand_line(tr: Translator, d: Demand, now: datetime, *, shown: Shown) -> Html:
    """One line of /demands: number, state, category, excerpt, and the clickable /view_n."""
    overdue = tr("overdue_mark") if is_overdue(d.state, d.resolve_by, now) else Html("")
    text = tr("not_public") if shown == Shown.HIDDEN else esc(excerpt(d.text))
    return tr(
        "demand_line", n=d.number, state=state_name(tr, d.state), category=category_name(tr, d.category),
        text=text, overdue=overdue,
    )


def rating_keyboard(tr: Translator, demand_id: int) -> Keyboard:
    """Five star buttons (the k-th shows k stars) and Not fixed; one tap rates."""
    return Keyboard.of(
        [Button(stars(k), f"rate:{demand_id}:{k}") for k in (1, 2, 3)],
        [Button(stars(k), f"rate:{demand_id}:{k}") for k in (4, 5)],
        [Button(str(tr("btn_not_fixed")), f"rate:{demand_id}:0")],
    )


def accept_keyboard(tr: Translator, demand_id: int) -> Keyboard:
    return Keyboard.of([Button(str(tr("btn_accept")), f"dacc:{demand_id}")])


def event_line(tr: Translator, ev: DemandEvent, actor: UserRow | None, tz: str) -> Html:
    when = format_when(ev.created_at, tr.locale, tz)
    who = person(tr, actor) if ev.actor_id is not None or actor is not None else tr("actor_system")
    what = tr(f"act_{ev.action}")
    note = tr("event_note", note=ev.note) if ev.note else Html("")
    return tr("event_line", when=when, who=who, what=what, note=note)


def demand_card(tr: Translator, view: DemandView, now: datetime, *, shown: Shown) -> Html:
    d, tz = view.demand, view.timezone
    lines = [
        tr(
            "card_head", n=d.number, category=category_name(tr, d.category), urgency=urgency_name(tr, d.urgency),
            state=state_name(tr, d.state),
        )
    ]
    if shown == Shown.FULL:
        lines.append(tr("card_text", text=d.text))
        if d.location:
            lines.append(tr("card_location", location=d.location))
        if d.photo_file_id:
            lines.append(tr("card_photo"))
    elif shown == Shown.EXCERPT:
        lines.append(tr("card_text", text=excerpt(d.text)))
    else:
        lines.append(tr("card_hidden"))
    if view.secretary and shown == Shown.FULL:
        lines.append(tr("card_submitter", name=person(tr, view.submitter)))
    if view.assignee is not None:
        lines.append(tr("card_assignee", name=person(tr, view.assignee)))
    lines.append(tr("card_filed", when=format_when(d.filed_at, tr.locale, tz)))
    if d.state in OPEN:
        if d.accepted_at is None:
            lines.append(tr("card_accept_by", when=format_when(d.accept_by, tr.locale, tz)))
        key = "card_resolve_by_overdue" if is_overdue(d.state, d.resolve_by, now) else "card_resolve_by"
        lines.append(tr(key, when=format_when(d.resolve_by, tr.locale, tz)))
    if d.resolution_note and d.state in (State.RESOLVED, State.RATED):
        lines.append(tr("card_resolution", note=d.resolution_note))
    if d.rejection_reason and d.state == State.REJECTED:
        lines.append(tr("card_rejection", reason=d.rejection_reason))
    if view.duplicate_of is not None and d.state == State.DUPLICATE:
        lines.append(tr("card_duplicate_of", m=view.duplicate_of))
    if d.rating is not None:
        lines.append(tr("card_rating", stars=stars(d.rating)))
        if d.rating_comment:
            lines.append(tr("card_rating_comment", comment=d.rating_comment))
    lines.append(tr("card_timeline"))
    lines.extend(event_line(tr, ev, actor, tz) for ev, actor in view.events)
    return Html("\n".join(lines))
