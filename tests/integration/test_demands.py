"""The demand loop (点单 → 派单 → 接单 → 办结 → 评单) at the service level, on a real database.

Every transition from every state, every permission, the deadlines and their timers, and the
notifications (outbox rows written in the same transaction). Time is a ManualClock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.domain.categories import guess_category
from bot.scheduler.runner import JobRunner
from bot.services.base import ServiceContext
from bot.services.clock import ManualClock
from bot.services.communities import CommunityService
from bot.services.demands import JOB_ACCEPT, JOB_OVERDUE, JOB_REASK, DemandService
from bot.services.errors import Denied, NotFound, UserError
from bot.services.people import PeopleService
from bot.services.roles import AdminCache, Roles
from bot.storage.db import make_session_factory
from bot.storage.models import Community, Demand, DemandEvent, DemandFollower, Job, Outbox
from bot.transport.port import Chat as TChat
from bot.transport.port import User as TUser
from config.settings import load_settings
from tests.integration.conftest import ALICE, BOB, CAROL, MEM, RES, StatusBook, World

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)

# Community A (幸福里): ALICE created it with /setup; RES and MEM are its chats (MEM topic 7).
DAVE = TUser(4, "Dave", username="dave")  # another resident of A
ERIN = TUser(5, "Erin", username="erin")  # Telegram admin of MEM: a secretary by that alone
FRANK = TUser(6, "Frank", username="frank")  # admin of RES (楼长): NOT a secretary
GINA = TUser(7, "Gina", username="gina")  # named with /secretary
JUDY = TUser(10, "Judy", username="judy")  # another member of A
SUPER = TUser(999, "Root", username="root")  # configured superadmin
# Community B (阳光苑): HANK created it; IVY is a resident, KEN a member.
HANK = TUser(8, "Hank", username="hank")
IVY = TUser(9, "Ivy", username="ivy")
KEN = TUser(11, "Ken", username="ken")
RES_B = TChat(-300, "supergroup", "阳光苑居民群")
MEM_B = TChat(-400, "supergroup", "阳光苑党支部")
UNBOUND = TChat(-500, "supergroup", "闲聊群")

OPEN_STATES = {"new", "accepted", "assigned", "reopened"}
STATES = ["new", "accepted", "assigned", "resolved", "rated", "rejected", "duplicate", "reopened"]
# The contract's table, written out here rather than read from the code under test.
ALLOWED: dict[str, set[str]] = {
    "accept": {"new", "reopened"},
    "assign": OPEN_STATES,
    "resolve": OPEN_STATES,
    "reject": OPEN_STATES,
    "duplicate": OPEN_STATES,
    "reopen": {"resolved", "rated", "rejected", "duplicate"},
    "rate": {"resolved"},
    "not_fixed": {"resolved"},
}
TARGET = {
    "accept": "accepted",
    "assign": "assigned",
    "resolve": "resolved",
    "reject": "rejected",
    "duplicate": "duplicate",
    "reopen": "reopened",
    "rate": "rated",
    "not_fixed": "reopened",
}


@dataclass
class Loop:
    w: World
    clock: ManualClock
    runner: JobRunner
    cid: int  # community A
    cid_b: int  # community B

    @property
    def d(self) -> DemandService:
        return self.w.demands

    async def file(self, user: TUser = BOB, text: str = "2号楼楼道灯不亮", *, chat: TChat | None = RES,
                   cid: int | None = None, msg: int | None = 50, **kw: Any) -> Demand:
        filed = await self.d.file(
            actor_id=user.id, community_id=cid or self.cid, text=text,
            origin_chat_id=chat.id if chat else user.id, origin_message_id=msg, **kw,
        )
        return filed.demand

    async def start(self, user: TUser) -> None:
        """The user opens a private chat with the bot (User.started)."""
        await self.w.see(user, TChat(user.id, "private"), "/start")

    async def get(self, number: int, cid: int | None = None) -> Demand:
        async with self.w.ctx.read() as s:
            d = await s.scalar(select(Demand).where(Demand.community_id == (cid or self.cid), Demand.number == number))
            assert d is not None
            return d

    async def events(self, demand_id: int) -> list[DemandEvent]:
        async with self.w.ctx.read() as s:
            return list(await s.scalars(select(DemandEvent).where(DemandEvent.demand_id == demand_id)
                                        .order_by(DemandEvent.id)))

    async def outbox(self, after: int = 0) -> list[Outbox]:
        async with self.w.ctx.read() as s:
            return list(await s.scalars(select(Outbox).where(Outbox.id > after).order_by(Outbox.id)))

    async def last_outbox_id(self) -> int:
        async with self.w.ctx.read() as s:
            return int(await s.scalar(select(func.max(Outbox.id))) or 0)

    async def jobs(self, demand_id: int, kind: str) -> list[Job]:
        async with self.w.ctx.read() as s:
            return list(await s.scalars(select(Job).where(Job.ref_id == demand_id, Job.kind == kind).order_by(Job.id)))

    async def followers(self, demand_id: int) -> set[int]:
        async with self.w.ctx.read() as s:
            return set(await s.scalars(select(DemandFollower.user_id).where(DemandFollower.demand_id == demand_id)))

    async def snapshot(self, number: int, cid: int | None = None) -> tuple[Any, ...]:
        """Everything a refused action must leave as it was."""
        d = await self.get(number, cid)
        async with self.w.ctx.read() as s:
            counts = [await s.scalar(select(func.count()).select_from(m)) for m in
                      (DemandEvent, Outbox, Job, DemandFollower, Demand)]
        return (d.state, d.version, d.accepted_at, d.assignee_id, d.resolved_at, d.rating, d.category, d.urgency,
                d.accept_by, d.resolve_by, d.duplicate_of_id, *counts)

    async def set_config(self, cid: int, config: dict[str, Any]) -> None:
        async with self.w.ctx.tx() as s:
            community = await s.get(Community, cid)
            assert community is not None
            community.config = config


async def build_loop(engine: AsyncEngine, **settings: Any) -> Loop:
    book = StatusBook()
    cfg = load_settings(bot_token="1:x", superadmins=[SUPER.id], **settings)
    roles = Roles(cfg.superadmins, AdminCache(book.lookup, ttl=0, admins=book.admins))
    clock = ManualClock(T0)
    ctx = ServiceContext(sessions=make_session_factory(engine), roles=roles, settings=cfg, clock=clock)
    w = World(ctx, book, PeopleService(ctx), CommunityService(ctx), DemandService(ctx))
    runner = JobRunner(ctx.sessions, clock=clock)
    w.demands.register_jobs(runner)

    async def bind(owner: TUser, res: TChat, mem: TChat, name: str) -> int:
        book.statuses[(res.id, owner.id)] = "creator"
        book.statuses[(mem.id, owner.id)] = "administrator"
        await w.see(owner, res)
        await w.see(owner, mem)
        r = await w.communities.setup(actor_id=owner.id, chat_id=res.id, chat_is_group=True, thread_id=None,
                                      kind="resident", name=name)
        await w.communities.setup(actor_id=owner.id, chat_id=mem.id, chat_is_group=True, thread_id=7,
                                  kind="member", name=name)
        return r.community.id

    cid = await bind(ALICE, RES, MEM, "幸福里")
    cid_b = await bind(HANK, RES_B, MEM_B, "阳光苑")
    for user, chat in ((BOB, RES), (DAVE, RES), (CAROL, MEM), (JUDY, MEM), (IVY, RES_B), (KEN, MEM_B),
                       (FRANK, RES), (GINA, RES), (ERIN, MEM), (BOB, UNBOUND)):
        await w.see(user, chat)
    book.statuses[(MEM.id, ERIN.id)] = "administrator"
    book.statuses[(RES.id, FRANK.id)] = "administrator"
    await w.communities.set_secretary(actor_id=ALICE.id, chat_id=RES.id, target=GINA, add=True)
    await w.people.ensure_user(SUPER.id, SUPER.first_name, SUPER.username)
    return Loop(w, clock, runner, cid, cid_b)


@pytest.fixture
def make(engine: AsyncEngine) -> Callable[..., Awaitable[Loop]]:
    async def factory(**settings: Any) -> Loop:
        return await build_loop(engine, **settings)

    return factory


@pytest.fixture
async def lp(make: Callable[..., Awaitable[Loop]]) -> Loop:
    return await make()


# ---------------------------------------------------------------------------------------------- filing


async def test_numbers_per_community_are_independent(lp: Loop) -> None:
    a1 = await lp.file(BOB, "路灯坏了")
    a2 = await lp.file(DAVE, "垃圾没人收")
    b1 = await lp.file(IVY, "井盖丢了", chat=RES_B, cid=lp.cid_b)
    a3 = await lp.file(BOB, "噪音扰民")
    assert [a1.number, a2.number, a3.number, b1.number] == [1, 2, 3, 1]
    assert a1.submitter_id == a1.filed_by_id == BOB.id and a1.state == "new"
    assert a1.origin_chat_id == RES.id and a1.origin_message_id == 50
    ev = await lp.events(a1.id)
    assert [(e.action, e.from_state, e.to_state, e.actor_id) for e in ev] == [("file", None, "new", BOB.id)]


async def test_file_in_private(lp: Loop) -> None:
    await lp.start(BOB)
    d = await lp.file(BOB, "小区门禁坏了", chat=None, msg=None)
    assert d.number == 1 and d.origin_chat_id == BOB.id and d.submitter_id == BOB.id


@pytest.mark.parametrize("chat", [MEM, UNBOUND, RES_B], ids=["member-chat", "unbound", "other-community"])
async def test_file_refused_outside_resident_chats(lp: Loop, chat: TChat) -> None:
    with pytest.raises(UserError) as err:
        await lp.file(CAROL if chat is MEM else BOB, "路灯坏了", chat=chat)
    assert err.value.key == "err_demand_where"
    async with lp.w.ctx.read() as s:
        assert await s.scalar(select(func.count()).select_from(Demand)) == 0
        assert await s.scalar(select(func.count()).select_from(Outbox)) == 0
    assert (await lp.file(BOB, "路灯坏了")).number == 1  # the refused one took no number


async def test_file_on_behalf_by_secretary(lp: Loop) -> None:
    # /demand as a reply in the member chat: allowed on behalf of the replied-to author.
    d = await lp.file(ALICE, "3号楼电梯坏了", chat=MEM, on_behalf_of=CAROL.id, via="reply")
    assert d.submitter_id == CAROL.id and d.filed_by_id == ALICE.id
    d2 = await lp.file(GINA, "路灯坏了", chat=RES, on_behalf_of=BOB.id, via="reply")
    assert d2.submitter_id == BOB.id and d2.filed_by_id == GINA.id
    ev = await lp.events(d.id)
    assert ev[0].actor_id == ALICE.id and ev[0].action == "file"


async def test_file_on_behalf_of_unknown_user(lp: Loop) -> None:
    with pytest.raises(NotFound) as err:
        await lp.file(ALICE, "路灯坏了", chat=RES, on_behalf_of=777777)
    assert err.value.key == "err_unknown_user"
    async with lp.w.ctx.read() as s:
        assert await s.scalar(select(func.count()).select_from(Demand)) == 0


@pytest.mark.parametrize("actor", [BOB, CAROL, FRANK, HANK], ids=["resident", "member", "res-admin", "other-sec"])
async def test_file_on_behalf_refused_for_non_secretary(lp: Loop, actor: TUser) -> None:
    with pytest.raises(Denied):
        await lp.file(actor, "路灯坏了", chat=RES, on_behalf_of=DAVE.id)
    async with lp.w.ctx.read() as s:
        assert await s.scalar(select(func.count()).select_from(Demand)) == 0


@pytest.mark.parametrize("text", [None, "", "   \n "])
async def test_file_text_missing(lp: Loop, text: str | None) -> None:
    with pytest.raises(UserError) as err:
        await lp.d.file(actor_id=BOB.id, community_id=lp.cid, text=text, origin_chat_id=RES.id)
    assert err.value.key == "err_demand_text_missing"


async def test_file_length_limit(lp: Loop) -> None:
    ok = await lp.file(BOB, "路" * 2000)
    assert len(ok.text) == 2000
    for n in (2001, 5000):
        with pytest.raises(UserError) as err:
            await lp.file(BOB, "路" * n)
        assert err.value.key == "err_demand_too_long"
        assert err.value.params == {"limit": 2000, "length": n}
    with pytest.raises(UserError) as err:
        await lp.file(BOB, "路灯坏了", location="楼" * 201)
    assert err.value.key == "err_location_too_long"
    async with lp.w.ctx.read() as s:
        assert await s.scalar(select(func.count()).select_from(Demand)) == 1
    assert (await lp.file(BOB, "路灯坏了")).number == 2


@pytest.mark.parametrize(
    ("text", "category", "urgency", "accept", "resolve"),
    [
        ("3号楼电梯坏了", "lifts", "general", timedelta(hours=24), timedelta(days=7)),
        ("紧急！3号楼电梯困人了", "lifts", "urgent", timedelta(hours=2), timedelta(hours=24)),
        ("楼下垃圾堆了一周", "sanitation", "general", timedelta(hours=24), timedelta(days=7)),
        ("电动车乱停占道", "parking", "general", timedelta(hours=24), timedelta(days=7)),
        ("楼上装修噪音扰民", "disputes", "general", timedelta(hours=24), timedelta(days=7)),
        ("想问问社区活动时间", "other", "general", timedelta(hours=24), timedelta(days=7)),
    ],
)
async def test_file_guesses_category_urgency_and_deadlines(
    lp: Loop, text: str, category: str, urgency: str, accept: timedelta, resolve: timedelta
) -> None:
    d = await lp.file(BOB, text)
    assert (d.category, d.urgency) == (category, urgency)
    assert d.filed_at == T0 and d.accept_by == T0 + accept and d.resolve_by == T0 + resolve
    fresh = await lp.get(d.number)  # as stored, read back
    assert fresh.accept_by == T0 + accept and fresh.resolve_by == T0 + resolve
    (acc,) = await lp.jobs(d.id, JOB_ACCEPT)
    (ovd,) = await lp.jobs(d.id, JOB_OVERDUE)
    assert acc.due_at == T0 + accept and ovd.due_at == T0 + resolve and acc.done_at is None


async def test_complex_urgency_gives_fifteen_days(lp: Loop) -> None:
    d = await lp.file(BOB, "小区围栏需要整体改造")
    d = await lp.d.set_urgency(actor_id=ALICE.id, community_id=lp.cid, number=d.number, urgency="complex")
    assert d.urgency == "complex"
    assert d.accept_by == T0 + timedelta(hours=24) and d.resolve_by == T0 + timedelta(days=15)


async def test_sla_overrides_from_settings_and_community(make: Callable[..., Awaitable[Loop]]) -> None:
    lp = await make(sla_overrides={"lifts": {"*": {"accept": "30m"}}, "*": {"general": {"resolve": "3d"}}})
    d = await lp.file(BOB, "电梯坏了")
    assert d.accept_by == T0 + timedelta(minutes=30) and d.resolve_by == T0 + timedelta(days=3)
    d = await lp.file(BOB, "路灯坏了")  # roads: only the "*" rule applies
    assert d.accept_by == T0 + timedelta(hours=24) and d.resolve_by == T0 + timedelta(days=3)
    d = await lp.file(BOB, "紧急：路灯倒了")  # urgent: no override at all
    assert d.accept_by == T0 + timedelta(hours=2) and d.resolve_by == T0 + timedelta(hours=24)
    # The community's own config wins over SLA_OVERRIDES, step by step.
    await lp.set_config(lp.cid, {"sla": {"lifts": {"general": {"accept": "10m"}}}})
    d = await lp.file(BOB, "电梯又坏了")
    assert d.accept_by == T0 + timedelta(minutes=10) and d.resolve_by == T0 + timedelta(days=3)
    # Community B has no config: only the settings.
    b = await lp.file(IVY, "电梯坏了", chat=RES_B, cid=lp.cid_b)
    assert b.accept_by == T0 + timedelta(minutes=30)
    (job,) = await lp.jobs(d.id, JOB_ACCEPT)
    assert job.due_at == T0 + timedelta(minutes=10)


async def test_malformed_community_sla_falls_back(lp: Loop) -> None:
    # A community's config is not validated when settings load; a bad value must not stop filing.
    await lp.set_config(lp.cid, {"sla": {"*": {"*": {"accept": "soon", "resolve": "3d"}}}})
    d = await lp.file(BOB, "路灯坏了")
    assert d.accept_by == T0 + timedelta(hours=24) and d.resolve_by == T0 + timedelta(days=3)


async def test_category_keywords_extend_guesses(make: Callable[..., Awaitable[Loop]]) -> None:
    assert guess_category("自行车棚坏了") == "other"  # not without the extra keyword
    lp = await make(category_keywords={"parking": ["自行车棚"]})
    assert (await lp.file(BOB, "自行车棚坏了")).category == "parking"
    assert (await lp.file(BOB, "落叶没人扫")).category == "other"
    await lp.set_config(lp.cid, {"categories": {"sanitation": ["落叶"]}})
    assert (await lp.file(BOB, "落叶没人扫")).category == "sanitation"
    assert (await lp.file(BOB, "3号楼电梯坏了")).category == "lifts"  # the defaults stay


async def test_new_demand_alerts_member_chat_when_no_secretary_started(lp: Loop) -> None:
    d = await lp.file(BOB, "3号楼电梯坏了")
    rows = await lp.outbox()
    assert [(r.chat_id, r.thread_id) for r in rows] == [(MEM.id, 7)]
    assert "新诉求" in rows[0].text and "#1" in rows[0].text and d.text in rows[0].text


async def test_new_demand_alerts_started_secretaries_privately(lp: Loop) -> None:
    await lp.start(ALICE)
    await lp.start(ERIN)
    await lp.file(BOB, "3号楼电梯坏了", location="3号楼")
    rows = await lp.outbox()
    assert sorted(r.chat_id for r in rows) == [ALICE.id, ERIN.id]
    for r in rows:
        assert "3号楼电梯坏了" in r.text and "3号楼" in r.text
        assert r.keyboard is not None  # the accept button


async def test_private_form_demand_not_shown_in_member_chat(lp: Loop) -> None:
    await lp.start(BOB)
    await lp.d.file(actor_id=BOB.id, community_id=lp.cid, text="我家漏水很久了，隐私内容", public=False,
                    origin_chat_id=BOB.id, via="form")
    rows = await lp.outbox()
    assert [r.chat_id for r in rows] == [MEM.id]
    assert "隐私内容" not in rows[0].text


async def test_public_form_demand_posted_in_submitters_resident_chat(lp: Loop) -> None:
    await lp.start(BOB)
    await lp.d.file(actor_id=BOB.id, community_id=lp.cid, text="路灯坏了", public=True, origin_chat_id=BOB.id,
                    via="form")
    rows = await lp.outbox()
    assert sorted(r.chat_id for r in rows) == sorted([MEM.id, RES.id])
    public = next(r for r in rows if r.chat_id == RES.id)
    assert "路灯坏了" in public.text and "Bob" not in public.text


# ---------------------------------------------------------------------------------------------- transitions


async def bring_to(lp: Loop, state: str) -> int:
    """File demand #2 by BOB (over #1 by DAVE, the duplicate target) and move it to `state`."""
    d = lp.d
    await lp.file(DAVE, "2号楼楼道灯也不亮")
    n = (await lp.file(BOB, "2号楼楼道灯不亮")).number
    assert n == 2
    a = {"actor_id": ALICE.id, "community_id": lp.cid, "number": n}
    if state == "accepted":
        await d.accept(**a)
    elif state == "assigned":
        await d.assign(**a, assignee_id=CAROL.id)
    elif state in ("resolved", "rated", "reopened"):
        await d.resolve(**a, note="换了灯泡")
        if state == "rated":
            await d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=4)
        elif state == "reopened":
            await d.reopen(**a)
    elif state == "rejected":
        await d.reject(**a, reason="不归社区管")
    elif state == "duplicate":
        await d.duplicate(**a, of=1)
    assert (await lp.get(n)).state == state
    return n


