"""Meetings at the service level, on a real database (SQLite, and PostgreSQL when configured).

Scheduling and its bad input, RSVP, reminders exactly once (moved, cancelled, missed while the
bot was down, fired by two runners), the check-in window, attendance, minutes and their nudge,
the monthly repetition, .ics, and /mydata and /forget. Time is a ManualClock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.scheduler.runner import JobRunner
from bot.services.base import ServiceContext
from bot.services.clock import ManualClock
from bot.services.communities import CommunityService
from bot.services.demands import DemandService
from bot.services.errors import Denied, NotFound, UserError
from bot.services.meetings import JOB_END, JOB_MINUTES, JOB_REMIND, MeetingService
from bot.services.people import PeopleService
from bot.services.roles import AdminCache, Roles
from bot.storage.db import make_engine, make_session_factory, writing
from bot.storage.models import Counter, Job, Meeting, MeetingAttendee, Outbox
from bot.transport.port import Chat as TChat
from bot.transport.port import User as TUser
from config.settings import load_settings
from tests.integration.conftest import ALICE, BOB, CAROL, MEM, RES, StatusBook, World

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=SH).astimezone(UTC)  # Monday 10:00 in Shanghai
THU = "2026-03-05 19:30"  # Thursday evening
THU_AT = datetime(2026, 3, 5, 19, 30, tzinfo=SH).astimezone(UTC)
JUDY = TUser(10, "Judy", username="judy")  # another member, has not started the bot
DAVE = TUser(4, "Dave", username="dave")  # another resident
SUPER = TUser(999, "Root", username="root")
HANK = TUser(8, "Hank", username="hank")  # secretary of community B
RES_B = TChat(-300, "supergroup", "阳光苑居民群")


@dataclass
class M:
    w: World
    svc: MeetingService
    clock: ManualClock
    runner: JobRunner
    cid: int
    cid_b: int

    async def schedule(self, args: str, actor: TUser = ALICE, cid: int | None = None) -> Meeting:
        return (await self.svc.schedule(actor_id=actor.id, community_id=cid or self.cid, args=args)).meeting

    async def start(self, user: TUser) -> None:
        await self.w.see(user, TChat(user.id, "private"), "/start")

    async def outbox(self, after: int = 0) -> list[Outbox]:
        async with self.w.ctx.read() as s:
            return list(await s.scalars(select(Outbox).where(Outbox.id > after).order_by(Outbox.id)))

    async def last_outbox_id(self) -> int:
        async with self.w.ctx.read() as s:
            return int(await s.scalar(select(func.max(Outbox.id))) or 0)

    async def jobs(self, meeting_id: int, kind: str = JOB_REMIND, *, pending: bool = False) -> list[Job]:
        async with self.w.ctx.read() as s:
            q = select(Job).where(Job.ref_id == meeting_id, Job.kind == kind)
            if pending:
                q = q.where(Job.done_at.is_(None))
            return list(await s.scalars(q.order_by(Job.due_at, Job.id)))

    async def meeting(self, number: int, cid: int | None = None) -> Meeting:
        async with self.w.ctx.read() as s:
            m = await s.scalar(select(Meeting).where(Meeting.community_id == (cid or self.cid), Meeting.number == number))
            assert m is not None
            return m

    async def attendee(self, meeting_id: int, user: TUser) -> MeetingAttendee | None:
        async with self.w.ctx.read() as s:
            return await s.get(MeetingAttendee, (meeting_id, user.id))

    async def counts(self) -> tuple[int, ...]:
        """Rows that a refused action must leave as they were."""
        async with self.w.ctx.read() as s:
            return tuple([int(await s.scalar(select(func.count()).select_from(t)) or 0)
                          for t in (Meeting, MeetingAttendee, Job, Outbox)]
                         + [int(await s.scalar(select(func.coalesce(func.sum(Counter.value), 0))) or 0)])

    async def fire_due(self) -> dict[int, str | None]:
        """What the timer would fire now: every pending job due by the clock."""
        async with self.w.ctx.read() as s:
            ids = list(await s.scalars(select(Job.id).where(Job.done_at.is_(None), Job.due_at <= self.clock())))
        return await self.runner.fire_many(ids)


async def build(engine: AsyncEngine, **settings: Any) -> M:
    book = StatusBook()
    cfg = load_settings(bot_token="1:x", superadmins=[SUPER.id], **settings)
    roles = Roles(cfg.superadmins, AdminCache(book.lookup, ttl=0, admins=book.admins))
    clock = ManualClock(T0)
    ctx = ServiceContext(sessions=make_session_factory(engine), roles=roles, settings=cfg, clock=clock)
    w = World(ctx, book, PeopleService(ctx), CommunityService(ctx), DemandService(ctx))
    svc = MeetingService(ctx)
    runner = JobRunner(ctx.sessions, clock=clock)
    svc.register_jobs(runner)

    async def bind(owner: TUser, res: TChat, mem: TChat | None, name: str) -> int:
        book.statuses[(res.id, owner.id)] = "creator"
        await w.see(owner, res)
        r = await w.communities.setup(actor_id=owner.id, chat_id=res.id, chat_is_group=True, thread_id=None,
                                      kind="resident", name=name)
        if mem is not None:
            book.statuses[(mem.id, owner.id)] = "administrator"
            await w.see(owner, mem)
            await w.communities.setup(actor_id=owner.id, chat_id=mem.id, chat_is_group=True, thread_id=7,
                                      kind="member", name=name)
        return r.community.id

    cid = await bind(ALICE, RES, MEM, "幸福里")
    cid_b = await bind(HANK, RES_B, None, "阳光苑")  # no member chat bound
    for user, chat in ((BOB, RES), (DAVE, RES), (CAROL, MEM), (JUDY, MEM), (ALICE, MEM)):
        await w.see(user, chat)
    m = M(w, svc, clock, runner, cid, cid_b)
    for user in (ALICE, BOB, CAROL):
        await m.start(user)
    return m


@pytest.fixture
def make(engine: AsyncEngine) -> Callable[..., Awaitable[M]]:
    async def factory(**settings: Any) -> M:
        return await build(engine, **settings)

    return factory


@pytest.fixture
async def mt(make: Callable[..., Awaitable[M]]) -> M:
    return await make()


# ---------------------------------------------------------------------------------------------- scheduling


async def test_schedule_posts_to_member_chat_topic_with_buttons_and_arms_reminders(mt: M) -> None:
    done = await mt.svc.schedule(actor_id=ALICE.id, community_id=mt.cid,
                                 args=f"{THU} | 学习<b>二十大</b> | 社区活动室 | 支部党员大会")
    m = done.meeting
    assert (m.number, m.kind, m.audience, m.title, m.place) == (1, "congress", "member", "学习<b>二十大</b>", "社区活动室")
    assert m.starts_at == THU_AT and m.ends_at == THU_AT + timedelta(hours=2)
    assert m.offsets == [86400, 3600] and m.status == "scheduled" and m.version == 1
    assert [o for o, _ in done.reminders] == [86400, 3600] and done.skipped == []
    assert [c.id for c in done.chats] == [MEM.id]
    posts = await mt.outbox()
    assert len(posts) == 1
    post = posts[0]
    assert (post.chat_id, post.thread_id, post.ref) == (MEM.id, 7, f"meeting:{m.id}:post")
    assert "2026年3月5日 星期四 19:30" in post.text and "参加 0 · 请假 0" in post.text
    assert "&lt;b&gt;二十大&lt;/b&gt;" in post.text  # user text escaped
    labels = [b["text"] for row in post.keyboard["rows"] for b in row]  # type: ignore[index]
    assert any("参加" in x for x in labels) and any("请假" in x for x in labels) and any("签到" in x for x in labels)
    reminders = await mt.jobs(m.id)
    assert [(j.due_at, j.guard) for j in reminders] == [
        (THU_AT - timedelta(days=1), "v1:86400"), (THU_AT - timedelta(hours=1), "v1:3600")]
    (end,) = await mt.jobs(m.id, JOB_END)
    assert end.due_at == m.ends_at
    (nudge,) = await mt.jobs(m.id, JOB_MINUTES)
    assert nudge.due_at == datetime(2026, 3, 6, 9, 0, tzinfo=SH)  # the morning after


async def test_consultation_goes_to_resident_chats_and_options_stand_anywhere(mt: M) -> None:
    m = await mt.schedule(f"{THU} | 加装电梯协商 | remind=2h,30m | 议事协商会 | 3号楼下")
    assert (m.kind, m.audience, m.place, m.offsets) == ("consultation", "resident", "3号楼下", [7200, 1800])
    (post,) = await mt.outbox()
    assert post.chat_id == RES.id and "议事协商会" in post.text


async def test_an_offset_already_past_is_skipped_not_fired_late(mt: M) -> None:
    mt.clock.now = THU_AT - timedelta(hours=5)
    done = await mt.svc.schedule(actor_id=ALICE.id, community_id=mt.cid, args=f"{THU} | 党课")
    assert done.skipped == [86400] and [o for o, _ in done.reminders] == [3600]
    assert [j.guard for j in await mt.jobs(done.meeting.id)] == ["v1:3600"]


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ("后天晚上吃饭 | 学习", "err_meeting_when_unreadable"),
        ("2020-01-01 19:30 | 学习", "err_meeting_when_past"),
        ("明天 | 学习", "err_meeting_when_no_time"),
        (f"{THU} | 学习 | 活动室 | 茶话会", "err_meeting_kind_unknown"),
        (f"{THU} | 学习 | remind=abc", "err_meeting_remind_bad"),
        (f"{THU} | 学习 | remind=0h", "err_meeting_remind_bad"),
        (f"{THU} | 学习 | remind=1d,12h,6h,1h,30m,10m", "err_meeting_remind_too_many"),
        (f"{THU} | 学习 | every=week", "err_meeting_every_bad"),
        (f"{THU}", "err_meeting_usage"),
        (f"{THU} | " + "长" * 101, "err_meeting_title_too_long"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_saved(mt: M, args: str, key: str) -> None:
    before = await mt.counts()
    with pytest.raises(UserError) as exc:
        await mt.svc.schedule(actor_id=ALICE.id, community_id=mt.cid, args=args)
    assert exc.value.key == key
    assert await mt.counts() == before


async def test_only_a_secretary_schedules_and_an_unbound_kind_of_chat_is_refused(mt: M) -> None:
    before = await mt.counts()
    with pytest.raises(Denied):
        await mt.svc.schedule(actor_id=CAROL.id, community_id=mt.cid, args=f"{THU} | 学习")
    with pytest.raises(UserError) as exc:  # community B has no member chat for a party meeting
        await mt.svc.schedule(actor_id=HANK.id, community_id=mt.cid_b, args=f"{THU} | 学习")
    assert exc.value.key == "err_meeting_no_chats"
    assert await mt.counts() == before
    with pytest.raises(Denied):  # a secretary of B is nobody in A
        await mt.svc.schedule(actor_id=HANK.id, community_id=mt.cid, args=f"{THU} | 学习")
    b = await mt.schedule(f"{THU} | 电梯协商 | 议事协商会", actor=HANK, cid=mt.cid_b)
    assert b.number == 1 and b.community_id == mt.cid_b


# ---------------------------------------------------------------------------------------------- answering


async def test_rsvp_counts_change_of_mind_and_leave_reason(mt: M) -> None:
    m = await mt.schedule(f"{THU} | 学习")
    r = await mt.svc.respond(actor_id=CAROL.id, meeting_id=m.id, response="attend")
    assert r.changed and (r.counts.attend, r.counts.leave) == (1, 0)
    r = await mt.svc.respond(actor_id=CAROL.id, meeting_id=m.id, response="attend")
    assert not r.changed and r.counts.attend == 1
    r = await mt.svc.respond(actor_id=JUDY.id, meeting_id=m.id, response="leave")
    assert (r.counts.attend, r.counts.leave) == (1, 1) and not r.started
    with pytest.raises(UserError) as exc:
        await mt.svc.set_reason(actor_id=CAROL.id, meeting_id=m.id, reason="有事")
    assert exc.value.key == "err_meeting_not_on_leave"
    await mt.svc.set_reason(actor_id=JUDY.id, meeting_id=m.id, reason="出差")
    assert (await mt.attendee(m.id, JUDY)).reason == "出差"  # type: ignore[union-attr]
    r = await mt.svc.respond(actor_id=JUDY.id, meeting_id=m.id, response="attend")
    assert (r.counts.attend, r.counts.leave) == (2, 0)
    assert (await mt.attendee(m.id, JUDY)).reason is None  # type: ignore[union-attr]


async def test_rsvp_refused_when_cancelled_past_or_not_a_member(mt: M) -> None:
    party = await mt.schedule(f"{THU} | 学习")
    with pytest.raises(Denied):  # a resident is not at party meetings
        await mt.svc.respond(actor_id=BOB.id, meeting_id=party.id, response="attend")
    consult = await mt.schedule(f"{THU} | 协商 | 议事协商会")
    assert (await mt.svc.respond(actor_id=BOB.id, meeting_id=consult.id, response="attend")).changed
    await mt.svc.cancel(actor_id=ALICE.id, community_id=mt.cid, number=party.number, reason=None)
    before = await mt.counts()
    with pytest.raises(UserError) as exc:
        await mt.svc.respond(actor_id=CAROL.id, meeting_id=party.id, response="attend")
    assert exc.value.key == "err_meeting_cancelled"
    mt.clock.now = THU_AT + timedelta(minutes=1)
    with pytest.raises(UserError) as exc:
        await mt.svc.respond(actor_id=DAVE.id, meeting_id=consult.id, response="leave")
    assert exc.value.key == "err_meeting_rsvp_closed"
    assert await mt.counts() == before


# ---------------------------------------------------------------------------------------------- reminders


async def test_reminder_goes_to_the_chat_and_privately_to_attendees_exactly_once(mt: M) -> None:
    m = await mt.schedule(f"{THU} | 学习 | remind=1h")
    await mt.svc.respond(actor_id=CAROL.id, meeting_id=m.id, response="attend")  # started the bot
    await mt.svc.respond(actor_id=JUDY.id, meeting_id=m.id, response="attend")  # has not
    await mt.svc.respond(actor_id=ALICE.id, meeting_id=m.id, response="leave")
    mark = await mt.last_outbox_id()
    mt.clock.now = THU_AT - timedelta(hours=1, seconds=1)
    assert await mt.fire_due() == {}  # not yet
    mt.clock.now = THU_AT - timedelta(hours=1)
    fired = await mt.fire_due()
    assert list(fired.values()) == ["reminded"]
    rows = await mt.outbox(mark)
    assert sorted(r.chat_id for r in rows) == sorted([MEM.id, CAROL.id])
    chat = next(r for r in rows if r.chat_id == MEM.id)
    assert chat.thread_id == 7 and "会议提醒" in chat.text and "1小时后开始" in chat.text
    assert "tg://user?id=10" in chat.text  # Judy can't be reached privately: named in the chat
    private = next(r for r in rows if r.chat_id == CAROL.id)
    assert "2026年3月5日 星期四 19:30" in private.text
    (job,) = await mt.jobs(m.id)
    assert await mt.runner.fire(job.id) is None  # once
    assert await mt.fire_due() == {}
    assert len(await mt.outbox(mark)) == 2


async def test_two_runners_firing_one_reminder_send_it_once(mt: M, engine: AsyncEngine) -> None:
    m = await mt.schedule(f"{THU} | 学习 | remind=1h")
    await mt.svc.respond(actor_id=CAROL.id, meeting_id=m.id, response="attend")
    mark = await mt.last_outbox_id()
    (job,) = await mt.jobs(m.id)
    mt.clock.now = job.due_at
    other_engine = engine if engine.dialect.name == "sqlite" else make_engine(engine.url.render_as_string(False))
    try:
        other = JobRunner(make_session_factory(other_engine), clock=mt.clock)
        mt.svc.register_jobs(other)
        results = await asyncio.gather(mt.runner.fire(job.id), other.fire(job.id))
    finally:
        if other_engine is not engine:
            await other_engine.dispose()
    assert sorted(results, key=str) == [None, "reminded"]
    assert len(await mt.outbox(mark)) == 2


async def test_moved_meeting_fires_only_the_new_reminders_even_when_the_old_timer_was_armed(mt: M) -> None:
    m = await mt.schedule(f"{THU} | 学习 | remind=1h")
    await mt.svc.respond(actor_id=CAROL.id, meeting_id=m.id, response="attend")
    (old,) = await mt.jobs(m.id)
    mark = await mt.last_outbox_id()
    card = await mt.svc.move(actor_id=ALICE.id, community_id=mt.cid, number=m.number, when_text="2026-03-06 19:30")
    new_at = datetime(2026, 3, 6, 19, 30, tzinfo=SH)
    assert card.meeting.starts_at == new_at and card.meeting.version == 2
    told = await mt.outbox(mark)
    assert {r.chat_id for r in told} == {MEM.id, CAROL.id}
    assert all("改期" in r.text and "2026年3月6日 星期五 19:30" in r.text for r in told)
    mark = await mt.last_outbox_id()
    mt.clock.now = old.due_at
    assert await mt.runner.fire(old.id) is None  # superseded in the move's transaction
    assert (await mt.jobs(m.id))[0].result == "superseded"
    # Even a timer for the old time that still runs (as if it had been claimed in the instant
    # before the move committed) finds the meeting's new version and stands down:
    async with writing(mt.w.ctx.sessions) as s:
        await s.execute(update(Job).where(Job.id == old.id).values(done_at=None, result=None))
    assert await mt.runner.fire(old.id) == "moved-on"
    assert await mt.outbox(mark) == []
    (new,) = await mt.jobs(m.id, pending=True)
    assert (new.due_at, new.guard) == (new_at - timedelta(hours=1), "v2:3600")
    mt.clock.now = new.due_at
    assert list((await mt.fire_due()).values()) == ["reminded"]
    assert {r.chat_id for r in await mt.outbox(mark)} == {MEM.id, CAROL.id}


async def test_cancelled_meeting_fires_nothing(mt: M) -> None:
    m = await mt.schedule(f"{THU} | 学习 | every=month")
    await mt.svc.respond(actor_id=CAROL.id, meeting_id=m.id, response="attend")
    jobs = await mt.jobs(m.id) + await mt.jobs(m.id, JOB_END) + await mt.jobs(m.id, JOB_MINUTES)
    mark = await mt.last_outbox_id()
    card = await mt.svc.cancel(actor_id=ALICE.id, community_id=mt.cid, number=m.number, reason="场地<占用>")
    assert card.meeting.status == "cancelled"
    told = await mt.outbox(mark)
    assert {r.chat_id for r in told} == {MEM.id, CAROL.id} and all("场地&lt;占用&gt;" in r.text for r in told)
    mark = await mt.last_outbox_id()
    mt.clock.now = THU_AT + timedelta(days=3)
    for job in jobs:
        assert await mt.runner.fire(job.id) is None
    assert await mt.fire_due() == {}
    assert await mt.outbox(mark) == []
    async with mt.w.ctx.read() as s:  # and the monthly series stopped
        assert await s.scalar(select(func.count()).select_from(Meeting)) == 1
    with pytest.raises(UserError):
        await mt.svc.cancel(actor_id=ALICE.id, community_id=mt.cid, number=m.number, reason=None)


async def test_reminder_missed_while_down_fires_once_on_start_if_the_meeting_has_not_begun(mt: M) -> None:
    m = await mt.schedule(f"{THU} | 学习 | remind=1d,1h")
    late = await mt.schedule("2026-03-04 19:30 | 党课 | remind=1h")
    mark = await mt.last_outbox_id()
    # Down from before both of m's reminders until 30 min before it; `late` began meanwhile.
    mt.clock.now = THU_AT - timedelta(minutes=30)
    runner = JobRunner(mt.w.ctx.sessions, clock=mt.clock, sweep_seconds=60)
    mt.svc.register_jobs(runner)
    await runner.start()
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while len(await mt.jobs(m.id, pending=True)) > 0 or len(await mt.jobs(late.id, pending=True)) > 0:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
    finally:
        await runner.stop()
    results = {j.guard: j.result for j in await mt.jobs(m.id)}
    assert results == {"v1:86400": "superseded", "v1:3600": "reminded"}  # one reminder, not two at once
    assert [j.result for j in await mt.jobs(late.id)] == ["too-late"]
    rows = [r for r in await mt.outbox(mark) if "会议提醒" in r.text]
    assert len(rows) == 1 and "#1" in rows[0].text  # m's chat reminder, nothing for `late`
    sent = len(await mt.outbox(mark))  # (and `late`'s minutes nudge, due meanwhile)
    second = JobRunner(mt.w.ctx.sessions, clock=mt.clock, sweep_seconds=60)  # a second restart
    mt.svc.register_jobs(second)
    await second.start()
    await asyncio.sleep(0.2)
    await second.stop()
    assert len(await mt.outbox(mark)) == sent


# ---------------------------------------------------------------------------------------------- check-in


async def test_checkin_window_is_checked_on_the_server(mt: M) -> None:
    m = await mt.schedule(f"{THU} | 学习")
    await mt.svc.respond(actor_id=CAROL.id, meeting_id=m.id, response="attend")
    mt.clock.now = THU_AT - timedelta(minutes=31)
    before = await mt.counts()
    early = await mt.svc.check_in(actor_id=CAROL.id, meeting_id=m.id)
    assert early.state == "early" and early.opens == THU_AT - timedelta(minutes=30)
    assert await mt.counts() == before and (await mt.attendee(m.id, CAROL)).checked_in_at is None  # type: ignore[union-attr]
    mt.clock.now = THU_AT - timedelta(minutes=30)
    ok = await mt.svc.check_in(actor_id=CAROL.id, community_id=mt.cid, number=m.number)
    assert ok.state == "open" and not ok.already and ok.counts.checked_in == 1
    mt.clock.now += timedelta(minutes=5)
    again = await mt.svc.check_in(actor_id=CAROL.id, meeting_id=m.id)
    assert again.already and again.at == THU_AT - timedelta(minutes=30)
    mt.clock.now = THU_AT + timedelta(hours=2)
    judy = await mt.svc.check_in(actor_id=JUDY.id, meeting_id=m.id)  # unannounced, last minute
    assert judy.state == "open" and judy.counts.checked_in == 2
    mt.clock.now = THU_AT + timedelta(hours=2, seconds=1)
    before = await mt.counts()
    late = await mt.svc.check_in(actor_id=ALICE.id, meeting_id=m.id)
    assert late.state == "closed" and await mt.counts() == before
    with pytest.raises(Denied):
        await mt.svc.check_in(actor_id=BOB.id, meeting_id=m.id)


async def test_checkin_window_scales_with_the_test_setting(make: Callable[..., Awaitable[M]]) -> None:
    mt = await make(meeting_minute_seconds=1)
    m = await mt.schedule(f"{THU} | 学习 | remind=5m")
    assert m.ends_at == THU_AT + timedelta(seconds=120)
    (job,) = await mt.jobs(m.id)
    assert job.due_at == THU_AT - timedelta(seconds=5)
    mt.clock.now = THU_AT - timedelta(seconds=31)
    assert (await mt.svc.check_in(actor_id=CAROL.id, meeting_id=m.id)).state == "early"
    mt.clock.now = THU_AT - timedelta(seconds=29)
    assert (await mt.svc.check_in(actor_id=CAROL.id, meeting_id=m.id)).state == "open"


async def test_attendance_lists_attended_leave_with_reasons_and_absent_members(mt: M) -> None:
    m = await mt.schedule(f"{THU} | 学习")
    await mt.svc.respond(actor_id=CAROL.id, meeting_id=m.id, response="attend")
    await mt.svc.respond(actor_id=JUDY.id, meeting_id=m.id, response="leave")
    await mt.svc.set_reason(actor_id=JUDY.id, meeting_id=m.id, reason="出差")
    with pytest.raises(Denied):
        await mt.svc.attendance(actor_id=CAROL.id, community_id=mt.cid, number=m.number)
    mt.clock.now = THU_AT
    await mt.svc.check_in(actor_id=CAROL.id, meeting_id=m.id)
    mt.clock.now = THU_AT + timedelta(hours=3)
    att = await mt.svc.attendance(actor_id=ALICE.id, community_id=mt.cid, number=m.number)
    assert [u.id for u, _ in att.attended] == [CAROL.id]
    assert [(u.id, reason) for u, reason in att.on_leave] == [(JUDY.id, "出差")]
    assert {u.id for u in att.absent} == {ALICE.id}  # the secretary is in the member chat and did not come
    assert att.expected == 3 and att.window == "closed"


# ---------------------------------------------------------------------------------------------- minutes


async def test_minutes_by_a_secretary_are_posted_and_a_member_is_refused(mt: M) -> None:
    m = await mt.schedule(f"{THU} | 学习")
    mt.clock.now = THU_AT + timedelta(hours=2)
    before = await mt.counts()
    with pytest.raises(Denied):
        await mt.svc.record_minutes(actor_id=CAROL.id, community_id=mt.cid, number=m.number, text="我来记")
    assert await mt.counts() == before
    mark = await mt.last_outbox_id()
    await mt.svc.record_minutes(actor_id=ALICE.id, community_id=mt.cid, number=m.number, text="学习了<党章>")
    (post,) = await mt.outbox(mark)
    assert post.chat_id == MEM.id and post.thread_id == 7 and "会议记录" in post.text and "&lt;党章&gt;" in post.text
    assert (await mt.meeting(m.number)).minutes == "学习了<党章>"


async def test_minutes_nudge_once_the_morning_after_only_without_minutes(mt: M) -> None:
    a = await mt.schedule(f"{THU} | 学习 | remind=1h")
    b = await mt.schedule(f"{THU} | 党课 | remind=1h")
    mt.clock.now = THU_AT + timedelta(hours=3)
    await mt.svc.record_minutes(actor_id=ALICE.id, community_id=mt.cid, number=b.number, text="已记录")
    await mt.fire_due()  # reminders and ends
    mark = await mt.last_outbox_id()
    mt.clock.now = datetime(2026, 3, 6, 9, 0, tzinfo=SH)
    results = await mt.fire_due()
    assert sorted(results.values(), key=str) == ["has-minutes", "nudged"]
    (nudge,) = await mt.outbox(mark)
    assert nudge.chat_id == ALICE.id and f"/minutes {a.number}" in nudge.text
    assert await mt.fire_due() == {}  # once


# ---------------------------------------------------------------------------------------------- monthly


async def test_monthly_meeting_on_the_31st_repeats_on_the_last_day_of_shorter_months(mt: M) -> None:
    mt.clock.now = datetime(2027, 1, 20, 10, 0, tzinfo=SH)
    first = await mt.schedule("2027-01-31 15:00 | 主题党日 | 党员活动室 | 主题党日 | every=month | remind=1h")
    assert first.repeat == "month" and first.repeat_day == 31
    seen = [first.starts_at.astimezone(SH)]
    current = first
    for _ in range(4):
        mt.clock.now = current.ends_at
        (end,) = await mt.jobs(current.id, JOB_END)
        mark = await mt.last_outbox_id()
        assert await mt.runner.fire(end.id) == "repeated"
        assert await mt.runner.fire(end.id) is None  # once
        async with mt.w.ctx.read() as s:
            nxt = await s.scalar(select(Meeting).where(Meeting.previous_id == current.id))
        assert nxt is not None and nxt.number == current.number + 1
        (post,) = await mt.outbox(mark)
        assert post.ref == f"meeting:{nxt.id}:post" and post.chat_id == MEM.id
        assert [j.guard for j in await mt.jobs(nxt.id)] == ["v1:3600"]  # its own reminders
        seen.append(nxt.starts_at.astimezone(SH))
        current = nxt
    assert [(d.month, d.day, d.hour) for d in seen] == [(1, 31, 15), (2, 28, 15), (3, 31, 15), (4, 30, 15), (5, 31, 15)]


async def test_monthly_meeting_moved_keeps_its_rule_and_february_of_a_leap_year(mt: M) -> None:
    mt.clock.now = datetime(2028, 1, 10, 10, 0, tzinfo=SH)
    m = await mt.schedule("2028-01-30 09:00 | 主题党日 | 主题党日 | every=month")
    await mt.svc.move(actor_id=ALICE.id, community_id=mt.cid, number=m.number, when_text="2028-02-02 09:00")
    moved = await mt.meeting(m.number)
    mt.clock.now = moved.ends_at
    (end,) = await mt.jobs(m.id, JOB_END, pending=True)
    assert await mt.runner.fire(end.id) == "repeated"
    nxt = await mt.meeting(m.number + 1)
    assert nxt.starts_at.astimezone(SH) == datetime(2028, 2, 29, 9, 0, tzinfo=SH)


# ---------------------------------------------------------------------------------------------- .ics and lists


async def test_ics_parses_with_timezone_and_one_alarm_per_offset(mt: M) -> None:
    m = await mt.schedule(f"{THU} | 学习 | 社区活动室 | remind=1d,1h,30m")
    got, data = await mt.svc.ics(actor_id=CAROL.id, community_id=mt.cid, number=m.number, chat_kind=None)
    cal = Calendar.from_ical(data)
    (ev,) = cal.walk("VEVENT")
    start = ev.decoded("dtstart")
    assert start.tzinfo is not None and start.astimezone(UTC) == m.starts_at  # never floating
    assert ev.decoded("dtend").astimezone(UTC) == m.ends_at
    assert str(ev["summary"]).endswith("学习") and str(ev["location"]) == "社区活动室"
    assert str(ev["uid"]).startswith(f"meeting-{m.id}-")
    assert [a.decoded("trigger") for a in ev.walk("VALARM")] == [
        -timedelta(days=1), -timedelta(hours=1), -timedelta(minutes=30)]
    assert [str(tz["tzid"]) for tz in cal.walk("VTIMEZONE")] == ["Asia/Shanghai"]
    with pytest.raises(Denied):  # a resident does not see party meetings
        await mt.svc.ics(actor_id=BOB.id, community_id=mt.cid, number=m.number, chat_kind=None)
    with pytest.raises(NotFound):
        await mt.svc.ics(actor_id=CAROL.id, community_id=mt.cid, number=99, chat_kind=None)


async def test_upcoming_shows_what_each_person_and_chat_may_see(mt: M) -> None:
    party = await mt.schedule(f"{THU} | 学习")
    consult = await mt.schedule(f"{THU} | 协商 | 议事协商会")
    over = await mt.schedule("2026-03-02 11:00 | 早会")
    mt.clock.now = over.ends_at + timedelta(seconds=1)

    async def numbers(user: TUser, chat_kind: str | None, cid: int | None = None) -> list[int]:
        found = await mt.svc.upcoming(actor_id=user.id, community_id=cid, chat_kind=chat_kind)
        return [m.number for up in found for m, _ in up.meetings]

    assert await numbers(CAROL, None) == [party.number, consult.number]
    assert await numbers(BOB, None) == [consult.number]
    assert await numbers(ALICE, "resident", mt.cid) == [consult.number]  # the answer is public there


# ---------------------------------------------------------------------------------------------- personal data


async def test_mydata_has_rsvps_and_checkins_and_forget_erases_them(mt: M) -> None:
    m = await mt.schedule(f"{THU} | 学习")
    await mt.svc.respond(actor_id=CAROL.id, meeting_id=m.id, response="leave")
    await mt.svc.set_reason(actor_id=CAROL.id, meeting_id=m.id, reason="值班")
    mt.clock.now = THU_AT
    await mt.svc.check_in(actor_id=CAROL.id, meeting_id=m.id)
    import json

    doc = json.loads(await mt.w.people.export(CAROL.id))
    mine = doc["meetings"]
    assert [(r["meeting_number"], r["response"], r["reason"]) for r in mine["rsvps"]] == [(1, "leave", "值班")]
    assert [r["meeting_title"] for r in mine["check_ins"]] == ["学习"]
    await mt.w.people.forget(CAROL.id)
    assert await mt.attendee(m.id, CAROL) is None
    await mt.w.people.forget(ALICE.id)  # the meeting stays, unnamed
    assert (await mt.meeting(m.number)).created_by is None
