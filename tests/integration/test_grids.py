"""Grids and the street at the service level, on SQLite and PostgreSQL: the isolation matrix
(role × action × level), routing, escalation and return with their deadlines, streets and figures.

The expected matrix is written out here from the contract, not read from the code under test.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.scheduler.runner import JobRunner
from bot.services.base import ServiceContext
from bot.services.demands import JOB_ACCEPT, DemandService
from bot.services.errors import Denied, UserError
from bot.services.grid_ledger import LevelSharesPart
from bot.services.grids import JOB_LEVEL_ACCEPT, GridService
from bot.storage.db import make_session_factory
from bot.storage.models import Demand, Job
from bot.transport.port import User as TUser
from bot.ui.demands import demand_card
from bot.ui.i18n import Translator
from config.settings import SettingsError, load_settings
from tests.integration.conftest import ALICE, BOB, CAROL, MEM, RES
from tests.integration.test_demands import DAVE, HANK, IVY, JUDY, RES_B, SUPER, T0, Loop, build_loop
from tests.personal_search import Person, traces

MIKE = TUser(12, "Mike", username="mike")  # a plain member of A (assign target)
OLGA = TUser(20, "Olga", username="olga")  # officer of street 城关 (A joined it)
PAUL = TUser(21, "Paul", username="paul")  # officer of street 城西 (B joined it)

ROLES: dict[str, TUser] = {
    "resident": DAVE,
    "member": MIKE,
    "leader_a": CAROL,  # leads 一网格 (1-6号楼)
    "leader_b": JUDY,  # leads 二网格 (7-9号楼)
    "secretary": ALICE,
    "other_secretary": HANK,  # secretary of community B
    "officer": OLGA,
    "other_officer": PAUL,
}
LEVELS = ("grid", "community", "street")
# (action, level) -> roles allowed. Accept/assign/resolve: the level's handler or a secretary.
HANDLE = {"grid": {"leader_a", "secretary"}, "community": {"secretary"}, "street": {"officer", "secretary"}}
ALLOWED: dict[str, dict[str, set[str]]] = {
    "view": {"grid": {"leader_a", "secretary"}, "community": {"leader_a", "secretary"},
             "street": {"leader_a", "secretary", "officer"}},
    "accept": HANDLE,
    "assign": HANDLE,
    "resolve": HANDLE,
    # Above the street there is nothing: refused for everyone (a clear reply, not a denial).
    "escalate": {"grid": {"leader_a", "secretary"}, "community": {"secretary"}, "street": set()},
    # Below the grid there is nothing; the street's demands go back by the street's officer.
    "return": {"grid": set(), "community": {"secretary"}, "street": {"officer"}},
}


class G:
    def __init__(self, lp: Loop, grids: GridService, street_a: Any, street_b: Any) -> None:
        self.lp = lp
        self.g = grids
        self.street_a = street_a
        self.street_b = street_b

    async def demand_at(self, level: str, text: str = "3号楼电梯坏了") -> Demand:
        d = await self.lp.file(BOB, text)
        assert d.level == "grid" and d.grid_id is not None
        if level in ("community", "street"):
            await self.g.escalate(actor_id=CAROL.id, community_id=self.lp.cid, number=d.number, reason="网格协调不了")
        if level == "street":
            await self.g.escalate(actor_id=ALICE.id, community_id=self.lp.cid, number=d.number, reason="需要街道协调")
        got = await self.lp.get(d.number)
        assert got.level == level
        return got


async def build(engine: AsyncEngine, **settings: Any) -> G:
    lp = await build_loop(engine, **settings)
    grids = GridService(lp.w.ctx, lp.w.demands)
    grids.register_jobs(lp.runner)
    await lp.w.see(MIKE, MEM)
    for u in (OLGA, PAUL):
        await lp.w.people.ensure_user(u.id, u.first_name, u.username)
    for u in (CAROL, JUDY, OLGA, PAUL, ALICE, BOB):
        await lp.start(u)
    await grids.add_grid(actor_id=ALICE.id, community_id=lp.cid, name="一网格", buildings="1-6号楼")
    await grids.add_grid(actor_id=ALICE.id, community_id=lp.cid, name="二网格", buildings="7-9号楼")
    await grids.lead(actor_id=ALICE.id, community_id=lp.cid, name="一网格", leader_id=CAROL.id)
    await grids.lead(actor_id=ALICE.id, community_id=lp.cid, name="二网格", leader_id=JUDY.id)
    street_a = await grids.create_street(actor_id=SUPER.id, name="城关街道")
    street_b = await grids.create_street(actor_id=SUPER.id, name="城西街道")
    await grids.join(actor_id=ALICE.id, community_id=lp.cid, code=street_a.code)
    await grids.join(actor_id=HANK.id, community_id=lp.cid_b, code=street_b.code.lower())
    await grids.officer(actor_id=SUPER.id, code=street_a.code, target_id=OLGA.id, add=True)
    await grids.officer(actor_id=SUPER.id, code=street_b.code, target_id=PAUL.id, add=True)
    return G(lp, grids, street_a, street_b)


@pytest.fixture
async def g(engine: AsyncEngine) -> G:
    return await build(engine, filing_limit_per_hour=1000)


async def _snapshot(g: G, number: int) -> tuple[Any, ...]:
    d = await g.lp.get(number)
    return (*await g.lp.snapshot(number), d.level, d.level_accept_by, d.grid_id)


async def _do(g: G, action: str, user: TUser, n: int) -> None:
    cid = g.lp.cid
    if action == "view":
        await g.lp.d.view(actor_id=user.id, community_id=cid, number=n)
    elif action == "accept":
        await g.lp.d.accept(actor_id=user.id, community_id=cid, number=n)
    elif action == "assign":
        await g.lp.d.assign(actor_id=user.id, community_id=cid, number=n, assignee_id=MIKE.id)
    elif action == "resolve":
        await g.lp.d.resolve(actor_id=user.id, community_id=cid, number=n, note="修好了")
    elif action == "escalate":
        await g.g.escalate(actor_id=user.id, community_id=cid, number=n, reason="协调不了")
    elif action == "return":
        await g.g.return_(actor_id=user.id, community_id=cid, number=n, reason="请下级办理")
    else:
        raise AssertionError(action)


@pytest.mark.parametrize("action", list(ALLOWED))
async def test_the_matrix(g: G, action: str) -> None:
    """Every role × level for one action: allowed exactly where the contract says; where refused,
    a clear reply (Denied, or a UserError naming the top/bottom) and nothing changed."""
    wrong: list[str] = []
    for level in LEVELS:
        for role, user in ROLES.items():
            d = await g.demand_at(level)
            before = await _snapshot(g, d.number)
            try:
                await _do(g, action, user, d.number)
                ok = True
            except UserError:  # Denied is a UserError too
                ok = False
            expected = role in ALLOWED[action][level]
            if ok != expected:
                wrong.append(f"{role} {action} at {level}: {'allowed' if ok else 'refused'}")
            if not ok and before != await _snapshot(g, d.number):
                wrong.append(f"{role} {action} at {level}: refused but changed")
    assert wrong == []


async def test_street_stats_matrix(g: G) -> None:
    d = await g.demand_at("street")
    await g.lp.d.resolve(actor_id=OLGA.id, community_id=g.lp.cid, number=d.number, note="街道协调解决")
    results, _ = await g.g.stats(actor_id=OLGA.id, period=None)
    ((info, figures),) = results
    assert info.street.name == "城关街道" and [f.name for f in figures] == ["幸福里"]
    assert figures[0].resolved == 1 and figures[0].solved_at == {"street": 1}
    results, _ = await g.g.stats(actor_id=PAUL.id, period=None)
    ((info, figures),) = results
    assert [f.name for f in figures] == ["阳光苑"]  # the other street sees nothing of A
    for role in ("resident", "member", "leader_a", "leader_b", "secretary", "other_secretary"):
        with pytest.raises(Denied):
            await g.g.stats(actor_id=ROLES[role].id, period=None)
    with pytest.raises(UserError, match="err_street_stats_usage"):
        await g.g.stats(actor_id=OLGA.id, period="2026-13")


async def test_a_community_moves_to_another_street(g: G) -> None:
    d = await g.demand_at("street")
    await g.g.join(actor_id=ALICE.id, community_id=g.lp.cid, code=g.street_b.code)
    assert [it.demand.id for it in await g.g.queue(actor_id=PAUL.id)] == [d.id]
    assert await g.g.queue(actor_id=OLGA.id) == []
    with pytest.raises(Denied):
        await g.lp.d.accept(actor_id=OLGA.id, community_id=g.lp.cid, number=d.number)


async def test_queue_shows_only_what_reached_the_street(g: G) -> None:
    at_street = await g.demand_at("street")
    await g.demand_at("community")
    await g.demand_at("grid")
    b = await g.lp.file(IVY, "井盖丢了", chat=RES_B, cid=g.lp.cid_b)
    await g.g.escalate(actor_id=HANK.id, community_id=g.lp.cid_b, number=b.number, reason="需要街道")
    assert [it.demand.id for it in await g.g.queue(actor_id=OLGA.id)] == [at_street.id]
    view = await g.lp.d.view(actor_id=OLGA.id, community_id=g.lp.cid, number=at_street.number)
    card = demand_card(Translator("zh"), view, g.lp.clock())
    assert "办理层级：街道" in card and "Bob" in card and "已上报街道" in card  # in full, with the submitter
    assert [it.demand.id for it in await g.g.queue(actor_id=PAUL.id)] == [b.id]
    with pytest.raises(Denied):
        await g.g.queue(actor_id=ALICE.id)
    # The officer of A's street sees nothing of B's demands, even escalated ones.
    with pytest.raises(Denied):
        await g.lp.d.view(actor_id=OLGA.id, community_id=g.lp.cid_b, number=b.number)


# ------------------------------------------------------------------------------ routing


async def test_routing_by_text_and_by_mybuilding(g: G) -> None:
    lp = g.lp
    after = await lp.last_outbox_id()
    d = await lp.file(BOB, "3号楼楼道灯不亮")
    assert d.level == "grid"
    rows = await lp.outbox(after)
    # The leader alone is alerted, privately, with the accept button; not the secretaries.
    assert [r.chat_id for r in rows] == [CAROL.id]
    assert "一网格" in rows[0].text and rows[0].keyboard
    # Not accepted by the deadline: the leader is reminded, and the secretaries too.
    lp.clock.advance(timedelta(hours=24, minutes=1))
    after_due = await lp.last_outbox_id()
    (level_job,) = await lp.jobs(d.id, JOB_LEVEL_ACCEPT)
    (accept_job,) = await lp.jobs(d.id, JOB_ACCEPT)
    assert await lp.runner.fire_many([level_job.id, accept_job.id]) == {level_job.id: "reminded",
                                                                         accept_job.id: "reminded"}
    assert {CAROL.id, ALICE.id} <= {r.chat_id for r in await lp.outbox(after_due)}
    lp.clock.advance(timedelta(hours=-24, minutes=-1))
    # No building named: the submitter's /mybuilding decides.
    building, grid = await g.g.set_building(actor_id=DAVE.id, community_id=lp.cid, raw="8栋")
    assert (building, grid.name) == ("8号楼", "二网格")
    building, grid = await g.g.set_building(actor_id=DAVE.id, community_id=lp.cid, raw="3栋")
    building, grid = await g.g.set_building(actor_id=DAVE.id, community_id=lp.cid, raw="8栋")  # moved again
    d2 = await lp.file(DAVE, "楼下噪音太大")
    assert d2.level == "grid"
    async with lp.w.ctx.read() as s:
        assert (await s.get(Demand, d2.id)).grid_id == grid.id  # type: ignore[union-attr]
    # Neither: the community, as before; the secretaries are alerted.
    after = await lp.last_outbox_id()
    d3 = await lp.file(BOB, "小区门口垃圾没人收")
    assert d3.level == "community" and d3.grid_id is None
    assert ALICE.id in {r.chat_id for r in await lp.outbox(after)}
    # The leader's /demands shows their grid's demands, not the other grid's.
    listing = await lp.d.listing(actor_id=CAROL.id, community_id=lp.cid, scope="open")
    assert [x.number for x in listing.demands] == [d.number]


async def test_bad_input_changes_nothing(g: G) -> None:
    lp = g.lp
    with pytest.raises(UserError, match="err_building_unknown"):
        await g.g.set_building(actor_id=BOB.id, community_id=lp.cid, raw="99号楼")
    with pytest.raises(UserError, match="err_building_usage"):
        await g.g.set_building(actor_id=BOB.id, community_id=lp.cid, raw="楼上")
    with pytest.raises(UserError, match="err_grid_buildings"):
        await g.g.add_grid(actor_id=ALICE.id, community_id=lp.cid, name="三网格", buildings="一些楼")
    with pytest.raises(UserError, match="err_grid_overlap"):
        await g.g.add_grid(actor_id=ALICE.id, community_id=lp.cid, name="三网格", buildings="5-7号楼")
    with pytest.raises(Denied):
        await g.g.add_grid(actor_id=BOB.id, community_id=lp.cid, name="三网格", buildings="10号楼")
    with pytest.raises(UserError, match="err_street_code"):
        await g.g.join(actor_id=HANK.id, community_id=lp.cid_b, code="WRONG123")
    with pytest.raises(Denied):
        await g.g.join(actor_id=BOB.id, community_id=lp.cid, code=g.street_b.code)
    with pytest.raises(Denied):
        await g.g.create_street(actor_id=ALICE.id, name="私设街道")
    with pytest.raises(Denied):
        await g.g.officer(actor_id=ALICE.id, code=g.street_a.code, target_id=BOB.id, add=True)
    d = await g.demand_at("street")
    before = await _snapshot(g, d.number)
    with pytest.raises(UserError, match="err_escalate_top"):
        await g.g.escalate(actor_id=ALICE.id, community_id=lp.cid, number=d.number, reason="再上报")
    with pytest.raises(UserError, match="err_return_usage"):
        await g.g.return_(actor_id=OLGA.id, community_id=lp.cid, number=d.number, reason="  ")
    assert before == await _snapshot(g, d.number)
    d = await g.demand_at("grid")
    before = await _snapshot(g, d.number)
    with pytest.raises(UserError, match="err_return_bottom"):
        await g.g.return_(actor_id=ALICE.id, community_id=lp.cid, number=d.number, reason="退回")
    assert before == await _snapshot(g, d.number)
    # A community that left its street (or never joined one) cannot escalate to a street.
    async with lp.w.ctx.tx() as s:
        from bot.storage.models import StreetCommunity

        await s.delete(await s.get(StreetCommunity, lp.cid))
    d = await g.demand_at("community")
    with pytest.raises(UserError, match="err_no_street"):
        await g.g.escalate(actor_id=ALICE.id, community_id=lp.cid, number=d.number, reason="上报")


# ------------------------------------------------------------------------------ moves and deadlines


async def test_escalate_and_return_restart_the_sla_and_tell_the_submitter(g: G) -> None:
    lp = g.lp
    d = await lp.file(BOB, "5号楼楼道灯不亮")
    assert d.accept_by == T0 + timedelta(hours=24)
    await lp.d.accept(actor_id=CAROL.id, community_id=lp.cid, number=d.number)
    lp.clock.advance(timedelta(hours=3))
    after = await lp.last_outbox_id()
    await g.g.escalate(actor_id=CAROL.id, community_id=lp.cid, number=d.number, reason="需要物业")
    d = await lp.get(d.number)
    now = T0 + timedelta(hours=3)
    assert (d.level, d.state, d.assignee_id) == ("community", "new", None)
    assert d.accepted_at == T0  # the response rate keeps the first acceptance
    assert d.level_accept_by == now + timedelta(hours=24) and d.resolve_by == now + timedelta(days=7)
    rows = await lp.outbox(after)
    told = [r for r in rows if r.chat_id == BOB.id]
    assert len(told) == 1 and "已上报社区" in told[0].text
    assert ALICE.id in {r.chat_id for r in rows}  # the secretaries now
    # The leader no longer handles it at the community level (but still sees it).
    with pytest.raises(Denied):
        await lp.d.accept(actor_id=CAROL.id, community_id=lp.cid, number=d.number)
    await lp.d.view(actor_id=CAROL.id, community_id=lp.cid, number=d.number)
    lp.clock.advance(timedelta(hours=1))
    after = await lp.last_outbox_id()
    await g.g.escalate(actor_id=ALICE.id, community_id=lp.cid, number=d.number, reason="需要街道协调")
    rows = await lp.outbox(after)
    assert any(r.chat_id == BOB.id and "已上报街道" in r.text for r in rows)
    assert any(r.chat_id == OLGA.id for r in rows) and not any(r.chat_id == PAUL.id for r in rows)
    after = await lp.last_outbox_id()
    await g.g.return_(actor_id=OLGA.id, community_id=lp.cid, number=d.number, reason="社区职责范围")
    rows = await lp.outbox(after)
    assert any(r.chat_id == BOB.id and "社区职责范围" in r.text for r in rows)
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=d.number, note="已修复")
    events = [e.action for e in await lp.events(d.id)]
    assert events == ["file", "accept", "escalate_community", "escalate_street", "return_community", "resolve"]
    # /stats' level shares: solved at the community.
    async with lp.w.ctx.read() as s:
        lines = await LevelSharesPart().lines(s, lp.cid, None, None, "zh")
    assert "社区 1（100%）" in lines[1] and "网格 0" in lines[1]


async def test_level_overrides_set_the_street_deadlines(engine: AsyncEngine) -> None:
    g = await build(engine, filing_limit_per_hour=1000,
                    sla_level_overrides={"street": {"*": {"*": {"accept": "48h", "resolve": "30d"}}}})
    d = await g.demand_at("street")
    assert d.level_accept_by == T0 + timedelta(hours=48) and d.resolve_by == T0 + timedelta(days=30)
    d = await g.demand_at("community")  # no override for the community: the usual table
    assert d.level_accept_by == T0 + timedelta(hours=24) and d.resolve_by == T0 + timedelta(days=7)
    with pytest.raises(SettingsError, match="unknown level"):
        load_settings(bot_token="1:x", sla_level_overrides={"district": {}})


async def test_level_shares_for_stats(g: G) -> None:
    """/stats' level shares: where each resolved demand of the period was solved."""
    lp = g.lp
    at_grid = await g.demand_at("grid")
    await lp.d.resolve(actor_id=CAROL.id, community_id=lp.cid, number=at_grid.number, note="网格解决")
    for _ in range(2):
        at_community = await g.demand_at("community")
        await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=at_community.number, note="社区解决")
    at_street = await g.demand_at("street")
    await lp.d.resolve(actor_id=OLGA.id, community_id=lp.cid, number=at_street.number, note="街道解决")
    await g.demand_at("street")  # open: not counted
    part = LevelSharesPart()
    async with lp.w.ctx.read() as s:
        zh = await part.lines(s, lp.cid, T0 - timedelta(days=1), T0 + timedelta(days=1), "zh")
        en = await part.lines(s, lp.cid, None, None, "en")
        later = await part.lines(s, lp.cid, T0 + timedelta(days=1), T0 + timedelta(days=2), "zh")
        other = await part.lines(s, lp.cid_b, None, None, "zh")
    assert "小事不出网格" in zh[0] and "4" in zh[0]
    assert zh[1] == "网格 1（25%） · 社区 2（50%） · 街道 1（25%）"
    assert en[1] == "grid 1 (25%) · community 2 (50%) · street 1 (25%)"
    assert later[1] == "网格 0（-） · 社区 0（-） · 街道 0（-）"
    assert other[1].startswith("网格 0")