async def act(lp: Loop, action: str, n: int) -> Any:
    d = lp.d
    a = {"actor_id": ALICE.id, "community_id": lp.cid, "number": n}
    if action == "accept":
        return await d.accept(**a)
    if action == "assign":
        return await d.assign(**a, assignee_id=CAROL.id)
    if action == "resolve":
        return await d.resolve(**a, note="修好了")
    if action == "reject":
        return await d.reject(**a, reason="重复提交")
    if action == "duplicate":
        return await d.duplicate(**a, of=1)
    if action == "reopen":
        return await d.reopen(**a)
    if action == "rate":
        return await d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=4)
    if action == "not_fixed":
        return await d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=0)
    raise AssertionError(action)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("action", list(ALLOWED))
async def test_transition_table(lp: Loop, action: str, state: str) -> None:
    n = await bring_to(lp, state)
    lp.clock.advance(timedelta(hours=1))
    before = await lp.get(n)
    events_before = await lp.events(before.id)
    snap = await lp.snapshot(n)
    if state in ALLOWED[action]:
        await act(lp, action, n)
        after = await lp.get(n)
        assert after.state == TARGET[action]
        assert after.version > before.version
        new = (await lp.events(after.id))[len(events_before):]
        mine = [e for e in new if e.action == action]
        assert len(mine) == 1, [(e.action, e.from_state, e.to_state) for e in new]
        assert (mine[0].from_state, mine[0].to_state) == (state, TARGET[action])
        assert mine[0].actor_id == (BOB.id if action in ("rate", "not_fixed") else ALICE.id)
    else:
        with pytest.raises(UserError) as err:
            await act(lp, action, n)
        expected = "err_already_rated" if state == "rated" and action in ("rate", "not_fixed") else f"err_state_{action}"
        assert err.value.key == expected
        assert not isinstance(err.value, Denied)
        assert await lp.snapshot(n) == snap


