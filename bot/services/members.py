"""Members in the open (亮身份, 承诺, 设岗, 民主测评).

- Pledges (我是党员我承诺): a member proposes, a secretary approves (批准) or returns it with a
  reason through buttons on a private message; progress notes; kept (已践诺) earns points that
  count in 先锋指数 beside the tasks' (TaskService.add_point_source).
- The 承诺墙: one message per resident chat, edited in place (member_wall.WallRefresher).
  A member who does not show their identity is 一名党员 there and everywhere residents look.
- Evaluations (民主测评): a private ballot, one question per subject. Secret by construction:
  `evaluation_raters` says who answered on which subject, `evaluation_counts` holds counts only;
  the vote writes one row to each in one transaction and logs nothing about the choice.
  The close is a jobs row; the 公示 takes objections (异议) until its period ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.members import (
    ACTIVE,
    EV_CLOSED,
    EV_OPEN,
    EV_PUBLISHED,
    GOOD_SHARE,
    KEPT,
    MAX_ACTIVE,
    MAX_NOTE,
    MAX_POST,
    MAX_REASON,
    MEMBER_SCALE,
    MEMBERS,
    NOT_KEPT,
    OPEN_STATES,
    PROPOSED,
    RESIDENT_SCALE,
    RETURNED,
    SHOWN_STATES,
    MemberInputError,
    parse_evaluation,
    parse_pledge,
    satisfaction,
)
from bot.scheduler.runner import JobRunner, add_job
from bot.services.base import ServiceContext
from bot.services.errors import Denied, NotFound, UserError
from bot.services.member_wall import Editor, WallRefresher
from bot.services.notify import alert_secretaries, enqueue, notify_user
from bot.services.personal import row_dict
from bot.services.roles import PRESENT, secretary_users
from bot.storage.models import (
    Chat,
    ChatMember,
    Community,
    Evaluation,
    EvaluationCount,
    EvaluationRater,
    EvaluationSubject,
    Job,
    MemberProfile,
    Pledge,
    PledgeUpdate,
    User,
    WallPost,
)
from bot.storage.sequences import next_number
from bot.storage.upsert import upsert
from bot.transport.port import Button, Keyboard
from bot.ui.html import Html, esc
from bot.ui.i18n import Translator
from bot.ui.members import (
    WallEntry,
    WallPledge,
    ballot_keyboard,
    public_name,
    result_lines,
    wall_message,
    wall_pages,
)
from bot.ui.tasks import digest
from config.categories import CATEGORIES

log = logging.getLogger("linli.members")

JOB_CLOSE = "evaluation_close"
Render = Callable[[Translator], tuple[str, Keyboard | None]]


def _text(key: str, keyboard: Keyboard | None = None, **params: Any) -> Render:
    def render(tr: Translator) -> tuple[str, Keyboard | None]:
        return tr(key, **params), keyboard

    return render


def _guard(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def _input(exc: MemberInputError) -> UserError:
    return UserError(exc.key, **exc.params)


@dataclass
class Question:
    """The next question of someone's ballot, or none left (`subject` None)."""

    evaluation: Evaluation
    subject: EvaluationSubject | None
    label: str
    index: int  # 1-based: this question's place
    total: int
    scale: tuple[str, ...]
    answered_now: bool = False


@dataclass
class Opened:
    evaluation: Evaluation
    chats: int
    subjects: int
    tz: str