async def _restart(g: G) -> tuple[JobRunner, GridService]:
    """A new process over the same database: fresh services and runner, the same clock."""
    lp = g.lp
    ctx = ServiceContext(sessions=make_session_factory(lp.w.ctx.sessions.kw["bind"]), roles=lp.w.ctx.roles,
                         settings=lp.w.ctx.settings, clock=lp.clock)
    demands = DemandService(ctx)
    grids = GridService(ctx, demands)
    runner = JobRunner(ctx.sessions, clock=lp.clock)
    demands.register_jobs(runner)
    grids.register_jobs(runner)
    return runner, grids


async def test_new_level_accept_deadline_reminds_once_across_restart(g: G) -> None:
    lp = g.lp
    d = await g.demand_at("street")  # escalated twice at T0: the grid's and community's timers are stale
    async with lp.w.ctx.read() as s:
        jobs = list(await s.scalars(select(Job).where(Job.ref_id == d.id, Job.kind == JOB_LEVEL_ACCEPT)
                                    .order_by(Job.id)))
    assert [j.guard.split(":")[0] for j in jobs] == ["grid", "community", "street"]
    assert jobs[2].due_at == d.level_accept_by == T0 + timedelta(hours=24)
    lp.clock.advance(timedelta(hours=24, minutes=1))
    after = await lp.last_outbox_id()
    runner, _ = await _restart(g)  # the bot was down at the deadline
    pending = [j.id for j in jobs]
    results = await runner.fire_many(pending)
    assert results == {jobs[0].id: "moved-on", jobs[1].id: "moved-on", jobs[2].id: "reminded"}
    rows = [r for r in await lp.outbox(after)]
    assert [r.chat_id for r in rows] == [OLGA.id]  # the new level, once
    runner2, _ = await _restart(g)
    assert await runner2.fire_many(pending) == {}
    assert len(await lp.outbox(after)) == 1
    # The original accept timer (secretaries) stands down: passing it on was responding.
    async with lp.w.ctx.read() as s:
        (acc,) = await s.scalars(select(Job).where(Job.ref_id == d.id, Job.kind == JOB_ACCEPT))
    assert await runner2.fire(acc.id) in ("moved-on", None)
    reminders = [e for e in await lp.events(d.id) if e.action == "remind"]
    assert len(reminders) == 1