async def test_resolve_from_new_accepts_at_that_moment_and_schedules_reask(lp: Loop) -> None:
    d = await lp.file(BOB, "路灯坏了")
    lp.clock.advance(timedelta(hours=3))
    d = await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=d.number, note="换了灯泡", photo="PHOTO")
    assert d.accepted_at == d.resolved_at == T0 + timedelta(hours=3)
    assert d.resolution_note == "换了灯泡" and d.resolution_photo == "PHOTO"
    (job,) = await lp.jobs(d.id, JOB_REASK)
    assert job.due_at == T0 + timedelta(hours=27) and job.done_at is None


async def test_resolve_note_required_and_limited(lp: Loop) -> None:
    d = await lp.file(BOB, "路灯坏了")
    snap = await lp.snapshot(d.number)
    for note, key in ((None, "err_resolve_note_missing"), ("  ", "err_resolve_note_missing"),
                      ("x" * 1001, "err_note_too_long")):
        with pytest.raises(UserError) as err:
            await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=d.number, note=note)
        assert err.value.key == key
    with pytest.raises(UserError) as err:
        await lp.d.reject(actor_id=ALICE.id, community_id=lp.cid, number=d.number, reason="")
    assert err.value.key == "err_reject_reason_missing"
    assert await lp.snapshot(d.number) == snap


async def test_unknown_number(lp: Loop) -> None:
    await lp.file(BOB, "路灯坏了")
    for call in (
        lp.d.accept(actor_id=ALICE.id, community_id=lp.cid, number=5),
        lp.d.view(actor_id=ALICE.id, community_id=lp.cid, number=5),
        lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=5, note="x"),
        lp.d.duplicate(actor_id=ALICE.id, community_id=lp.cid, number=1, of=5),
        lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=5, stars_given=5),
    ):
        with pytest.raises(NotFound) as err:
            await call
        assert err.value.key == "err_demand_unknown"
    with pytest.raises(NotFound):
        await lp.d.rate(actor_id=BOB.id, community_id=None, demand_id=12345, stars_given=5)


async def test_concurrent_changes_one_wins_others_told(lp: Loop) -> None:
    """Three secretaries act on one demand at once. The outcome is some serial order of the changes
    that were allowed: no lost update; each refused change gets a clear reason and leaves no trace."""
    n = (await lp.file(BOB, "路灯坏了")).number
    a = {"community_id": lp.cid, "number": n}
    results = await asyncio.gather(
        lp.d.accept(actor_id=ALICE.id, **a),
        lp.d.reject(actor_id=GINA.id, **a, reason="不归社区管"),
        lp.d.resolve(actor_id=ERIN.id, **a, note="修好了"),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, Demand)]
    lost = [r for r in results if not isinstance(r, Demand)]
    assert won, results
    for exc in lost:
        assert isinstance(exc, UserError), exc
        assert exc.key == "err_demand_conflict" or exc.key.startswith("err_state_"), exc.key
    d = await lp.get(n)
    assert d.version == 1 + len(won)
    actions = [e.action for e in await lp.events(d.id)]
    assert actions[0] == "file" and len(actions) == 1 + len(won)
    final = {"accept": "accepted", "reject": "rejected", "resolve": "resolved"}[actions[-1]]
    assert d.state == final


# ---------------------------------------------------------------------------------------------- permissions


SECRETARIES = [ALICE, GINA, ERIN, SUPER]
SECRETARY_IDS = ["setup", "named", "member-chat-admin", "superadmin"]
NON_SECRETARIES = [BOB, CAROL, FRANK, HANK, IVY]
NON_SECRETARY_IDS = ["resident", "member", "resident-chat-admin", "other-community-secretary", "other-resident"]


async def secretary_steps(lp: Loop, actor: TUser) -> None:
    """Every secretary-only step once, on fresh demands; raises on the first refusal."""
    d = lp.d
    a = {"actor_id": actor.id, "community_id": lp.cid}
    n1 = (await lp.file(BOB, "路灯坏了")).number
    n2 = (await lp.file(DAVE, "路灯不亮")).number
    n3 = (await lp.file(DAVE, "垃圾没人收")).number
    await d.accept(**a, number=n1)
    await d.set_category(**a, number=n1, category="safety")
    await d.set_urgency(**a, number=n1, urgency="urgent")
    await d.assign(**a, number=n1, assignee_id=CAROL.id)
    await d.duplicate(**a, number=n2, of=n1)
    await d.reject(**a, number=n3, reason="不归社区管")