class MemberService:
    def __init__(self, ctx: ServiceContext, tasks: Any | None = None) -> None:
        self.ctx = ctx
        self.wall = WallRefresher(self)
        if tasks is not None:
            tasks.add_point_source(self._points_rows)
            tasks.add_point_source(self._evaluation_points_rows)
        ctx.personal.register("members", self._export_user, self._forget_user)

    def register_jobs(self, jobs: JobRunner) -> None:
        jobs.register(JOB_CLOSE, self._job_close)

    def attach_editor(self, editor: Editor) -> None:
        self.wall.editor = editor

    async def start(self) -> None:
        """After a restart, bring every wall up to date (an edit may have been lost)."""
        async with self.ctx.read() as s:
            ids = set(await s.scalars(select(WallPost.community_id)))
        self.wall.start()
        await self.wall.touch(*ids)

    async def stop(self) -> None:
        await self.wall.stop()

    # ------------------------------------------------------------------ helpers

    @property
    def _locale(self) -> str:
        return self.ctx.settings.default_locale

    async def _community(self, s: AsyncSession, community_id: int) -> Community:
        community = await s.get(Community, community_id)
        if community is None:
            raise NotFound("err_no_community")
        return community

    async def _is_member(self, s: AsyncSession, community_id: int, user_id: int) -> bool:
        return await self.ctx.roles.is_member(s, community_id, user_id) or await self.ctx.roles.is_secretary(
            s, community_id, user_id)

    async def _require_member(self, s: AsyncSession, community_id: int, user_id: int) -> None:
        if not await self._is_member(s, community_id, user_id):
            raise Denied("err_members_only")

    async def _chats(self, s: AsyncSession, community_id: int, kind: str) -> list[Chat]:
        return list(await s.scalars(
            select(Chat).where(Chat.community_id == community_id, Chat.kind == kind, Chat.bot_status != "left")
            .order_by(Chat.id)
        ))

    async def _tell(self, s: AsyncSession, user_id: int | None, community: Community, render: Render, *,
                    key: str) -> None:
        """Privately when they started the bot, else a mention in the (first) member chat."""
        if user_id is None:
            return
        user = await s.get(User, user_id)
        if user is None:
            return
        chats = await self._chats(s, community.id, "member")
        chat = chats[0] if chats else None
        await notify_user(s, user, render, community=community, default_locale=self._locale,
                          fallback_chat_id=chat.id if chat else None,
                          fallback_thread_id=chat.topic_id if chat else None, dedup_key=key)

    async def _pledge(self, s: AsyncSession, community_id: int, number: int) -> Pledge:
        p = await s.scalar(select(Pledge).where(Pledge.community_id == community_id, Pledge.number == number))
        if p is None:
            raise NotFound("err_pledge_unknown", n=number)
        return p

    async def _profile(self, s: AsyncSession, community_id: int, user_id: int) -> MemberProfile:
        await upsert(s, MemberProfile, {"community_id": community_id, "user_id": user_id, "showid": False,
                                        "updated_at": self.ctx.clock()}, ["community_id", "user_id"])
        prof = await s.get(MemberProfile, (community_id, user_id))
        assert prof is not None
        return prof

    async def _name(self, s: AsyncSession, user_id: int | None) -> str:
        user = await s.get(User, user_id) if user_id is not None else None
        return user.display_name if user else "-"

    # ------------------------------------------------------------------ pledges

    async def propose(self, *, actor_id: int, community_id: int, args: str) -> Pledge:
        """/pledge: a member proposes; the secretaries get it privately with 批准 / 退回 buttons."""
        async with self.ctx.tx() as s:
            community = await self._community(s, community_id)
            await self._require_member(s, community_id, actor_id)
            try:
                draft = parse_pledge(args, now=self.ctx.clock(), tz=ZoneInfo(community.timezone))
            except MemberInputError as exc:
                raise _input(exc) from None
            # One member's pledges are counted under a lock on their profile row (PostgreSQL; SQLite
            # has one writer): two /pledge at once from two chats never make a third active one.
            await self._profile(s, community_id, actor_id)
            await s.execute(select(MemberProfile.user_id).where(MemberProfile.community_id == community_id,
                                                                MemberProfile.user_id == actor_id).with_for_update())
            open_now = int(await s.scalar(
                select(func.count()).select_from(Pledge)
                .where(Pledge.community_id == community_id, Pledge.user_id == actor_id,
                       Pledge.state.in_(OPEN_STATES))
            ) or 0)
            if open_now >= MAX_ACTIVE:
                raise UserError("err_pledge_limit", limit=MAX_ACTIVE)
            p = Pledge(community_id=community_id, number=await next_number(s, community_id, "pledge"),
                       user_id=actor_id, text=draft.text, until=draft.until.astimezone(UTC) if draft.until else None,
                       state=PROPOSED, created_at=self.ctx.clock())
            s.add(p)
            await s.flush()
            name = await self._name(s, actor_id)

            def render(tr: Translator) -> tuple[str, Keyboard | None]:
                kb = Keyboard.of([Button(str(tr("btn_pledge_approve")), f"pl:a:{p.id}"),
                                  Button(str(tr("btn_pledge_return")), f"pl:r:{p.id}")])
                return tr("alert_pledge_proposed", n=p.number, name=name, text=p.text), kb

            await alert_secretaries(s, community, await secretary_users(s, self.ctx.roles, community_id), render,
                                    default_locale=self._locale, dedup_key=f"pledge{p.id}:proposed")
            return p

    async def _decidable(self, s: AsyncSession, actor_id: int, pledge_id: int) -> tuple[Pledge, Community]:
        p = await s.get(Pledge, pledge_id)
        if p is None:
            raise NotFound("err_pledge_gone")
        await self.ctx.roles.require_secretary(s, p.community_id, actor_id)
        if p.state != PROPOSED:
            raise UserError("err_pledge_decided", n=p.number)
        return p, await self._community(s, p.community_id)

    async def check_returnable(self, *, actor_id: int, pledge_id: int) -> Pledge:
        """退回 pressed: may this secretary return it? (The reason is asked next, privately.)"""
        async with self.ctx.read() as s:
            p, _ = await self._decidable(s, actor_id, pledge_id)
            return p

    async def approve(self, *, actor_id: int, pledge_id: int) -> Pledge:
        async with self.ctx.tx() as s:
            p, community = await self._decidable(s, actor_id, pledge_id)
            res = await s.execute(update(Pledge).where(Pledge.id == p.id, Pledge.state == PROPOSED)
                                  .values(state=ACTIVE, decided_at=self.ctx.clock())
                                  .execution_options(synchronize_session=False))
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise UserError("err_pledge_decided", n=p.number)
            p.state = ACTIVE
            await self._tell(s, p.user_id, community, _text("note_pledge_approved", n=p.number, text=p.text),
                             key=f"pledge{p.id}:approved")
            await self.wall.mark(s, p.community_id)
        return p

    async def return_(self, *, actor_id: int, pledge_id: int, reason: str) -> Pledge:
        reason = reason.strip()
        if not reason:
            raise UserError("err_pledge_reason_empty")
        if len(reason) > MAX_REASON:
            raise UserError("err_pledge_reason_too_long", limit=MAX_REASON, length=len(reason))
        async with self.ctx.tx() as s:
            p, community = await self._decidable(s, actor_id, pledge_id)
            res = await s.execute(update(Pledge).where(Pledge.id == p.id, Pledge.state == PROPOSED)
                                  .values(state=RETURNED, decided_at=self.ctx.clock(), return_reason=reason)
                                  .execution_options(synchronize_session=False))
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise UserError("err_pledge_decided", n=p.number)
            p.state, p.return_reason = RETURNED, reason
            await self._tell(s, p.user_id, community,
                             _text("note_pledge_returned", n=p.number, text=p.text, reason=reason),
                             key=f"pledge{p.id}:returned")
        return p

    async def listing(self, *, actor_id: int, community_id: int) -> list[tuple[Pledge, str | None]]:
        """/pledges: the approved pledges, each with its member's public name (None: 一名党员)."""
        async with self.ctx.read() as s:
            await self._community(s, community_id)
            rows = (await s.execute(
                select(Pledge, User, MemberProfile.showid)
                .outerjoin(User, User.id == Pledge.user_id)
                .outerjoin(MemberProfile, (MemberProfile.community_id == Pledge.community_id)
                           & (MemberProfile.user_id == Pledge.user_id))
                .where(Pledge.community_id == community_id, Pledge.state.in_(SHOWN_STATES))
                .order_by(Pledge.number)
            )).all()
        return [(p, u.display_name if u is not None and showid else None) for p, u, showid in rows]

    async def _own_active(self, s: AsyncSession, actor_id: int, community_id: int, number: int) -> Pledge:
        p = await self._pledge(s, community_id, number)
        if p.user_id != actor_id:
            raise Denied("err_pledge_not_yours", n=number)
        if p.state != ACTIVE:
            raise UserError("err_pledge_not_active", n=number)
        return p

    async def add_update(self, *, actor_id: int, community_id: int, number: int, note: str,
                         photo: str | None) -> Pledge:
        note = note.strip()
        if not note and not photo:
            raise UserError("err_usage_pledgeupdate")
        if len(note) > MAX_NOTE:
            raise UserError("err_pledge_note_too_long", limit=MAX_NOTE, length=len(note))
        async with self.ctx.tx() as s:
            p = await self._own_active(s, actor_id, community_id, number)
            s.add(PledgeUpdate(pledge_id=p.id, note=note, photo=photo, created_at=self.ctx.clock()))
            p.updates += 1
            await self.wall.mark(s, community_id)
        return p

    async def request_done(self, *, actor_id: int, community_id: int, number: int) -> Pledge:
        """/pledgedone: the secretaries are asked to mark it 已践诺 or 未践诺."""
        async with self.ctx.tx() as s:
            p = await self._own_active(s, actor_id, community_id, number)
            community = await self._community(s, community_id)
            p.done_requested_at = self.ctx.clock()
            name = await self._name(s, actor_id)
            notes = list(await s.scalars(select(PledgeUpdate.note).where(PledgeUpdate.pledge_id == p.id)
                                         .order_by(PledgeUpdate.id.desc()).limit(3)))

            def render(tr: Translator) -> tuple[str, Keyboard | None]:
                kb = Keyboard.of([Button(str(tr("btn_pledge_kept")), f"pl:k:{p.id}"),
                                  Button(str(tr("btn_pledge_not_kept")), f"pl:n:{p.id}")])
                return tr("alert_pledge_done", n=p.number, name=name, text=p.text,
                          notes=" / ".join(notes) or "-"), kb

            await alert_secretaries(s, community, await secretary_users(s, self.ctx.roles, community_id), render,
                                    default_locale=self._locale,
                                    dedup_key=f"pledge{p.id}:done:{_guard(p.done_requested_at)}")
            return p

    async def mark(self, *, actor_id: int, pledge_id: int, kept: bool) -> Pledge:
        """已践诺 (points for 先锋指数) or 未践诺; once."""
        async with self.ctx.tx() as s:
            p = await s.get(Pledge, pledge_id)
            if p is None:
                raise NotFound("err_pledge_gone")
            await self.ctx.roles.require_secretary(s, p.community_id, actor_id)
            if p.state != ACTIVE:
                raise UserError("err_pledge_not_active", n=p.number)
            now = self.ctx.clock()
            points = self.ctx.settings.pledge_points if kept else 0
            res = await s.execute(
                update(Pledge).where(Pledge.id == p.id, Pledge.state == ACTIVE)
                .values(state=KEPT if kept else NOT_KEPT, closed_at=now, points=points,
                        awarded_at=now if kept and p.user_id is not None else None)
                .execution_options(synchronize_session=False))
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise UserError("err_pledge_not_active", n=p.number)
            p.state, p.points = (KEPT if kept else NOT_KEPT), points
            community = await self._community(s, p.community_id)
            key = "note_pledge_kept" if kept else "note_pledge_not_kept"
            await self._tell(s, p.user_id, community, _text(key, n=p.number, text=p.text, points=points),
                             key=f"pledge{p.id}:{p.state}")
            await self.wall.mark(s, p.community_id)
        return p

    def _points_rows(self, community_id: int) -> Any:
        return (select(Pledge.user_id.label("user_id"), Pledge.points.label("points"), literal(0).label("minutes"),
                       Pledge.awarded_at.label("awarded_at"), literal(0).label("tasks"))
                .where(Pledge.community_id == community_id, Pledge.awarded_at.is_not(None),
                       Pledge.user_id.is_not(None)))

    def _evaluation_points_rows(self, community_id: int) -> Any:
        return (select(EvaluationSubject.user_id.label("user_id"), EvaluationSubject.points.label("points"),
                       literal(0).label("minutes"), EvaluationSubject.awarded_at.label("awarded_at"),
                       literal(0).label("tasks"))
                .join(Evaluation, Evaluation.id == EvaluationSubject.evaluation_id)
                .where(Evaluation.community_id == community_id, EvaluationSubject.awarded_at.is_not(None),
                       EvaluationSubject.user_id.is_not(None)))

    # ------------------------------------------------------------------ 亮身份 and posts

    async def set_showid(self, *, actor_id: int, community_id: int, on: bool) -> None:
        async with self.ctx.tx() as s:
            await self._community(s, community_id)
            await self._require_member(s, community_id, actor_id)
            prof = await self._profile(s, community_id, actor_id)
            prof.showid = on
            prof.updated_at = self.ctx.clock()
            await self.wall.mark(s, community_id)

    async def set_post(self, *, actor_id: int, community_id: int, member_id: int, post: str) -> str:
        """/post: a secretary gives a member a post (设岗定责). Returns the member's name."""
        post = post.strip()
        if not post:
            raise UserError("err_usage_post")
        if len(post) > MAX_POST:
            raise UserError("err_post_too_long", limit=MAX_POST, length=len(post))
        async with self.ctx.tx() as s:
            await self._community(s, community_id)
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            if not await self.ctx.roles.is_member(s, community_id, member_id):
                raise UserError("err_post_not_member")
            clear = post in ("-", "—", "无", "none", "clear")
            prof = await self._profile(s, community_id, member_id)
            prof.post = None if clear else post
            prof.post_by = actor_id
            prof.updated_at = self.ctx.clock()
            name = await self._name(s, member_id)
            await self.wall.mark(s, community_id)
        return name

    # ------------------------------------------------------------------ the wall

    async def wall_entries(self, s: AsyncSession, community_id: int) -> list[WallEntry]:
        """Members with approved pledges (in order of their first), then members with a post only."""
        rows = (await s.execute(
            select(Pledge.number, Pledge.text, Pledge.state, Pledge.updates, Pledge.until, Pledge.user_id,
                   User.first_name, User.last_name, User.username)
            .outerjoin(User, User.id == Pledge.user_id)
            .where(Pledge.community_id == community_id, Pledge.state.in_(SHOWN_STATES))
            .order_by(Pledge.number)
        )).all()
        profiles = {p.user_id: p for p in await s.scalars(
            select(MemberProfile).where(MemberProfile.community_id == community_id))}
        entries: dict[Any, WallEntry] = {}
        for number, text, state, updates, until, uid, first, last, username in rows:
            key: Any = uid if uid is not None else f"anon{number}"
            entry = entries.get(key)
            if entry is None:
                prof = profiles.get(uid) if uid is not None else None
                name = None
                if prof is not None and prof.showid:
                    name = " ".join(x for x in (first, last) if x) or (f"@{username}" if username else str(uid))
                entry = entries[key] = WallEntry(name, prof.post if prof else None)
            entry.pledges.append(WallPledge(number, text, state, updates, until))
        posted = [p for p in profiles.values() if p.post and p.user_id not in entries]
        if posted:
            users = {u.id: u for u in await s.scalars(select(User).where(User.id.in_([p.user_id for p in posted])))}
            for prof in sorted(posted, key=lambda p: p.user_id):
                u = users.get(prof.user_id)
                entries[prof.user_id] = WallEntry(u.display_name if u is not None and prof.showid else None, prof.post)
        return list(entries.values())

    async def post_wall(self, *, actor_id: int, community_id: int, anew: bool = False) -> tuple[int, int]:
        """/wall: the wall in each resident chat; a chat that has it already gets it refreshed
        (`/wall new`: posted again, should the old message have been deleted). Returns (posted, refreshed)."""
        async with self.ctx.tx() as s:
            community = await self._community(s, community_id)
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            chats = await self._chats(s, community_id, "resident")
            if not chats:
                raise UserError("err_wall_no_resident_chat")
            # A chat unbound (or upgraded to a supergroup, with a new id) since keeps no wall to edit.
            gone = delete(WallPost).where(WallPost.community_id == community_id)
            await s.execute(gone if anew else gone.where(WallPost.chat_id.not_in([c.id for c in chats])))
            have = {p.chat_id for p in await s.scalars(select(WallPost).where(WallPost.community_id == community_id))}
            locale = community.locale or self._locale
            tr = Translator(locale)
            pages = wall_pages(tr, await self.wall_entries(s, community_id), community.timezone)
            posted = 0
            for chat in chats:
                if chat.id in have:
                    continue
                post = WallPost(community_id=community_id, chat_id=chat.id, thread_id=chat.topic_id, locale=locale)
                s.add(post)
                await s.flush()
                text, keyboard, page = wall_message(tr, community.name, pages, 0, post.id)
                row = await enqueue(s, chat_id=chat.id, thread_id=chat.topic_id, text=text, keyboard=keyboard,
                                    community_id=community_id, ref=f"wall:{post.id}")
                post.outbox_id = row.id if row else None
                post.shown = digest(text, keyboard)
                posted += 1
            await self.wall.mark(s, community_id)
        return posted, len(have)

    async def turn_page(self, *, post_id: int, chat_id: int, page: int) -> None:
        """◀ ▶: anyone in the chat turns its wall; the message is edited to that page."""
        async with self.ctx.tx() as s:
            post = await s.get(WallPost, post_id)
            if post is None or post.chat_id != chat_id:
                raise NotFound("err_wall_gone")
            post.page = max(0, page)
            community_id = post.community_id
            await self.wall.mark(s, community_id)

    # ------------------------------------------------------------------ evaluations

    async def _evaluation(self, s: AsyncSession, community_id: int, number: int) -> Evaluation:
        ev = await s.scalar(select(Evaluation).where(Evaluation.community_id == community_id,
                                                     Evaluation.number == number))
        if ev is None:
            raise NotFound("err_evaluation_unknown", n=number)
        return ev

    async def open_evaluation(self, *, actor_id: int, community_id: int, args: str) -> Opened:
        """/evaluation open: subjects fixed now; a 去测评 button in every resident and member chat."""
        async with self.ctx.tx() as s:
            community = await self._community(s, community_id)
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            try:
                draft = parse_evaluation(args, now=self.ctx.clock(), tz=ZoneInfo(community.timezone))
            except MemberInputError as exc:
                raise _input(exc) from None
            subjects: list[EvaluationSubject] = []
            if draft.kind == MEMBERS:
                member_ids = sorted(set(await s.scalars(
                    select(ChatMember.user_id).join(Chat, Chat.id == ChatMember.chat_id)
                    .where(Chat.community_id == community_id, Chat.kind == "member",
                           ChatMember.status.in_(PRESENT)))))
                shown = {p.user_id: p.showid for p in await s.scalars(
                    select(MemberProfile).where(MemberProfile.community_id == community_id))}
                for i, uid in enumerate(member_ids):
                    subjects.append(EvaluationSubject(position=i, user_id=uid, public=bool(shown.get(uid))))
            else:
                subjects = [EvaluationSubject(position=i, label=key, public=True) for i, key in enumerate(CATEGORIES)]
            if not subjects:
                raise UserError("err_evaluation_no_subjects")
            chats = await self._chats(s, community_id, "resident") + await self._chats(s, community_id, "member")
            if not chats:
                raise UserError("err_wall_no_resident_chat")
            ev = Evaluation(community_id=community_id, number=await next_number(s, community_id, "evaluation"),
                            title=draft.title, kind=draft.kind, until=draft.until.astimezone(UTC), state=EV_OPEN,
                            created_by=actor_id, created_at=self.ctx.clock())
            s.add(ev)
            await s.flush()
            for subj in subjects:
                subj.evaluation_id = ev.id
                s.add(subj)
            await s.flush()
            # Every count exists from the start, at 0: a vote only ever updates one, so not even the
            # order in which count rows appeared could tell what the first rater of a subject chose.
            scales = MEMBER_SCALE + RESIDENT_SCALE if draft.kind == MEMBERS else RESIDENT_SCALE
            await s.execute(insert(EvaluationCount), [
                {"evaluation_id": ev.id, "subject_id": subj.id, "choice": c, "count": 0}
                for subj in subjects for c in scales])
            tr = Translator(community.locale or self._locale)
            from bot.ui.dates import format_when

            text = tr("ev_post", n=ev.number, title=ev.title, kind=tr(f"ev_kind_{ev.kind}"),
                      until=format_when(ev.until, tr.locale, community.timezone))
            kb = Keyboard.of([Button(str(tr("btn_ev_go")), f"ev:go:{ev.id}")])
            for chat in chats:
                await enqueue(s, chat_id=chat.id, thread_id=chat.topic_id, text=text, keyboard=kb,
                              community_id=community_id, ref=f"evaluation:{ev.id}:post")
            await add_job(s, JOB_CLOSE, ev.id, ev.until, _guard(ev.until))
            return Opened(ev, len(chats), len(subjects), community.timezone)

    async def _rater_scale(self, s: AsyncSession, ev: Evaluation, user_id: int) -> tuple[str, bool]:
        """(scale, is_member): members rate members on theirs; everyone else is a resident of it."""
        member = await self._is_member(s, ev.community_id, user_id)
        if not member and not await self.ctx.roles.is_resident(s, ev.community_id, user_id):
            raise Denied("err_evaluation_who")
        return ("member" if member and ev.kind == MEMBERS else "resident"), member

    def _subjects_for(self, ev: Evaluation, user_id: int, member: bool) -> Any:
        q = select(EvaluationSubject).where(EvaluationSubject.evaluation_id == ev.id)
        if ev.kind == MEMBERS:
            # Nobody rates themself; residents rate only members who show their identity.
            q = q.where((EvaluationSubject.user_id.is_(None)) | (EvaluationSubject.user_id != user_id))
            if not member:
                q = q.where(EvaluationSubject.public.is_(True))
        return q.order_by(EvaluationSubject.position, EvaluationSubject.id)

    async def _labels(self, s: AsyncSession, tr: Translator, ev: Evaluation, subjects: list[EvaluationSubject], *,
                      public_only: bool) -> dict[int, str]:
        """Each subject as shown (HTML): a service's name, or a member's name and post (一名党员 where
        residents look and the member hides their identity). Two queries for any number."""
        uids = [x.user_id for x in subjects if x.user_id is not None and (x.public or not public_only)]
        users = {u.id: u for u in await s.scalars(select(User).where(User.id.in_(uids)))} if uids else {}
        posts = {p.user_id: p.post for p in await s.scalars(select(MemberProfile).where(
            MemberProfile.community_id == ev.community_id, MemberProfile.user_id.in_(uids)))} if uids else {}
        out: dict[int, str] = {}
        for subj in subjects:
            user = users.get(subj.user_id) if subj.user_id is not None else None
            if subj.label is not None:
                out[subj.id] = str(tr(f"cat_{subj.label}"))
            elif user is None:
                out[subj.id] = str(tr("member_anonymous"))
            elif posts.get(user.id):
                out[subj.id] = str(tr("ev_subject_post", name=user.display_name, post=posts[user.id]))
            else:
                out[subj.id] = str(esc(user.display_name))
        return out

    async def _next(self, s: AsyncSession, ev: Evaluation, user_id: int, tr: Translator) -> Question:
        scale_name, member = await self._rater_scale(s, ev, user_id)
        scale = MEMBER_SCALE if scale_name == "member" else RESIDENT_SCALE
        subjects = list(await s.scalars(self._subjects_for(ev, user_id, member)))
        done = set(await s.scalars(select(EvaluationRater.subject_id).where(
            EvaluationRater.evaluation_id == ev.id, EvaluationRater.user_id == user_id)))
        left = [x for x in subjects if x.id not in done]
        answered = len(subjects) - len(left)
        if not left:
            return Question(ev, None, "", answered, len(subjects), scale)
        subj = left[0]
        label = (await self._labels(s, tr, ev, [subj], public_only=not member))[subj.id]
        return Question(ev, subj, label, answered + 1, len(subjects), scale)

    def _refuse_closed(self, ev: Evaluation) -> None:
        if ev.state != EV_OPEN or self.ctx.clock() >= ev.until:
            raise UserError("err_evaluation_closed", n=ev.number)

    async def ballot(self, *, user_id: int, evaluation_id: int, tr: Translator) -> Question:
        """去测评: the rater's next question (resumable: the answered ones are skipped)."""
        async with self.ctx.read() as s:
            ev = await s.get(Evaluation, evaluation_id)
            if ev is None:
                raise NotFound("err_evaluation_gone")
            self._refuse_closed(ev)
            return await self._next(s, ev, user_id, tr)

    async def vote(self, *, user_id: int, subject_id: int, index: int, tr: Translator) -> Question:
        """One answer. The rater row and the count move in one transaction; nothing ties them."""
        async with self.ctx.tx() as s:
            subj = await s.get(EvaluationSubject, subject_id)
            if subj is None:
                raise NotFound("err_evaluation_gone")
            ev = await s.get(Evaluation, subj.evaluation_id)
            assert ev is not None
            self._refuse_closed(ev)
            scale_name, member = await self._rater_scale(s, ev, user_id)
            scale = MEMBER_SCALE if scale_name == "member" else RESIDENT_SCALE
            if ev.kind == MEMBERS and subj.user_id == user_id:
                raise UserError("err_evaluation_self")
            if ev.kind == MEMBERS and not member and not subj.public:
                raise Denied("err_evaluation_subject")
            if not 0 <= index < len(scale):
                raise UserError("err_evaluation_choice")
            dialect = s.bind.dialect.name if s.bind else "sqlite"
            ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(EvaluationRater).values(
                evaluation_id=ev.id, subject_id=subj.id, user_id=user_id)
            res = await s.execute(ins.on_conflict_do_nothing(index_elements=["evaluation_id", "subject_id",
                                                                             "user_id"]))
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise UserError("err_evaluation_again")
            moved = await s.execute(
                update(EvaluationCount)
                .where(EvaluationCount.evaluation_id == ev.id, EvaluationCount.subject_id == subj.id,
                       EvaluationCount.choice == scale[index])
                .values(count=EvaluationCount.count + 1).execution_options(synchronize_session=False))
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise RuntimeError("an evaluation count is missing")  # rolled back: nothing saved
            q = await self._next(s, ev, user_id, tr)
            q.answered_now = True
            return q

    async def _job_close(self, s: AsyncSession, job: Job) -> str:
        ev = await s.get(Evaluation, job.ref_id)
        if ev is None or ev.state != EV_OPEN or job.guard != _guard(ev.until):
            return "moved-on"
        res = await s.execute(update(Evaluation).where(Evaluation.id == ev.id, Evaluation.state == EV_OPEN)
                              .values(state=EV_CLOSED, closed_at=self.ctx.clock())
                              .execution_options(synchronize_session=False))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return "moved-on"
        community = await self._community(s, ev.community_id)
        await self._award(s, ev)
        raters = int(await s.scalar(select(func.count(func.distinct(EvaluationRater.user_id)))
                                    .where(EvaluationRater.evaluation_id == ev.id)) or 0)
        await alert_secretaries(s, community, await secretary_users(s, self.ctx.roles, community.id),
                                _text("alert_evaluation_closed", n=ev.number, title=ev.title, raters=raters),
                                default_locale=self._locale, dedup_key=f"evaluation{ev.id}:closed")
        log.info("evaluation %s closed", ev.id)
        return "closed"

    async def _award(self, s: AsyncSession, ev: Evaluation) -> None:
        """At the close: members rated well by enough people earn points (from the counts alone)."""
        points = self.ctx.settings.evaluation_points
        if ev.kind != MEMBERS or not points:
            return
        counts: dict[int, dict[str, int]] = {}
        for sid, choice, n in (await s.execute(select(EvaluationCount.subject_id, EvaluationCount.choice,
                                                      EvaluationCount.count)
                                               .where(EvaluationCount.evaluation_id == ev.id))).all():
            counts.setdefault(sid, {})[choice] = n
        good = [sid for sid, c in counts.items() if (satisfaction(c)[1] or 0) >= GOOD_SHARE]
        if good:
            await s.execute(update(EvaluationSubject)
                            .where(EvaluationSubject.id.in_(good), EvaluationSubject.user_id.is_not(None))
                            .values(points=points, awarded_at=self.ctx.clock())
                            .execution_options(synchronize_session=False))

    async def _results(self, s: AsyncSession, ev: Evaluation, tr: Translator, *, public_only: bool) -> list[str]:
        subjects = list(await s.scalars(select(EvaluationSubject).where(EvaluationSubject.evaluation_id == ev.id)
                                        .order_by(EvaluationSubject.position, EvaluationSubject.id)))
        counts: dict[int, dict[str, int]] = {x.id: {} for x in subjects}
        for sid, choice, n in (await s.execute(select(EvaluationCount.subject_id, EvaluationCount.choice,
                                                      EvaluationCount.count)
                                               .where(EvaluationCount.evaluation_id == ev.id))).all():
            if n:
                counts[sid][choice] = n
        order = MEMBER_SCALE + RESIDENT_SCALE
        labels = await self._labels(s, tr, ev, subjects, public_only=public_only)
        rows = []
        for subj in subjects:
            ordered = {c: counts[subj.id][c] for c in order if c in counts[subj.id]}
            rows.append((Html(labels[subj.id]), ordered))
        return result_lines(tr, rows)

    async def result(self, *, actor_id: int, community_id: int, number: int, tr: Translator,
                     public_only: bool = False) -> tuple[Evaluation, list[str]]:
        """The secretary's view after the close (no figures while it is open); `public_only` where
        residents look (a resident chat): hidden members are 一名党员 there too."""
        async with self.ctx.read() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            ev = await self._evaluation(s, community_id, number)
            if ev.state == EV_OPEN:
                raise UserError("err_evaluation_not_closed", n=ev.number)
            return ev, await self._results(s, ev, tr, public_only=public_only)

    async def publish(self, *, actor_id: int, community_id: int, number: int) -> tuple[Evaluation, int]:
        """/evaluation publish: the 公示 in the resident chats with an 异议 button."""
        async with self.ctx.tx() as s:
            community = await self._community(s, community_id)
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            ev = await self._evaluation(s, community_id, number)
            if ev.state == EV_OPEN:
                raise UserError("err_evaluation_not_closed", n=ev.number)
            if ev.state == EV_PUBLISHED:
                raise UserError("err_evaluation_published", n=ev.number)
            chats = await self._chats(s, community_id, "resident")
            if not chats:
                raise UserError("err_wall_no_resident_chat")
            now = self.ctx.clock()
            res = await s.execute(update(Evaluation).where(Evaluation.id == ev.id, Evaluation.state == EV_CLOSED)
                                  .values(state=EV_PUBLISHED, published_at=now,
                                          publicity_until=now + timedelta(days=self.ctx.settings.evaluation_publicity_days))
                                  .execution_options(synchronize_session=False))
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise UserError("err_evaluation_published", n=ev.number)
            await s.refresh(ev)
            tr = Translator(community.locale or self._locale)
            from bot.ui.dates import format_when

            lines = [str(tr("ev_publicity_head", n=ev.number, title=ev.title,
                            until=format_when(ev.publicity_until, tr.locale, community.timezone)))]
            lines += await self._results(s, ev, tr, public_only=True)
            text = Html("\n".join(lines))
            kb = Keyboard.of([Button(str(tr("btn_ev_object")), f"ev:o:{ev.id}")])
            for chat in chats:
                await enqueue(s, chat_id=chat.id, thread_id=chat.topic_id, text=text, keyboard=kb,
                              community_id=community_id, ref=f"evaluation:{ev.id}:publicity")
            return ev, len(chats)

    async def objectable(self, *, evaluation_id: int) -> Evaluation:
        async with self.ctx.read() as s:
            ev = await s.get(Evaluation, evaluation_id)
            if ev is None:
                raise NotFound("err_evaluation_gone")
            if ev.state != EV_PUBLISHED or ev.publicity_until is None or self.ctx.clock() >= ev.publicity_until:
                raise UserError("err_evaluation_objection_ended", n=ev.number)
            return ev

    async def object_(self, *, actor_id: int, evaluation_id: int, text: str) -> Evaluation:
        """异议: to the secretaries privately."""
        text = text.strip()
        if not text:
            raise UserError("err_evaluation_objection_empty")
        if len(text) > MAX_NOTE:
            raise UserError("err_pledge_note_too_long", limit=MAX_NOTE, length=len(text))
        ev = await self.objectable(evaluation_id=evaluation_id)
        async with self.ctx.tx() as s:
            community = await self._community(s, ev.community_id)
            name = await self._name(s, actor_id)
            await alert_secretaries(s, community, await secretary_users(s, self.ctx.roles, community.id),
                                    _text("alert_evaluation_objection", n=ev.number, title=ev.title, name=name,
                                          text=text),
                                    default_locale=self._locale)
        return ev

    async def evaluations(self, *, actor_id: int, community_id: int) -> tuple[list[Evaluation], str]:
        async with self.ctx.read() as s:
            community = await self._community(s, community_id)
            rows = list(await s.scalars(select(Evaluation).where(Evaluation.community_id == community_id)
                                        .order_by(Evaluation.number.desc()).limit(20)))
            return rows, community.timezone

    # ------------------------------------------------------------------ personal data

    async def _export_user(self, s: AsyncSession, user_id: int) -> dict[str, Any]:
        pledges = list(await s.scalars(select(Pledge).where(Pledge.user_id == user_id).order_by(Pledge.id)))
        updates = list(await s.scalars(select(PledgeUpdate).where(
            PledgeUpdate.pledge_id.in_([p.id for p in pledges])).order_by(PledgeUpdate.id))) if pledges else []
        voted = (await s.execute(
            select(Evaluation.community_id, Evaluation.number, func.count())
            .join(EvaluationRater, EvaluationRater.evaluation_id == Evaluation.id)
            .where(EvaluationRater.user_id == user_id).group_by(Evaluation.community_id, Evaluation.number)
        )).all()
        return {
            "profiles": [row_dict(p) for p in await s.scalars(select(MemberProfile)
                                                             .where(MemberProfile.user_id == user_id))],
            "pledges": [row_dict(p) for p in pledges],
            "pledge_updates": [row_dict(u) for u in updates],
            # Which evaluations they answered, and on how many subjects: never what they chose.
            "evaluations_answered": [{"community_id": c, "evaluation_number": n, "subjects": k}
                                     for c, n, k in voted],
        }

    async def _forget_user(self, s: AsyncSession, user_id: int) -> None:
        """Unapproved pledges go; approved ones stay on the wall as 一名党员's, without their notes.
        Their ballot markers go (the counts stay); as a subject they become 一名党员."""
        mine = list(await s.scalars(select(Pledge).where(Pledge.user_id == user_id)))
        communities = {p.community_id for p in mine}
        for p in mine:
            if p.state in (PROPOSED, RETURNED):
                await s.delete(p)
            else:
                p.user_id = None
                p.return_reason = None
                await s.execute(delete(PledgeUpdate).where(PledgeUpdate.pledge_id == p.id))
        communities |= set(await s.scalars(select(MemberProfile.community_id)
                                           .where(MemberProfile.user_id == user_id)))
        await s.execute(delete(MemberProfile).where(MemberProfile.user_id == user_id))
        await s.execute(delete(EvaluationRater).where(EvaluationRater.user_id == user_id))
        await s.execute(update(EvaluationSubject).where(EvaluationSubject.user_id == user_id)
                        .values(user_id=None, public=False).execution_options(synchronize_session=False))
        await s.execute(update(Evaluation).where(Evaluation.created_by == user_id).values(created_by=None)
                        .execution_options(synchronize_session=False))
        await s.execute(update(MemberProfile).where(MemberProfile.post_by == user_id).values(post_by=None)
                        .execution_options(synchronize_session=False))
        # The walls are re-rendered once /forget's transaction has committed.
        await self.wall.mark(s, *communities)


def ballot_text(tr: Translator, q: Question) -> tuple[Html, Keyboard | None]:
    ev = q.evaluation
    if q.subject is None and q.total == 0:
        return tr("ev_ballot_none", n=ev.number, title=ev.title), None
    if q.subject is None:
        return tr("ev_ballot_done", n=ev.number, title=ev.title, total=q.total), None
    return (tr("ev_ballot_question", n=ev.number, title=ev.title, index=q.index, total=q.total,
               subject=Html(q.label)),
            ballot_keyboard(tr, q.subject.id, q.scale))


__all__ = ["MemberService", "Question", "ballot_text", "public_name"]
