"""Volunteer tasks (志愿任务): announce, claim exactly (认领), waitlist (候补), report, confirm, points.

Claims are exact under any concurrency because the database decides them: a slot is taken by a
conditional UPDATE of the task's counter (`claimed < slots`), and one person holds one row per
task (a unique key). Nothing is read first and written after. Every change that the posted
message shows bumps `roster_version`; the roster refresher re-renders the post from the
database afterwards, so a burst of presses becomes a handful of edits that always end on the
latest state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, literal, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.demands import OPEN as DEMAND_OPEN
from bot.domain.demands import excerpt
from bot.domain.tasks import (
    CANCELLED,
    CONFIRMED,
    MAX_NOTE,
    MAX_REASON,
    OPEN,
    WAITLIST_NAMES,
    TaskDraft,
    TaskInputError,
    When,
    parse_points,
    parse_skills,
    parse_slots,
    parse_task,
    parse_time,
    period_start,
    reminder_due,
    skill_key,
)
from bot.scheduler.runner import JobRunner, add_job
from bot.services.base import ServiceContext
from bot.services.errors import Denied, NotFound, UserError
from bot.services.notify import alert_secretaries, enqueue, notify_user
from bot.services.personal import row_dict
from bot.services.roles import PRESENT, secretary_users
from bot.services.task_batches import ClaimBatcher
from bot.services.task_roster import Editor, RosterRefresher
from bot.services.unit import AlreadyHandled, UpdateUnit
from bot.storage.models import (
    Chat,
    ChatMember,
    Community,
    Demand,
    InboxUpdate,
    Job,
    Task,
    TaskClaim,
    TaskPost,
    User,
    VolunteerSkill,
)
from bot.storage.sequences import next_number
from bot.transport.port import Keyboard
from bot.ui.dates import format_when
from bot.ui.i18n import Translator
from bot.ui.tasks import Roster, digest, hours, task_post, when_text
from config.settings import parse_durations

log = logging.getLogger("linli.tasks")

JOB_REMIND = "task_remind"
LIST_LIMIT = 20
LEADERBOARD_TOP = 10
PERIODS = ("month", "year", "all")

Render = Callable[[Translator], tuple[str, Keyboard | None]]


def _guard(when: datetime) -> str:
    """The task time a reminder was made for, spelled the same however the datetime was zoned."""
    return when.astimezone(UTC).isoformat(timespec="seconds")


def _text(key: str, **params: Any) -> Render:
    def render(tr: Translator) -> tuple[str, Keyboard | None]:
        return tr(key, **params), None

    return render


def _input(exc: TaskInputError) -> UserError:
    return UserError(exc.key, **exc.params)


def _clean(text: str | None, limit: int, too_long: str) -> str | None:
    value = (text or "").strip()
    if not value:
        return None
    if len(value) > limit:
        raise UserError(too_long, limit=limit, length=len(value))
    return value


@dataclass
class Announced:
    task: Task
    community: Community
    chats: int  # member chats it was posted to
    mentioned: int  # members named for its skill


@dataclass
class ClaimResult:
    task_id: int
    number: int
    title: str
    outcome: str  # claimed | waiting | already_claimed | already_waiting
    position: int | None = None  # place on the waitlist


@dataclass
class UnclaimResult:
    number: int
    outcome: str  # unclaimed | left_waitlist
    promoted: str | None = None  # the name of the waiting member who got the slot


@dataclass
class Confirmed:
    task: Task
    awarded: list[str]  # names of the claimers who reported
    unreported: int
    demand_number: int | None


@dataclass
class Standing:
    rank: int
    user_id: int
    name: str
    points: int
    minutes: int


@dataclass
class Board:
    period: str
    top: list[Standing]
    mine: Standing | None


@dataclass
class Points:
    month_points: int
    month_minutes: int
    all_points: int
    all_minutes: int
    tasks: int  # confirmed tasks, all time


class TaskService:
    def __init__(self, ctx: ServiceContext, demands: Any | None = None, *, batch_claims: bool = True) -> None:
        self.ctx = ctx
        self.demands = demands  # DemandService, for tasks made from demands (/totask)
        self.roster = RosterRefresher(self)
        self.batch_claims = batch_claims
        self._batcher = ClaimBatcher(self)
        self._task_community: dict[int, int] = {}
        self.point_sources: list[Callable[[int], Any]] = []  # other capabilities' points (先锋指数)
        ctx.personal.register("tasks", self._export_user, self._forget_user)

    def register_jobs(self, jobs: JobRunner) -> None:
        jobs.register(JOB_REMIND, self._job_remind)

    def attach_editor(self, editor: Editor) -> None:
        """Where roster edits go (the one sender); without one, posts are not edited (service tests)."""
        self.roster.editor = editor

    async def start(self) -> None:
        """After a restart, bring every open task's post up to date (an edit may have been lost)."""
        async with self.ctx.read() as s:
            ids = list(await s.scalars(
                select(Task.id).where(Task.state == OPEN, Task.starts_at > self.ctx.clock() - timedelta(days=1))
            ))
        self.roster.start()
        await self.roster.touch(*ids)

    async def stop(self) -> None:
        await self.roster.stop()

    # ------------------------------------------------------------------ helpers

    @property
    def _locale(self) -> str:
        return self.ctx.settings.default_locale

    def _offsets(self) -> list[timedelta]:
        return parse_durations(self.ctx.settings.task_remind_before)

    async def _community(self, s: AsyncSession, community_id: int) -> Community:
        community = await s.get(Community, community_id)
        if community is None:
            raise NotFound("err_no_community")
        return community

    async def _task(self, s: AsyncSession, community_id: int, number: int) -> Task:
        task = await s.scalar(select(Task).where(Task.community_id == community_id, Task.number == number))
        if task is None:
            raise NotFound("err_task_unknown", n=number)
        return task

    async def _require_member(self, s: AsyncSession, community_id: int, user_id: int) -> None:
        """Members claim tasks; a secretary may too."""
        if await self.ctx.roles.is_member(s, community_id, user_id):
            return
        if await self.ctx.roles.is_secretary(s, community_id, user_id):
            return
        raise Denied("err_task_members_only")

    def _refuse_closed(self, task: Task) -> None:
        if task.state == CANCELLED:
            raise UserError("err_task_cancelled", n=task.number)
        if task.state == CONFIRMED:
            raise UserError("err_task_confirmed", n=task.number)

    async def _member_chats(self, s: AsyncSession, community_id: int) -> list[Chat]:
        return list(await s.scalars(
            select(Chat)
            .where(Chat.community_id == community_id, Chat.kind == "member", Chat.bot_status != "left")
            .order_by(Chat.id)
        ))

    async def _tell(self, s: AsyncSession, user: User, community: Community, render: Render, *, key: str) -> None:
        """Privately when they started the bot, else a mention in the (first) member chat."""
        chats = await self._member_chats(s, community.id)
        chat = chats[0] if chats else None
        await notify_user(s, user, render, community=community, default_locale=self._locale,
                          fallback_chat_id=chat.id if chat else None,
                          fallback_thread_id=chat.topic_id if chat else None, dedup_key=key)

    async def _people(self, s: AsyncSession, task_id: int, statuses: Iterable[str]) -> list[User]:
        return list(await s.scalars(
            select(User).join(TaskClaim, TaskClaim.user_id == User.id)
            .where(TaskClaim.task_id == task_id, TaskClaim.status.in_(list(statuses)))
            .order_by(TaskClaim.status, TaskClaim.seq, TaskClaim.id)
        ))

    async def roster_of(self, s: AsyncSession, task: Task) -> Roster:
        """Every claimer (at most `slots`), the first names on the waitlist, and its length: a burst
        of 1,000 presses re-renders from three small queries, not a thousand rows."""
        person = (TaskClaim.user_id, User.first_name, User.last_name, User.username)
        claimers = (await s.execute(
            select(*person).outerjoin(User, User.id == TaskClaim.user_id)
            .where(TaskClaim.task_id == task.id, TaskClaim.status == "claimed")
            .order_by(TaskClaim.created_at, TaskClaim.id)
        )).all()
        first_waiting = (await s.execute(
            select(*person).outerjoin(User, User.id == TaskClaim.user_id)
            .where(TaskClaim.task_id == task.id, TaskClaim.status == "waiting", TaskClaim.user_id.is_not(None))
            .order_by(TaskClaim.seq, TaskClaim.id).limit(WAITLIST_NAMES)
        )).all()
        roster = Roster()
        roster.waiting_total = int(await s.scalar(
            select(func.count()).select_from(TaskClaim)
            .where(TaskClaim.task_id == task.id, TaskClaim.status == "waiting")
        ) or 0)
        for user_id, first, last, username in claimers:
            if user_id is None:
                roster.anonymous += 1
            else:
                roster.claimers.append(_name(first, last, username, user_id))
        roster.waiting = [_name(first, last, username, uid) for uid, first, last, username in first_waiting]
        return roster

    async def _offered_by(self, s: AsyncSession, task: Task) -> list[tuple[int, str]]:
        """Members of the community who offer the task's skill (志愿者服务清单)."""
        if not task.skill:
            return []
        in_member_chat = (
            select(ChatMember.user_id).join(Chat, Chat.id == ChatMember.chat_id)
            .where(Chat.community_id == task.community_id, Chat.kind == "member", ChatMember.status.in_(PRESENT))
        )
        users = await s.scalars(
            select(User).join(VolunteerSkill, VolunteerSkill.user_id == User.id)
            .where(VolunteerSkill.community_id == task.community_id, VolunteerSkill.key == skill_key(task.skill),
                   User.id.in_(in_member_chat))
            .order_by(User.id)
        )
        return [(u.id, u.display_name) for u in users]

    async def render_post(self, s: AsyncSession, task: Task, locale: str, tz: str) -> tuple[str, Keyboard]:
        roster = await self.roster_of(s, task)
        return task_post(Translator(locale), task, tz, roster, await self._offered_by(s, task))

    async def _arm_reminders(self, s: AsyncSession, task: Task) -> None:
        for off, due in reminder_due(task.starts_at, self._offsets(), self.ctx.clock()):
            await add_job(s, JOB_REMIND, task.id, due, f"{_guard(task.starts_at)}|{int(off.total_seconds())}")

    # ------------------------------------------------------------------ announcing

    async def announce(self, *, actor_id: int, community_id: int, args: str, chat_kind: str | None) -> Announced:
        """/task: a secretary posts a task to the community's member chat(s)."""
        if chat_kind == "resident":
            raise UserError("err_task_where")
        async with self.ctx.tx() as s:
            community = await self._community(s, community_id)
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            try:
                draft = parse_task(args, now=self.ctx.clock(), tz=ZoneInfo(community.timezone))
            except TaskInputError as exc:
                raise _input(exc) from None
            return await self._create(s, community, actor_id, draft, demand_id=None)

    async def _create(self, s: AsyncSession, community: Community, actor_id: int, draft: TaskDraft,
                      demand_id: int | None) -> Announced:
        chats = await self._member_chats(s, community.id)
        if not chats:
            raise UserError("err_task_no_member_chat")
        task = Task(
            community_id=community.id, number=await next_number(s, community.id, "task"), title=draft.title,
            starts_at=draft.when.starts_at.astimezone(UTC), minutes=draft.when.minutes, slots=draft.slots,
            points=draft.points, place=draft.place, skill=draft.skill, demand_id=demand_id, created_by=actor_id,
            created_at=self.ctx.clock(),
        )
        s.add(task)
        await s.flush()
        offered = await self._offered_by(s, task)
        locale = community.locale or self._locale
        text, keyboard = task_post(Translator(locale), task, community.timezone, Roster(), offered)
        for chat in chats:
            row = await enqueue(s, chat_id=chat.id, thread_id=chat.topic_id, text=text, keyboard=keyboard,
                                community_id=community.id, ref=f"task:{task.id}:post")
            s.add(TaskPost(task_id=task.id, chat_id=chat.id, outbox_id=row.id if row else None, locale=locale,
                           shown=digest(text, keyboard)))
        await self._arm_reminders(s, task)
        return Announced(task, community, len(chats), len(offered))

    async def from_demand(self, *, actor_id: int, community_id: int, number: int, slots: str | None,
                          points: str | None, when: str | None) -> tuple[Announced, Demand]:
        """/totask: a demand becomes a task linked to it; confirming the task resolves the demand."""
        async with self.ctx.tx() as s:
            community = await self._community(s, community_id)
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            d = await s.scalar(select(Demand).where(Demand.community_id == community_id, Demand.number == number))
            if d is None:
                raise NotFound("err_demand_unknown", n=number)
            if d.state not in DEMAND_OPEN:
                raise UserError("err_totask_state", n=number)
            linked = await s.scalar(select(Task.number).where(Task.demand_id == d.id, Task.state == OPEN))
            if linked is not None:
                raise UserError("err_totask_exists", n=number, task=linked)
            tz = ZoneInfo(community.timezone)
            try:
                n_slots = parse_slots(slots) if slots else 1
                n_points = parse_points(points) if points else 0
                if when:
                    start = parse_time(when, now=self.ctx.clock(), tz=tz)
                else:  # no time given: tomorrow morning, echoed so the secretary can /movetask it
                    local = self.ctx.clock().astimezone(tz) + timedelta(days=1)
                    start = When(local.replace(hour=9, minute=0, second=0, microsecond=0), 120)
            except TaskInputError as exc:
                raise _input(exc) from None
            draft = TaskDraft(excerpt(d.text, 60), start, n_slots, n_points, d.location[:100] if d.location else None,
                              None)
            announced = await self._create(s, community, actor_id, draft, demand_id=d.id)
            if self.demands is not None:
                await self.demands.accept_in(s, d, actor_id, f"#{announced.task.number}")
        return announced, d

    # ------------------------------------------------------------------ claiming

    async def task_id_for(self, community_id: int, number: int) -> int:
        async with self.ctx.read() as s:
            task_id = await s.scalar(select(Task.id).where(Task.community_id == community_id, Task.number == number))
        if task_id is None:
            raise NotFound("err_task_unknown", n=number)
        return task_id

    async def _community_of_task(self, task_id: int) -> int:
        """A task's community never changes: remembered, so a press costs no extra query."""
        cid = self._task_community.get(task_id)
        if cid is None:
            async with self.ctx.read() as s:
                cid = await s.scalar(select(Task.community_id).where(Task.id == task_id))
            if cid is None:
                raise NotFound("err_task_gone")
            if len(self._task_community) > 10_000:
                self._task_community.clear()
            self._task_community[task_id] = cid
        return cid

    async def claim(self, *, actor_id: int, task_id: int, order: int | None = None) -> ClaimResult:
        """认领: a free slot, else the waitlist (候补) in press order; one row per person per task.

        `order` is the press's place in the stream of updates (update_id): presses that wait for the
        same transaction are taken in that order. With batching on, presses of one task that arrive
        while its previous transaction runs share the next one (group commit)."""
        if self.batch_claims:
            return await self._batcher.submit(task_id, actor_id, order)
        [result] = await self._claim_batch(task_id, [(actor_id, order or 0)])
        if isinstance(result, BaseException):
            raise result
        return result

    async def _claim_batch(
        self, task_id: int, presses: list[tuple[int, int]], units: list[UpdateUnit | None] | None = None,
    ) -> list[ClaimResult | UserError | AlreadyHandled]:
        """One transaction for several presses of one task, in order. Exact under any concurrency:
        the first statement locks the task row (PostgreSQL; SQLite has one writer), the counter moves
        only by a conditional UPDATE that cannot pass `slots` (and a CHECK constraint behind it), and
        the unique (task, user) key refuses a second row for one person.

        `units`, beside `presses`: the update each press came in, marked handled in this transaction
        (so the claim and the mark commit together); a press whose update was handled elsewhere
        meanwhile claims nothing and gets AlreadyHandled."""
        community_id = await self._community_of_task(task_id)
        people = list(dict.fromkeys(uid for uid, _ in presses))
        # Who may claim, decided before the task row is locked (a secretary check may ask Telegram).
        async with self.ctx.read() as s:
            allowed = set(await s.scalars(
                select(ChatMember.user_id).join(Chat, Chat.id == ChatMember.chat_id)
                .where(Chat.community_id == community_id, Chat.kind == "member", ChatMember.status.in_(PRESENT),
                       ChatMember.user_id.in_(people))
            ))
            for uid in people:
                if uid not in allowed and await self.ctx.roles.is_secretary(s, community_id, uid):
                    allowed.add(uid)
        if not allowed:
            return [Denied("err_task_members_only") for _ in presses]
        now = self.ctx.clock()
        out: dict[int, ClaimResult | UserError] = {}
        async with self.ctx.tx() as s:
            # Writing the row (even to the same value) locks it: this batch now decides alone.
            head = (await s.execute(
                update(Task)
                .where(Task.id == task_id, Task.state == OPEN, Task.starts_at > now)
                .values(roster_version=Task.roster_version)
                .returning(Task.claimed, Task.slots, Task.queue_seq, Task.number, Task.title)
                .execution_options(synchronize_session=False)
            )).first()
            if head is None:
                await self._why_not(s, task_id, now)
                raise NotFound("err_task_gone")
            claimed, slots, queue_seq, number, title = head
            handled_elsewhere = await self._mark_updates(s, units, now) if units else set()
            if handled_elsewhere:
                people = list(dict.fromkeys(uid for i, (uid, _) in enumerate(presses) if i not in handled_elsewhere))
            mine = {uid: (st, seq) for uid, st, seq in (await s.execute(
                select(TaskClaim.user_id, TaskClaim.status, TaskClaim.seq)
                .where(TaskClaim.task_id == task_id, TaskClaim.user_id.in_(people))
            )).all()}
            waiting_before = int(await s.scalar(
                select(func.count()).select_from(TaskClaim)
                .where(TaskClaim.task_id == task_id, TaskClaim.status == "waiting")
            ) or 0)
            new = [uid for uid in people if uid in allowed and uid not in mine]
            free = max(0, slots - claimed)
            granted, waiting = new[:free], new[free:]
            if new:
                # Conditional: under the lock this always holds; were it ever not to, nothing is saved.
                moved = await s.execute(
                    update(Task)
                    .where(Task.id == task_id, Task.claimed + len(granted) <= Task.slots)
                    .values(claimed=Task.claimed + len(granted), queue_seq=Task.queue_seq + len(waiting),
                            roster_version=Task.roster_version + 1)
                    .execution_options(synchronize_session=False)
                )
                if moved.rowcount != 1:  # type: ignore[attr-defined]
                    raise RuntimeError(f"task {task_id}: slots moved under the lock")
                rows = [{"task_id": task_id, "user_id": uid, "status": "claimed", "seq": 0, "created_at": now,
                         "points": 0, "minutes": 0} for uid in granted]
                rows += [{"task_id": task_id, "user_id": uid, "status": "waiting", "seq": queue_seq + i + 1,
                          "created_at": now, "points": 0, "minutes": 0} for i, uid in enumerate(waiting)]
                inserted = set(await s.scalars(self._insert_claims(s), rows))
                lost = [uid for uid in granted if uid not in inserted]
                if lost:  # the same person claimed through another instance meanwhile: their slot goes back
                    await s.execute(update(Task).where(Task.id == task_id).values(claimed=Task.claimed - len(lost))
                                    .execution_options(synchronize_session=False))
                for uid in granted:
                    if uid in inserted:
                        out[uid] = ClaimResult(task_id, number, title, "claimed")
                for i, uid in enumerate(waiting):
                    if uid in inserted:
                        out[uid] = ClaimResult(task_id, number, title, "waiting", waiting_before + i + 1)
                missing = [uid for uid in new if uid not in inserted]
                if missing:
                    mine.update({uid: (st, seq) for uid, st, seq in (await s.execute(
                        select(TaskClaim.user_id, TaskClaim.status, TaskClaim.seq)
                        .where(TaskClaim.task_id == task_id, TaskClaim.user_id.in_(missing))
                    )).all()})
            for uid, (st, seq) in mine.items():
                if st == "claimed":
                    out[uid] = ClaimResult(task_id, number, title, "already_claimed")
                else:
                    out[uid] = ClaimResult(task_id, number, title, "already_waiting",
                                           await self._position(s, task_id, seq))
            if new:
                await self.roster.mark(s, task_id)
        for i, unit in enumerate(units or []):
            if unit is not None and i not in handled_elsewhere:
                unit.marked_elsewhere()
        results: list[ClaimResult | UserError | AlreadyHandled] = []
        seen: set[int] = set()
        for i, (uid, _) in enumerate(presses):
            if i in handled_elsewhere:
                results.append(AlreadyHandled())
            elif uid not in allowed:
                results.append(Denied("err_task_members_only"))
            elif uid in seen:  # pressed twice in one batch: the second press finds the first
                first = out[uid]
                again = "already_claimed" if first.outcome in ("claimed", "already_claimed") else "already_waiting"
                results.append(ClaimResult(task_id, number, title, again, first.position))
            else:
                results.append(out[uid])
            seen.add(uid)
        return results

    @staticmethod
    async def _mark_updates(s: AsyncSession, units: list[UpdateUnit | None], now: datetime) -> set[int]:
        """Marks the presses' updates handled (as their units would); returns the indexes of the
        presses whose update someone else handled already."""
        ids = [uid for unit in units if unit is not None for uid in unit.update_ids]
        if not ids:
            return set()
        done = set(await s.scalars(
            update(InboxUpdate)
            .where(InboxUpdate.update_id.in_(ids), InboxUpdate.handled_at.is_(None))
            .values(handled_at=now, attempts=InboxUpdate.attempts + 1)
            .returning(InboxUpdate.update_id)
            .execution_options(synchronize_session=False)
        ))
        return {i for i, unit in enumerate(units) if unit is not None and not done.issuperset(unit.update_ids)}

    def _insert_claims(self, s: AsyncSession) -> Any:
        """Claim rows, given as parameter sets (executemany: compiled once, not once per batch size);
        returns the user ids actually inserted."""
        dialect = s.bind.dialect.name if s.bind else "sqlite"
        table = TaskClaim.__table__
        ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        return ins.on_conflict_do_nothing(index_elements=["task_id", "user_id"]).returning(table.c.user_id)

    async def _position(self, s: AsyncSession, task_id: int, seq: int) -> int:
        return int(await s.scalar(
            select(func.count()).select_from(TaskClaim)
            .where(TaskClaim.task_id == task_id, TaskClaim.status == "waiting", TaskClaim.seq <= seq)
        ) or 0)

    async def _why_not(self, s: AsyncSession, task_id: int, now: datetime) -> None:
        task = await s.get(Task, task_id)
        if task is None:
            raise NotFound("err_task_gone")
        self._refuse_closed(task)
        if task.starts_at <= now:
            raise UserError("err_task_started", n=task.number)

    async def unclaim(self, *, actor_id: int, task_id: int) -> UnclaimResult:
        """取消认领: the first in line takes the slot in the same transaction and is told privately."""
        now = self.ctx.clock()
        promoted_name: str | None = None
        async with self.ctx.tx() as s:
            # Lock the task first, so concurrent unclaims promote different people.
            locked = (await s.execute(
                update(Task).where(Task.id == task_id, Task.state == OPEN, Task.starts_at > now)
                .values(roster_version=Task.roster_version + 1)
                .returning(Task.number)
                .execution_options(synchronize_session=False)
            )).first()
            if locked is None:
                await self._why_not(s, task_id, now)
            task = await s.get(Task, task_id)
            assert task is not None
            gone = await s.scalar(
                delete(TaskClaim).where(TaskClaim.task_id == task_id, TaskClaim.user_id == actor_id)
                .returning(TaskClaim.status).execution_options(synchronize_session=False)
            )
            if gone is None:
                raise UserError("err_task_not_on", n=task.number)
            if gone != "claimed":
                outcome = "left_waitlist"
            else:
                outcome = "unclaimed"
                promoted = await self._promote(s, task)
                promoted_name = promoted.display_name if promoted else None
            await self.roster.mark(s, task_id)
        return UnclaimResult(task.number, outcome, promoted_name)

    async def _promote(self, s: AsyncSession, task: Task) -> User | None:
        """A slot came free (the task row is locked): the first waiting takes it, else the count drops."""
        first = await s.scalar(
            select(TaskClaim).where(TaskClaim.task_id == task.id, TaskClaim.status == "waiting")
            .order_by(TaskClaim.seq, TaskClaim.id).limit(1)
        )
        if first is None:
            await s.execute(update(Task).where(Task.id == task.id).values(claimed=Task.claimed - 1)
                            .execution_options(synchronize_session=False))
            return None
        first.status = "claimed"
        first.created_at = self.ctx.clock()
        user = await s.get(User, first.user_id) if first.user_id is not None else None
        if user is not None:
            community = await self._community(s, task.community_id)

            def render(tr: Translator) -> tuple[str, Keyboard | None]:
                return tr("note_task_promoted", n=task.number, title=task.title,
                          when=when_text(tr, task, community.timezone)), None

            await self._tell(s, user, community, render, key=f"task{task.id}:promoted:c{first.id}:{_guard(first.created_at)}")
        return user

    # ------------------------------------------------------------------ reading

    async def listing(self, *, actor_id: int, community_id: int) -> tuple[list[Task], str]:
        """/tasks: open tasks with free slots, soonest first."""
        async with self.ctx.read() as s:
            community = await self._community(s, community_id)
            await self._require_member(s, community_id, actor_id)
            rows = list(await s.scalars(
                select(Task).where(Task.community_id == community_id, Task.state == OPEN,
                                   Task.starts_at > self.ctx.clock(), Task.claimed < Task.slots)
                .order_by(Task.starts_at, Task.number).limit(LIST_LIMIT)
            ))
        return rows, community.timezone

    # ------------------------------------------------------------------ reporting and confirming

    async def report_done(self, *, actor_id: int, community_id: int, number: int, note: str | None,
                          photo: str | None) -> tuple[Task, bool]:
        """/done: a claimer reports the work; the secretaries are told. Returns (task, first report)."""
        text = _clean(note, MAX_NOTE, "err_task_note_too_long")
        async with self.ctx.tx() as s:
            task = await self._task(s, community_id, number)
            mine = await s.scalar(select(TaskClaim).where(TaskClaim.task_id == task.id, TaskClaim.user_id == actor_id))
            if mine is None or mine.status != "claimed":
                raise Denied("err_task_not_claimer", n=number)
            self._refuse_closed(task)
            first = mine.reported_at is None
            mine.reported_at = self.ctx.clock()
            mine.report_note = text
            mine.report_photo = photo or mine.report_photo
            community = await self._community(s, community_id)
            user = await s.get(User, actor_id)
            name = user.display_name if user else str(actor_id)
            secretaries = await secretary_users(s, self.ctx.roles, community_id)
            await alert_secretaries(
                s, community, secretaries,
                _text("alert_task_done", n=task.number, title=task.title, name=name, note=text or "-"),
                default_locale=self._locale, dedup_key=f"task{task.id}:done:u{actor_id}:{_guard(mine.reported_at)}",
            )
        return task, first

    async def confirm(self, *, actor_id: int, community_id: int, number: int) -> Confirmed:
        """/confirm: each claimer who reported gets the task's points and hours."""
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            task = await self._task(s, community_id, number)
            self._refuse_closed(task)
            community = await self._community(s, community_id)
            claims = list(await s.scalars(
                select(TaskClaim).where(TaskClaim.task_id == task.id, TaskClaim.status == "claimed")
                .order_by(TaskClaim.id)
            ))
            reported = [c for c in claims if c.reported_at is not None]
            if not reported:
                raise UserError("err_task_none_reported", n=number)
            # The conditional UPDATE makes a second, concurrent /confirm find nothing to do.
            res = await s.execute(
                update(Task).where(Task.id == task.id, Task.state == OPEN)
                .values(state=CONFIRMED, closed_at=self.ctx.clock(), roster_version=Task.roster_version + 1)
                .execution_options(synchronize_session=False)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise UserError("err_task_confirmed", n=number)
            task.state = CONFIRMED
            now = self.ctx.clock()
            names: list[str] = []
            notes: list[str] = []
            for c in reported:
                c.awarded_at = now
                c.points = task.points
                c.minutes = task.minutes
                user = await s.get(User, c.user_id) if c.user_id is not None else None
                if user is None:
                    continue
                names.append(user.display_name)
                notes.append(f"{user.display_name}: {c.report_note or '-'}")
                await self._tell(s, user, community, _text(
                    "note_task_confirmed", n=task.number, title=task.title, points=task.points,
                    hours=hours(task.minutes)), key=f"task{task.id}:confirmed:u{user.id}")
            demand_number = None
            if task.demand_id is not None and self.demands is not None:
                d = await s.get(Demand, task.demand_id)
                if d is not None and d.state in DEMAND_OPEN:
                    await self.demands.resolve_in(s, d, actor_id, "\n".join(notes)[:MAX_NOTE] or f"#{task.number}",
                                                  photo=next((c.report_photo for c in reported if c.report_photo), None))
                    demand_number = d.number
            await self.roster.mark(s, task.id)
        return Confirmed(task, names, len(claims) - len(reported), demand_number)

    # ------------------------------------------------------------------ changing and cancelling

    async def cancel(self, *, actor_id: int, community_id: int, number: int, reason: str | None) -> tuple[Task, int]:
        """/canceltask: claimers and waitlisted members are told privately. Returns (task, people told)."""
        text = _clean(reason, MAX_REASON, "err_task_reason_too_long")
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            task = await self._task(s, community_id, number)
            self._refuse_closed(task)
            res = await s.execute(
                update(Task).where(Task.id == task.id, Task.state == OPEN)
                .values(state=CANCELLED, cancel_reason=text, closed_at=self.ctx.clock(),
                        roster_version=Task.roster_version + 1)
                .execution_options(synchronize_session=False)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise UserError("err_task_cancelled", n=number)
            task.state, task.cancel_reason = CANCELLED, text
            community = await self._community(s, community_id)
            people = await self._people(s, task.id, ("claimed", "waiting"))
            for user in people:
                await self._tell(s, user, community, _text(
                    "note_task_cancelled", n=task.number, title=task.title, reason=text or "-",
                    when=format_when(task.starts_at, user.language or community.locale, community.timezone)),
                    key=f"task{task.id}:cancelled:u{user.id}")
            await self.roster.mark(s, task.id)
        return task, len(people)

    async def move(self, *, actor_id: int, community_id: int, number: int, when: str) -> tuple[Task, str, int]:
        """/movetask: a new time; claimers are told and only the new time's reminders fire."""
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            task = await self._task(s, community_id, number)
            self._refuse_closed(task)
            community = await self._community(s, community_id)
            if not when.strip():
                raise UserError("err_usage_movetask")
            try:
                new = parse_time(when, now=self.ctx.clock(), tz=ZoneInfo(community.timezone))
            except TaskInputError as exc:
                raise _input(exc) from None
            old = task.starts_at
            task.starts_at = new.starts_at.astimezone(UTC)
            if new.ranged:  # else the task keeps its duration
                task.minutes = new.minutes
            task.roster_version += 1
            await s.flush()
            await self._arm_reminders(s, task)  # the old reminders see another time and stand down
            people = await self._people(s, task.id, ("claimed",))
            for user in people:
                locale = user.language or community.locale
                await self._tell(s, user, community, _text(
                    "note_task_moved", n=task.number, title=task.title,
                    old=format_when(old, locale, community.timezone),
                    when=format_when(task.starts_at, locale, community.timezone)),
                    key=f"task{task.id}:moved:{_guard(task.starts_at)}:u{user.id}")
            tz = community.timezone
            await self.roster.mark(s, task.id)
        return task, tz, len(people)

    # ------------------------------------------------------------------ skills (志愿者服务清单)

    async def set_skills(self, *, actor_id: int, community_id: int, text: str) -> list[str]:
        clear = text.strip() in ("-", "—", "无", "none", "clear")
        try:
            names = [] if clear else parse_skills(text)
        except TaskInputError as exc:
            raise _input(exc) from None
        async with self.ctx.tx() as s:
            await self._community(s, community_id)
            await self._require_member(s, community_id, actor_id)
            await s.execute(delete(VolunteerSkill).where(VolunteerSkill.community_id == community_id,
                                                         VolunteerSkill.user_id == actor_id))
            for name in names:
                s.add(VolunteerSkill(community_id=community_id, user_id=actor_id, key=skill_key(name), name=name))
        return names

    async def skills_of(self, *, actor_id: int, community_id: int) -> list[str]:
        async with self.ctx.read() as s:
            await self._require_member(s, community_id, actor_id)
            return list(await s.scalars(
                select(VolunteerSkill.name).where(VolunteerSkill.community_id == community_id,
                                                  VolunteerSkill.user_id == actor_id).order_by(VolunteerSkill.key)
            ))

    # ------------------------------------------------------------------ points (先锋指数)

    def add_point_source(self, source: Callable[[int], Any]) -> None:
        """Another capability's points counted in /points and /leaderboard (a kept pledge):
        `source(community_id)` selects rows of (user_id, points, minutes, awarded_at, tasks)."""
        self.point_sources.append(source)

    def _awarded(self, community_id: int, since: datetime | None, user_id: int | None = None) -> Any:
        rows: Any = (
            select(TaskClaim.user_id.label("user_id"), TaskClaim.points.label("points"),
                   TaskClaim.minutes.label("minutes"), TaskClaim.awarded_at.label("awarded_at"),
                   literal(1).label("tasks"))
            .join(Task, Task.id == TaskClaim.task_id)
            .where(Task.community_id == community_id, TaskClaim.awarded_at.is_not(None),
                   TaskClaim.user_id.is_not(None))
        )
        if self.point_sources:
            rows = union_all(rows, *(source(community_id) for source in self.point_sources))
        sub = rows.subquery()
        q = (
            select(sub.c.user_id, func.sum(sub.c.points), func.sum(sub.c.minutes), func.sum(sub.c.tasks))
            .group_by(sub.c.user_id)
        )
        if since is not None:
            q = q.where(sub.c.awarded_at >= since)
        if user_id is not None:
            q = q.where(sub.c.user_id == user_id)
        return q

    async def points(self, *, actor_id: int, community_id: int) -> Points:
        async with self.ctx.read() as s:
            community = await self._community(s, community_id)
            await self._require_member(s, community_id, actor_id)
            since = period_start("month", self.ctx.clock(), ZoneInfo(community.timezone))
            month = (await s.execute(self._awarded(community_id, since, actor_id))).first()
            total = (await s.execute(self._awarded(community_id, None, actor_id))).first()
        return Points(int(month[1]) if month else 0, int(month[2]) if month else 0,
                      int(total[1]) if total else 0, int(total[2]) if total else 0, int(total[3]) if total else 0)

    async def leaderboard(self, *, actor_id: int, community_id: int, period: str | None) -> Board:
        key = (period or "all").strip().lower()
        aliases = {"本月": "month", "月": "month", "今年": "year", "年": "year", "全部": "all", "总": "all"}
        key = aliases.get(key, key)
        if key not in PERIODS:
            raise UserError("err_usage_leaderboard")
        async with self.ctx.read() as s:
            community = await self._community(s, community_id)
            await self._require_member(s, community_id, actor_id)
            since = period_start(key, self.ctx.clock(), ZoneInfo(community.timezone))
            rows = (await s.execute(self._awarded(community_id, since))).all()
            ordered = sorted(rows, key=lambda r: (-int(r[1]), -int(r[2]), r[0]))
            names = {u.id: u.display_name for u in await s.scalars(
                select(User).where(User.id.in_([r[0] for r in ordered[:LEADERBOARD_TOP]] + [actor_id])))}
        standings: list[Standing] = []
        rank = 0
        last: tuple[int, int] | None = None
        mine: Standing | None = None
        for i, (uid, pts, mins, _n) in enumerate(ordered, 1):
            if (int(pts), int(mins)) != last:  # equal points and hours share a rank
                rank, last = i, (int(pts), int(mins))
            st = Standing(rank, uid, names.get(uid, ""), int(pts), int(mins))
            if i <= LEADERBOARD_TOP:
                standings.append(st)
            if uid == actor_id:
                mine = st
        return Board(key, standings, mine)

    # ------------------------------------------------------------------ timers

    async def _job_remind(self, s: AsyncSession, job: Job) -> str:
        task = await s.get(Task, job.ref_id)
        if task is None or task.state != OPEN or job.guard.split("|")[0] != _guard(task.starts_at):
            return "moved-on"  # cancelled, confirmed, or moved: the new time has its own reminders
        if self.ctx.clock() >= task.starts_at:
            return "late"  # the bot was down past the start: a reminder now would only confuse
        community = await self._community(s, task.community_id)
        for user in await self._people(s, task.id, ("claimed",)):
            def render(tr: Translator) -> tuple[str, Keyboard | None]:
                return tr("note_task_reminder", n=task.number, title=task.title,
                          when=when_text(tr, task, community.timezone), place=task.place or "-"), None

            await self._tell(s, user, community, render, key=f"task{task.id}:remind:{job.guard}:u{user.id}")
        return "reminded"

    # ------------------------------------------------------------------ personal data

    async def _export_user(self, s: AsyncSession, user_id: int) -> dict[str, Any]:
        claims = (await s.execute(
            select(TaskClaim, Task.community_id, Task.number, Task.title)
            .join(Task, Task.id == TaskClaim.task_id).where(TaskClaim.user_id == user_id).order_by(TaskClaim.id)
        )).all()
        return {
            "claims": [{**row_dict(c), "community_id": cid, "task_number": n, "task_title": title}
                       for c, cid, n, title in claims],
            "points": sum(c.points for c, *_ in claims),
            "minutes": sum(c.minutes for c, *_ in claims),
            "skills": [row_dict(r) for r in await s.scalars(
                select(VolunteerSkill).where(VolunteerSkill.user_id == user_id))],
        }

    async def _forget_user(self, s: AsyncSession, user_id: int) -> None:
        """Gone from rosters and leaderboards. On an open task their place goes to the first in line;
        anything done stays counted, anonymised."""
        mine = list(await s.scalars(select(TaskClaim).where(TaskClaim.user_id == user_id)))
        touched: set[int] = set()
        for c in mine:
            task = await s.get(Task, c.task_id)
            if task is not None and task.state == OPEN and c.awarded_at is None:
                await s.execute(update(Task).where(Task.id == task.id)
                                .values(roster_version=Task.roster_version + 1)
                                .execution_options(synchronize_session=False))
                status = c.status
                await s.delete(c)
                await s.flush()
                if status == "claimed":
                    await self._promote(s, task)
                touched.add(task.id)
            else:
                c.user_id = None
                c.report_note = None
                c.report_photo = None
        await s.execute(delete(VolunteerSkill).where(VolunteerSkill.user_id == user_id))
        await s.execute(update(Task).where(Task.created_by == user_id).values(created_by=None)
                        .execution_options(synchronize_session=False))
        # The posts are re-rendered once /forget's transaction has committed.
        await self.roster.mark(s, *touched)


def _name(first: str | None, last: str | None, username: str | None, user_id: int) -> str:
    name = " ".join(p for p in (first, last) if p)
    return name or (f"@{username}" if username else str(user_id))