@pytest.mark.parametrize("actor", SECRETARIES, ids=SECRETARY_IDS)
async def test_secretary_steps_by_every_kind_of_secretary(lp: Loop, actor: TUser) -> None:
    await secretary_steps(lp, actor)
    assert (await lp.get(1)).state == "assigned"
    assert (await lp.get(1)).category == "safety" and (await lp.get(1)).urgency == "urgent"
    assert (await lp.get(2)).state == "duplicate"
    assert (await lp.get(3)).state == "rejected"
    view = await lp.d.view(actor_id=actor.id, community_id=lp.cid, number=1)
    assert view.secretary


@pytest.mark.parametrize("actor", NON_SECRETARIES, ids=NON_SECRETARY_IDS)
async def test_secretary_steps_refused_for_others(lp: Loop, actor: TUser) -> None:
    n1 = (await lp.file(BOB, "路灯坏了")).number
    n2 = (await lp.file(DAVE, "路灯不亮")).number
    d = lp.d
    a = {"actor_id": actor.id, "community_id": lp.cid}
    snap1, snap2 = await lp.snapshot(n1), await lp.snapshot(n2)
    for call in (
        d.accept(**a, number=n1),
        d.assign(**a, number=n1, assignee_id=CAROL.id),
        d.reject(**a, number=n1, reason="不归社区管"),
        d.duplicate(**a, number=n2, of=n1),
        d.set_category(**a, number=n1, category="safety"),
        d.set_urgency(**a, number=n1, urgency="urgent"),
        d.resolve(**a, number=n1, note="修好了"),
    ):
        with pytest.raises(Denied) as err:
            await call
        assert err.value.key == "err_not_secretary"
    assert await lp.snapshot(n1) == snap1 and await lp.snapshot(n2) == snap2


async def test_resident_chat_admin_is_not_secretary_member_chat_admin_is(lp: Loop) -> None:
    d = await lp.file(BOB, "路灯坏了")
    with pytest.raises(Denied):
        await lp.d.accept(actor_id=FRANK.id, community_id=lp.cid, number=d.number)
    # The same person made admin of the member chat is a secretary (status read from Telegram).
    lp.w.book.statuses[(MEM.id, FRANK.id)] = "administrator"
    await lp.d.accept(actor_id=FRANK.id, community_id=lp.cid, number=d.number)
    # ... and stops being one when demoted.
    lp.w.book.statuses[(MEM.id, FRANK.id)] = "member"
    with pytest.raises(Denied):
        await lp.d.assign(actor_id=FRANK.id, community_id=lp.cid, number=d.number, assignee_id=CAROL.id)


async def test_former_assignee_cannot_resolve(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=CAROL.id)
    await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=JUDY.id)  # re-dispatched
    with pytest.raises(Denied):
        await lp.d.resolve(actor_id=CAROL.id, community_id=lp.cid, number=n, note="修好了")
    assert (await lp.d.resolve(actor_id=JUDY.id, community_id=lp.cid, number=n, note="修好了")).state == "resolved"
    ev = [(e.action, e.from_state, e.to_state) for e in await lp.events((await lp.get(n)).id)]
    assert ev == [("file", None, "new"), ("assign", "new", "assigned"), ("assign", "assigned", "assigned"),
                  ("resolve", "assigned", "resolved")]


async def test_timeline_times_follow_the_service_clock(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    lp.clock.advance(timedelta(hours=5))
    await lp.d.accept(actor_id=ALICE.id, community_id=lp.cid, number=n)
    ev = await lp.events((await lp.get(n)).id)
    assert [e.created_at for e in ev] == [T0, T0 + timedelta(hours=5)]


async def test_resolve_by_assignee_or_secretary_only(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=CAROL.id)
    snap = await lp.snapshot(n)
    for other in (JUDY, BOB, DAVE, FRANK, HANK):
        with pytest.raises(Denied):
            await lp.d.resolve(actor_id=other.id, community_id=lp.cid, number=n, note="修好了")
    assert await lp.snapshot(n) == snap
    d = await lp.d.resolve(actor_id=CAROL.id, community_id=lp.cid, number=n, note="修好了")
    assert d.state == "resolved"
    ev = (await lp.events(d.id))[-1]
    assert (ev.action, ev.actor_id) == ("resolve", CAROL.id)
    n2 = (await lp.file(BOB, "路灯又坏了")).number
    assert (await lp.d.resolve(actor_id=GINA.id, community_id=lp.cid, number=n2, note="好了")).state == "resolved"


async def test_view_permissions(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.file(DAVE, "路灯不亮")
    await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=CAROL.id)
    await lp.d.duplicate(actor_id=ALICE.id, community_id=lp.cid, number=2, of=n)  # DAVE now follows #1
    for who in (BOB, CAROL, DAVE, ALICE, GINA, ERIN, SUPER):
        view = await lp.d.view(actor_id=who.id, community_id=lp.cid, number=n)
        assert view.demand.number == n
        assert [ev.action for ev, _ in view.events] == ["file", "assign", "merged"]
    for who in (JUDY, FRANK, HANK, IVY):
        with pytest.raises(Denied) as err:
            await lp.d.view(actor_id=who.id, community_id=lp.cid, number=n)
        assert err.value.key == "err_demand_not_yours"
    view = await lp.d.view(actor_id=BOB.id, community_id=lp.cid, number=n)
    assert not view.secretary and view.submitter and view.submitter.id == BOB.id
    assert view.assignee and view.assignee.id == CAROL.id
    dup = await lp.d.view(actor_id=DAVE.id, community_id=lp.cid, number=2)
    assert dup.duplicate_of == n


async def test_rate_comment_not_fixed_by_submitter_only(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    d = await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="换了灯泡")
    snap = await lp.snapshot(n)
    for who in (ALICE, CAROL, DAVE, SUPER):
        for stars in (5, 0):
            with pytest.raises(Denied) as err:
                await lp.d.rate(actor_id=who.id, community_id=lp.cid, number=n, stars_given=stars)
            assert err.value.key == "err_rate_not_submitter"
        with pytest.raises(Denied):
            await lp.d.rate(actor_id=who.id, community_id=None, demand_id=d.id, stars_given=5)
    assert await lp.snapshot(n) == snap
    d = await lp.d.rate(actor_id=BOB.id, community_id=None, demand_id=d.id, stars_given=5)  # the button path
    assert (d.state, d.rating, d.rated_at) == ("rated", 5, T0)
    with pytest.raises(Denied):
        await lp.d.comment(actor_id=ALICE.id, demand_id=d.id, text="很好")
    d = await lp.d.comment(actor_id=BOB.id, demand_id=d.id, text="师傅很快")
    assert d.rating_comment == "师傅很快" and d.state == "rated"
    assert (await lp.events(d.id))[-1].action == "comment"


async def test_rate_bad_stars_and_comment_rules(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    d = await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="换了灯泡")
    snap = await lp.snapshot(n)
    for bad in (6, -1, 10):
        with pytest.raises(UserError) as err:
            await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=bad)
        assert err.value.key == "err_rate_usage"
    with pytest.raises(UserError) as err:
        await lp.d.comment(actor_id=BOB.id, demand_id=d.id, text="还没评")
    assert err.value.key == "err_comment_state"
    with pytest.raises(UserError) as err:
        await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=5, comment="x" * 1001)
    assert err.value.key == "err_note_too_long"
    assert await lp.snapshot(n) == snap
    await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=4)
    with pytest.raises(UserError) as err:
        await lp.d.comment(actor_id=BOB.id, demand_id=d.id, text="  ")
    assert err.value.key == "err_comment_missing"


async def test_reopen_window_for_submitter(lp: Loop) -> None:
    n1 = (await lp.file(BOB, "路灯坏了")).number
    n2 = (await lp.file(BOB, "井盖松了")).number
    for n in (n1, n2):
        await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="修好了")
    await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n2, stars_given=5)
    lp.clock.advance(timedelta(days=6))
    d = await lp.d.reopen(actor_id=BOB.id, community_id=lp.cid, number=n1)  # resolved, day 6
    assert d.state == "reopened"
    d2 = await lp.d.reopen(actor_id=BOB.id, community_id=lp.cid, number=n2)  # rated, day 6
    assert d2.state == "reopened" and d2.rating is None and d2.rated_at is None
    # Resolve both again and wait 8 days: too late for the submitter, fine for a secretary.
    for n in (n1, n2):
        await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="再次修好")
    lp.clock.advance(timedelta(days=8))
    snap = await lp.snapshot(n1)
    with pytest.raises(UserError) as err:
        await lp.d.reopen(actor_id=BOB.id, community_id=lp.cid, number=n1)
    assert err.value.key == "err_reopen_too_late"
    assert await lp.snapshot(n1) == snap
    for who in (DAVE, CAROL, FRANK, HANK):  # not the submitter, not a secretary
        with pytest.raises(Denied):
            await lp.d.reopen(actor_id=who.id, community_id=lp.cid, number=n1)
    lp.clock.advance(timedelta(days=30))
    assert (await lp.d.reopen(actor_id=ALICE.id, community_id=lp.cid, number=n1)).state == "reopened"


