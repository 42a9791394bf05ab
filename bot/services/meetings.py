"""Meetings (会议): scheduling, RSVP, reminders exactly once, check-in, attendance, minutes, .ics.

Every method is given the acting user and checks the role itself. Posts, notices and reminders
are outbox rows written in the transaction that causes them. Reminders are `jobs` rows guarded
by the meeting's version (bumped by every move and cancel) and checked, with the meeting row
locked, in the transaction that fires them: a timer armed for a time the meeting no longer has
stands down, and a reminder never fires twice or after the meeting has begun.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.meetings import (
    MAX_MINUTES,
    MAX_REASON,
    MEMBER,
    RESIDENT,
    MeetingInputError,
    Timing,
    checkin_state,
    next_monthly,
    parse_meeting,
    read_when,
)
from bot.scheduler.runner import JobRunner, add_job
from bot.services.base import ServiceContext
from bot.services.errors import Denied, NotFound, Term, UserError
from bot.services.notify import Render, alert_secretaries, enqueue, notify_user
from bot.services.personal import row_dict
from bot.services.roles import ADMIN, PRESENT
from bot.storage.models import (
    Chat,
    ChatMember,
    Community,
    Job,
    Meeting,
    MeetingAttendee,
    Outbox,
    Secretary,
    User,
)
from bot.storage.sequences import next_number
from bot.storage.upsert import upsert
from bot.transport.port import Keyboard
from bot.ui.i18n import Translator
from bot.ui.meetings import (
    Counts,
    cancelled_text,
    checkin_keyboard,
    head_lines,
    kind_name,
    meeting_ics,
    minutes_text,
    moved_text,
    post_keyboard,
    post_text,
    private_reminder_text,
    reminder_text,
    when,
)

JOB_REMIND = "meeting_remind"
JOB_END = "meeting_end"
JOB_MINUTES = "meeting_minutes"
JOB_KINDS = (JOB_REMIND, JOB_END, JOB_MINUTES)
SCHEDULED = "scheduled"
CANCELLED = "cancelled"
ATTEND = "attend"
LEAVE = "leave"
LIST_LIMIT = 20


def post_ref(meeting_id: int) -> str:
    """The outbox `ref` of a meeting's posts: where their message ids are found for live edits."""
    return f"meeting:{meeting_id}:post"


@dataclass
class Post:
    chat_id: int
    message_id: int


@dataclass
class Card:
    """A meeting with what its post shows."""

    meeting: Meeting
    community: Community
    counts: Counts
    posts: list[Post] = field(default_factory=list)

    @property
    def tz(self) -> str:
        return self.community.timezone

    def translator(self, default: str) -> Translator:
        return Translator(self.community.locale or default)


@dataclass
class Scheduled(Card):
    reminders: list[tuple[int, datetime]] = field(default_factory=list)  # (offset, due) ahead
    skipped: list[int] = field(default_factory=list)  # offsets already past when scheduled
    chats: list[Chat] = field(default_factory=list)


@dataclass
class Responded(Card):
    response: str = ATTEND
    changed: bool = True
    started: bool = False  # the person has a private chat with the bot (for the leave reason)


@dataclass
class CheckIn(Card):
    state: str = "open"  # early | open | closed
    opens: datetime | None = None
    closes: datetime | None = None
    already: bool = False
    at: datetime | None = None


@dataclass
class Attendance(Card):
    attended: list[tuple[User, datetime]] = field(default_factory=list)
    on_leave: list[tuple[User, str | None]] = field(default_factory=list)
    absent: list[User] = field(default_factory=list)
    expected: int = 0
    window: str = "early"  # the check-in window: early | open | closed


@dataclass
class Upcoming:
    community: Community
    meetings: list[tuple[Meeting, Counts]]


def _parse_guard(guard: str) -> tuple[int, int | None]:
    """`v3:3600` -> (3, 3600); `v3` -> (3, None); anything else -> (-1, None)."""
    head, _, tail = guard.partition(":")
    if not head.startswith("v") or not head[1:].isdigit():
        return -1, None
    return int(head[1:]), int(tail) if tail.isdigit() else None


@dataclass(frozen=True, slots=True)
class Person:
    """The little of a user a reminder needs (a burst reads thousands: plain rows, not ORM objects)."""

    id: int
    first_name: str
    last_name: str | None
    username: str | None
    language: str | None
    started: bool

    @property
    def display_name(self) -> str:
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or (f"@{self.username}" if self.username else str(self.id))


def _keyboard_json(keyboard: Keyboard | None) -> dict[str, Any] | None:
    return {"rows": keyboard.to_json()} if keyboard else None


