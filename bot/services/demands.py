"""Demands (诉求): 点单 → 派单 → 接单 → 办结 → 评单, with deadlines and follow-ups.

Every method is given the acting user and checks the role itself. Every change writes a
timeline entry, and the notifications it causes are outbox rows in the same transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from bot.domain.categories import URGENCIES, guess_category, guess_urgency, merged_keywords
from bot.domain.demands import (
    MAX_LOCATION,
    MAX_NOTE,
    MAX_TEXT,
    OPEN,
    Action,
    State,
    TransitionError,
    excerpt,
    next_state,
    submitter_may_reopen,
)
from bot.domain.sla import deadlines
from bot.scheduler.runner import JobRunner, add_job
from bot.services import quota
from bot.services.base import ServiceContext
from bot.services.erasure import communities_of_person, identity, redact_column
from bot.services.errors import Denied, NotFound, Term, UserError
from bot.services.notify import alert_secretaries, enqueue, notify_user
from bot.services.personal import row_dict
from bot.services.roles import PRESENT, secretary_users
from bot.storage.models import (
    Chat,
    ChatMember,
    Community,
    CommunityVisitor,
    Demand,
    DemandEvent,
    DemandFollower,
    DemandPost,
    Job,
    User,
)
from bot.storage.sequences import next_number
from bot.storage.upsert import upsert
from bot.transport.port import Fold, Keyboard
from bot.ui.demands import (
    DemandView,
    Shown,
    accept_keyboard,
    category_name,
    rating_keyboard,
    shown_in,
    stars,
    state_name,
    urgency_name,
)
from bot.ui.html import Html
from bot.ui.i18n import Translator
from config.categories import CATEGORIES
from config.settings import parse_duration

LIST_LIMIT = 30
SCOPES = ("open", "overdue", "mine", "all")

JOB_ACCEPT = "demand_accept_due"
JOB_OVERDUE = "demand_overdue"
JOB_REASK = "demand_rate_reask"

Render = Callable[[Translator], tuple[str, Keyboard | None]]


@dataclass
class Filed:
    demand: Demand
    community: Community


@dataclass
class Listing:
    demands: list[Demand]
    total: int
    scope: str
    secretary: bool
    shown: dict[int, Shown] = field(default_factory=dict)  # demand id -> what the chat may see


def _guard(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _clean(text: str | None, *, limit: int, too_long: str, missing: str | None = None) -> str | None:
    value = (text or "").strip()
    if not value:
        if missing:
            raise UserError(missing)
        return None
    if len(value) > limit:
        raise UserError(too_long, limit=limit, length=len(value))
    return value


def _text(render_key: str, **params: Any) -> Render:
    def render(tr: Translator) -> tuple[str, Keyboard | None]:
        return tr(render_key, **params), None

    return render


class DemandService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        ctx.personal.register("demands", self._export_user, self._forget_user)
        # Grids and the street (bot/services/grids.py) set this: routing to a grid, and who besides
        # the secretaries may handle or see a demand (its grid's leader, the street's officers).
        self.levels: Any = None

    def register_jobs(self, jobs: JobRunner) -> None:
        jobs.register(JOB_ACCEPT, self._job_accept_due)
        jobs.register(JOB_OVERDUE, self._job_overdue)
        jobs.register(JOB_REASK, self._job_reask)

    # ------------------------------------------------------------------ helpers

    @property
    def _locale(self) -> str:
        return self.ctx.settings.default_locale

    async def _demand(self, s: AsyncSession, community_id: int, number: int) -> Demand:
        d = await s.scalar(select(Demand).where(Demand.community_id == community_id, Demand.number == number))
        if d is None:
            raise NotFound("err_demand_unknown", n=number)
        return d

    async def _community(self, s: AsyncSession, community_id: int) -> Community:
        community = await s.get(Community, community_id)
        if community is None:
            raise NotFound("err_no_community")
        return community

    async def _is_secretary(self, s: AsyncSession, community_id: int, user_id: int) -> bool:
        return await self.ctx.roles.is_secretary(s, community_id, user_id)

    async def _require_secretary(self, s: AsyncSession, community_id: int, user_id: int) -> None:
        await self.ctx.roles.require_secretary(s, community_id, user_id)

    def _move(self, d: Demand, action: Action) -> str:
        """The state `action` leads to, or a clear refusal naming the current state."""
        try:
            return next_state(action, d.state)
        except TransitionError:
            raise UserError(f"err_state_{action}", n=d.number, state=Term(f"state_{d.state}")) from None

    async def _log(self, s: AsyncSession, d: Demand, actor_id: int | None, action: Action, before: str | None,
                   note: str | None = None, *, subject_id: int | None = None) -> str:
        """A timeline entry; returns a key unique to this change, for the outbox rows it causes."""
        ev = DemandEvent(demand_id=d.id, actor_id=actor_id, subject_id=subject_id, action=action, from_state=before,
                         to_state=d.state, note=note, created_at=self.ctx.clock())  # the service's clock
        s.add(ev)
        await s.flush()
        return f"d{d.id}:e{ev.id}"

    def _keywords(self, community: Community) -> dict[str, tuple[str, ...]]:
        return merged_keywords(self.ctx.settings.category_keywords, (community.config or {}).get("categories"))

    def _deadlines(self, community: Community, filed_at: datetime, category: str, urgency: str) -> Any:
        return deadlines(filed_at, category, urgency, (community.config or {}).get("sla"), self.ctx.settings.sla_overrides)

    async def _schedule_deadlines(self, s: AsyncSession, d: Demand) -> None:
        if d.accepted_at is None:
            await add_job(s, JOB_ACCEPT, d.id, d.accept_by, _guard(d.accept_by))
        await add_job(s, JOB_OVERDUE, d.id, d.resolve_by, _guard(d.resolve_by))

    async def _renew_deadline(self, s: AsyncSession, d: Demand, community: Community) -> None:
        """A reopened demand: a new resolve deadline from now, and its own overdue alert."""
        d.resolve_by = self._deadlines(community, self.ctx.clock(), d.category, d.urgency).resolve_by
        await add_job(s, JOB_OVERDUE, d.id, d.resolve_by, _guard(d.resolve_by))

    async def _tell_people(self, s: AsyncSession, d: Demand, community: Community, render: Render,
                           *, key: str, skip: int | None = None) -> None:
        """The submitter (and followers, e.g. of duplicates) learn of a change."""
        if d.submitter_id is not None and d.submitter_id != skip:
            user = await s.get(User, d.submitter_id)
            if user is not None:
                await notify_user(
                    s, user, render, community=community, default_locale=self._locale,
                    fallback_chat_id=d.origin_chat_id if d.origin_chat_id and d.origin_chat_id < 0 else None,
                    fallback_thread_id=d.origin_thread_id, fallback_reply_to=d.origin_message_id,
                    dedup_key=f"{key}:u{user.id}",
                )
        followers = await s.scalars(select(DemandFollower).where(DemandFollower.demand_id == d.id))
        for f in followers:
            if f.user_id in (d.submitter_id, skip):
                continue
            user = await s.get(User, f.user_id)
            if user is not None:
                await notify_user(
                    s, user, render, community=community, default_locale=self._locale,
                    fallback_chat_id=f.origin_chat_id if f.origin_chat_id and f.origin_chat_id < 0 else None,
                    fallback_reply_to=f.origin_message_id, dedup_key=f"{key}:u{user.id}",
                )

    async def _alert(self, s: AsyncSession, community: Community, render: Render, *, key: str,
                     group_render: Render | None = None, fold: Callable[[Translator], Fold] | None = None) -> None:
        """`group_render` is what the member chat gets when no secretary has started the bot."""
        secretaries = await secretary_users(s, self.ctx.roles, community.id)
        await alert_secretaries(s, community, secretaries, render, default_locale=self._locale, dedup_key=key,
                                group_render=group_render, fold=fold)

    async def _alert_about(self, s: AsyncSession, d: Demand, community: Community, message: str, *, key: str,
                           group_message: str | None = None, with_accept: bool = False,
                           fold: Callable[[Translator], Fold] | None = None, **params: Any) -> None:
        """Secretaries hear about a demand: all of it privately; in the member chat (when none has
        started the bot) only its excerpt, and nothing of a form demand its submitter kept private."""

        def render_as(private: bool) -> Render:
            def render(tr: Translator) -> tuple[str, Keyboard | None]:
                if private:
                    text, extra = d.text, params
                else:
                    text = excerpt(d.text) if d.public else str(tr("not_public"))
                    # A rating comment is the submitter's private word to the secretaries.
                    extra = {k: v if d.public and k != "comment" else "-" for k, v in params.items()}
                body = tr(message if private else group_message or message, n=d.number, text=text,
                          category=category_name(tr, d.category), urgency=urgency_name(tr, d.urgency),
                          state=state_name(tr, d.state), location=d.location or "-", **extra)
                return body, accept_keyboard(tr, d.id) if with_accept else None

            return render

        await self._alert(s, community, render_as(True), key=key, group_render=render_as(False), fold=fold)

    async def _member_chat(self, s: AsyncSession, community_id: int) -> Chat | None:
        return await s.scalar(
            select(Chat)
            .where(Chat.community_id == community_id, Chat.kind == "member", Chat.bot_status != "left")
            .order_by(Chat.id)
            .limit(1)
        )

    async def _notify_assignee(self, s: AsyncSession, d: Demand, community: Community, render: Render,
                               *, key: str) -> None:
        """Privately if started, else a mention in the member chat (where dispatching told them)."""
        assignee = await s.get(User, d.assignee_id) if d.assignee_id is not None else None
        if assignee is None:
            return
        chat = await self._member_chat(s, community.id)
        await notify_user(s, assignee, render, community=community, default_locale=self._locale,
                          fallback_chat_id=chat.id if chat else None,
                          fallback_thread_id=chat.topic_id if chat else None, dedup_key=f"{key}:assignee")

    async def _may_see(self, s: AsyncSession, d: Demand, user_id: int) -> bool:
        if user_id in (d.submitter_id, d.assignee_id):
            return True
        if await s.get(DemandFollower, (d.id, user_id)) is not None:
            return True
        if self.levels is not None and await self.levels.may_see(s, d, user_id):
            return True
        return await self._is_secretary(s, d.community_id, user_id)

    async def _handler_demand(self, s: AsyncSession, community_id: int, number: int, actor_id: int) -> Demand:
        """The demand, for a secretary, or for whoever handles its level (grid leader, street officer)."""
        if await self._is_secretary(s, community_id, actor_id):
            return await self._demand(s, community_id, number)
        d = await s.scalar(select(Demand).where(Demand.community_id == community_id, Demand.number == number))
        if d is not None and self.levels is not None and await self.levels.may_handle(s, d, actor_id):
            return d
        raise Denied("err_not_secretary")

    # ------------------------------------------------------------------ filing

    async def file(
        self,
        *,
        actor_id: int,
        community_id: int,
        text: str | None,
        location: str | None = None,
        photo: str | None = None,
        public: bool = True,
        origin_chat_id: int | None = None,
        origin_thread_id: int | None = None,
        origin_message_id: int | None = None,
        on_behalf_of: int | None = None,
        via: str = "command",
    ) -> Filed:
        """点单 in a resident chat, or privately by someone the community knows (seen in one of its
        chats, or came by its filing link); filing for someone else is the secretary's. Each person
        files at most FILING_LIMIT_PER_HOUR in any hour. A demand is public where it was typed; one
        filed privately only as far as the form's answer (`public`) lets it be."""
        body = _clean(text, limit=MAX_TEXT, too_long="err_demand_too_long", missing="err_demand_text_missing")
        assert body is not None
        place = _clean(location, limit=MAX_LOCATION, too_long="err_location_too_long")
        in_group = origin_chat_id is not None and origin_chat_id < 0
        if via != "form":
            public = in_group  # typed in private: shown in no group
        async with self.ctx.tx() as s:
            community = await self._community(s, community_id)
            submitter_id = actor_id
            now = self.ctx.clock()
            if on_behalf_of is not None and on_behalf_of != actor_id:
                await self._require_secretary(s, community_id, actor_id)
                if await s.get(User, on_behalf_of) is None:  # else a foreign-key error, not a reply
                    raise NotFound("err_unknown_user")
                submitter_id = on_behalf_of
            else:
                if in_group:
                    chat = await s.get(Chat, origin_chat_id)
                    if chat is None or chat.community_id != community_id or chat.kind != "resident":
                        raise UserError("err_demand_where")
                elif not await self._may_file_privately(s, community_id, actor_id):
                    raise Denied("err_file_not_known")
                await quota.take(s, actor_id, "file", self.ctx.settings.filing_limit_per_hour, now)
            category = guess_category(body, self._keywords(community))
            urgency = guess_urgency(body)
            due = self._deadlines(community, now, category, urgency)
            d = Demand(
                community_id=community_id,
                number=await next_number(s, community_id, "demand"),
                submitter_id=submitter_id,
                filed_by_id=actor_id,
                text=body,
                location=place,
                photo_file_id=photo,
                category=category,
                urgency=urgency,
                state=State.NEW,
                public=public,
                origin_chat_id=origin_chat_id,
                origin_thread_id=origin_thread_id,
                origin_message_id=origin_message_id,
                filed_at=now,
                accept_by=due.accept_by,
                resolve_by=due.resolve_by,
            )
            s.add(d)
            await s.flush()
            await self._log(s, d, actor_id, Action.FILE, None)
            await self._schedule_deadlines(s, d)
            routed = self.levels is not None and await self.levels.route(s, d, community)
            if not routed:  # a demand routed to a grid goes to its leader first
                await self._announce_new(s, d, community)
            if via == "form" and public:
                await self._post_public(s, d, community)
        return Filed(d, community)

    async def _may_file_privately(self, s: AsyncSession, community_id: int, user_id: int) -> bool:
        """Seen in one of the community's chats, came by its filing link, or one of its secretaries:
        a stranger cannot flood the secretaries of every community."""
        seen = await s.scalar(
            select(ChatMember.user_id)
            .join(Chat, Chat.id == ChatMember.chat_id)
            .where(Chat.community_id == community_id, ChatMember.user_id == user_id, ChatMember.status.in_(PRESENT))
            .limit(1)
        )
        if seen is not None or await s.get(CommunityVisitor, (community_id, user_id)) is not None:
            return True
        return await self._is_secretary(s, community_id, user_id)

    async def check_quota(self, *, actor_id: int, kind: str = "file") -> None:
        """Refuse before a form is filled in when the person has no filing left this hour."""
        async with self.ctx.read() as s:
            await quota.check(s, actor_id, kind, self.ctx.settings.filing_limit_per_hour, self.ctx.clock())

    async def _announce_new(self, s: AsyncSession, d: Demand, community: Community) -> None:
        """Secretaries hear of every new demand, with a button to accept it."""
        def fold(tr: Translator) -> Fold:
            # Alerts that queue behind one secretary's limit go out as one: 新诉求 5 条：#12 …
            return Fold(key="new_demand", head=tr("fold_alert_head", n=Html("{n}")),
                        line=tr("fold_alert_line", number=d.number, category=category_name(tr, d.category),
                                text=excerpt(d.text, 60)), tag=f"#{d.number}")

        await self._alert_about(s, d, community, "alert_new_demand", group_message="alert_new_demand_short",
                                key=f"d{d.id}:new", with_accept=True, fold=fold)

    async def _post_public(self, s: AsyncSession, d: Demand, community: Community) -> None:
        """A form demand the submitter let be shown: its number, category and excerpt (no name) in
        the resident chats the submitter is in."""
        chats = await s.scalars(
            select(Chat)
            .join(ChatMember, ChatMember.chat_id == Chat.id)
            .where(Chat.community_id == community.id, Chat.kind == "resident", Chat.bot_status != "left",
                   ChatMember.user_id == d.submitter_id)
        )
        tr = Translator(community.locale or self._locale)
        for chat in chats:
            await upsert(s, DemandPost, {"demand_id": d.id, "chat_id": chat.id}, ["demand_id", "chat_id"])
            await enqueue(
                s, chat_id=chat.id, thread_id=chat.topic_id, community_id=community.id,
                text=tr("public_demand", n=d.number, category=category_name(tr, d.category), text=excerpt(d.text)),
                dedup_key=f"d{d.id}:public:c{chat.id}",
            )

    # ------------------------------------------------------------------ reading

    async def _shown(self, s: AsyncSession, demands: list[Demand], chat_id: int | None) -> dict[int, Shown]:
        """What the chat `chat_id` (None or a private chat: the viewer alone) may see of each demand."""
        if chat_id is None or chat_id > 0:
            return {d.id: Shown.FULL for d in demands}
        chat = await s.get(Chat, chat_id)
        posted = set(await s.scalars(
            select(DemandPost.demand_id).where(DemandPost.chat_id == chat_id,
                                               DemandPost.demand_id.in_([d.id for d in demands]))
        )) if demands else set()
        kind = chat.kind if chat is not None else None
        return {d.id: shown_in(d, chat_id, kind, posted=d.id in posted) for d in demands}

    async def view(self, *, actor_id: int, community_id: int, number: int, chat_id: int | None = None) -> DemandView:
        """The card for `actor_id`, cut to what the chat it will be shown in (`chat_id`) may see:
        the full record only privately."""
        async with self.ctx.read() as s:
            d = await self._demand(s, community_id, number)
            if not await self._may_see(s, d, actor_id):
                raise Denied("err_demand_not_yours", n=number)
            handler = self.levels is not None and await self.levels.may_see(s, d, actor_id)
            community = await self._community(s, community_id)
            rows = (
                await s.execute(
                    select(DemandEvent, User)
                    .outerjoin(User, User.id == DemandEvent.actor_id)
                    .where(DemandEvent.demand_id == d.id)
                    .order_by(DemandEvent.id)
                )
            ).all()
            subject_ids = {ev.subject_id for ev, _ in rows if ev.subject_id is not None}
            subjects = {u.id: u for u in await s.scalars(select(User).where(User.id.in_(subject_ids)))} \
                if subject_ids else {}
            dup_of = None
            if d.duplicate_of_id is not None:
                dup_of = await s.scalar(select(Demand.number).where(Demand.id == d.duplicate_of_id))
            return DemandView(
                demand=d,
                timezone=community.timezone,
                submitter=await s.get(User, d.submitter_id) if d.submitter_id else None,
                assignee=await s.get(User, d.assignee_id) if d.assignee_id else None,
                duplicate_of=dup_of,
                events=[(ev, user) for ev, user in rows],
                secretary=handler or await self._is_secretary(s, community_id, actor_id),
                shown=(await self._shown(s, [d], chat_id))[d.id],
                in_group=chat_id is not None and chat_id < 0,
                subjects=subjects,
            )

    async def listing(self, *, actor_id: int, community_id: int, scope: str | None,
                      chat_id: int | None = None) -> Listing:
        """Residents see their own; members also what was dispatched to them; secretaries all.
        Each line as far as the chat it is shown in (`chat_id`) may see it."""
        scope = (scope or "").strip().lower() or None
        if scope is not None and scope not in SCOPES:
            raise UserError("err_demands_usage")
        async with self.ctx.read() as s:
            await self._community(s, community_id)
            secretary = await self._is_secretary(s, community_id, actor_id)
            scope = scope or ("open" if secretary else "mine")
            q = select(Demand).where(Demand.community_id == community_id)
            if not secretary or scope == "mine":
                mine = [Demand.submitter_id == actor_id, Demand.assignee_id == actor_id]
                if self.levels is not None and scope != "mine":  # a grid leader: their grid's demands too
                    led = await self.levels.led_grids(s, community_id, actor_id)
                    mine += [Demand.grid_id.in_(led)] if led else []
                q = q.where(or_(*mine))
            if scope == "open":
                q = q.where(Demand.state.in_([str(x) for x in OPEN]))
            elif scope == "overdue":
                q = q.where(Demand.state.in_([str(x) for x in OPEN]), Demand.resolve_by < self.ctx.clock())
            total = await s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = list(await s.scalars(q.order_by(Demand.number.desc()).limit(LIST_LIMIT)))
            shown = await self._shown(s, rows, chat_id)
        return Listing(rows, int(total), scope, secretary, shown)

    async def by_id(self, demand_id: int) -> Demand | None:
        async with self.ctx.read() as s:
            return await s.get(Demand, demand_id)

    # ------------------------------------------------------------------ the secretary's steps

    async def accept(self, *, actor_id: int, community_id: int, number: int) -> Demand:
        """受理: counts toward the response rate."""
        async with self._change() as s:
            d = await self._handler_demand(s, community_id, number, actor_id)
            community = await self._community(s, community_id)
            before = d.state
            d.state = self._move(d, Action.ACCEPT)
            d.accepted_at = d.accepted_at or self.ctx.clock()
            key = await self._log(s, d, actor_id, Action.ACCEPT, before)
            await self._tell_people(s, d, community, _text("note_accepted", n=d.number), key=key)
        return d

    async def assign(self, *, actor_id: int, community_id: int, number: int, assignee_id: int) -> tuple[Demand, User]:
        """派单 to a member (or a secretary); the member is told privately."""
        async with self._change() as s:
            d = await self._handler_demand(s, community_id, number, actor_id)
            community = await self._community(s, community_id)
            member = await s.get(User, assignee_id)
            if member is None:
                raise UserError("err_assign_unknown")
            roles = self.ctx.roles
            if not (await roles.is_member(s, community_id, assignee_id) or await self._is_secretary(s, community_id, assignee_id)):
                raise UserError("err_assign_not_member", name=member.display_name)
            before = d.state
            d.state = self._move(d, Action.ASSIGN)
            now = self.ctx.clock()
            d.accepted_at = d.accepted_at or now  # dispatching is accepting, at the latest
            d.assigned_at = now
            d.assignee_id = assignee_id
            key = await self._log(s, d, actor_id, Action.ASSIGN, before, subject_id=member.id)
            await self._tell_people(s, d, community, _text("note_assigned", n=d.number, name=member.display_name),
                                    key=key, skip=assignee_id)
            await self._tell_assignee(s, d, community, member, key)
        return d, member

    async def _tell_assignee(self, s: AsyncSession, d: Demand, community: Community, member: User,
                             key: str) -> None:
        def render(tr: Translator) -> tuple[str, Keyboard | None]:
            return tr(
                "note_dispatched", n=d.number, category=category_name(tr, d.category), text=d.text,
                location=d.location or "-",
            ), None

        chat = await self._member_chat(s, community.id)
        if member.started:
            await notify_user(s, member, render, community=community, default_locale=self._locale,
                              fallback_chat_id=None, dedup_key=f"{key}:assignee")
            return
        # Not started: a mention in the member chat, without a private demand's text.
        def render_group(tr: Translator) -> tuple[str, Keyboard | None]:
            text = excerpt(d.text) if d.public else str(tr("not_public"))
            return tr("note_dispatched_group", n=d.number, category=category_name(tr, d.category), text=text), None

        await notify_user(s, member, render_group, community=community, default_locale=self._locale,
                          fallback_chat_id=chat.id if chat else None,
                          fallback_thread_id=chat.topic_id if chat else None,
                          dedup_key=f"{key}:assignee")

    async def resolve(self, *, actor_id: int, community_id: int, number: int, note: str | None,
                      photo: str | None = None) -> Demand:
        """办结, by the assignee or a secretary. The submitter gets the rating buttons."""
        text = _clean(note, limit=MAX_NOTE, too_long="err_note_too_long", missing="err_resolve_note_missing")
        async with self._change() as s:
            d = await self._demand(s, community_id, number)
            if actor_id != d.assignee_id:
                await self._handler_demand(s, community_id, number, actor_id)
            community = await self._community(s, community_id)
            before = d.state
            d.state = self._move(d, Action.RESOLVE)
            now = self.ctx.clock()
            d.accepted_at = d.accepted_at or now  # resolving a new demand accepts it at that moment
            d.resolved_at = now
            d.resolution_note = text
            d.resolution_photo = photo
            key = await self._log(s, d, actor_id, Action.RESOLVE, before, text)
            await self._ask_rating(s, d, community, key=key)
            await add_job(s, JOB_REASK, d.id, now + parse_duration(self.ctx.settings.rating_reask_after), _guard(now))
        return d

    async def _ask_rating(self, s: AsyncSession, d: Demand, community: Community, *, key: str,
                          again: bool = False) -> None:
        def render(tr: Translator) -> tuple[str, Keyboard | None]:
            head = tr("rate_again" if again else "note_resolved", n=d.number, note=d.resolution_note or "")
            return Html(head + "\n" + tr("rate_prompt")), rating_keyboard(tr, d.id)

        if d.submitter_id is not None:
            user = await s.get(User, d.submitter_id)
            if user is not None:
                await notify_user(
                    s, user, render, community=community, default_locale=self._locale,
                    fallback_chat_id=d.origin_chat_id if d.origin_chat_id and d.origin_chat_id < 0 else None,
                    fallback_thread_id=d.origin_thread_id, fallback_reply_to=d.origin_message_id,
                    ref=f"demand:{d.id}:rate", dedup_key=f"{key}:rate",
                )
        if not again:  # followers hear of the resolution; only the submitter rates
            others = _text("note_resolved", n=d.number, note=d.resolution_note or "")
            followers = await s.scalars(select(DemandFollower).where(DemandFollower.demand_id == d.id))
            for f in followers:
                user = await s.get(User, f.user_id)
                if user is not None and user.id != d.submitter_id:
                    await notify_user(s, user, others, community=community, default_locale=self._locale,
                                      fallback_chat_id=f.origin_chat_id if f.origin_chat_id and f.origin_chat_id < 0 else None,
                                      fallback_reply_to=f.origin_message_id, dedup_key=f"{key}:f{user.id}")

    async def reject(self, *, actor_id: int, community_id: int, number: int, reason: str | None) -> Demand:
        text = _clean(reason, limit=MAX_NOTE, too_long="err_note_too_long", missing="err_reject_reason_missing")
        async with self._change() as s:
            await self._require_secretary(s, community_id, actor_id)
            d = await self._demand(s, community_id, number)
            community = await self._community(s, community_id)
            before = d.state
            d.state = self._move(d, Action.REJECT)
            d.rejection_reason = text
            key = await self._log(s, d, actor_id, Action.REJECT, before, text)
            await self._tell_people(s, d, community, _text("note_rejected", n=d.number, reason=text or ""),
                                    key=key)
        return d

    async def duplicate(self, *, actor_id: int, community_id: int, number: int, of: int) -> tuple[Demand, Demand]:
        """Close n as a duplicate of m; n's submitter follows m from now on."""
        async with self._change() as s:
            await self._require_secretary(s, community_id, actor_id)
            if number == of:
                raise UserError("err_duplicate_self", n=number)
            d = await self._demand(s, community_id, number)
            target = await self._demand(s, community_id, of)
            seen = {d.id}
            while target.state == State.DUPLICATE and target.duplicate_of_id is not None:  # follow to the root
                if target.id in seen:
                    break
                seen.add(target.id)
                nxt = await s.get(Demand, target.duplicate_of_id)
                if nxt is None:
                    break
                target = nxt
            if target.id == d.id:
                raise UserError("err_duplicate_self", n=number)
            if target.state in (State.REJECTED, State.DUPLICATE):  # nothing there to follow
                raise UserError("err_duplicate_target", m=target.number, state=Term(f"state_{target.state}"))
            community = await self._community(s, community_id)
            before = d.state
            d.state = self._move(d, Action.DUPLICATE)
            d.duplicate_of_id = target.id
            key = await self._log(s, d, actor_id, Action.DUPLICATE, before, f"#{target.number}")
            await self._log(s, target, actor_id, Action.MERGED, target.state, f"#{d.number}")
            for uid, chat_id, msg_id in [(d.submitter_id, d.origin_chat_id, d.origin_message_id)]:
                if uid is not None and uid != target.submitter_id:
                    await upsert(s, DemandFollower, {"demand_id": target.id, "user_id": uid,
                                                     "origin_chat_id": chat_id, "origin_message_id": msg_id},
                                 ["demand_id", "user_id"])
            # The duplicate's own followers follow the target too.
            for f in list(await s.scalars(select(DemandFollower).where(DemandFollower.demand_id == d.id))):
                if f.user_id != target.submitter_id:
                    await upsert(s, DemandFollower, {"demand_id": target.id, "user_id": f.user_id,
                                                     "origin_chat_id": f.origin_chat_id,
                                                     "origin_message_id": f.origin_message_id},
                                 ["demand_id", "user_id"])
            await self._tell_people(s, d, community, _text("note_duplicate", n=d.number, m=target.number),
                                    key=key)
        return d, target

    async def reopen(self, *, actor_id: int, community_id: int, number: int) -> Demand:
        """Back to open: a secretary any time, the submitter within 7 days of resolution."""
        async with self._change() as s:
            d = await self._demand(s, community_id, number)
            community = await self._community(s, community_id)
            secretary = await self._is_secretary(s, community_id, actor_id)
            if not secretary:
                if actor_id != d.submitter_id:
                    raise Denied("err_demand_not_yours", n=number)
                if d.state in (State.RESOLVED, State.RATED) and not submitter_may_reopen(
                    d.state, d.resolved_at, self.ctx.clock()
                ):
                    raise UserError("err_reopen_too_late", n=number)
                if d.state in (State.REJECTED, State.DUPLICATE):
                    raise Denied("err_reopen_secretary_only", n=number, state=Term(f"state_{d.state}"))
                if d.state not in (State.RESOLVED, State.RATED):
                    raise UserError("err_state_reopen", n=number, state=Term(f"state_{d.state}"))
            before = d.state
            d.state = self._move(d, Action.REOPEN)
            d.rating = None
            d.rating_comment = None
            d.rated_at = None
            d.duplicate_of_id = None
            await self._renew_deadline(s, d, community)
            key = await self._log(s, d, actor_id, Action.REOPEN, before)
            await self._tell_people(s, d, community, _text("note_reopened", n=d.number), key=key,
                                    skip=actor_id)
            if actor_id == d.submitter_id and not secretary:
                await self._alert(s, community, _text("alert_reopened", n=d.number), key=f"{key}:sec")
            if d.assignee_id is not None and d.assignee_id != actor_id:
                await self._notify_assignee(s, d, community, _text("note_reopened", n=d.number), key=key)
        return d

    async def set_category(self, *, actor_id: int, community_id: int, number: int, category: str) -> Demand:
        return await self._reclassify(actor_id, community_id, number, category=category)

    async def set_urgency(self, *, actor_id: int, community_id: int, number: int, urgency: str) -> Demand:
        return await self._reclassify(actor_id, community_id, number, urgency=urgency)

    async def _reclassify(self, actor_id: int, community_id: int, number: int, *, category: str | None = None,
                          urgency: str | None = None) -> Demand:
        """A changed category or urgency moves the deadlines; old timers see the new ones and stand down."""
        if category is not None and category not in CATEGORIES:
            raise UserError("err_usage_category")
        if urgency is not None and urgency not in URGENCIES:
            raise UserError("err_usage_urgency")
        async with self._change() as s:
            await self._require_secretary(s, community_id, actor_id)
            d = await self._demand(s, community_id, number)
            community = await self._community(s, community_id)
            if d.state not in OPEN:
                raise UserError("err_state_reclassify", n=number, state=Term(f"state_{d.state}"))
            action = Action.CATEGORY if category else Action.URGENCY
            note = category or urgency
            d.category = category or d.category
            d.urgency = urgency or d.urgency
            due = self._deadlines(community, d.filed_at, d.category, d.urgency)
            d.accept_by, d.resolve_by = due.accept_by, due.resolve_by
            reopened = await s.scalar(select(func.max(DemandEvent.created_at)).where(
                DemandEvent.demand_id == d.id, DemandEvent.action.in_([Action.REOPEN, Action.NOT_FIXED])))
            if reopened is not None:  # reopened: the resolve deadline runs from the reopening
                d.resolve_by = self._deadlines(community, reopened, d.category, d.urgency).resolve_by
            d.updated_at = self.ctx.clock()
            await self._log(s, d, actor_id, action, d.state, note)
            await self._schedule_deadlines(s, d)
        return d

    # ------------------------------------------------------------------ the submitter's steps

    async def rate(self, *, actor_id: int, community_id: int | None, number: int | None = None,
                   demand_id: int | None = None, stars_given: int, comment: str | None = None) -> Demand:
        """评单: 1-5 stars, or 0 for Not fixed (reopens). One rating per resolution."""
        text = _clean(comment, limit=MAX_NOTE, too_long="err_note_too_long")
        async with self._change() as s:
            if demand_id is not None:
                d = await s.get(Demand, demand_id)
                if d is None:
                    raise NotFound("err_demand_gone")
            else:
                assert community_id is not None and number is not None
                d = await self._demand(s, community_id, number)
            if actor_id != d.submitter_id:
                raise Denied("err_rate_not_submitter", n=d.number)
            if d.state == State.RATED:
                raise UserError("err_already_rated", n=d.number, stars=stars(d.rating or 0))
            community = await self._community(s, d.community_id)
            before = d.state
            if stars_given == 0:
                d.state = self._move(d, Action.NOT_FIXED)
                await self._renew_deadline(s, d, community)
                key = await self._log(s, d, actor_id, Action.NOT_FIXED, before, text)
                await self._alert_about(s, d, community, "alert_not_fixed", key=f"{key}:sec", comment=text or "-")
                if d.assignee_id is not None:
                    await self._notify_assignee(s, d, community, _text("note_not_fixed", n=d.number), key=key)
                return d
            if not 1 <= stars_given <= 5:
                raise UserError("err_rate_usage")
            d.state = self._move(d, Action.RATE)
            d.rating = stars_given
            d.rating_comment = text
            d.rated_at = self.ctx.clock()
            key = await self._log(s, d, actor_id, Action.RATE, before, f"{stars(stars_given)} {text or ''}".strip())
            if stars_given <= 2:  # 回访: the secretaries call back
                await self._alert_about(s, d, community, "alert_low_rating", key=f"{key}:sec",
                                        stars=stars(stars_given), comment=text or "-")
        return d

    async def comment(self, *, actor_id: int, demand_id: int, text: str | None) -> Demand:
        """The comment that may follow a one-tap rating."""
        body = _clean(text, limit=MAX_NOTE, too_long="err_note_too_long", missing="err_comment_missing")
        async with self._change() as s:
            d = await s.get(Demand, demand_id)
            if d is None:
                raise NotFound("err_demand_gone")
            if actor_id != d.submitter_id:
                raise Denied("err_rate_not_submitter", n=d.number)
            if d.state != State.RATED:
                raise UserError("err_comment_state", n=d.number)
            d.rating_comment = body
            d.updated_at = self.ctx.clock()
            key = await self._log(s, d, actor_id, Action.COMMENT, d.state, body)
            if d.rating is not None and d.rating <= 2:
                community = await self._community(s, d.community_id)
                await self._alert_about(s, d, community, "alert_low_rating", key=f"{key}:sec",
                                        stars=stars(d.rating), comment=body)
        return d

    # ------------------------------------------------------------------ reports (举报 / 求助)

    async def report(self, *, actor_id: int, chat_id: int, reported_text: str | None, author_name: str | None,
                     reporter_name: str, photo: str | None = None) -> Community:
        async with self.ctx.tx() as s:
            chat = await s.get(Chat, chat_id)
            if chat is None or chat.community_id is None:
                raise UserError("err_not_bound")
            if chat.kind != "resident":
                raise UserError("err_report_where")
            community = await self._community(s, chat.community_id)
            await quota.take(s, actor_id, "report", self.ctx.settings.filing_limit_per_hour, self.ctx.clock())
            title = chat.title or str(chat_id)

            def render_as(private: bool) -> Render:
                def render(tr: Translator) -> tuple[str, Keyboard | None]:
                    body = reported_text if reported_text else str(tr("report_no_text"))
                    # Who reported stays between them and the secretaries, not the member chat.
                    reporter = reporter_name if private else str(tr("someone_anonymous"))
                    return tr("alert_report", chat=title, reporter=reporter, author=author_name or "-",
                              text=body), None

                return render

            stamp = self.ctx.clock().timestamp()
            await self._alert(s, community, render_as(True), key=f"report:{chat_id}:{actor_id}:{stamp}",
                              group_render=render_as(False))
        return community

    # ------------------------------------------------------------------ timers

    async def _job_accept_due(self, s: AsyncSession, job: Job) -> str:
        d = await s.get(Demand, job.ref_id)
        if d is None or d.accepted_at is not None or d.state not in OPEN or _guard(d.accept_by) != job.guard:
            return "moved-on"
        community = await self._community(s, d.community_id)
        await self._log(s, d, None, Action.REMIND, d.state)
        await self._alert_about(s, d, community, "alert_accept_due", key=f"d{d.id}:accept-due:{job.guard}",
                                with_accept=True)
        return "reminded"

    async def _job_overdue(self, s: AsyncSession, job: Job) -> str:
        d = await s.get(Demand, job.ref_id)
        if d is None or d.state not in OPEN or _guard(d.resolve_by) != job.guard:
            return "moved-on"
        community = await self._community(s, d.community_id)
        await self._log(s, d, None, Action.OVERDUE, d.state)
        await self._alert_about(s, d, community, "alert_overdue", key=f"d{d.id}:overdue:{job.guard}")
        return "overdue"

    async def _job_reask(self, s: AsyncSession, job: Job) -> str:
        d = await s.get(Demand, job.ref_id)
        if d is None or d.state != State.RESOLVED or d.resolved_at is None or _guard(d.resolved_at) != job.guard:
            return "moved-on"
        community = await self._community(s, d.community_id)
        await self._ask_rating(s, d, community, key=f"d{d.id}:reask:{job.guard}", again=True)
        return "reasked"

    # ------------------------------------------------------------------ personal data

    async def _export_user(self, s: AsyncSession, user_id: int) -> dict[str, Any]:
        filed = select(Demand).where(or_(Demand.submitter_id == user_id, Demand.filed_by_id == user_id))
        about = select(DemandEvent).where(DemandEvent.subject_id == user_id, DemandEvent.actor_id != user_id)
        return {
            "filed": [row_dict(r) for r in await s.scalars(filed)],
            "assigned": [row_dict(r) for r in await s.scalars(select(Demand).where(Demand.assignee_id == user_id))],
            "timeline": [
                row_dict(r) for r in await s.scalars(select(DemandEvent).where(DemandEvent.actor_id == user_id))
            ],
            "timeline_about_you": [row_dict(r) for r in await s.scalars(about)],
            "following": [
                row_dict(r) for r in await s.scalars(select(DemandFollower).where(DemandFollower.user_id == user_id))
            ],
        }

    async def _forget_user(self, s: AsyncSession, user_id: int) -> None:
        """Their demands stay in the ledger, anonymised, so the rates do not change: no link to them,
        and their names out of the texts kept (theirs and others' notes)."""
        who = await identity(s, user_id)
        theirs = Demand.community_id.in_(sorted(await communities_of_person(s, user_id)))
        placeholder = str(Translator(self._locale)("someone_anonymous"))
        await s.execute(update(Demand).where(Demand.submitter_id == user_id).values(submitter_id=None))
        await s.execute(update(Demand).where(Demand.filed_by_id == user_id).values(filed_by_id=None))
        await s.execute(update(Demand).where(Demand.assignee_id == user_id).values(assignee_id=None))
        # Filed in their private chat: its id is theirs.
        await s.execute(update(Demand).where(Demand.origin_chat_id == user_id).values(origin_chat_id=None,
                                                                                     origin_message_id=None))
        await s.execute(update(DemandEvent).where(DemandEvent.actor_id == user_id).values(actor_id=None))
        await s.execute(update(DemandEvent).where(DemandEvent.subject_id == user_id).values(subject_id=None))
        for column in (Demand.text, Demand.location, Demand.resolution_note, Demand.rejection_reason,
                       Demand.rating_comment):
            await redact_column(s, Demand, column, who, placeholder, theirs)
        # Notes naming them (assign notes written before assignees were kept by id held the name itself).
        await redact_column(s, DemandEvent, DemandEvent.note, who, placeholder,
                            DemandEvent.demand_id.in_(select(Demand.id).where(theirs)))
        await s.execute(delete(DemandFollower).where(DemandFollower.user_id == user_id))

    # ------------------------------------------------------------------ concurrency

    @asynccontextmanager
    async def _change(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that changes a demand: a concurrent change of the same demand (the
        version check, at a flush or at commit) is a clear 'try again', not a lost update."""
        try:
            async with self.ctx.tx() as s:
                yield s
        except StaleDataError:
            raise UserError("err_demand_conflict") from None

    # ------------------------------------------------------------------ inside another service's unit of work

    async def accept_in(self, s: AsyncSession, d: Demand, actor_id: int, note: str | None = None) -> None:
        """Accept `d` inside a transaction the caller holds (e.g. /totask); a no-op unless new or reopened."""
        if d.state not in (State.NEW, State.REOPENED):
            return
        community = await self._community(s, d.community_id)
        before = d.state
        d.state = self._move(d, Action.ACCEPT)
        d.accepted_at = d.accepted_at or self.ctx.clock()
        key = await self._log(s, d, actor_id, Action.ACCEPT, before, note)
        await self._tell_people(s, d, community, _text("note_accepted", n=d.number), key=key)

    async def resolve_in(self, s: AsyncSession, d: Demand, actor_id: int | None, note: str,
                         photo: str | None = None) -> None:
        """办结 inside a transaction the caller holds (a confirmed task resolves its demand): the same
        steps as resolve() — timeline, rating buttons to the submitter, the re-ask timer. A second
        transaction would wait for the caller's own lock on SQLite."""
        community = await self._community(s, d.community_id)
        before = d.state
        d.state = self._move(d, Action.RESOLVE)
        now = self.ctx.clock()
        d.accepted_at = d.accepted_at or now
        d.resolved_at = now
        d.resolution_note = note[:MAX_NOTE]
        d.resolution_photo = photo
        key = await self._log(s, d, actor_id, Action.RESOLVE, before, d.resolution_note)
        await self._ask_rating(s, d, community, key=key)
        await add_job(s, JOB_REASK, d.id, now + parse_duration(self.ctx.settings.rating_reask_after), _guard(now))