async def test_reopen_window_edge_is_seven_days(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="修好了")
    lp.clock.advance(timedelta(days=7, seconds=1))
    with pytest.raises(UserError) as err:
        await lp.d.reopen(actor_id=BOB.id, community_id=lp.cid, number=n)
    assert err.value.key == "err_reopen_too_late"


async def test_submitter_cannot_reopen_rejected_or_open(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    with pytest.raises(UserError) as err:
        await lp.d.reopen(actor_id=BOB.id, community_id=lp.cid, number=n)
    assert err.value.key == "err_state_reopen"
    await lp.d.reject(actor_id=ALICE.id, community_id=lp.cid, number=n, reason="不归社区管")
    with pytest.raises(UserError) as err:
        await lp.d.reopen(actor_id=BOB.id, community_id=lp.cid, number=n)
    assert err.value.key == "err_reopen_secretary_only"
    assert (await lp.d.reopen(actor_id=GINA.id, community_id=lp.cid, number=n)).state == "reopened"


async def test_communities_are_isolated(lp: Loop) -> None:
    a1 = await lp.file(BOB, "路灯坏了")
    b1 = await lp.file(IVY, "井盖丢了", chat=RES_B, cid=lp.cid_b)
    b2 = await lp.file(IVY, "电梯坏了", chat=RES_B, cid=lp.cid_b)
    snap = await lp.snapshot(1)
    # HANK (secretary of B) acting on A: refused.
    with pytest.raises(Denied):
        await lp.d.accept(actor_id=HANK.id, community_id=lp.cid, number=1)
    with pytest.raises(Denied):
        await lp.d.view(actor_id=HANK.id, community_id=lp.cid, number=1)
    with pytest.raises(Denied):
        await lp.d.reopen(actor_id=HANK.id, community_id=lp.cid, number=1)
    # ALICE looks for #2 in her own community: B's #2 is not found from A.
    with pytest.raises(NotFound):
        await lp.d.accept(actor_id=ALICE.id, community_id=lp.cid, number=2)
    with pytest.raises(NotFound):
        await lp.d.duplicate(actor_id=ALICE.id, community_id=lp.cid, number=1, of=2)
    # A member of B can't take A's demands.
    with pytest.raises(UserError) as err:
        await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=1, assignee_id=KEN.id)
    assert err.value.key == "err_assign_not_member"
    assert await lp.snapshot(1) == snap
    # HANK's #1 is B's #1, not A's.
    d = await lp.d.accept(actor_id=HANK.id, community_id=lp.cid_b, number=1)
    assert d.id == b1.id and (await lp.get(1)).state == "new"
    listing = await lp.d.listing(actor_id=HANK.id, community_id=lp.cid_b, scope="all")
    assert {x.id for x in listing.demands} == {b1.id, b2.id}
    listing = await lp.d.listing(actor_id=HANK.id, community_id=lp.cid, scope="all")
    assert not listing.secretary and listing.demands == []
    assert a1.community_id == lp.cid


# ---------------------------------------------------------------------------------------------- assign


async def test_assign_rules(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    snap = await lp.snapshot(n)
    with pytest.raises(UserError) as err:
        await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=DAVE.id)  # resident
    assert err.value.key == "err_assign_not_member"
    with pytest.raises(UserError) as err:
        await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=424242)
    assert err.value.key == "err_assign_unknown"
    assert await lp.snapshot(n) == snap
    lp.clock.advance(timedelta(hours=1))
    d, member = await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=CAROL.id)
    assert member.id == CAROL.id and d.assignee_id == CAROL.id
    assert d.accepted_at == d.assigned_at == T0 + timedelta(hours=1)  # it was new: dispatching accepts it
    # A secretary is a valid assignee even outside the member chat; accepted_at stays.
    lp.clock.advance(timedelta(hours=1))
    d, _ = await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=GINA.id)
    assert d.assignee_id == GINA.id and d.accepted_at == T0 + timedelta(hours=1)
    assert d.assigned_at == T0 + timedelta(hours=2)
    # Already accepted before: accepted_at is the accept time.
    n2 = (await lp.file(BOB, "井盖松了")).number
    await lp.d.accept(actor_id=ALICE.id, community_id=lp.cid, number=n2)
    lp.clock.advance(timedelta(hours=5))
    d2, _ = await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n2, assignee_id=CAROL.id)
    assert d2.accepted_at == T0 + timedelta(hours=2) and d2.assigned_at == T0 + timedelta(hours=7)


async def test_left_member_cannot_be_assigned(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.w.people.record_presence(MEM.id, JUDY.id, "left")
    with pytest.raises(UserError) as err:
        await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=JUDY.id)
    assert err.value.key == "err_assign_not_member"


async def test_assignee_told_privately_when_started(lp: Loop) -> None:
    await lp.start(CAROL)
    n = (await lp.file(BOB, "3号楼电梯坏了", location="3号楼2单元")).number
    mark = await lp.last_outbox_id()
    await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=CAROL.id)
    rows = [r for r in await lp.outbox(mark) if "派给您的诉求" in r.text]
    assert len(rows) == 1 and rows[0].chat_id == CAROL.id
    assert "3号楼电梯坏了" in rows[0].text and "3号楼2单元" in rows[0].text


async def test_assignee_mentioned_in_member_chat_when_not_started(lp: Loop) -> None:
    n = (await lp.file(BOB, "3号楼电梯坏了")).number
    mark = await lp.last_outbox_id()
    await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=CAROL.id)
    rows = [r for r in await lp.outbox(mark) if "派给您的诉求" in r.text]
    assert len(rows) == 1
    assert (rows[0].chat_id, rows[0].thread_id) == (MEM.id, 7)
    assert f"tg://user?id={CAROL.id}" in rows[0].text


# ---------------------------------------------------------------------------------------------- rating


async def test_low_rating_alerts_started_secretaries(lp: Loop) -> None:
    await lp.start(ALICE)
    await lp.start(GINA)
    for stars in (1, 2, 3, 4, 5):
        n = (await lp.file(BOB, f"路灯坏了{stars}")).number
        await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="换了灯泡")
        mark = await lp.last_outbox_id()
        d = await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=stars, comment="一般")
        assert d.state == "rated" and d.rating == stars and d.rating_comment == "一般"
        rows = await lp.outbox(mark)
        if stars <= 2:
            assert sorted(r.chat_id for r in rows) == [ALICE.id, GINA.id]
            assert all("低分" in r.text and f"#{n}" in r.text for r in rows)
        else:
            assert rows == []


async def test_low_rating_alert_goes_to_member_chat_when_no_secretary_started(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="换了灯泡")
    mark = await lp.last_outbox_id()
    await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=1)
    rows = await lp.outbox(mark)
    assert [(r.chat_id, r.thread_id) for r in rows] == [(MEM.id, 7)] and "低分" in rows[0].text


async def test_low_rating_comment_alerts_again(lp: Loop) -> None:
    await lp.start(ALICE)
    n = (await lp.file(BOB, "路灯坏了")).number
    d = await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="换了灯泡")
    await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=2)
    mark = await lp.last_outbox_id()
    await lp.d.comment(actor_id=BOB.id, demand_id=d.id, text="灯还是闪")
    rows = await lp.outbox(mark)
    assert [r.chat_id for r in rows] == [ALICE.id] and "灯还是闪" in rows[0].text


async def test_one_rating_per_demand(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    d = await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="换了灯泡")
    await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=5)
    snap = await lp.snapshot(n)
    for stars in (1, 5, 0):
        with pytest.raises(UserError) as err:
            await lp.d.rate(actor_id=BOB.id, community_id=None, demand_id=d.id, stars_given=stars)
        assert err.value.key == "err_already_rated"
    assert await lp.snapshot(n) == snap
    assert (await lp.get(n)).rating == 5


async def test_not_fixed_reopens_alerts_and_second_round_rates(lp: Loop) -> None:
    await lp.start(ALICE)
    await lp.start(CAROL)
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=CAROL.id)
    await lp.d.resolve(actor_id=CAROL.id, community_id=lp.cid, number=n, note="换了灯泡")
    mark = await lp.last_outbox_id()
    d = await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=0, comment="还是不亮")
    assert d.state == "reopened" and d.rating is None
    ev = (await lp.events(d.id))[-1]
    assert (ev.action, ev.from_state, ev.to_state, ev.note) == ("not_fixed", "resolved", "reopened", "还是不亮")
    rows = await lp.outbox(mark)
    alert = [r for r in rows if r.chat_id == ALICE.id]
    assert len(alert) == 1 and "未解决" in alert[0].text and "还是不亮" in alert[0].text
    assert [r.chat_id for r in rows if r.chat_id == CAROL.id] == [CAROL.id]  # the assignee hears too
    # Second round.
    lp.clock.advance(timedelta(hours=2))
    d = await lp.d.resolve(actor_id=CAROL.id, community_id=lp.cid, number=n, note="换了整条线路")
    assert d.state == "resolved" and d.resolved_at == T0 + timedelta(hours=2)
    assert len(await lp.jobs(d.id, JOB_REASK)) == 2
    d = await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=5)
    assert d.state == "rated" and d.rating == 5


