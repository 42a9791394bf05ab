"""Volunteer tasks at the service level on a real database (SQLite, and PostgreSQL when set):
announce, exact claims under concurrency (also from two engines), the waitlist, report, confirm,
points, timers, /totask, skills, and /mydata and /forget. Time is a ManualClock."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.scheduler.runner import JobRunner
from bot.services.base import ServiceContext
from bot.services.clock import ManualClock
from bot.services.communities import CommunityService
from bot.services.demands import DemandService
from bot.services.errors import Denied, NotFound, UserError
from bot.services.people import PeopleService
from bot.services.roles import AdminCache, Roles
from bot.services.tasks import JOB_REMIND, TaskService
from bot.storage.db import make_engine, make_session_factory
from bot.storage.models import Demand, Job, Outbox, Task, TaskClaim, TaskPost, User, VolunteerSkill
from bot.transport.port import Chat as TChat
from bot.transport.port import User as TUser
from config.settings import load_settings
from tests.conftest import PG_URL
from tests.integration.conftest import ALICE, BOB, CAROL, MEM, RES, StatusBook, World

# Monday 2026-03-02 10:00 in Shanghai.
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
MEMBERS = [TUser(100 + i, f"志愿者{i}") for i in range(8)]
SAT = "2026-03-07 09:00"  # Saturday, in the community's time
TASK = f"清理楼道杂物 | {SAT} | 2 | 10 | 3号楼"


@dataclass
class Setup:
    w: World
    tasks: TaskService
    clock: ManualClock
    runner: JobRunner
    cid: int

    async def announce(self, args: str = TASK, actor: TUser = ALICE) -> Task:
        return (await self.tasks.announce(actor_id=actor.id, community_id=self.cid, args=args,
                                          chat_kind="member")).task

    async def claim(self, user: TUser, task: Task) -> Any:
        return await self.tasks.claim(actor_id=user.id, task_id=task.id)

    async def task(self, number: int = 1) -> Task:
        async with self.w.ctx.read() as s:
            t = await s.scalar(select(Task).where(Task.community_id == self.cid, Task.number == number))
            assert t is not None
            return t

    async def claims(self, task: Task) -> list[TaskClaim]:
        async with self.w.ctx.read() as s:
            return list(await s.scalars(select(TaskClaim).where(TaskClaim.task_id == task.id)
                                        .order_by(TaskClaim.status, TaskClaim.seq, TaskClaim.id)))

    async def outbox(self, after: int = 0) -> list[Outbox]:
        async with self.w.ctx.read() as s:
            return list(await s.scalars(select(Outbox).where(Outbox.id > after).order_by(Outbox.id)))

    async def last_outbox(self) -> int:
        async with self.w.ctx.read() as s:
            return int(await s.scalar(select(func.max(Outbox.id))) or 0)

    async def counts(self) -> tuple[int, ...]:
        """Everything a refused action must leave as it was."""
        async with self.w.ctx.read() as s:
            rows = [await s.scalar(select(func.count()).select_from(m)) or 0
                    for m in (Task, TaskClaim, TaskPost, Outbox, Job, VolunteerSkill)]
            state = (await s.execute(select(func.coalesce(func.sum(Task.claimed), 0),
                                            func.coalesce(func.sum(Task.roster_version), 0)))).one()
            awarded = await s.scalar(select(func.count()).select_from(TaskClaim)
                                     .where(TaskClaim.awarded_at.is_not(None)))
        return (*rows, *state, awarded)

    async def start(self, user: TUser) -> None:
        await self.w.see(user, TChat(user.id, "private"), "/start")


def make_context(engine: AsyncEngine, book: StatusBook, clock: ManualClock, **settings: Any) -> ServiceContext:
    cfg = load_settings(bot_token="1:x", **settings)
    roles = Roles(cfg.superadmins, AdminCache(book.lookup, ttl=0, admins=book.admins))
    return ServiceContext(sessions=make_session_factory(engine), roles=roles, settings=cfg, clock=clock)


async def build(engine: AsyncEngine, **settings: Any) -> Setup:
    book = StatusBook()
    clock = ManualClock(T0)
    ctx = make_context(engine, book, clock, **settings)
    demands = DemandService(ctx)
    w = World(ctx, book, PeopleService(ctx), CommunityService(ctx), demands)
    tasks = TaskService(ctx, demands, batch_claims=False)  # each claim its own transaction
    runner = JobRunner(ctx.sessions, clock=clock)
    demands.register_jobs(runner)
    tasks.register_jobs(runner)
    book.statuses[(RES.id, ALICE.id)] = "creator"
    book.statuses[(MEM.id, ALICE.id)] = "administrator"
    await w.see(ALICE, RES)
    await w.see(ALICE, MEM)
    r = await w.communities.setup(actor_id=ALICE.id, chat_id=RES.id, chat_is_group=True, thread_id=None,
                                  kind="resident", name="幸福里")
    await w.communities.setup(actor_id=ALICE.id, chat_id=MEM.id, chat_is_group=True, thread_id=7,
                              kind="member", name="幸福里")
    for user in (CAROL, *MEMBERS):
        await w.see(user, MEM)
    await w.see(BOB, RES)
    return Setup(w, tasks, clock, runner, r.community.id)


@pytest.fixture
async def su(engine: AsyncEngine) -> Setup:
    return await build(engine)


# ---------------------------------------------------------------------- announcing


async def test_announce_posts_to_the_member_chat_with_buttons_and_arms_reminders(su: Setup) -> None:
    t = await su.announce()
    assert (t.number, t.title, t.slots, t.points, t.place, t.minutes) == (1, "清理楼道杂物", 2, 10, "3号楼", 120)
    assert t.starts_at == datetime(2026, 3, 7, 1, 0, tzinfo=UTC)
    [post] = [o for o in await su.outbox() if o.ref == f"task:{t.id}:post"]
    assert (post.chat_id, post.thread_id) == (MEM.id, 7)  # in the /setup topic
    assert "志愿任务 #1" in post.text and "2026年3月7日 星期六 09:00" in post.text and "已认领 0/2" in post.text
    buttons = [b["text"] for row in post.keyboard["rows"] for b in row]
    assert any("认领" in b and "取消" not in b for b in buttons) and any("取消认领" in b for b in buttons)
    async with su.w.ctx.read() as s:
        jobs = list(await s.scalars(select(Job).where(Job.kind == JOB_REMIND).order_by(Job.due_at)))
        [tp] = list(await s.scalars(select(TaskPost)))
    assert [j.due_at for j in jobs] == [t.starts_at - timedelta(hours=24), t.starts_at - timedelta(hours=1)]
    assert tp.outbox_id == post.id and tp.chat_id == MEM.id


async def test_a_reminder_already_past_when_announced_is_skipped(su: Setup) -> None:
    await su.announce("明天见面 | 2026-03-02 20:00 | 2 | 0")  # ten hours ahead: the 24 h one is past
    async with su.w.ctx.read() as s:
        dues = list(await s.scalars(select(Job.due_at).where(Job.kind == JOB_REMIND)))
    assert dues == [datetime(2026, 3, 2, 11, 0, tzinfo=UTC)]


async def test_time_range_gives_the_duration(su: Setup) -> None:
    t = await su.announce("义诊 | 周六 9:00-11:30 | 3 | 5")
    assert t.minutes == 150


BAD_TASKS = [
    ("清理楼道", "err_task_usage"),
    ("清理楼道 | 周六 9:00 | 5", "err_task_usage"),
    (" | 周六 9:00 | 5 | 10", "err_task_missing_title"),
    ("清理楼道 |  | 5 | 10", "err_task_missing_when"),
    ("清理楼道 | 周六 9:00 |  | 10", "err_task_missing_slots"),
    ("清理楼道 | 周六 9:00 | 5 | ", "err_task_missing_points"),
    ("清理楼道 | 周六 9:00 | 0 | 10", "err_task_slots"),
    ("清理楼道 | 周六 9:00 | -3 | 10", "err_task_slots"),
    ("清理楼道 | 周六 9:00 | 五个 | 10", "err_task_slots"),
    ("清理楼道 | 周六 9:00 | 5 | -1", "err_task_points"),
    ("清理楼道 | 周六 9:00 | 5 | 很多", "err_task_points"),
    ("清理楼道 | 下下下周八 | 5 | 10", "err_task_date_unreadable"),
    ("清理楼道 | 2026-03-01 09:00 | 5 | 10", "err_task_date_past"),
    ("清理楼道 | 周六 11:00-9:00 | 5 | 10", "err_task_end_before_start"),
    ("清理楼道 | 周六 9:00 | 5 | 10 | 3号楼 | 水电, 理发", "err_task_one_skill"),
    ("x" * 101 + " | 周六 9:00 | 5 | 10", "err_task_title_too_long"),
]


async def test_bad_task_input_is_refused_and_nothing_is_saved(su: Setup) -> None:
    before = await su.counts()
    for args, key in BAD_TASKS:
        with pytest.raises(UserError) as err:
            await su.announce(args)
        assert err.value.key == key, args
    assert await su.counts() == before


async def test_only_secretaries_announce_and_not_in_a_resident_chat(su: Setup) -> None:
    before = await su.counts()
    with pytest.raises(Denied) as err:
        await su.announce(actor=CAROL)
    assert err.value.key == "err_not_secretary"
    with pytest.raises(UserError) as err2:
        await su.tasks.announce(actor_id=ALICE.id, community_id=su.cid, args=TASK, chat_kind="resident")
    assert err2.value.key == "err_task_where"
    assert await su.counts() == before


# ---------------------------------------------------------------------- claiming


async def test_claims_fill_the_slots_then_the_waitlist_in_press_order(su: Setup) -> None:
    t = await su.announce()
    outcomes = [await su.claim(u, t) for u in MEMBERS[:5]]
    assert [(r.outcome, r.position) for r in outcomes] == [
        ("claimed", None), ("claimed", None), ("waiting", 1), ("waiting", 2), ("waiting", 3)]
    # A second press claims nothing twice and says where they stand.
    assert (await su.claim(MEMBERS[0], t)).outcome == "already_claimed"
    again = await su.claim(MEMBERS[3], t)
    assert (again.outcome, again.position) == ("already_waiting", 2)
    t = await su.task()
    assert t.claimed == 2
    claims = await su.claims(t)
    assert [(c.user_id, c.status) for c in claims] == [
        (MEMBERS[0].id, "claimed"), (MEMBERS[1].id, "claimed"),
        (MEMBERS[2].id, "waiting"), (MEMBERS[3].id, "waiting"), (MEMBERS[4].id, "waiting")]
    async with su.w.ctx.read() as s:
        roster = await su.tasks.roster_of(s, t)
        text, _ = await su.tasks.render_post(s, t, "zh", "Asia/Shanghai")
    assert roster.claimers == ["志愿者0", "志愿者1"] and roster.waiting_total == 3
    assert "已认领 2/2: 志愿者0, 志愿者1" in text and "候补: 志愿者2, 志愿者3, 志愿者4" in text


async def test_unclaim_promotes_the_first_waiting_and_tells_them(su: Setup) -> None:
    t = await su.announce()
    for u in MEMBERS[:4]:
        await su.claim(u, t)
    await su.start(MEMBERS[2])
    mark = await su.last_outbox()
    r = await su.tasks.unclaim(actor_id=MEMBERS[0].id, task_id=t.id)
    assert (r.outcome, r.promoted) == ("unclaimed", "志愿者2")
    claims = await su.claims(t)
    assert [(c.user_id, c.status) for c in claims] == [
        (MEMBERS[1].id, "claimed"), (MEMBERS[2].id, "claimed"), (MEMBERS[3].id, "waiting")]
    assert (await su.task()).claimed == 2
    [note] = await su.outbox(mark)
    assert note.chat_id == MEMBERS[2].id and "候补递补" in note.text
    # Leaving the waitlist frees no slot; an unclaim with nobody waiting lowers the count.
    r = await su.tasks.unclaim(actor_id=MEMBERS[3].id, task_id=t.id)
    assert r.outcome == "left_waitlist"
    await su.tasks.unclaim(actor_id=MEMBERS[1].id, task_id=t.id)
    assert (await su.task()).claimed == 1
    with pytest.raises(UserError) as err:
        await su.tasks.unclaim(actor_id=MEMBERS[5].id, task_id=t.id)
    assert err.value.key == "err_task_not_on"


async def test_non_members_cannot_claim(su: Setup) -> None:
    t = await su.announce()
    before = await su.counts()
    with pytest.raises(Denied) as err:
        await su.claim(BOB, t)
    assert err.value.key == "err_task_members_only"
    assert await su.counts() == before


async def test_cancelled_confirmed_and_past_tasks_cannot_be_claimed(su: Setup) -> None:
    a = await su.announce()
    b = await su.announce()
    c = await su.announce("明早 | 2026-03-03 09:00 | 2 | 0")
    await su.claim(MEMBERS[0], b)
    await su.tasks.report_done(actor_id=MEMBERS[0].id, community_id=su.cid, number=b.number, note=None, photo=None)
    await su.tasks.confirm(actor_id=ALICE.id, community_id=su.cid, number=b.number)
    await su.tasks.cancel(actor_id=ALICE.id, community_id=su.cid, number=a.number, reason="下雨")
    su.clock.advance(timedelta(days=1))  # c has begun
    before = await su.counts()
    for task, key in ((a, "err_task_cancelled"), (b, "err_task_confirmed"), (c, "err_task_started")):
        with pytest.raises(UserError) as err:
            await su.claim(MEMBERS[1], task)
        assert err.value.key == key
    with pytest.raises(NotFound) as nf:
        await su.tasks.task_id_for(su.cid, 99)
    assert nf.value.key == "err_task_unknown"
    assert await su.counts() == before


async def _claim_all(tasks: list[TaskService], task_id: int, users: list[int]) -> list[Any]:
    return await asyncio.gather(*(tasks[i % len(tasks)].claim(actor_id=uid, task_id=task_id, order=i)
                                  for i, uid in enumerate(users)))


async def _many_members(su: Setup, n: int) -> list[int]:
    from bot.storage.models import ChatMember
    from bot.storage.models import User as UserRow

    ids = list(range(10_000, 10_000 + n))
    async with su.w.ctx.tx() as s:
        s.add_all([UserRow(id=i, first_name=f"m{i}") for i in ids])
        await s.flush()
        s.add_all([ChatMember(chat_id=MEM.id, user_id=i) for i in ids])
    return ids


async def _assert_exact(su: Setup, task: Task, claimers: int, waiting: int) -> None:
    t = await su.task(task.number)
    claims = await su.claims(t)
    assert t.claimed == claimers == sum(1 for c in claims if c.status == "claimed")
    waits = [c for c in claims if c.status == "waiting"]
    assert len(waits) == waiting
    assert len({c.seq for c in waits}) == waiting  # every place in line is distinct
    assert len({c.user_id for c in claims}) == len(claims)


@pytest.mark.parametrize("batched", [False, True], ids=["separate-sessions", "batched"])
async def test_200_concurrent_claims_on_10_slots_are_exact(su: Setup, batched: bool) -> None:
    """Unbatched, each claim is its own session and transaction, all at once: the database alone
    keeps the count. Batched (as the bot runs), presses share transactions in press order."""
    su.tasks.batch_claims = batched
    t = await su.announce(f"社区义诊 | {SAT} | 10 | 5")
    users = await _many_members(su, 200)
    results = await _claim_all([su.tasks], t.id, users)
    if batched:  # the waitlist is in press order
        waits = [c for c in await su.claims(t) if c.status == "waiting"]
        assert [c.user_id for c in sorted(waits, key=lambda c: c.seq)] == users[10:]
    assert sum(r.outcome == "claimed" for r in results) == 10
    assert sorted(r.position for r in results if r.outcome == "waiting") == list(range(1, 191))
    await _assert_exact(su, t, 10, 190)
    # Everyone presses again at once: nobody claims twice, nothing moves.
    again = await _claim_all([su.tasks], t.id, users)
    assert {r.outcome for r in again} == {"already_claimed", "already_waiting"}
    await _assert_exact(su, t, 10, 190)


async def test_a_batch_marks_its_presses_updates_with_their_claims(su: Setup) -> None:
    """As the bot runs: each press is handled in its update's unit; the batch that claims for it
    marks the update handled in the same transaction, so the unit has nothing left to mark. A press
    whose update was handled already (a redelivery) claims nothing."""
    from bot.services.unit import AlreadyHandled, UpdateUnit
    from bot.storage.models import InboxUpdate

    su.tasks.batch_claims = True
    t = await su.announce(f"社区义诊 | {SAT} | 2 | 5")
    users = await _many_members(su, 6)
    ids = list(range(500, 506))
    async with su.w.ctx.tx() as s:
        s.add_all([InboxUpdate(update_id=u, chat_id=MEM.id, user_id=uid, payload={"update_id": u})
                   for u, uid in zip(ids, users, strict=True)])
        await s.flush()
        await s.execute(update_stmt(InboxUpdate, ids[3]))  # handled elsewhere meanwhile

    async def press(update_id: int, uid: int) -> tuple[Any, UpdateUnit]:
        unit = UpdateUnit(su.w.ctx.sessions, [update_id], su.clock())
        unit.enter()
        try:
            try:
                result: Any = await su.tasks.claim(actor_id=uid, task_id=t.id, order=update_id)
            except AlreadyHandled as exc:
                result = exc
                await unit.rollback()
            else:
                await unit.write()  # what the dispatcher does before its commit: no second mark
                await unit.commit()
        finally:
            await unit.close()
        return result, unit

    done = await asyncio.gather(*(press(u, uid) for u, uid in zip(ids, users, strict=True)))
    results = [r for r, _ in done]
    assert isinstance(results[3], AlreadyHandled) and not done[3][1].marked
    assert [r.outcome for i, r in enumerate(results) if i != 3] == ["claimed", "claimed", "waiting", "waiting", "waiting"]
    assert all(unit.marked for i, (_, unit) in enumerate(done) if i != 3)
    await _assert_exact(su, t, 2, 3)
    assert users[3] not in {c.user_id for c in await su.claims(t)}
    async with su.w.ctx.read() as s:
        rows = {r.update_id: r for r in await s.scalars(select(InboxUpdate).where(InboxUpdate.update_id.in_(ids)))}
    assert all(r.handled_at is not None for r in rows.values())
    assert [rows[u].attempts for u in ids] == [1, 1, 1, 0, 1, 1]  # marked once each; the redelivery not again


def update_stmt(model: Any, update_id: int) -> Any:
    from sqlalchemy import update

    return update(model).where(model.update_id == update_id).values(handled_at=datetime.now(UTC))


async def test_concurrent_unclaims_promote_different_people(su: Setup) -> None:
    t = await su.announce(f"社区义诊 | {SAT} | 10 | 5")
    users = await _many_members(su, 30)
    for uid in users:  # in order: the first 10 claim, 20 wait
        await su.tasks.claim(actor_id=uid, task_id=t.id)
    await asyncio.gather(*(su.tasks.unclaim(actor_id=uid, task_id=t.id) for uid in users[:5]))
    await _assert_exact(su, t, 10, 15)
    claimed = {c.user_id for c in await su.claims(t) if c.status == "claimed"}
    assert claimed == set(users[5:15])  # the first five in line, in press order


@pytest.mark.skipif(not PG_URL, reason="two instances need PostgreSQL (TEST_DATABASE_URL)")
async def test_two_instances_on_postgresql_claim_exactly(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("two instances share one PostgreSQL")
    su = await build(engine)
    t = await su.announce(f"社区义诊 | {SAT} | 10 | 5")
    users = await _many_members(su, 200)
    assert PG_URL is not None
    second = make_engine(PG_URL)
    try:
        other = TaskService(make_context(second, su.w.book, su.clock), batch_claims=False)
        results = await _claim_all([su.tasks, other], t.id, users)
    finally:
        await second.dispose()
    assert sum(r.outcome == "claimed" for r in results) == 10
    await _assert_exact(su, t, 10, 190)


# ---------------------------------------------------------------------- report, confirm, points


async def test_done_confirm_points_and_leaderboard(su: Setup) -> None:
    t = await su.announce()  # 2 slots, 10 points, 2 h
    await su.claim(MEMBERS[0], t)
    await su.claim(MEMBERS[1], t)
    await su.claim(CAROL, t)  # waiting
    before = await su.counts()
    with pytest.raises(Denied) as err:  # /done by someone who did not claim it (waiting is not claiming)
        await su.tasks.report_done(actor_id=CAROL.id, community_id=su.cid, number=1, note=None, photo=None)
    assert err.value.key == "err_task_not_claimer"
    with pytest.raises(UserError) as err2:  # nothing reported yet
        await su.tasks.confirm(actor_id=ALICE.id, community_id=su.cid, number=1)
    assert err2.value.key == "err_task_none_reported"
    with pytest.raises(Denied) as err3:  # /confirm by a resident
        await su.tasks.confirm(actor_id=BOB.id, community_id=su.cid, number=1)
    assert err3.value.key == "err_not_secretary"
    assert await su.counts() == before

    mark = await su.last_outbox()
    await su.tasks.report_done(actor_id=MEMBERS[0].id, community_id=su.cid, number=1, note="搬了三车", photo="PHOTO")
    alert = [o for o in await su.outbox(mark) if "报告已完成" in o.text]
    assert alert and "搬了三车" in alert[0].text
    done = await su.tasks.confirm(actor_id=ALICE.id, community_id=su.cid, number=1)
    assert done.awarded == ["志愿者0"] and done.unreported == 1
    claims = {c.user_id: c for c in await su.claims(t)}
    assert (claims[MEMBERS[0].id].points, claims[MEMBERS[0].id].minutes) == (10, 120)
    assert claims[MEMBERS[1].id].points == 0
    assert (await su.task()).state == "confirmed"
    with pytest.raises(UserError) as err4:
        await su.tasks.confirm(actor_id=ALICE.id, community_id=su.cid, number=1)
    assert err4.value.key == "err_task_confirmed"

    # Next month, another task for 5 points.
    su.clock.advance(timedelta(days=30))
    t2 = await su.announce("植树 | 2026-04-11 09:00 | 3 | 5")
    await su.claim(MEMBERS[1], t2)
    await su.claim(MEMBERS[0], t2)
    for u in (MEMBERS[0], MEMBERS[1]):
        await su.tasks.report_done(actor_id=u.id, community_id=su.cid, number=t2.number, note=None, photo=None)
    await su.tasks.confirm(actor_id=ALICE.id, community_id=su.cid, number=t2.number)
    p = await su.tasks.points(actor_id=MEMBERS[0].id, community_id=su.cid)
    assert (p.month_points, p.month_minutes, p.all_points, p.all_minutes, p.tasks) == (5, 120, 15, 240, 2)
    board = await su.tasks.leaderboard(actor_id=CAROL.id, community_id=su.cid, period=None)
    assert [(s.rank, s.name, s.points) for s in board.top] == [(1, "志愿者0", 15), (2, "志愿者1", 5)]
    assert board.mine is None
    month = await su.tasks.leaderboard(actor_id=MEMBERS[1].id, community_id=su.cid, period="month")
    assert [(s.rank, s.points) for s in month.top] == [(1, 5), (1, 5)]  # a tie shares the rank
    assert month.mine is not None and month.mine.rank == 1
    with pytest.raises(UserError):
        await su.tasks.leaderboard(actor_id=CAROL.id, community_id=su.cid, period="week")


# ---------------------------------------------------------------------- timers


async def _fire_due(su: Setup) -> list[str | None]:
    async with su.w.ctx.read() as s:
        ids = list(await s.scalars(select(Job.id).where(Job.done_at.is_(None), Job.due_at <= su.clock())
                                   .order_by(Job.due_at)))
    return [await su.runner.fire(i) for i in ids]


async def test_reminders_follow_a_moved_task_and_stop_for_a_cancelled_one(su: Setup) -> None:
    a = await su.announce()
    b = await su.announce()
    for t in (a, b):
        await su.claim(MEMBERS[0], t)
    await su.start(MEMBERS[0])
    moved, _, told = await su.tasks.move(actor_id=ALICE.id, community_id=su.cid, number=a.number,
                                         when="2026-03-08 15:00")
    assert told == 1 and moved.starts_at == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    await su.tasks.cancel(actor_id=ALICE.id, community_id=su.cid, number=b.number, reason=None)
    mark = await su.last_outbox()
    su.clock.now = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)  # past every reminder, before the new start
    results = await _fire_due(su)
    reminders = [o for o in await su.outbox(mark) if "提醒" in o.text]
    # Old time's two and the cancelled task's two stand down; the new time's two fire (late ones too).
    assert sorted(r or "" for r in results) == sorted(["moved-on"] * 4 + ["reminded"] * 2)
    assert len(reminders) == 2 and all(o.chat_id == MEMBERS[0].id for o in reminders)
    assert all("2026年3月8日 星期日 15:00" in o.text for o in reminders)
    assert await _fire_due(su) == []  # once


async def test_a_reminder_after_the_start_is_not_sent(su: Setup) -> None:
    t = await su.announce()
    await su.claim(MEMBERS[0], t)
    su.clock.now = t.starts_at + timedelta(minutes=5)  # the bot was down across both reminders and the start
    mark = await su.last_outbox()
    assert await _fire_due(su) == ["late", "late"]
    assert await su.outbox(mark) == []


async def test_move_and_cancel_refusals(su: Setup) -> None:
    await su.announce()
    before = await su.counts()
    for when, key in (("不知道哪天", "err_task_date_unreadable"), ("2026-03-01 09:00", "err_task_date_past")):
        with pytest.raises(UserError) as err:
            await su.tasks.move(actor_id=ALICE.id, community_id=su.cid, number=1, when=when)
        assert err.value.key == key
    with pytest.raises(Denied):
        await su.tasks.move(actor_id=CAROL.id, community_id=su.cid, number=1, when="周日 9:00")
    with pytest.raises(Denied):
        await su.tasks.cancel(actor_id=CAROL.id, community_id=su.cid, number=1, reason=None)
    with pytest.raises(NotFound):
        await su.tasks.cancel(actor_id=ALICE.id, community_id=su.cid, number=7, reason=None)
    assert await su.counts() == before


async def test_cancel_tells_claimers_and_the_waitlist(su: Setup) -> None:
    t = await su.announce()
    for u in MEMBERS[:3]:
        await su.start(u)
        await su.claim(u, t)
    mark = await su.last_outbox()
    _, told = await su.tasks.cancel(actor_id=ALICE.id, community_id=su.cid, number=1, reason="天气原因")
    assert told == 3
    notes = await su.outbox(mark)
    assert sorted(o.chat_id for o in notes) == sorted(u.id for u in MEMBERS[:3])
    assert all("已取消" in o.text and "天气原因" in o.text for o in notes)


# ---------------------------------------------------------------------- /totask


async def test_totask_links_the_demand_and_confirming_resolves_it(su: Setup) -> None:
    await su.start(BOB)
    filed = await su.w.demands.file(actor_id=BOB.id, community_id=su.cid, text="楼下绿化带垃圾很多，需要清理",
                                    origin_chat_id=RES.id, origin_message_id=5)
    announced, d = await su.tasks.from_demand(actor_id=ALICE.id, community_id=su.cid, number=filed.demand.number,
                                              slots="2", points="5", when=None)
    t = announced.task
    assert t.demand_id == d.id and t.slots == 2 and t.points == 5 and "绿化带" in t.title
    assert t.starts_at == datetime(2026, 3, 3, 1, 0, tzinfo=UTC)  # tomorrow 9:00 in Shanghai
    with pytest.raises(UserError) as err:
        await su.tasks.from_demand(actor_id=ALICE.id, community_id=su.cid, number=d.number, slots=None,
                                   points=None, when=None)
    assert err.value.key == "err_totask_exists"
    await su.claim(MEMBERS[0], t)
    await su.tasks.report_done(actor_id=MEMBERS[0].id, community_id=su.cid, number=t.number, note="清理了两袋垃圾",
                               photo=None)
    mark = await su.last_outbox()
    done = await su.tasks.confirm(actor_id=ALICE.id, community_id=su.cid, number=t.number)
    assert done.demand_number == d.number
    async with su.w.ctx.read() as s:
        d2 = await s.get(Demand, d.id)
    assert d2 is not None and d2.state == "resolved" and "清理了两袋垃圾" in (d2.resolution_note or "")
    rating = [o for o in await su.outbox(mark) if o.chat_id == BOB.id]
    assert rating and rating[0].keyboard is not None  # the submitter is asked to rate it as usual


# ---------------------------------------------------------------------- skills, personal data


async def test_skills_are_named_when_a_task_needs_them(su: Setup) -> None:
    assert await su.tasks.set_skills(actor_id=CAROL.id, community_id=su.cid, text="水电维修，理发、 陪护就医") == [
        "水电维修", "理发", "陪护就医"]
    await su.tasks.set_skills(actor_id=MEMBERS[0].id, community_id=su.cid, text="ＡＢＣ维修, 水电 维修")
    before = await su.counts()
    for text, key in (("，、", "err_skills_usage"), ("x" * 21, "err_skill_too_long"),
                      (",".join(str(i) for i in range(11)), "err_skills_too_many")):
        with pytest.raises(UserError) as err:
            await su.tasks.set_skills(actor_id=CAROL.id, community_id=su.cid, text=text)
        assert err.value.key == key
    with pytest.raises(Denied):
        await su.tasks.set_skills(actor_id=BOB.id, community_id=su.cid, text="理发")
    assert await su.counts() == before
    announced = await su.tasks.announce(actor_id=ALICE.id, community_id=su.cid, chat_kind=None,
                                        args=f"修水管 | {SAT} | 1 | 5 | 2号楼 | 水电维修")
    assert announced.mentioned == 2
    [post] = [o for o in await su.outbox() if o.ref == f"task:{announced.task.id}:post"]
    assert f'tg://user?id={CAROL.id}' in post.text and f'tg://user?id={MEMBERS[0].id}' in post.text
    assert await su.tasks.set_skills(actor_id=CAROL.id, community_id=su.cid, text="-") == []
    assert await su.tasks.skills_of(actor_id=CAROL.id, community_id=su.cid) == []


async def test_mydata_and_forget(su: Setup) -> None:
    done_task = await su.announce()
    open_task = await su.announce()
    for t in (done_task, open_task):
        await su.claim(MEMBERS[0], t)
        await su.claim(MEMBERS[1], t)
        await su.claim(MEMBERS[2], t)  # waiting on both
    await su.tasks.report_done(actor_id=MEMBERS[0].id, community_id=su.cid, number=1, note="好", photo=None)
    await su.tasks.confirm(actor_id=ALICE.id, community_id=su.cid, number=1)
    await su.tasks.set_skills(actor_id=MEMBERS[0].id, community_id=su.cid, text="理发")
    doc = json.loads(await su.w.people.export(MEMBERS[0].id))
    assert doc["tasks"]["points"] == 10 and len(doc["tasks"]["claims"]) == 2
    assert doc["tasks"]["skills"][0]["name"] == "理发"

    await su.w.people.forget(MEMBERS[0].id)
    # The confirmed task keeps its count, anonymised; the open one gives the place to the first in line.
    claims = await su.claims(done_task)
    assert sum(c.status == "claimed" for c in claims) == 2 and None in {c.user_id for c in claims}
    open_claims = await su.claims(open_task)
    assert [(c.user_id, c.status) for c in open_claims] == [(MEMBERS[1].id, "claimed"), (MEMBERS[2].id, "claimed")]
    assert (await su.task(open_task.number)).claimed == 2
    async with su.w.ctx.read() as s:
        roster = await su.tasks.roster_of(s, await su.task(1))
        assert await s.get(User, MEMBERS[0].id) is None
        assert await s.scalar(select(func.count()).select_from(VolunteerSkill)) == 0
    assert "志愿者0" not in roster.claimers and roster.anonymous == 1
    board = await su.tasks.leaderboard(actor_id=MEMBERS[1].id, community_id=su.cid, period=None)
    assert board.top == []  # the only points were the forgotten member's
