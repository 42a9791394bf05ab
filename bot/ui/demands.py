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

    FULL = "full"  # a private chat (the service checks who), or the group it was typed in
    EXCERPT = "excerpt"  # number, category and an excerpt: where the submitter let it be shown
    HIDDEN = "hidden"  # its number and state only


def shown_in(d: Demand, chat_id: int | None, chat_kind: str | None, *, posted: bool = False) -> Shown:
    """What the chat `chat_id` may see of `d` (None: a private chat).

    A demand typed in a group is public there and only there. Elsewhere: a public one (typed in a
    group, or a form demand whose submitter said yes) shows its excerpt in the resident chats it
    was posted to (`posted`) and in the community's member chats, where secretaries and members
    work on it; a private one shows nothing.
    """
    if chat_id is None or chat_id > 0:
        return Shown.FULL
    if d.origin_chat_id is not None and chat_id == d.origin_chat_id:
        return Shown.FULL
    if d.public and (posted or chat_kind == "member"):
        return Shown.EXCERPT
    return Shown.HIDDEN


# Steps whose note is the submitter's own words, given privately (a rating comment): not for groups.
PRIVATE_NOTES = frozenset({"rate", "comment", "not_fixed"})
# Steps the bot takes by itself (a timer); any other step without an actor was a forgotten person's.
SYSTEM_ACTIONS = frozenset({"remind", "overdue"})


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
    shown: Shown = Shown.FULL  # what the chat it is shown in may see
    in_group: bool = False  # shown in a group: never the submitter's name
    subjects: dict[int, UserRow] | None = None  # people the timeline's steps were about (assignees)


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
    if shown == Shown.HIDDEN:
        return tr("demand_line_hidden", n=d.number, state=state_name(tr, d.state), overdue=overdue)
    return tr(
        "demand_line", n=d.number, state=state_name(tr, d.state), category=category_name(tr, d.category),
        text=esc(excerpt(d.text)), overdue=overdue,
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


def event_line(tr: Translator, ev: DemandEvent, actor: UserRow | None, tz: str, *,
               subject: UserRow | None = None, show_note: bool = True, hide_actor: bool = False) -> Html:
    when = format_when(ev.created_at, tr.locale, tz)
    if hide_actor:
        who = tr("someone_anonymous")
    elif actor is None and ev.action in SYSTEM_ACTIONS:
        who = tr("actor_system")
    else:
        who = person(tr, actor)  # a person who used /forget shows as anonymous
    what = tr(f"act_{ev.action}")
    note_text: str | Html | None = ev.note if show_note else None
    if ev.action == "assign":
        # The assignee is named from the users table, so /forget leaves no name in the ledger.
        note_text = person(tr, subject) if ev.subject_id is not None or subject is not None else ev.note
    note = tr("event_note", note=note_text) if note_text else Html("")
    return tr("event_line", when=when, who=who, what=what, note=note)


def demand_card(tr: Translator, view: DemandView, now: datetime) -> Html:
    """The demand with its timeline, as much as the chat it is shown in may see (`view.shown`).

    Privately: everything the viewer may see (the submitter's name for secretaries). In a group,
    never the submitter's name, nor their entries' names or private words; where the demand is
    not public, only its number and state, and a pointer to the private chat."""
    d, tz, shown = view.demand, view.timezone, view.shown
    if shown == Shown.HIDDEN:
        return tr("card_hidden_here", n=d.number, state=state_name(tr, d.state))
    lines = [
        tr(
            "card_head", n=d.number, category=category_name(tr, d.category), urgency=urgency_name(tr, d.urgency),
            state=state_name(tr, d.state),
        )
    ]
    full = shown == Shown.FULL
    if full:
        lines.append(tr("card_text", text=d.text))
        if d.location:
            lines.append(tr("card_location", location=d.location))
        if d.photo_file_id:
            lines.append(tr("card_photo"))
    else:
        lines.append(tr("card_text", text=excerpt(d.text)))
    if view.secretary and not view.in_group:
        lines.append(tr("card_submitter", name=person(tr, view.submitter)))
    if view.assignee is not None:
        lines.append(tr("card_assignee", name=person(tr, view.assignee)))
    lines.append(tr("card_filed", when=format_when(d.filed_at, tr.locale, tz)))
    if d.level in ("grid", "street"):  # grids and the street: where it is handled now
        lines.append(tr("card_level", level=tr(f"level_{d.level}")))
    if d.state in OPEN:
        if d.accepted_at is None:
            lines.append(tr("card_accept_by", when=format_when(d.accept_by, tr.locale, tz)))
        key = "card_resolve_by_overdue" if is_overdue(d.state, d.resolve_by, now) else "card_resolve_by"
        lines.append(tr(key, when=format_when(d.resolve_by, tr.locale, tz)))
    if full and d.resolution_note and d.state in (State.RESOLVED, State.RATED):
        lines.append(tr("card_resolution", note=d.resolution_note))
    if full and d.rejection_reason and d.state == State.REJECTED:
        lines.append(tr("card_rejection", reason=d.rejection_reason))
    if view.duplicate_of is not None and d.state == State.DUPLICATE:
        lines.append(tr("card_duplicate_of", m=view.duplicate_of))
    if d.rating is not None:
        lines.append(tr("card_rating", stars=stars(d.rating)))
        if d.rating_comment and not view.in_group:
            lines.append(tr("card_rating_comment", comment=d.rating_comment))
    lines.append(tr("card_timeline"))
    subjects = view.subjects or {}
    for ev, actor in view.events:
        by_submitter = ev.actor_id is not None and ev.actor_id == d.submitter_id
        lines.append(event_line(
            tr, ev, actor, tz, subject=subjects.get(ev.subject_id) if ev.subject_id is not None else None,
            show_note=full and not (view.in_group and ev.action in PRIVATE_NOTES),
            hide_actor=view.in_group and by_submitter,
        ))
    if view.in_group:
        lines.append(tr("card_full_privately", n=d.number))
    return Html("\n".join(lines))