async def test_assignee_not_started_hears_of_not_fixed_and_reopen_in_member_chat(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=CAROL.id)

    async def told_carol(step: Awaitable[Any]) -> list[Outbox]:
        mark = await lp.last_outbox_id()
        await step
        return [r for r in await lp.outbox(mark) if f"tg://user?id={CAROL.id}" in r.text]

    await lp.d.resolve(actor_id=CAROL.id, community_id=lp.cid, number=n, note="换了灯泡")
    not_fixed = await told_carol(lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=0))
    await lp.d.resolve(actor_id=CAROL.id, community_id=lp.cid, number=n, note="再换")
    reopened = await told_carol(lp.d.reopen(actor_id=ALICE.id, community_id=lp.cid, number=n))
    for told in (not_fixed, reopened):
        assert len(told) == 1 and (told[0].chat_id, told[0].thread_id) == (MEM.id, 7)
        assert "重新打开" in told[0].text


# ---------------------------------------------------------------------------------------------- duplicates


async def test_duplicate_follower_told_on_resolution(lp: Loop) -> None:
    await lp.start(DAVE)
    m = (await lp.file(BOB, "3号楼电梯坏了", msg=60)).number
    n = (await lp.file(DAVE, "3号楼电梯又坏了", msg=61)).number
    d, target = await lp.d.duplicate(actor_id=ALICE.id, community_id=lp.cid, number=n, of=m)
    assert d.state == "duplicate" and d.duplicate_of_id == target.id and target.number == m
    assert await lp.followers(target.id) == {DAVE.id}
    ev = (await lp.events(target.id))[-1]
    assert (ev.action, ev.note) == ("merged", f"#{n}")
    assert (await lp.get(m)).state == "new"
    mark = await lp.last_outbox_id()
    await lp.d.accept(actor_id=ALICE.id, community_id=lp.cid, number=m)
    told = [r for r in await lp.outbox(mark) if r.chat_id == DAVE.id]
    assert len(told) == 1 and f"#{m}" in told[0].text  # followers hear of every change
    mark = await lp.last_outbox_id()
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=m, note="换了电机")
    rows = await lp.outbox(mark)
    told = [r for r in rows if r.chat_id == DAVE.id]
    assert len(told) == 1 and "已办结" in told[0].text and "换了电机" in told[0].text
    assert told[0].keyboard is None  # only the submitter rates
    to_bob = [r for r in rows if r.chat_id == RES.id]
    assert len(to_bob) == 1 and to_bob[0].keyboard is not None and to_bob[0].reply_to_message_id == 60
    # The follower may read #m but not rate it.
    await lp.d.view(actor_id=DAVE.id, community_id=lp.cid, number=m)
    with pytest.raises(Denied):
        await lp.d.rate(actor_id=DAVE.id, community_id=lp.cid, number=m, stars_given=5)


async def test_duplicate_follower_not_started_gets_mention_in_own_chat(lp: Loop) -> None:
    m = (await lp.file(BOB, "3号楼电梯坏了", msg=60)).number
    n = (await lp.file(DAVE, "3号楼电梯又坏了", msg=61)).number
    await lp.d.duplicate(actor_id=ALICE.id, community_id=lp.cid, number=n, of=m)
    mark = await lp.last_outbox_id()
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=m, note="换了电机")
    rows = [r for r in await lp.outbox(mark) if f"tg://user?id={DAVE.id}" in r.text]
    assert len(rows) == 1 and rows[0].chat_id == RES.id and rows[0].reply_to_message_id == 61


