"""Members in the open at the service level, on SQLite and PostgreSQL: the secret ballot (read from
the schema and the rows), one ballot per subject, nobody rates themself, 样本不足 below five raters,
the close as a jobs row, pledges' bad input, and /mydata and /forget."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import Connection, func, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.domain.members import MEMBER_SCALE, RESIDENT_SCALE
from bot.services.errors import Denied, UserError
from bot.services.members import JOB_CLOSE, MemberService
from bot.storage.models import (
    Base,
    Evaluation,
    EvaluationCount,
    EvaluationRater,
    EvaluationSubject,
    Job,
    MemberProfile,
    Outbox,
    Pledge,
    PledgeUpdate,
)
from bot.transport.port import Chat as TChat
from bot.transport.port import User as TUser
from bot.ui.i18n import Translator
from tests.integration.conftest import ALICE, BOB, CAROL, MEM, RES
from tests.integration.test_tasks import MEMBERS, Setup, build
from tests.personal_search import Person, traces

pytestmark = pytest.mark.both_databases  # every test on SQLite and on PostgreSQL

RESIDENTS = [TUser(300 + i, f"居民{i}") for i in range(6)]
ZOE = TUser(777_777, "周亮身份", username="zoe_shows")
ZH = Translator("zh")
CHOICES = set(RESIDENT_SCALE) | set(MEMBER_SCALE)


@dataclass
class M:
    su: Setup
    members: MemberService

    @property
    def cid(self) -> int:
        return self.su.cid


@pytest.fixture
async def m(engine: AsyncEngine) -> M:
    su = await build(engine)
    for r in RESIDENTS:
        await su.w.see(r, RES)
    return M(su, MemberService(su.w.ctx, su.tasks))


async def counts(m: M) -> tuple[int, ...]:
    async with m.su.w.ctx.read() as s:
        return tuple([await s.scalar(select(func.count()).select_from(t)) or 0
                      for t in (Pledge, PledgeUpdate, MemberProfile, Evaluation, EvaluationSubject,
                                EvaluationRater, EvaluationCount, Job, Outbox)])


async def open_members(m: M, *, public: list[TUser]) -> Evaluation:
    for u in public:
        await m.members.set_showid(actor_id=u.id, community_id=m.cid, on=True)
    o = await m.members.open_evaluation(actor_id=ALICE.id, community_id=m.cid,
                                        args="年度测评 | 2026-03-10 18:00 | members")
    return o.evaluation


async def subject_of(m: M, ev: Evaluation, user: TUser) -> int:
    async with m.su.w.ctx.read() as s:
        sid = await s.scalar(select(EvaluationSubject.id).where(EvaluationSubject.evaluation_id == ev.id,
                                                               EvaluationSubject.user_id == user.id))
        assert sid is not None
        return sid


async def test_no_table_links_a_rater_to_a_choice(m: M, engine: AsyncEngine,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    ev = await open_members(m, public=[CAROL, MEMBERS[0]])
    outbox_before = (await counts(m))[-1]
    carol = await subject_of(m, ev, CAROL)
    async with m.su.w.ctx.read() as s:  # every count exists, at 0, before anyone answers
        subjects = await s.scalar(select(func.count()).select_from(EvaluationSubject))
        assert (await s.execute(select(func.count(), func.sum(EvaluationCount.count)))).one() == (subjects * 7, 0)
    caplog.set_level(logging.DEBUG, logger="linli")
    # Residents answer on the members who show their identity; members rate each other.
    for i, r in enumerate(RESIDENTS):
        q = await m.members.ballot(user_id=r.id, evaluation_id=ev.id, tr=ZH)
        assert q.total == 2 and q.index == 1 and q.scale == RESIDENT_SCALE
        while q.subject is not None:
            q = await m.members.vote(user_id=r.id, subject_id=q.subject.id, index=i % 3, tr=ZH)
    q = await m.members.vote(user_id=MEMBERS[1].id, subject_id=carol, index=0, tr=ZH)
    assert q.scale == MEMBER_SCALE and q.total == len(MEMBERS) - 1 + 1  # CAROL and the others, not themself
    raters = {r.id for r in RESIDENTS} | {MEMBERS[1].id}

    # The schema: no table holds both a person and a choice.
    def columns(conn: Connection) -> dict[str, set[str]]:
        insp = inspect(conn)
        return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}

    async with engine.connect() as conn:
        schema = await conn.run_sync(columns)
    assert schema["evaluation_raters"] == {"evaluation_id", "subject_id", "user_id"}
    assert schema["evaluation_counts"] == {"evaluation_id", "subject_id", "choice", "count"}
    # The rows: no row of any table holds a rater's id together with a choice.
    async with m.su.w.ctx.read() as s:
        for table in Base.metadata.sorted_tables:
            for row in (await s.execute(select(table))).mappings():
                values = list(row.values())
                has_rater = any(isinstance(v, int) and not isinstance(v, bool) and v in raters for v in values)
                has_choice = any(isinstance(v, str) and any(c in v for c in CHOICES) for v in values)
                assert not (has_rater and has_choice), f"{table.name}: {dict(row)}"
        got = {(c.choice, c.count) for c in await s.scalars(
            select(EvaluationCount).where(EvaluationCount.subject_id == carol, EvaluationCount.count > 0))}
    assert got == {("satisfied", 2), ("fair", 2), ("unsatisfied", 2), ("excellent", 1)}
    # Voting wrote no message and no log line that could say who chose what.
    assert (await counts(m))[-1] == outbox_before
    for rec in [r for r in caplog.records if r.name.startswith("linli")]:
        text = rec.getMessage()
        assert not any(c in text for c in CHOICES), text
    # Nor does /mydata.
    doc = json.loads(await m.su.w.people.export(RESIDENTS[0].id))
    assert doc["members"]["evaluations_answered"] == [{"community_id": m.cid, "evaluation_number": 1,
                                                       "subjects": 2}]
    assert not any(c in json.dumps(doc) for c in CHOICES)


async def test_second_ballot_self_rating_and_hidden_subject_are_refused(m: M) -> None:
    ev = await open_members(m, public=[CAROL])
    carol = await subject_of(m, ev, CAROL)
    hidden = await subject_of(m, ev, MEMBERS[0])
    await m.members.vote(user_id=BOB.id, subject_id=carol, index=0, tr=ZH)
    before = await counts(m)
    with pytest.raises(UserError) as again:
        await m.members.vote(user_id=BOB.id, subject_id=carol, index=2, tr=ZH)
    assert again.value.key == "err_evaluation_again"
    with pytest.raises(UserError) as himself:
        await m.members.vote(user_id=CAROL.id, subject_id=carol, index=0, tr=ZH)
    assert himself.value.key == "err_evaluation_self"
    with pytest.raises(Denied):  # residents never see a member who hides their identity
        await m.members.vote(user_id=BOB.id, subject_id=hidden, index=0, tr=ZH)
    with pytest.raises(UserError) as bad:
        await m.members.vote(user_id=MEMBERS[1].id, subject_id=carol, index=9, tr=ZH)
    assert bad.value.key == "err_evaluation_choice"
    stranger = TUser(999_001, "路人")
    await m.su.w.see(stranger, TChat(stranger.id, "private"), "/start")
    with pytest.raises(Denied):
        await m.members.vote(user_id=stranger.id, subject_id=carol, index=0, tr=ZH)
    assert await counts(m) == before
    # A member's own ballot skips them.
    q = await m.members.ballot(user_id=CAROL.id, evaluation_id=ev.id, tr=ZH)
    async with m.su.w.ctx.read() as s:
        ids = set(await s.scalars(m.members._subjects_for(ev, CAROL.id, True)))
    assert carol not in {x.id for x in ids} and q.subject is not None and q.subject.id != carol


async def test_four_raters_show_too_few_and_five_show_figures(m: M) -> None:
    ev = await open_members(m, public=[CAROL, MEMBERS[0]])
    carol, other = await subject_of(m, ev, CAROL), await subject_of(m, ev, MEMBERS[0])
    for r in RESIDENTS[:4]:
        await m.members.vote(user_id=r.id, subject_id=carol, index=0, tr=ZH)
    for r in RESIDENTS[:5]:
        await m.members.vote(user_id=r.id, subject_id=other, index=1, tr=ZH)
    with pytest.raises(UserError) as early:
        await m.members.result(actor_id=ALICE.id, community_id=m.cid, number=1, tr=ZH)
    assert early.value.key == "err_evaluation_not_closed"
    with pytest.raises(UserError) as pub_early:
        await m.members.publish(actor_id=ALICE.id, community_id=m.cid, number=1)
    assert pub_early.value.key == "err_evaluation_not_closed"

    # The close is a jobs row: once, at `until`.
    m.su.clock.advance(timedelta(days=9))
    async with m.su.w.ctx.read() as s:
        [job] = list(await s.scalars(select(Job).where(Job.kind == JOB_CLOSE)))
    m.members.register_jobs(m.su.runner)
    assert await m.su.runner.fire(job.id) == "closed"
    assert await m.su.runner.fire(job.id) is None  # done: firing again runs nothing
    async with m.su.w.ctx.read() as s:
        assert (await s.get(Evaluation, ev.id)).state == "closed"  # type: ignore[union-attr]
    # Rated well by five: points in 先锋指数; four raters are too few to earn any.
    assert (await m.su.tasks.points(actor_id=MEMBERS[0].id, community_id=m.cid)).all_points == 5
    assert (await m.su.tasks.points(actor_id=CAROL.id, community_id=m.cid)).all_points == 0
    with pytest.raises(UserError):  # closed: no more answers
        await m.members.vote(user_id=RESIDENTS[5].id, subject_id=carol, index=0, tr=ZH)

    _, lines = await m.members.result(actor_id=ALICE.id, community_id=m.cid, number=1, tr=ZH)
    text = "\n".join(lines)
    assert "Carol：样本不足（4 人）" in text
    assert "志愿者0：满意/合格 100%（5 人：基本满意 5）" in text
    _, public = await m.members.result(actor_id=ALICE.id, community_id=m.cid, number=1, tr=ZH, public_only=True)
    assert "一名党员：样本不足（0 人）" in public and not any("志愿者1" in line for line in public)
    assert any("志愿者1" in line for line in lines)  # the secretary, privately, sees every member
    ev2, chats = await m.members.publish(actor_id=ALICE.id, community_id=m.cid, number=1)
    assert chats == 1 and ev2.publicity_until is not None
    [post] = [o for o in await m.su.outbox() if o.ref == f"evaluation:{ev.id}:publicity"]
    assert "样本不足" in post.text and "异议" in json.dumps(post.keyboard, ensure_ascii=False)
    # The 异议 button works until the period ends, then says it has ended.
    await m.members.object_(actor_id=BOB.id, evaluation_id=ev.id, text="有异议")
    m.su.clock.advance(timedelta(days=7, seconds=1))
    with pytest.raises(UserError) as ended:
        await m.members.objectable(evaluation_id=ev.id)
    assert ended.value.key == "err_evaluation_objection_ended"


async def test_bad_input_changes_nothing(m: M) -> None:
    for text in ("第一条承诺", "第二条承诺"):
        await m.members.propose(actor_id=CAROL.id, community_id=m.cid, args=text)
    before = await counts(m)
    cases = [
        (CAROL, "propose", "第三条承诺", "err_pledge_limit"),
        (BOB, "propose", "居民的承诺", "err_members_only"),
        (MEMBERS[0], "propose", "   ", "err_usage_pledge"),
        (MEMBERS[0], "propose", "太长" * 200, "err_pledge_too_long"),
        (MEMBERS[0], "propose", "承诺 | 昨天 9:00", "err_member_date_past"),
        (ALICE, "evaluation", "测评 | 2026-03-01 18:00 | members", "err_member_date_past"),
        (ALICE, "evaluation", "测评 | 2026-03-10 18:00 | everyone", "err_evaluation_kind"),
        (ALICE, "evaluation", "测评 | 2026-03-10 18:00", "err_usage_evaluation_open"),
        (BOB, "evaluation", "测评 | 2026-03-10 18:00 | members", "err_not_secretary"),
    ]
    for who, what, args, key in cases:
        with pytest.raises(UserError) as exc:
            if what == "propose":
                await m.members.propose(actor_id=who.id, community_id=m.cid, args=args)
            else:
                await m.members.open_evaluation(actor_id=who.id, community_id=m.cid, args=args)
        assert exc.value.key == key, (args, exc.value.key)
    with pytest.raises(UserError) as post:
        await m.members.set_post(actor_id=CAROL.id, community_id=m.cid, member_id=MEMBERS[0].id, post="环境卫生岗")
    assert post.value.key == "err_not_secretary"
    assert await counts(m) == before


async def test_pledge_points_count_in_the_leaderboard_and_forget(m: M) -> None:
    await m.su.w.see(ZOE, MEM)
    p = await m.members.propose(actor_id=ZOE.id, community_id=m.cid, args="每周清理楼道")
    await m.members.approve(actor_id=ALICE.id, pledge_id=p.id)
    await m.members.add_update(actor_id=ZOE.id, community_id=m.cid, number=p.number, note="清理了", photo=None)
    await m.members.mark(actor_id=ALICE.id, pledge_id=p.id, kept=True)
    pts = await m.su.tasks.points(actor_id=ZOE.id, community_id=m.cid)
    assert (pts.all_points, pts.tasks) == (5, 0)
    board = await m.su.tasks.leaderboard(actor_id=ZOE.id, community_id=m.cid, period="month")
    assert [(st.user_id, st.points) for st in board.top] == [(ZOE.id, 5)]
    ev = await open_members(m, public=[ZOE])
    await m.members.vote(user_id=MEMBERS[0].id, subject_id=await subject_of(m, ev, MEMBERS[1]), index=0, tr=ZH)
    await m.members.set_post(actor_id=ALICE.id, community_id=m.cid, member_id=ZOE.id, post="环境卫生岗")

    doc = json.loads(await m.su.w.people.export(ZOE.id))
    assert doc["members"]["pledges"][0]["text"] == "每周清理楼道" and doc["members"]["profiles"][0]["showid"]
    for who in (ZOE, MEMBERS[0]):
        await m.su.w.people.forget(who.id)
        found = await traces(m.su.w.ctx.sessions, Person(who.id, (who.first_name,), who.username or "zz-none"))
        if who is ZOE:  # an id no other row shares by chance
            assert found == []
    async with m.su.w.ctx.read() as s:
        kept = await s.get(Pledge, p.id)
        assert kept is not None and kept.user_id is None and kept.state == "kept"  # stays, as 一名党员's
        entries = await m.members.wall_entries(s, m.cid)
    assert entries[0].name is None
    async with m.su.w.ctx.read() as s:  # the counts stay
        assert await s.scalar(select(func.sum(EvaluationCount.count))) == 1


async def test_the_wall_pages_fit_whatever_the_number(m: M) -> None:
    from bot.ui.members import WallEntry, WallPledge, wall_message, wall_pages

    entries = [WallEntry("名" * 200, "岗" * 20, [WallPledge(i, "承" * 200, "active", 3, None)] * 2)
               for i in range(500)]
    for locale in ("zh", "en"):
        tr = Translator(locale)
        pages = wall_pages(tr, entries, "Asia/Shanghai")
        assert len(pages) > 20
        for page in range(len(pages)):
            text, kb, shown = wall_message(tr, "幸福里" * 20, pages, page, 1)
            assert len(text) < 4096 and shown == page and kb is not None
        assert wall_message(tr, "x", pages, 10_000, 1)[2] == len(pages) - 1


async def test_wall_is_one_post_per_resident_chat(m: M) -> None:
    from bot.storage.models import WallPost

    with pytest.raises(Denied):
        await m.members.post_wall(actor_id=BOB.id, community_id=m.cid)
    assert await m.members.post_wall(actor_id=ALICE.id, community_id=m.cid) == (1, 0)
    assert await m.members.post_wall(actor_id=ALICE.id, community_id=m.cid) == (0, 1)
    assert await m.members.post_wall(actor_id=ALICE.id, community_id=m.cid, anew=True) == (1, 0)
    async with m.su.w.ctx.read() as s:
        [post] = list(await s.scalars(select(WallPost)))
        walls = list(await s.scalars(select(Outbox).where(Outbox.ref.like("wall:%"))))
    assert post.chat_id == RES.id and len(walls) == 2 and "承诺墙" in walls[-1].text
    with pytest.raises(UserError):  # a page press from another chat turns nothing
        await m.members.turn_page(post_id=post.id, chat_id=MEM.id, page=1)


async def test_concurrent_pledges_never_pass_the_limit(m: M) -> None:
    import asyncio

    results = await asyncio.gather(*[m.members.propose(actor_id=CAROL.id, community_id=m.cid, args=f"承诺{i}")
                                     for i in range(6)], return_exceptions=True)
    assert sum(isinstance(r, Pledge) for r in results) == 2
    assert all(isinstance(r, UserError) and r.key == "err_pledge_limit" for r in results if not isinstance(r, Pledge))


async def test_services_evaluation_asks_about_each_category(m: M) -> None:
    o = await m.members.open_evaluation(actor_id=ALICE.id, community_id=m.cid, args="服务测评 | 2026-03-10 18:00 | services")
    assert o.subjects == 8
    q = await m.members.ballot(user_id=BOB.id, evaluation_id=o.evaluation.id, tr=ZH)
    from config.categories import CATEGORIES

    names = [str(ZH(f"cat_{c}")) for c in CATEGORIES]
    assert (q.index, q.total, q.label, q.scale) == (1, 8, names[0], RESIDENT_SCALE)
    q = await m.members.ballot(user_id=CAROL.id, evaluation_id=o.evaluation.id, tr=ZH)
    assert q.total == 8 and q.scale == RESIDENT_SCALE  # a member answers on services as a resident does
    assert q.subject is not None
    nxt = await m.members.vote(user_id=CAROL.id, subject_id=q.subject.id, index=0, tr=ZH)
    assert nxt.index == 2 and nxt.label == names[1]