async def _enqueue_many(s: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Many outbox rows at once (a burst of reminders); a repeated dedup_key is skipped.

    One executemany for the lot: the ORM's bulk path with ON CONFLICT goes row by row (a thread
    round trip each on aiosqlite). On SQLite the values go to the driver already converted by
    their columns' types, each distinct value once (the same keyboard and time recur by the
    thousand), which halves the cost of a burst.
    """
    if not rows:
        return
    conn = await s.connection()
    dialect = conn.dialect
    table = Outbox.__table__
    if dialect.name != "sqlite":
        await conn.execute(postgresql.insert(table).on_conflict_do_nothing(index_elements=["dedup_key"]), rows)
        return
    columns = list(rows[0])
    procs = [table.c[c].type.bind_processor(dialect) for c in columns]
    memo: dict[tuple[int, int], Any] = {}

    def convert(i: int, value: Any) -> Any:
        proc = procs[i]
        if proc is None or value is None:
            return value
        key = (i, id(value))  # the rows hold the values, so an id is not reused meanwhile
        if key not in memo:
            memo[key] = proc(value)
        return memo[key]

    params = [tuple(convert(i, r[c]) for i, c in enumerate(columns)) for r in rows]
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    await conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({names}) VALUES ({marks}) ON CONFLICT (dedup_key) DO NOTHING", params
    )


class MeetingService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        ctx.personal.register("meetings", self._export_user, self._forget_user)

    def register_jobs(self, jobs: JobRunner) -> None:
        jobs.register_batch(JOB_REMIND, self._job_remind_many)
        jobs.register(JOB_END, self._job_end)
        jobs.register(JOB_MINUTES, self._job_minutes)

    # ------------------------------------------------------------------ helpers

    @property
    def timing(self) -> Timing:
        return Timing(self.ctx.settings.meeting_minute_seconds / 60.0)

    @property
    def _locale(self) -> str:
        return self.ctx.settings.default_locale

    async def _community(self, s: AsyncSession, community_id: int) -> Community:
        community = await s.get(Community, community_id)
        if community is None:
            raise NotFound("err_no_community")
        return community

    async def _meeting(self, s: AsyncSession, community_id: int, number: int, *, lock: bool = False) -> Meeting:
        q = select(Meeting).where(Meeting.community_id == community_id, Meeting.number == number)
        m = await s.scalar(q.with_for_update() if lock else q)
        if m is None:
            raise NotFound("err_meeting_unknown", n=number)
        return m

    async def _by_id(self, s: AsyncSession, meeting_id: int, *, lock: bool = False) -> Meeting:
        m = await s.get(Meeting, meeting_id, with_for_update=lock)
        if m is None:
            raise NotFound("err_meeting_gone")
        return m

    async def _target_chats(self, s: AsyncSession, community_id: int, audience: str) -> list[Chat]:
        """Member chats for party meetings, resident chats for 议事协商会; chats that removed the bot are skipped."""
        return list(await s.scalars(
            select(Chat)
            .where(Chat.community_id == community_id, Chat.kind == audience, Chat.bot_status != "left")
            .order_by(Chat.id)
        ))

    async def _may_answer(self, s: AsyncSession, m: Meeting, user_id: int) -> bool:
        roles = self.ctx.roles
        if await roles.is_member(s, m.community_id, user_id):
            return True
        if m.audience == RESIDENT and await roles.is_resident(s, m.community_id, user_id):
            return True
        return await roles.is_secretary(s, m.community_id, user_id)

    async def _require_answerer(self, s: AsyncSession, m: Meeting, user_id: int) -> None:
        if not await self._may_answer(s, m, user_id):
            key = "err_meeting_members_only" if m.audience == MEMBER else "err_meeting_residents_only"
            raise Denied(key, n=m.number)

    async def _may_see(self, s: AsyncSession, m: Meeting, user_id: int, chat_kind: str | None) -> bool:
        """In a resident chat only 议事协商会 are shown (the answer is public there); elsewhere
        party meetings to members and secretaries, 议事协商会 to anyone of the community."""
        if chat_kind == RESIDENT and m.audience != RESIDENT:
            return False
        return await self._may_answer(s, m, user_id)

    async def counts(self, s: AsyncSession, meeting_ids: Iterable[int]) -> dict[int, Counts]:
        ids = list(meeting_ids)
        out: dict[int, dict[str, int]] = defaultdict(lambda: {"attend": 0, "leave": 0, "checked_in": 0})
        if not ids:
            return {}
        rows = await s.execute(
            select(MeetingAttendee.meeting_id, MeetingAttendee.response, func.count())
            .where(MeetingAttendee.meeting_id.in_(ids), MeetingAttendee.response.is_not(None))
            .group_by(MeetingAttendee.meeting_id, MeetingAttendee.response)
        )
        for mid, response, n in rows:
            out[mid][response] = int(n)
        checked = await s.execute(
            select(MeetingAttendee.meeting_id, func.count())
            .where(MeetingAttendee.meeting_id.in_(ids), MeetingAttendee.checked_in_at.is_not(None))
            .group_by(MeetingAttendee.meeting_id)
        )
        for mid, n in checked:
            out[mid]["checked_in"] = int(n)
        return {mid: Counts(**out[mid]) for mid in ids}

    async def _posts(self, s: AsyncSession, meeting_id: int) -> list[Post]:
        rows = await s.execute(
            select(Outbox.chat_id, Outbox.message_id)
            .where(Outbox.ref == post_ref(meeting_id), Outbox.message_id.is_not(None))
            .order_by(Outbox.id)
        )
        return [Post(chat, mid) for chat, mid in rows]

    async def _answered(self, s: AsyncSession, meeting_id: int, responses: Sequence[str]) -> list[User]:
        return list(await s.scalars(
            select(User)
            .join(MeetingAttendee, MeetingAttendee.user_id == User.id)
            .where(MeetingAttendee.meeting_id == meeting_id, MeetingAttendee.response.in_(list(responses)))
            .order_by(MeetingAttendee.responded_at, User.id)
        ))

    async def _secretaries(self, s: AsyncSession, community_id: int) -> list[User]:
        """Who nudges go to, from the database alone (a job must make no Telegram call inside its
        transaction): named secretaries, superadmins, and admins seen in the member chats."""
        ids = set(await s.scalars(select(Secretary.user_id).where(Secretary.community_id == community_id)))
        ids.update(self.ctx.roles.superadmins)
        ids.update(await s.scalars(
            select(ChatMember.user_id)
            .join(Chat, Chat.id == ChatMember.chat_id)
            .where(Chat.community_id == community_id, Chat.kind == MEMBER, ChatMember.status.in_(ADMIN))
        ))
        if not ids:
            return []
        return list(await s.scalars(select(User).where(User.id.in_(ids)).order_by(User.id)))

    async def _supersede(self, s: AsyncSession, m: Meeting) -> None:
        """The meeting's pending timers stand down (a moved one gets new ones)."""
        await s.execute(
            update(Job)
            .where(Job.kind.in_(JOB_KINDS), Job.ref_id == m.id, Job.done_at.is_(None))
            .values(done_at=self.ctx.clock(), result="superseded")
            .execution_options(synchronize_session=False)
        )

    async def _arm(self, s: AsyncSession, m: Meeting, community: Community) -> tuple[list[tuple[int, datetime]], list[int]]:
        """Timers for the meeting's time: reminders still ahead (past offsets are skipped), its end
        (the monthly repeat) and the next morning's minutes nudge, all guarded by its version."""
        t = self.timing
        ahead = t.reminders(m.starts_at, m.offsets, self.ctx.clock())
        for offset, due in ahead:
            await add_job(s, JOB_REMIND, m.id, due, f"v{m.version}:{offset}")
        await add_job(s, JOB_END, m.id, m.ends_at, f"v{m.version}")
        nudge = t.minutes_due(m.starts_at, m.ends_at, ZoneInfo(community.timezone))
        await add_job(s, JOB_MINUTES, m.id, nudge, f"v{m.version}")
        armed = {o for o, _ in ahead}
        return ahead, [o for o in m.offsets if o not in armed]

    async def _post(self, s: AsyncSession, m: Meeting, community: Community, chats: Sequence[Chat]) -> None:
        tr = Translator(community.locale or self._locale)
        text, keyboard = post_text(tr, m, community.timezone, Counts()), post_keyboard(tr, m)
        for chat in chats:
            await enqueue(
                s, chat_id=chat.id, thread_id=chat.topic_id, community_id=community.id, text=text,
                keyboard=keyboard, ref=post_ref(m.id), dedup_key=f"m{m.id}:post:c{chat.id}",
            )

    async def _tell(self, s: AsyncSession, m: Meeting, community: Community,
                    render_chat: Callable[[Translator, list[User]], str], render_person: Render, *, key: str) -> None:
        """A notice to the meeting's chats and to everyone who answered: privately when they have
        started the bot; the others are named in the chat notice."""
        people = await self._answered(s, m.id, (ATTEND, LEAVE))
        unreachable = [u for u in people if not u.started]
        tr = Translator(community.locale or self._locale)
        for chat in await self._target_chats(s, community.id, m.audience):
            await enqueue(s, chat_id=chat.id, thread_id=chat.topic_id, community_id=community.id,
                          text=render_chat(tr, unreachable), dedup_key=f"{key}:c{chat.id}")
        for user in people:
            if user.started:
                await notify_user(s, user, render_person, community=community, default_locale=self._locale,
                                  fallback_chat_id=None, dedup_key=f"{key}:u{user.id}")

    async def _card(self, s: AsyncSession, m: Meeting, community: Community | None = None) -> Card:
        community = community or await self._community(s, m.community_id)
        counts = (await self.counts(s, [m.id]))[m.id]
        return Card(m, community, counts, await self._posts(s, m.id))

    # ------------------------------------------------------------------ scheduling

    async def schedule(self, *, actor_id: int, community_id: int, args: str) -> Scheduled:
        """/meeting: posted to the member chats (议事协商会 to the resident chats) with its buttons."""
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            community = await self._community(s, community_id)
            now = self.ctx.clock()
            try:
                draft = parse_meeting(args, now=now, tz=ZoneInfo(community.timezone))
            except MeetingInputError as exc:
                raise UserError(exc.key, **exc.params) from None
            chats = await self._target_chats(s, community_id, draft.audience)
            if not chats:
                raise UserError("err_meeting_no_chats", kind=Term(f"mtg_kind_{draft.kind}"),
                                chats=Term(f"chat_kind_{draft.audience}"))
            local = draft.starts_at.astimezone(ZoneInfo(community.timezone))
            m = Meeting(
                community_id=community_id,
                number=await next_number(s, community_id, "meeting"),
                kind=draft.kind,
                audience=draft.audience,
                title=draft.title,
                place=draft.place,
                starts_at=draft.starts_at,
                ends_at=self.timing.ends_at(draft.starts_at),
                planned_at=draft.starts_at,
                offsets=list(draft.offsets),
                repeat=draft.repeat,
                repeat_day=local.day if draft.repeat else None,
                status=SCHEDULED,
                version=1,
                created_by=actor_id,
                created_at=now,
                updated_at=now,
            )
            s.add(m)
            await s.flush()
            ahead, skipped = await self._arm(s, m, community)
            await self._post(s, m, community, chats)
        return Scheduled(m, community, Counts(), [], reminders=ahead, skipped=skipped, chats=chats)

    async def move(self, *, actor_id: int, community_id: int, number: int, when_text: str) -> Card:
        """/movemeeting: only the new time's reminders fire; the chat and those who answered are told."""
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            community = await self._community(s, community_id)
            m = await self._meeting(s, community_id, number, lock=True)
            now = self.ctx.clock()
            if m.status == CANCELLED:
                raise UserError("err_meeting_cancelled", n=number)
            if m.ends_at <= now:
                raise UserError("err_meeting_over", n=number)
            try:
                new_start = read_when(when_text, now=now, tz=ZoneInfo(community.timezone))
            except MeetingInputError as exc:
                raise UserError(exc.key, **exc.params) from None
            if new_start == m.starts_at:
                raise UserError("err_meeting_same_time", n=number)
            old = m.starts_at
            await self._supersede(s, m)
            m.version += 1
            m.starts_at = new_start
            m.ends_at = self.timing.ends_at(new_start)
            m.updated_at = now
            await s.flush()
            await self._arm(s, m, community)
            tz = community.timezone

            def chat_text(tr: Translator, unreachable: list[User]) -> str:
                return moved_text(tr, m, tz, old, unreachable)

            def person_text(tr: Translator) -> tuple[str, Keyboard | None]:
                return moved_text(tr, m, tz, old), None

            await self._tell(s, m, community, chat_text, person_text, key=f"m{m.id}:v{m.version}:moved")
            return await self._card(s, m, community)

    async def cancel(self, *, actor_id: int, community_id: int, number: int, reason: str | None) -> Card:
        """/cancelmeeting: no reminder fires after this, and a monthly series stops."""
        note = (reason or "").strip() or None
        if note is not None and len(note) > MAX_REASON:
            raise UserError("err_meeting_reason_too_long", limit=MAX_REASON, length=len(note))
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            community = await self._community(s, community_id)
            m = await self._meeting(s, community_id, number, lock=True)
            if m.status == CANCELLED:
                raise UserError("err_meeting_cancelled", n=number)
            if m.ends_at <= self.ctx.clock():
                raise UserError("err_meeting_over", n=number)
            await self._supersede(s, m)
            m.status = CANCELLED
            m.cancel_reason = note
            m.version += 1
            m.updated_at = self.ctx.clock()
            await s.flush()
            tz = community.timezone

            def chat_text(tr: Translator, unreachable: list[User]) -> str:
                return cancelled_text(tr, m, tz, unreachable)

            def person_text(tr: Translator) -> tuple[str, Keyboard | None]:
                return cancelled_text(tr, m, tz), None

            await self._tell(s, m, community, chat_text, person_text, key=f"m{m.id}:cancelled")
            return await self._card(s, m, community)

    # ------------------------------------------------------------------ answering

    async def respond(self, *, actor_id: int, meeting_id: int, response: str) -> Responded:
        """参加 / 请假 by button. Changing one's mind is fine until the start."""
        assert response in (ATTEND, LEAVE)
        async with self.ctx.tx() as s:
            m = await self._by_id(s, meeting_id)
            if m.status == CANCELLED:
                raise UserError("err_meeting_cancelled", n=m.number)
            now = self.ctx.clock()
            if now >= m.starts_at:
                raise UserError("err_meeting_rsvp_closed", n=m.number)
            await self._require_answerer(s, m, actor_id)
            row = await s.get(MeetingAttendee, (m.id, actor_id))
            changed = row is None or row.response != response
            if changed:
                await upsert(
                    s, MeetingAttendee,
                    {"meeting_id": m.id, "user_id": actor_id, "response": response, "reason": None, "responded_at": now},
                    ["meeting_id", "user_id"], ["response", "reason", "responded_at"],
                )
            user = await s.get(User, actor_id)
            card = await self._card(s, m)
        return Responded(card.meeting, card.community, card.counts, card.posts, response=response, changed=changed,
                         started=bool(user and user.started))

    async def set_reason(self, *, actor_id: int, meeting_id: int, reason: str) -> Meeting:
        """The reason asked privately after 请假."""
        text = reason.strip()
        if not text:
            raise UserError("err_meeting_reason_missing")
        if len(text) > MAX_REASON:
            raise UserError("err_meeting_reason_too_long", limit=MAX_REASON, length=len(text))
        async with self.ctx.tx() as s:
            m = await self._by_id(s, meeting_id)
            if m.status == CANCELLED:
                raise UserError("err_meeting_cancelled", n=m.number)
            res = await s.execute(
                update(MeetingAttendee)
                .where(MeetingAttendee.meeting_id == m.id, MeetingAttendee.user_id == actor_id,
                       MeetingAttendee.response == LEAVE)
                .values(reason=text)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise UserError("err_meeting_not_on_leave", n=m.number)
        return m

    async def check_in(self, *, actor_id: int, meeting_id: int | None = None, community_id: int | None = None,
                       number: int | None = None) -> CheckIn:
        """签到, open from 30 min before to 2 h after the start; outside it nothing is recorded."""
        async with self.ctx.tx() as s:
            if meeting_id is not None:
                m = await self._by_id(s, meeting_id)
            else:
                assert community_id is not None and number is not None
                m = await self._meeting(s, community_id, number)
            if m.status == CANCELLED:
                raise UserError("err_meeting_cancelled", n=m.number)
            await self._require_answerer(s, m, actor_id)
            community = await self._community(s, m.community_id)
            now = self.ctx.clock()
            opens, closes = self.timing.checkin_window(m.starts_at)
            state = checkin_state(now, m.starts_at, self.timing)
            if state != "open":
                card = await self._card(s, m, community)
                return CheckIn(m, community, card.counts, card.posts, state=state, opens=opens, closes=closes)
            row = await s.get(MeetingAttendee, (m.id, actor_id))
            already = row is not None and row.checked_in_at is not None
            if not already:
                await upsert(s, MeetingAttendee, {"meeting_id": m.id, "user_id": actor_id, "checked_in_at": now},
                             ["meeting_id", "user_id"])
                await s.execute(
                    update(MeetingAttendee)
                    .where(MeetingAttendee.meeting_id == m.id, MeetingAttendee.user_id == actor_id,
                           MeetingAttendee.checked_in_at.is_(None))
                    .values(checked_in_at=now)
                )
            at = row.checked_in_at if already and row is not None else now
            card = await self._card(s, m, community)
        return CheckIn(m, community, card.counts, card.posts, state=state, opens=opens, closes=closes,
                       already=already, at=at)

    # ------------------------------------------------------------------ the secretary's views

    async def attendance(self, *, actor_id: int, community_id: int, number: int) -> Attendance:
        """Attended, on leave (with reasons), absent: among the community's members for party
        meetings; among those who said they would come for 议事协商会."""
        async with self.ctx.read() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            community = await self._community(s, community_id)
            m = await self._meeting(s, community_id, number)
            rows = (await s.execute(
                select(MeetingAttendee, User)
                .join(User, User.id == MeetingAttendee.user_id)
                .where(MeetingAttendee.meeting_id == m.id)
                .order_by(MeetingAttendee.checked_in_at, MeetingAttendee.responded_at, User.id)
            )).all()
            attended = [(u, a.checked_in_at) for a, u in rows if a.checked_in_at is not None]
            on_leave = [(u, a.reason) for a, u in rows if a.checked_in_at is None and a.response == LEAVE]
            accounted = {u.id for u, _ in attended} | {u.id for u, _ in on_leave}
            if m.audience == MEMBER:
                members = list(await s.scalars(
                    select(User)
                    .where(User.id.in_(
                        select(ChatMember.user_id)
                        .join(Chat, Chat.id == ChatMember.chat_id)
                        .where(Chat.community_id == community_id, Chat.kind == MEMBER, ChatMember.status.in_(PRESENT))
                    ))
                    .order_by(User.id)
                ))
                expected = {u.id for u in members} | accounted
                absent = [u for u in members if u.id not in accounted]
            else:
                absent = [u for a, u in rows if a.response == ATTEND and a.checked_in_at is None]
                expected = accounted | {u.id for u in absent}
            card = await self._card(s, m, community)
        return Attendance(m, community, card.counts, card.posts, attended=attended, on_leave=on_leave, absent=absent,
                          expected=len(expected), window=checkin_state(self.ctx.clock(), m.starts_at, self.timing))

    async def record_minutes(self, *, actor_id: int, community_id: int, number: int, text: str) -> Card:
        """/minutes: kept with the meeting and posted to its chats."""
        body = text.strip()
        if not body:
            raise UserError("err_usage_minutes")
        if len(body) > MAX_MINUTES:
            raise UserError("err_meeting_minutes_too_long", limit=MAX_MINUTES, length=len(body))
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            community = await self._community(s, community_id)
            m = await self._meeting(s, community_id, number, lock=True)
            if m.status == CANCELLED:
                raise UserError("err_meeting_cancelled", n=number)
            now = self.ctx.clock()
            opens, _ = self.timing.checkin_window(m.starts_at)
            if now < opens:
                raise UserError("err_meeting_minutes_early", n=number)
            m.minutes = body
            m.minutes_at = now
            m.minutes_by = actor_id
            m.updated_at = now
            tr = Translator(community.locale or self._locale)
            stamp = int(now.timestamp() * 1000)
            for chat in await self._target_chats(s, community_id, m.audience):
                await enqueue(s, chat_id=chat.id, thread_id=chat.topic_id, community_id=community_id,
                              text=minutes_text(tr, m, community.timezone), dedup_key=f"m{m.id}:minutes:{stamp}:c{chat.id}")
            return await self._card(s, m, community)

    # ------------------------------------------------------------------ reading

    async def card(self, meeting_id: int) -> Card:
        async with self.ctx.read() as s:
            return await self._card(s, await self._by_id(s, meeting_id))

    async def upcoming(self, *, actor_id: int, community_id: int | None, chat_kind: str | None) -> list[Upcoming]:
        """/meetings: what has not ended yet, of one community (a group's) or of all the user's."""
        async with self.ctx.read() as s:
            if community_id is not None:
                community_ids = [community_id]
            else:
                community_ids = [r.community_id for r in await self.ctx.roles.communities_of(s, actor_id)]
                if not community_ids:
                    raise UserError("err_no_community")
            out: list[Upcoming] = []
            now = self.ctx.clock()
            for cid in community_ids:
                community = await self._community(s, cid)
                found = list(await s.scalars(
                    select(Meeting)
                    .where(Meeting.community_id == cid, Meeting.status == SCHEDULED, Meeting.ends_at > now)
                    .order_by(Meeting.starts_at, Meeting.id)
                    .limit(LIST_LIMIT * 3)
                ))
                visible = [m for m in found if await self._may_see(s, m, actor_id, chat_kind)][:LIST_LIMIT]
                counts = await self.counts(s, [m.id for m in visible])
                out.append(Upcoming(community, [(m, counts[m.id]) for m in visible]))
        return out

    async def ics(self, *, actor_id: int, community_id: int, number: int, chat_kind: str | None) -> tuple[Meeting, bytes]:
        async with self.ctx.read() as s:
            community = await self._community(s, community_id)
            m = await self._meeting(s, community_id, number)
            if not await self._may_see(s, m, actor_id, chat_kind):
                raise Denied("err_meeting_not_visible", n=number)
            data = meeting_ics(m, community=community.name, tz=community.timezone, timing=self.timing,
                               now=self.ctx.clock())
        return m, data

    # ------------------------------------------------------------------ timers

    async def _job_remind_many(self, s: AsyncSession, jobs: list[Job]) -> dict[int, str | None]:
        """Every due reminder at once: a few queries for the lot, then one INSERT of their messages.

        Each job stands down unless its meeting still has its version and offset, is scheduled,
        has not begun, and no later reminder is due too (after an outage: one reminder, not two).
        """
        now = self.ctx.clock()
        timing = self.timing
        # Plain rows throughout (no ORM objects: a burst reads thousands); the meetings locked, so a
        # move or cancel in flight waits for this transaction or is seen by it.
        meetings = {m.id: m for m in (await s.execute(
            select(*Meeting.__table__.c).where(Meeting.id.in_({j.ref_id for j in jobs})).with_for_update()
        )).all()}
        out: dict[int, str | None] = {}
        live: list[tuple[Job, Any, int]] = []
        for job in jobs:
            m = meetings.get(job.ref_id)
            version, offset = _parse_guard(job.guard)
            if m is None or m.status != SCHEDULED or m.version != version or offset not in m.offsets:
                out[job.id] = "moved-on"
            elif now >= m.starts_at:
                out[job.id] = "too-late"  # the bot was down until after the start
            elif timing.superseded(m.starts_at, offset, m.offsets, now):
                out[job.id] = "superseded"
            else:
                live.append((job, m, offset))
        if not live:
            return out
        ids = {m.id for _, m, _ in live}
        community_ids = {m.community_id for _, m, _ in live}
        communities = {c.id: c for c in (await s.execute(
            select(Community.id, Community.name, Community.timezone, Community.locale)
            .where(Community.id.in_(community_ids))
        )).all()}
        chats: dict[tuple[int, str], list[Any]] = defaultdict(list)
        for chat in (await s.execute(
            select(Chat.id, Chat.community_id, Chat.kind, Chat.topic_id)
            .where(Chat.community_id.in_(community_ids), Chat.kind.in_((MEMBER, RESIDENT)), Chat.bot_status != "left")
            .order_by(Chat.id)
        )).all():
            chats[(chat.community_id, chat.kind)].append(chat)
        # Everyone who answered, in one query of plain rows (no ORM objects: a burst has thousands).
        going: dict[int, list[Person]] = defaultdict(list)
        tally: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for row in (await s.execute(
            select(MeetingAttendee.meeting_id, MeetingAttendee.response, MeetingAttendee.checked_in_at, User.id,
                   User.first_name, User.last_name, User.username, User.language, User.started)
            .join(User, User.id == MeetingAttendee.user_id)
            .where(MeetingAttendee.meeting_id.in_(ids))
            .order_by(MeetingAttendee.responded_at, User.id)
        )).all():
            t = tally[row[0]]
            t[0] += row[1] == ATTEND
            t[1] += row[1] == LEAVE
            t[2] += row[2] is not None
            if row[1] == ATTEND:
                going[row[0]].append(Person(*row[3:]))
        rows: list[dict[str, Any]] = []

        def row(chat_id: int, text: str, keyboard: dict[str, Any] | None, community_id: int, dedup_key: str,
                thread_id: int | None = None, ref: str | None = None) -> None:
            """An outbox row as plain values; the columns left out are NULL."""
            rows.append({
                "community_id": community_id, "chat_id": chat_id, "thread_id": thread_id, "text": text,
                "keyboard": keyboard, "pin": False, "ref": ref, "dedup_key": dedup_key, "status": "pending",
                "attempts": 0, "not_before": now, "created_at": now,
            })

        for job, m, offset in live:
            community = communities[m.community_id]
            tz = community.timezone
            tr = Translator(community.locale or self._locale)
            head = head_lines(tr, m, tz)
            people = going[m.id]
            counts = Counts(*tally[m.id]) if m.id in tally else Counts()
            unreachable = [p for p in people if not p.started]
            text = reminder_text(tr, m, tz, offset, counts, unreachable, head=head)  # type: ignore[arg-type]
            keyboard = _keyboard_json(post_keyboard(tr, m))
            for chat in chats[(m.community_id, m.audience)]:
                row(chat.id, text, keyboard, community.id, f"m{m.id}:r:{job.guard}:c{chat.id}",
                    thread_id=chat.topic_id, ref=f"meeting:{m.id}:remind")
            private: dict[str, tuple[str, dict[str, Any] | None]] = {}  # one rendering per language
            for person in people:
                if not person.started:
                    continue
                locale = person.language or community.locale or self._locale
                if locale not in private:
                    utr = Translator(locale)
                    private[locale] = (
                        private_reminder_text(utr, m, tz, offset, community.name,
                                              head=head if utr.locale == tr.locale else None),
                        _keyboard_json(checkin_keyboard(utr, m)),
                    )
                body, kb = private[locale]
                row(person.id, body, kb, community.id, f"m{m.id}:r:{job.guard}:u{person.id}")
            out[job.id] = "reminded"
        await _enqueue_many(s, rows)
        return out

    async def _job_end(self, s: AsyncSession, job: Job) -> str:
        """An occurrence ended: a monthly meeting (主题党日) gets its next occurrence, posted with
        its own reminders."""
        m = await s.get(Meeting, job.ref_id, with_for_update=True)
        if m is None or m.status != SCHEDULED or f"v{m.version}" != job.guard:
            return "moved-on"
        if m.repeat != "month" or m.repeat_day is None:
            return "ended"
        if await s.scalar(select(Meeting.id).where(Meeting.previous_id == m.id)) is not None:
            return "repeated"
        community = await self._community(s, m.community_id)
        chats = await self._target_chats(s, community.id, m.audience)
        if not chats:
            return "no-chats"
        now = self.ctx.clock()
        start = next_monthly(m.planned_at, m.repeat_day, ZoneInfo(community.timezone), after=now)
        nxt = Meeting(
            community_id=m.community_id,
            number=await next_number(s, m.community_id, "meeting"),
            kind=m.kind,
            audience=m.audience,
            title=m.title,
            place=m.place,
            starts_at=start,
            ends_at=self.timing.ends_at(start),
            planned_at=start,
            offsets=list(m.offsets),
            repeat=m.repeat,
            repeat_day=m.repeat_day,
            previous_id=m.id,
            status=SCHEDULED,
            version=1,
            created_by=m.created_by,
            created_at=now,
            updated_at=now,
        )
        s.add(nxt)
        await s.flush()
        await self._arm(s, nxt, community)
        await self._post(s, nxt, community, chats)
        return "repeated"

    async def _job_minutes(self, s: AsyncSession, job: Job) -> str:
        """The morning after a meeting without minutes, the secretaries are reminded once."""
        m = await s.get(Meeting, job.ref_id)
        if m is None or m.status != SCHEDULED or f"v{m.version}" != job.guard:
            return "moved-on"
        if m.minutes:
            return "has-minutes"
        community = await self._community(s, m.community_id)
        tz = community.timezone

        def render(tr: Translator) -> tuple[str, Keyboard | None]:
            return tr("mtg_minutes_nudge", n=m.number, kind=kind_name(tr, m.kind), title=m.title,
                      when=when(tr, m.starts_at, tz)), None

        await alert_secretaries(s, community, await self._secretaries(s, community.id), render,
                                default_locale=self._locale, dedup_key=f"m{m.id}:minutes-nudge")
        return "nudged"

    # ------------------------------------------------------------------ personal data

    async def _export_user(self, s: AsyncSession, user_id: int) -> dict[str, Any]:
        rows = (await s.execute(
            select(MeetingAttendee, Meeting)
            .join(Meeting, Meeting.id == MeetingAttendee.meeting_id)
            .where(MeetingAttendee.user_id == user_id)
            .order_by(Meeting.starts_at)
        )).all()
        answers = []
        for a, m in rows:
            item = row_dict(a)
            item.update({"community_id": m.community_id, "meeting_number": m.number, "meeting_title": m.title,
                         "meeting_starts_at": m.starts_at.isoformat()})
            answers.append(item)
        created = await s.scalars(select(Meeting).where(Meeting.created_by == user_id))
        return {
            "rsvps": [a for a in answers if a["response"] is not None],
            "check_ins": [a for a in answers if a["checked_in_at"] is not None],
            "scheduled": [{"community_id": m.community_id, "number": m.number, "title": m.title} for m in created],
        }

    async def _forget_user(self, s: AsyncSession, user_id: int) -> None:
        """Their answers and check-ins go; meetings they scheduled or minuted stay, unnamed."""
        await s.execute(delete(MeetingAttendee).where(MeetingAttendee.user_id == user_id))
        await s.execute(update(Meeting).where(Meeting.created_by == user_id).values(created_by=None))
        await s.execute(update(Meeting).where(Meeting.minutes_by == user_id).values(minutes_by=None))