async def test_duplicate_of_self_refused(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    snap = await lp.snapshot(n)
    with pytest.raises(UserError) as err:
        await lp.d.duplicate(actor_id=ALICE.id, community_id=lp.cid, number=n, of=n)
    assert err.value.key == "err_duplicate_self"
    assert await lp.snapshot(n) == snap


async def test_duplicate_chain_goes_to_root_and_cycle_refused(lp: Loop) -> None:
    await lp.file(BOB, "电梯坏了")  # 1
    await lp.file(DAVE, "电梯坏了啊")  # 2
    await lp.file(JUDY, "电梯又坏", chat=None, msg=None)  # 3, filed privately by a member
    a = {"actor_id": ALICE.id, "community_id": lp.cid}
    await lp.d.duplicate(**a, number=2, of=1)
    _, target = await lp.d.duplicate(**a, number=3, of=2)  # 2 is a duplicate of 1: 3 goes to 1
    assert target.number == 1
    one = await lp.get(1)
    assert (await lp.get(3)).duplicate_of_id == one.id
    assert await lp.followers(one.id) == {DAVE.id, JUDY.id}
    # #1 into #2 would be #1 into itself (2 → 1).
    snap = await lp.snapshot(1)
    with pytest.raises(UserError) as err:
        await lp.d.duplicate(**a, number=1, of=2)
    assert err.value.key == "err_duplicate_self"
    assert await lp.snapshot(1) == snap


async def test_duplicates_followers_move_to_the_new_target(lp: Loop) -> None:
    await lp.file(BOB, "电梯坏了")  # 1
    await lp.file(DAVE, "电梯坏了啊")  # 2
    await lp.file(JUDY, "电梯又坏", chat=None, msg=None)  # 3
    a = {"actor_id": ALICE.id, "community_id": lp.cid}
    await lp.d.duplicate(**a, number=3, of=2)  # JUDY follows #2
    await lp.d.duplicate(**a, number=2, of=1)  # DAVE and JUDY follow #1
    assert await lp.followers((await lp.get(1)).id) == {DAVE.id, JUDY.id}


# ---------------------------------------------------------------------------------------------- listing


async def test_listing_scopes_and_visibility(lp: Loop) -> None:
    a = {"actor_id": ALICE.id, "community_id": lp.cid}
    await lp.file(BOB, "路灯坏了")  # 1 -> resolved
    await lp.file(BOB, "井盖松了")  # 2 -> assigned to CAROL
    await lp.file(DAVE, "垃圾没人收")  # 3 new
    await lp.file(CAROL, "楼道堆物", chat=None, msg=None)  # 4 new, CAROL's own
    await lp.file(DAVE, "紧急！水管爆了")  # 5 urgent, new
    await lp.file(IVY, "B 的诉求", chat=RES_B, cid=lp.cid_b)  # B's #1
    await lp.d.resolve(**a, number=1, note="修好了")
    await lp.d.assign(**a, number=2, assignee_id=CAROL.id)

    async def nums(user: TUser, scope: str | None) -> list[int]:
        listing = await lp.d.listing(actor_id=user.id, community_id=lp.cid, scope=scope)
        assert listing.total == len(listing.demands)
        return [x.number for x in listing.demands]

    default = await lp.d.listing(actor_id=ALICE.id, community_id=lp.cid, scope=None)
    assert default.scope == "open" and default.secretary
    assert [x.number for x in default.demands] == [5, 4, 3, 2]
    assert await nums(ALICE, "all") == [5, 4, 3, 2, 1]
    assert await nums(ALICE, "mine") == []
    assert await nums(ALICE, "overdue") == []
    assert await nums(GINA, " ALL ") == [5, 4, 3, 2, 1]
    # Residents: only their own, whatever the scope.
    mine = await lp.d.listing(actor_id=BOB.id, community_id=lp.cid, scope=None)
    assert mine.scope == "mine" and not mine.secretary
    assert [x.number for x in mine.demands] == [2, 1]
    assert await nums(BOB, "all") == [2, 1]
    assert await nums(BOB, "open") == [2]
    assert await nums(DAVE, "all") == [5, 3]
    assert await nums(FRANK, "all") == []
    # Members: their own plus what was dispatched to them.
    assert await nums(CAROL, "all") == [4, 2]
    assert await nums(CAROL, "mine") == [4, 2]
    # Overdue: past resolve_by, open only. Urgent #5 is overdue after 24 h, the rest after 7 days.
    lp.clock.advance(timedelta(hours=25))
    assert await nums(ALICE, "overdue") == [5]
    lp.clock.advance(timedelta(days=7))
    assert await nums(ALICE, "overdue") == [5, 4, 3, 2]
    assert await nums(DAVE, "overdue") == [5, 3]
    assert await nums(CAROL, "overdue") == [4, 2]
    for bad in ("foo", "closed", "1"):
        with pytest.raises(UserError) as err:
            await lp.d.listing(actor_id=ALICE.id, community_id=lp.cid, scope=bad)
        assert err.value.key == "err_demands_usage"


# ---------------------------------------------------------------------------------------------- timers


async def test_accept_due_reminder_fires_once(lp: Loop) -> None:
    await lp.start(ALICE)
    d = await lp.file(BOB, "路灯坏了")
    (job,) = await lp.jobs(d.id, JOB_ACCEPT)
    assert await lp.runner.fire(job.id) is None  # not due yet
    lp.clock.advance(timedelta(hours=24, seconds=1))
    mark = await lp.last_outbox_id()
    assert await lp.runner.fire(job.id) == "reminded"
    rows = await lp.outbox(mark)
    assert [r.chat_id for r in rows] == [ALICE.id] and "超过受理时限" in rows[0].text
    assert rows[0].keyboard is not None
    ev = (await lp.events(d.id))[-1]
    assert (ev.action, ev.actor_id, ev.from_state, ev.to_state) == ("remind", None, "new", "new")
    assert await lp.runner.fire(job.id) is None  # once
    assert await lp.outbox(mark + len(rows)) == []
    (job,) = await lp.jobs(d.id, JOB_ACCEPT)
    assert job.result == "reminded" and job.done_at is not None


async def test_accept_due_does_nothing_when_accepted_meanwhile(lp: Loop) -> None:
    d = await lp.file(BOB, "路灯坏了")
    await lp.d.accept(actor_id=ALICE.id, community_id=lp.cid, number=d.number)
    (job,) = await lp.jobs(d.id, JOB_ACCEPT)
    lp.clock.advance(timedelta(days=2))
    mark = await lp.last_outbox_id()
    events = len(await lp.events(d.id))
    assert await lp.runner.fire(job.id) == "moved-on"
    assert await lp.outbox(mark) == [] and len(await lp.events(d.id)) == events


async def test_accept_due_follows_moved_deadline(lp: Loop) -> None:
    d = await lp.file(BOB, "路灯坏了")
    (old,) = await lp.jobs(d.id, JOB_ACCEPT)
    lp.clock.advance(timedelta(minutes=30))
    d = await lp.d.set_urgency(actor_id=ALICE.id, community_id=lp.cid, number=d.number, urgency="urgent")
    assert d.accept_by == T0 + timedelta(hours=2) and d.resolve_by == T0 + timedelta(hours=24)
    jobs = await lp.jobs(d.id, JOB_ACCEPT)
    assert len(jobs) == 2
    new = jobs[1]
    assert new.due_at == T0 + timedelta(hours=2)
    assert [j.due_at for j in await lp.jobs(d.id, JOB_OVERDUE)] == [T0 + timedelta(days=7), T0 + timedelta(hours=24)]
    ev = (await lp.events(d.id))[-1]
    assert (ev.action, ev.note, ev.from_state, ev.to_state) == ("urgency", "urgent", "new", "new")
    lp.clock.advance(timedelta(hours=2))
    assert await lp.runner.fire(new.id) == "reminded"
    lp.clock.advance(timedelta(days=1))
    assert await lp.runner.fire(old.id) == "moved-on"  # the old deadline is not the demand's any more
    # The overdue timers: the 24 h one fires, the 7 d one stands down.
    ovd = await lp.jobs(d.id, JOB_OVERDUE)
    assert await lp.runner.fire(ovd[1].id) == "overdue"
    lp.clock.advance(timedelta(days=7))
    assert await lp.runner.fire(ovd[0].id) == "moved-on"


async def test_set_category_moves_deadlines_with_community_sla(lp: Loop) -> None:
    await lp.set_config(lp.cid, {"sla": {"lifts": {"*": {"accept": "1h", "resolve": "2d"}}}})
    d = await lp.file(BOB, "楼道灯坏了")
    assert d.category != "lifts" and d.accept_by == T0 + timedelta(hours=24)
    (old,) = await lp.jobs(d.id, JOB_ACCEPT)
    d = await lp.d.set_category(actor_id=ALICE.id, community_id=lp.cid, number=d.number, category="lifts")
    assert d.category == "lifts"
    assert d.accept_by == T0 + timedelta(hours=1) and d.resolve_by == T0 + timedelta(days=2)
    lp.clock.advance(timedelta(hours=1))
    new = (await lp.jobs(d.id, JOB_ACCEPT))[-1]
    assert new.id != old.id and await lp.runner.fire(new.id) == "reminded"
    lp.clock.advance(timedelta(hours=24))
    assert await lp.runner.fire(old.id) == "moved-on"


async def test_reclassify_closed_refused(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.d.reject(actor_id=ALICE.id, community_id=lp.cid, number=n, reason="不归社区管")
    snap = await lp.snapshot(n)
    with pytest.raises(UserError) as err:
        await lp.d.set_category(actor_id=ALICE.id, community_id=lp.cid, number=n, category="lifts")
    assert err.value.key == "err_state_reclassify"
    with pytest.raises(UserError) as err:
        await lp.d.set_urgency(actor_id=ALICE.id, community_id=lp.cid, number=n, urgency="urgent")
    assert err.value.key == "err_state_reclassify"
    assert await lp.snapshot(n) == snap


async def test_reclassify_after_accept_schedules_no_accept_reminder(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.d.accept(actor_id=ALICE.id, community_id=lp.cid, number=n)
    d = await lp.d.set_urgency(actor_id=ALICE.id, community_id=lp.cid, number=n, urgency="urgent")
    assert len(await lp.jobs(d.id, JOB_ACCEPT)) == 1  # only the one from filing
    assert len(await lp.jobs(d.id, JOB_OVERDUE)) == 2


async def test_overdue_job(lp: Loop) -> None:
    d = await lp.file(BOB, "路灯坏了")
    await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=d.number, assignee_id=CAROL.id)
    (job,) = await lp.jobs(d.id, JOB_OVERDUE)
    lp.clock.advance(timedelta(days=6))
    assert await lp.runner.fire(job.id) is None
    lp.clock.advance(timedelta(days=1, seconds=1))
    mark = await lp.last_outbox_id()
    assert await lp.runner.fire(job.id) == "overdue"
    rows = await lp.outbox(mark)
    assert [(r.chat_id, r.thread_id) for r in rows] == [(MEM.id, 7)] and "超过办结时限" in rows[0].text
    ev = (await lp.events(d.id))[-1]
    assert (ev.action, ev.from_state, ev.to_state) == ("overdue", "assigned", "assigned")
    assert await lp.runner.fire(job.id) is None


async def test_timer_alerts_keep_private_text_out_of_member_chat(lp: Loop) -> None:
    await lp.start(BOB)
    filed = await lp.d.file(actor_id=BOB.id, community_id=lp.cid, text="我家漏水很久了，隐私内容", public=False,
                            origin_chat_id=BOB.id, via="form")
    d = filed.demand
    lp.clock.advance(timedelta(days=8))
    mark = await lp.last_outbox_id()
    assert await lp.runner.fire((await lp.jobs(d.id, JOB_ACCEPT))[0].id) == "reminded"
    assert await lp.runner.fire((await lp.jobs(d.id, JOB_OVERDUE))[0].id) == "overdue"
    rows = await lp.outbox(mark)
    assert [r.chat_id for r in rows] == [MEM.id, MEM.id]
    assert all("隐私内容" not in r.text and f"#{d.number}" in r.text for r in rows)
    # A secretary who started the bot sees all of it privately.
    await lp.start(ALICE)
    d2 = (await lp.d.file(actor_id=BOB.id, community_id=lp.cid, text="隐私内容二", public=False,
                          origin_chat_id=BOB.id, via="form")).demand
    lp.clock.advance(timedelta(days=8))
    mark = await lp.last_outbox_id()
    assert await lp.runner.fire((await lp.jobs(d2.id, JOB_OVERDUE))[0].id) == "overdue"
    rows = await lp.outbox(mark)
    assert [r.chat_id for r in rows] == [ALICE.id] and "隐私内容二" in rows[0].text


async def test_overdue_job_stands_down_when_resolved(lp: Loop) -> None:
    d = await lp.file(BOB, "路灯坏了")
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=d.number, note="修好了")
    (job,) = await lp.jobs(d.id, JOB_OVERDUE)
    lp.clock.advance(timedelta(days=8))
    mark = await lp.last_outbox_id()
    assert await lp.runner.fire(job.id) == "moved-on"
    assert await lp.outbox(mark) == []


async def test_reask_fires_once_while_resolved(lp: Loop) -> None:
    await lp.start(BOB)
    d = await lp.file(BOB, "路灯坏了")
    d = await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=d.number, note="换了灯泡")
    (job,) = await lp.jobs(d.id, JOB_REASK)
    lp.clock.advance(timedelta(hours=23))
    assert await lp.runner.fire(job.id) is None
    lp.clock.advance(timedelta(hours=1))
    mark = await lp.last_outbox_id()
    assert await lp.runner.fire(job.id) == "reasked"
    rows = await lp.outbox(mark)
    assert [r.chat_id for r in rows] == [BOB.id]
    assert "还没有收到您的评价" in rows[0].text and rows[0].keyboard is not None
    assert rows[0].ref == f"demand:{d.id}:rate"
    assert await lp.runner.fire(job.id) is None  # then never again
    assert await lp.outbox(mark + 1) == []


