"""/forget and /mydata for the tables every capability shares: the outbox, the jobs, the audit log,
the filing quota and link visits.

Messages addressed to the person (their private chat, or a mention of them in a group) are
deleted: pending ones are thereby cancelled and never delivered, delivered ones are gone.
Messages to others that name them (a secretary's alert naming the reporter, "assigned to X")
stay, with the name replaced. Timers about them go. Each capability erases its own rows through
its hook in `ctx.personal`; `redact_column` helps it scrub names out of free text it keeps.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, cast, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from bot.domain.redact import Identity, mentions, redact
from bot.services.personal import row_dict
from bot.storage.models import (
    AuditEntry,
    Chat,
    ChatMember,
    CommunityVisitor,
    Demand,
    Job,
    Outbox,
    QuotaEvent,
    Secretary,
    User,
)


async def identity(s: AsyncSession, user_id: int) -> Identity:
    """How the person is named, read before their row goes (erasers run before it is deleted)."""
    user = await s.get(User, user_id)
    if user is None:
        return Identity(user_id)
    return Identity.of(user_id, user.first_name, user.last_name, user.username)


async def communities_of_person(s: AsyncSession, user_id: int) -> set[int]:
    """The communities the person was part of (their chats, secretaryships, links followed, demands
    filed or assigned): texts naming them are looked for there only, so a namesake elsewhere (two
    people called 张伟) keeps their name. Read before anything about them is erased."""
    ids: set[int | None] = set()
    ids.update(await s.scalars(select(Chat.community_id).join(ChatMember, ChatMember.chat_id == Chat.id)
                               .where(ChatMember.user_id == user_id)))
    ids.update(await s.scalars(select(Secretary.community_id).where(Secretary.user_id == user_id)))
    ids.update(await s.scalars(select(CommunityVisitor.community_id).where(CommunityVisitor.user_id == user_id)))
    ids.update(await s.scalars(select(Demand.community_id).where(or_(
        Demand.submitter_id == user_id, Demand.assignee_id == user_id, Demand.filed_by_id == user_id))))
    return {i for i in ids if i is not None}


def _naming(column: InstrumentedAttribute[Any], who: Identity) -> Any:
    """SQL that finds rows whose `column` may name the person (confirmed in Python, which knows
    word boundaries); case-insensitive on both databases, `_` and `%` in usernames taken literally."""
    terms = [*who.terms(), f"tg://user?id={who.user_id}"]
    return or_(*[column.icontains(t, autoescape=True) for t in terms])


async def redact_column(s: AsyncSession, model: type[Any], column: InstrumentedAttribute[Any], who: Identity,
                        placeholder: str, *where: Any) -> int:
    """Replace the person's names in one text column of `model`; returns the rows changed."""
    pk = model.__mapper__.primary_key
    rows = (await s.execute(select(*pk, column).where(_naming(column, who), *where))).all()
    changed = 0
    for *key, text in rows:
        new = redact(text, who, placeholder)
        if new != text:
            cond = [c == v for c, v in zip(pk, key, strict=True)]
            await s.execute(update(model).where(*cond).values({column.key: new})
                            .execution_options(synchronize_session=False))
            changed += 1
    return changed


async def erase_shared(s: AsyncSession, who: Identity, placeholder: str, communities: set[int]) -> None:
    """`communities`: from `communities_of_person`, read before any eraser ran."""
    uid = who.user_id
    # Everything addressed to them: pending rows are cancelled (never delivered), delivered ones go.
    await s.execute(delete(Outbox).where(or_(Outbox.chat_id == uid, Outbox.user_id == uid))
                    .execution_options(synchronize_session=False))
    # Messages to others that name them keep their point, not the name.
    await redact_column(s, Outbox, Outbox.text, who, placeholder,
                        or_(Outbox.community_id.in_(sorted(communities)), Outbox.community_id.is_(None)))
    # A button whose data carries their id (say "forget:<id>" in a reply kept in a group): the buttons go.
    with_id = select(Outbox.id, Outbox.keyboard).where(cast(Outbox.keyboard, Text).contains(str(uid)))
    for row_id, keyboard in (await s.execute(with_id)).all():
        if mentions(repr(keyboard), who):
            await s.execute(update(Outbox).where(Outbox.id == row_id).values(keyboard=None))
    # How a queued message may be folded or rerouted (a line, a mention in a group): where that
    # names them, it goes, and the message is sent as it is (its text redacted above).
    shaped = select(Outbox.id, Outbox.fold, Outbox.fallback).where(
        or_(Outbox.fold.is_not(None), Outbox.fallback.is_not(None)))
    for row_id, fold, fallback in (await s.execute(shaped)).all():
        if mentions(repr(fold), who) or mentions(repr(fallback), who):
            await s.execute(update(Outbox).where(Outbox.id == row_id).values(fold=None, fallback=None)
                            .execution_options(synchronize_session=False))
    # Keys that carry their id (a report's dedup key names its reporter) are only for idempotent
    # producers; losing one on a row that stays costs nothing.
    for column in (Outbox.dedup_key, Outbox.ref):
        rows = await s.execute(select(Outbox.id, column).where(column.contains(str(uid))))
        for row_id, value in rows.all():
            if mentions(value, Identity(uid)):
                await s.execute(update(Outbox).where(Outbox.id == row_id).values({column.key: None}))
    await s.execute(delete(Job).where(Job.user_id == uid))
    await s.execute(delete(QuotaEvent).where(QuotaEvent.user_id == uid))
    await s.execute(delete(CommunityVisitor).where(CommunityVisitor.user_id == uid))
    await s.execute(update(Secretary).where(Secretary.added_by == uid).values(added_by=None))
    await s.execute(update(AuditEntry).where(AuditEntry.actor_id == uid).values(actor_id=None))
    await s.execute(update(AuditEntry).where(AuditEntry.subject == f"user:{uid}").values(subject=None))


async def export_shared(s: AsyncSession, user_id: int) -> dict[str, Any]:
    """What the shared tables hold about them (documents as their size)."""
    q = select(Outbox).where(or_(Outbox.chat_id == user_id, Outbox.user_id == user_id)).order_by(Outbox.id)
    audit = select(AuditEntry).where(
        or_(AuditEntry.actor_id == user_id, AuditEntry.subject == f"user:{user_id}")
    ).order_by(AuditEntry.id)
    return {
        "messages": [row_dict(r) for r in await s.scalars(q)],
        "timers": [row_dict(r) for r in await s.scalars(select(Job).where(Job.user_id == user_id))],
        "filing_limit": [
            row_dict(r) for r in await s.scalars(select(QuotaEvent).where(QuotaEvent.user_id == user_id))
        ],
        "filing_links_followed": [
            row_dict(r) for r in await s.scalars(select(CommunityVisitor).where(CommunityVisitor.user_id == user_id))
        ],
        "audit_log": [row_dict(r) for r in await s.scalars(audit)],
    }