async def test_accepted_at_the_new_level_no_reminder(g: G) -> None:
    lp = g.lp
    d = await g.demand_at("community")
    await lp.d.accept(actor_id=ALICE.id, community_id=lp.cid, number=d.number)
    lp.clock.advance(timedelta(days=2))
    async with lp.w.ctx.read() as s:
        jobs = list(await s.scalars(select(Job).where(Job.ref_id == d.id, Job.kind == JOB_LEVEL_ACCEPT)))
    assert await lp.runner.fire_many([j.id for j in jobs]) == {j.id: "moved-on" for j in jobs}


async def test_forget_leaves_no_trace_in_grids_and_streets(g: G) -> None:
    """A leader, an officer and a resident who used /forget: no row of any table names them, and the
    demands they moved stay in the ledger. (Ids unlike any other number here, so a search is exact.)"""
    lp = g.lp
    leader = TUser(77123, "Quenby Zarkov", username="qz_lead")
    officer = TUser(88456, "Wilhelmina Yost", username="wy_street")
    resident = TUser(99789, "Xavier Vuong", username="xv_home")
    await lp.w.see(leader, MEM)
    await lp.w.see(resident, RES)
    await lp.w.people.ensure_user(officer.id, officer.first_name, officer.username)
    for u in (leader, officer, resident):
        await lp.start(u)
    await g.g.lead(actor_id=ALICE.id, community_id=lp.cid, name="一网格", leader_id=leader.id)
    await g.g.officer(actor_id=SUPER.id, code=g.street_a.code, target_id=officer.id, add=True)
    await g.g.set_building(actor_id=resident.id, community_id=lp.cid, raw="3号楼")
    async with lp.w.ctx.read() as s:
        data = await g.g._export_user(s, resident.id)
    assert data["buildings"][0]["building"] == "3号楼"
    d = await lp.file(resident, "楼道灯不亮")  # to 一网格 by the resident's building
    await g.g.escalate(actor_id=leader.id, community_id=lp.cid, number=d.number, reason="协调不了")
    await g.g.escalate(actor_id=ALICE.id, community_id=lp.cid, number=d.number, reason="需要街道")
    await lp.d.accept(actor_id=officer.id, community_id=lp.cid, number=d.number)
    lp.clock.advance(timedelta(days=3))
    await lp.runner.fire_many([j.id for j in await lp.jobs(d.id, JOB_LEVEL_ACCEPT)])
    for user in (leader, officer, resident):
        await lp.w.people.forget(user.id)
        who = Person(user.id, (user.first_name, *user.first_name.split()), user.username or "")
        found = await traces(lp.w.ctx.sessions, who)
        assert found == [], (user.first_name, found)
    assert (await lp.get(d.number)).level == "street"
    d2 = await lp.file(DAVE, "3号楼电梯坏了")
    assert d2.level == "community"  # the grid has no leader any more
    with pytest.raises(Denied):
        await g.g.queue(actor_id=officer.id)