async def test_reask_stands_down_when_rated(lp: Loop) -> None:
    d = await lp.file(BOB, "路灯坏了")
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=d.number, note="换了灯泡")
    await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=d.number, stars_given=5)
    (job,) = await lp.jobs(d.id, JOB_REASK)
    lp.clock.advance(timedelta(days=2))
    mark = await lp.last_outbox_id()
    assert await lp.runner.fire(job.id) == "moved-on"
    assert await lp.outbox(mark) == []


async def test_reask_only_for_the_same_resolution(lp: Loop) -> None:
    await lp.start(BOB)
    n = (await lp.file(BOB, "路灯坏了")).number
    d = await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="换了灯泡")
    (first,) = await lp.jobs(d.id, JOB_REASK)
    lp.clock.advance(timedelta(hours=3))
    await lp.d.reopen(actor_id=BOB.id, community_id=lp.cid, number=n)
    lp.clock.advance(timedelta(hours=3))
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="再次修好")
    first_again, second = await lp.jobs(d.id, JOB_REASK)
    assert first_again.id == first.id and second.due_at == T0 + timedelta(hours=30)
    lp.clock.advance(timedelta(hours=24))
    mark = await lp.last_outbox_id()
    assert await lp.runner.fire(first.id) == "moved-on"  # resolved again, but not this resolution
    assert await lp.outbox(mark) == []
    assert await lp.runner.fire(second.id) == "reasked"
    rows = await lp.outbox(mark)
    assert len(rows) == 1 and "再次修好" in rows[0].text


# ---------------------------------------------------------------------------------------------- notifications


async def steps_told(lp: Loop) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    """(what, step) pairs, each a change BOB's demand #1 (or #2 for the duplicate) goes through."""
    a = {"actor_id": ALICE.id, "community_id": lp.cid}
    await lp.file(BOB, "路灯坏了", msg=70)  # 1
    await lp.file(BOB, "路灯还是坏的", msg=71)  # 2
    await lp.file(DAVE, "井盖松了", msg=72)  # 3
    return [
        ("已受理", lambda: lp.d.accept(**a, number=1)),
        ("已派给", lambda: lp.d.assign(**a, number=1, assignee_id=CAROL.id)),
        ("已办结", lambda: lp.d.resolve(**a, number=1, note="换了灯泡")),
        ("已重新打开", lambda: lp.d.reopen(**a, number=1)),
        ("不予受理", lambda: lp.d.reject(**a, number=1, reason="不归社区管")),
        ("已合并", lambda: lp.d.duplicate(**a, number=2, of=3)),
    ]


async def test_submitter_told_privately_when_started(lp: Loop) -> None:
    await lp.start(BOB)
    for marker, step in await steps_told(lp):
        mark = await lp.last_outbox_id()
        await step()
        told = [r for r in await lp.outbox(mark) if r.chat_id == BOB.id]
        assert len(told) == 1, marker
        assert marker in told[0].text and told[0].reply_to_message_id is None
        assert not [r for r in await lp.outbox(mark) if r.chat_id == RES.id], marker


async def test_submitter_mentioned_in_origin_chat_when_not_started(lp: Loop) -> None:
    for marker, step in await steps_told(lp):
        mark = await lp.last_outbox_id()
        await step()
        told = [r for r in await lp.outbox(mark) if r.chat_id == RES.id]
        assert len(told) == 1, marker
        row = told[0]
        assert marker in row.text and f"tg://user?id={BOB.id}" in row.text
        assert row.reply_to_message_id in (70, 71)
        assert not [r for r in await lp.outbox(mark) if r.chat_id == BOB.id], marker


async def test_submitter_reopening_is_not_told_but_secretaries_are(lp: Loop) -> None:
    await lp.start(BOB)
    await lp.start(ALICE)
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="换了灯泡")
    mark = await lp.last_outbox_id()
    await lp.d.reopen(actor_id=BOB.id, community_id=lp.cid, number=n)
    rows = await lp.outbox(mark)
    assert [r.chat_id for r in rows] == [ALICE.id] and "提交人重新打开" in rows[0].text


async def test_user_text_is_escaped(lp: Loop) -> None:
    await lp.start(ALICE)
    await lp.start(BOB)
    await lp.start(CAROL)
    nasty = '<b>电梯</b> & <a href="http://evil">点我</a>'
    n = (await lp.file(BOB, nasty, location="<i>3号楼</i>")).number
    d = await lp.get(n)
    assert d.text == nasty  # stored as typed
    (alert,) = await lp.outbox()
    assert alert.chat_id == ALICE.id
    assert "&lt;b&gt;电梯&lt;/b&gt; &amp; &lt;a href=" in alert.text and "&lt;i&gt;3号楼&lt;/i&gt;" in alert.text
    assert "<b>电梯</b>" not in alert.text and "<a href" not in alert.text and "<i>" not in alert.text
    mark = await lp.last_outbox_id()
    await lp.d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=CAROL.id)
    (dispatched,) = [r for r in await lp.outbox(mark) if r.chat_id == CAROL.id]
    assert "&lt;b&gt;电梯&lt;/b&gt; &amp;" in dispatched.text and "<b>电梯</b>" not in dispatched.text
    mark = await lp.last_outbox_id()
    await lp.d.resolve(actor_id=CAROL.id, community_id=lp.cid, number=n, note="<u>修好</u> & 完成")
    (resolved,) = [r for r in await lp.outbox(mark) if r.chat_id == BOB.id]
    assert "&lt;u&gt;修好&lt;/u&gt; &amp; 完成" in resolved.text and "<u>" not in resolved.text
    mark = await lp.last_outbox_id()
    await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=1, comment="<script>&")
    (low,) = await lp.outbox(mark)
    assert "&lt;script&gt;&amp;" in low.text and "<script>" not in low.text


async def test_mention_escapes_display_name(lp: Loop) -> None:
    evil = TUser(12, "<b>Eve</b>", username="eve")
    await lp.w.see(evil, RES)
    await lp.file(evil, "路灯坏了", msg=80)
    mark = await lp.last_outbox_id()
    await lp.d.accept(actor_id=ALICE.id, community_id=lp.cid, number=1)
    (row,) = [r for r in await lp.outbox(mark) if r.chat_id == RES.id]
    assert "&lt;b&gt;Eve&lt;/b&gt;" in row.text and "<b>Eve</b>" not in row.text


# ---------------------------------------------------------------------------------------------- reports, /forget


async def test_report_alerts_secretaries_from_resident_chat_only(lp: Loop) -> None:
    await lp.start(ALICE)
    await lp.d.report(actor_id=BOB.id, chat_id=RES.id, reported_text="<b>广告</b>", author_name="Spammer",
                      reporter_name="Bob")
    (row,) = await lp.outbox()
    assert row.chat_id == ALICE.id and "&lt;b&gt;广告&lt;/b&gt;" in row.text
    for chat, key in ((MEM.id, "err_report_where"), (UNBOUND.id, "err_not_bound")):
        with pytest.raises(UserError) as err:
            await lp.d.report(actor_id=BOB.id, chat_id=chat, reported_text="x", author_name=None,
                              reporter_name="Bob")
        assert err.value.key == key


async def test_forget_keeps_demands_anonymised(lp: Loop) -> None:
    n = (await lp.file(BOB, "路灯坏了")).number
    await lp.file(BOB, "电梯坏了")
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="换了灯泡")
    await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=n, stars_given=4)
    await lp.w.people.forget(BOB.id)
    d1, d2 = await lp.get(1), await lp.get(2)
    assert d1.submitter_id is None and d1.filed_by_id is None and d1.text == "路灯坏了"
    assert (d1.state, d1.rating) == ("rated", 4)  # the rates do not change
    assert d2.submitter_id is None and d2.state == "new"
    assert all(e.actor_id != BOB.id for e in await lp.events(d1.id))
    assert len(await lp.events(d1.id)) == 3
    # The anonymous demand still goes through the loop; nobody is told, nothing breaks.
    await lp.d.accept(actor_id=ALICE.id, community_id=lp.cid, number=2)
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=2, note="修好了")
    assert (await lp.get(2)).state == "resolved"
    with pytest.raises(Denied):
        await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=2, stars_given=5)
    listing = await lp.d.listing(actor_id=ALICE.id, community_id=lp.cid, scope="all")
    assert [x.number for x in listing.demands] == [2, 1]
