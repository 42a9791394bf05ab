"""Consultations at the service level on a real database (SQLite, and PostgreSQL when set): one
ballot per person across chats, exact under concurrency (also from two engines), who may vote, the
hidden tally, the close as a jobs row (once), decision, progress, proposals with 附议 and the
threshold, comments, the 议事 sheet part, /mydata and /forget, and bad input. Time is a ManualClock."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.domain.consultations import AGREE, DISAGREE
from bot.scheduler.runner import JobRunner
from bot.services.communities import CommunityService
from bot.services.consultations import JOB_CLOSE, ConsultationService, ConsultationSheetPart
from bot.services.demands import DemandService
from bot.services.errors import Denied, NotFound, UserError
from bot.services.people import PeopleService
from bot.storage.db import make_engine
from bot.storage.models import (
    Ballot,
    ChatMember,
    Consultation,
    ConsultComment,
    ConsultPost,
    Job,
    Outbox,
    Proposal,
    ProposalSecond,
)
from bot.storage.models import User as UserRow
from bot.transport.port import Chat as TChat
from bot.transport.port import User as TUser
from bot.ui.consultations import consult_line, consult_post
from bot.ui.i18n import Translator
from tests.conftest import PG_URL
from tests.integration.conftest import ALICE, BOB, CAROL, MEM, RES, StatusBook, World
from tests.integration.test_tasks import make_context

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
RES2 = TChat(-300, "supergroup", "幸福里二期居民群")
UNTIL = "2026-03-05 18:00"  # Thursday
CONSULT = f"东门加装充电桩 | {UNTIL} | 在东门停车区安装 4 个"


@dataclass
class Setup:
    w: World
    svc: ConsultationService
    clock: Any
    runner: JobRunner
    cid: int

    async def open(self, args: str = CONSULT, actor: TUser = ALICE) -> Consultation:
        return (await self.svc.open(actor_id=actor.id, community_id=self.cid, args=args)).consultation

    async def get(self, number: int = 1) -> Consultation:
        async with self.w.ctx.read() as s:
            c = await s.scalar(select(Consultation).where(Consultation.number == number))
            assert c is not None
            return c

    async def ballots(self, c: Consultation) -> list[tuple[int | None, str]]:
        async with self.w.ctx.read() as s:
            return [(u, ch) for u, ch in (await s.execute(
                select(Ballot.user_id, Ballot.choice).where(Ballot.consultation_id == c.id)
                .order_by(Ballot.user_id))).all()]

    async def outbox(self, ref_like: str = "%") -> list[Outbox]:
        async with self.w.ctx.read() as s:
            return list(await s.scalars(select(Outbox).where(Outbox.ref.like(ref_like)).order_by(Outbox.id)))

    async def counts(self) -> tuple[int, ...]:
        """Everything a refused action must leave as it was."""
        async with self.w.ctx.read() as s:
            rows = [await s.scalar(select(func.count()).select_from(m)) or 0
                    for m in (Consultation, Ballot, ConsultComment, ConsultPost, Outbox, Job, Proposal,
                              ProposalSecond)]
            state = (await s.execute(select(func.coalesce(func.sum(Consultation.version), 0),
                                            func.count().filter(Consultation.state == "closed"),
                                            func.count().filter(Consultation.decision.is_not(None))))).one()
        return (*rows, *state)

    async def fire_due(self) -> list[str | None]:
        async with self.w.ctx.read() as s:
            ids = list(await s.scalars(select(Job.id).where(Job.done_at.is_(None), Job.due_at <= self.clock())))
        return [await self.runner.fire(i) for i in ids]

    async def residents(self, n: int, chats: tuple[TChat, ...] = (RES,)) -> list[int]:
        ids = list(range(20_000, 20_000 + n))
        async with self.w.ctx.tx() as s:
            s.add_all([UserRow(id=i, first_name=f"居民{i}") for i in ids])
            await s.flush()
            s.add_all([ChatMember(chat_id=chats[i % len(chats)].id, user_id=i) for i in ids])
        return ids


async def build(engine: AsyncEngine, **settings: Any) -> Setup:
    from bot.services.clock import ManualClock

    book = StatusBook()
    clock = ManualClock(T0)
    ctx = make_context(engine, book, clock, **settings)
    w = World(ctx, book, PeopleService(ctx), CommunityService(ctx), DemandService(ctx))
    svc = ConsultationService(ctx, batch_votes=False)
    runner = JobRunner(ctx.sessions, clock=clock)
    svc.register_jobs(runner)
    for chat in (RES, RES2):
        book.statuses[(chat.id, ALICE.id)] = "creator"
    book.statuses[(MEM.id, ALICE.id)] = "administrator"
    for chat in (RES, RES2, MEM):
        await w.see(ALICE, chat)
    r = await w.communities.setup(actor_id=ALICE.id, chat_id=RES.id, chat_is_group=True, thread_id=None,
                                  kind="resident", name="幸福里")
    await w.communities.setup(actor_id=ALICE.id, chat_id=RES2.id, chat_is_group=True, thread_id=5,
                              kind="resident", name="幸福里")
    await w.communities.setup(actor_id=ALICE.id, chat_id=MEM.id, chat_is_group=True, thread_id=None,
                              kind="member", name="幸福里")
    await w.see(CAROL, MEM)  # a member, never in a resident chat
    await w.see(BOB, RES)
    return Setup(w, svc, clock, runner, r.community.id)


@pytest.fixture
async def su(engine: AsyncEngine) -> Setup:
    return await build(engine)


# ---------------------------------------------------------------------- opening


async def test_open_posts_in_every_resident_chat_with_the_buttons_and_arms_the_close(su: Setup) -> None:
    done = await su.svc.open(actor_id=ALICE.id, community_id=su.cid, args=CONSULT)
    c = done.consultation
    assert (c.number, c.title, c.plan, done.chats) == (1, "东门加装充电桩", "在东门停车区安装 4 个", 2)
    assert c.closes_at == datetime(2026, 3, 5, 10, 0, tzinfo=UTC)
    posts = await su.outbox("consult:%")
    assert sorted((p.chat_id, p.thread_id) for p in posts) == [(RES2.id, 5), (RES.id, None)]  # the /setup topic
    for p in posts:
        assert "议事协商 #1" in p.text and "2026年3月5日 星期四 18:00" in p.text and "已参与 0" in p.text
        buttons = [b["text"] for row in p.keyboard["rows"] for b in row]
        assert [b for b in buttons if b in ("同意", "反对", "弃权")] == ["同意", "反对", "弃权"]
        assert any("意见" in b for b in buttons)
    assert MEM.id not in {p.chat_id for p in posts}
    async with su.w.ctx.read() as s:
        [job] = list(await s.scalars(select(Job).where(Job.kind == JOB_CLOSE)))
    assert (job.ref_id, job.due_at) == (c.id, c.closes_at)


BAD = [
    ("东门加装充电桩", "err_consult_usage"),
    (f" | {UNTIL}", "err_consult_missing_title"),
    ("东门加装充电桩 | ", "err_consult_missing_until"),
    ("东门加装充电桩 | 下下下周八", "err_consult_until_unreadable"),
    ("东门加装充电桩 | 2026-03-01 09:00", "err_consult_until_past"),
    ("x" * 101 + f" | {UNTIL}", "err_consult_title_too_long"),
    (f"东门 | {UNTIL} | " + "y" * 1001, "err_consult_plan_too_long"),
    (f"p9 | {UNTIL}", "err_proposal_unknown"),
]


async def test_bad_input_is_refused_and_nothing_changes(su: Setup) -> None:
    before = await su.counts()
    for args, key in BAD:
        with pytest.raises(UserError) as err:
            await su.open(args)
        assert err.value.key == key, args
    with pytest.raises(Denied) as denied:  # a resident's /consult
        await su.open(actor=BOB)
    assert denied.value.key == "err_not_secretary"
    assert await su.counts() == before


# ---------------------------------------------------------------------- ballots


async def test_one_ballot_per_person_across_chats_changeable_until_the_close(su: Setup) -> None:
    [uid] = await su.residents(1, (RES2,))  # seen before it opens
    c = await su.open()
    first = await su.svc.vote(actor_id=uid, consultation_id=c.id, choice=AGREE)  # in one chat
    again = await su.svc.vote(actor_id=uid, consultation_id=c.id, choice=AGREE)
    changed = await su.svc.vote(actor_id=uid, consultation_id=c.id, choice=DISAGREE)  # in the other
    assert [first.outcome, again.outcome, changed.outcome] == ["new", "same", "changed"]
    assert await su.ballots(c) == [(uid, DISAGREE)]


async def _many_votes(svcs: list[ConsultationService], cid: int, users: list[int]) -> list[Any]:
    """Every resident presses twice at once: 同意 and then 反对 (so 2 × len(users) presses)."""
    presses = [(uid, AGREE) for uid in users] + [(uid, DISAGREE) for uid in users]
    return await asyncio.gather(*(svcs[i % len(svcs)].vote(actor_id=uid, consultation_id=cid, choice=ch, order=i)
                                  for i, (uid, ch) in enumerate(presses)), return_exceptions=True)


@pytest.mark.parametrize("batched", [False, True], ids=["separate-sessions", "batched"])
async def test_200_simultaneous_presses_by_100_residents_store_100_ballots(su: Setup, batched: bool) -> None:
    su.svc.batch_votes = batched
    users = await su.residents(100, (RES, RES2))
    c = await su.open()
    results = await _many_votes([su.svc], c.id, users)
    assert not [r for r in results if isinstance(r, BaseException)]
    ballots = await su.ballots(c)
    assert len(ballots) == 100 and {u for u, _ in ballots} == set(users)
    if batched:  # press order kept: everyone's later press (反对) is their ballot
        assert {ch for _, ch in ballots} == {DISAGREE}
    async with su.w.ctx.read() as s:
        text, _ = await su.svc._render(s, "consult", c.id, "zh") or ("", None)
    assert "已参与 100" in text


@pytest.mark.skipif(not PG_URL, reason="two instances need PostgreSQL (TEST_DATABASE_URL)")
async def test_two_instances_on_postgresql_keep_one_ballot_each(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("two instances share one PostgreSQL")
    su = await build(engine)
    users = await su.residents(100)
    c = await su.open()
    assert PG_URL is not None
    second = make_engine(PG_URL)
    try:
        other = ConsultationService(make_context(second, su.w.book, su.clock), batch_votes=False)
        results = await _many_votes([su.svc, other], c.id, users)
    finally:
        await second.dispose()
    assert not [r for r in results if isinstance(r, BaseException)]
    assert len(await su.ballots(c)) == 100


async def test_only_residents_seen_before_the_opening_may_vote(su: Setup) -> None:
    c = await su.open()
    before = await su.counts()
    with pytest.raises(Denied) as err:  # a member who is only in the member chat
        await su.svc.vote(actor_id=CAROL.id, consultation_id=c.id, choice=AGREE)
    assert err.value.key == "err_consult_not_resident"
    late = TUser(4242, "新邻居")
    await su.w.see(late, RES)  # first seen after it opened
    with pytest.raises(Denied):
        await su.svc.vote(actor_id=late.id, consultation_id=c.id, choice=AGREE)
    with pytest.raises(Denied):
        await su.svc.comment_target(actor_id=late.id, consultation_id=c.id)
    assert (await su.counts())[1] == before[1] == 0
    await su.svc.vote(actor_id=BOB.id, consultation_id=c.id, choice=AGREE)  # seen before: yes
    assert await su.ballots(c) == [(BOB.id, AGREE)]


# ---------------------------------------------------------------------- hidden tally, the close


async def test_the_tally_is_hidden_until_the_close_then_published_once(su: Setup) -> None:
    users = await su.residents(10)
    c = await su.open()
    for i, uid in enumerate(users):
        await su.svc.vote(actor_id=uid, consultation_id=c.id, choice=(AGREE, AGREE, DISAGREE, "abstain")[i % 4])
    # While open: the listing, the posts and the sheet show the turnout only.
    rows, tz = await su.svc.listing(actor_id=BOB.id, community_id=su.cid)
    [listed] = rows
    assert listed.turnout == 10 and listed.consultation.agree == 0
    line = consult_line(Translator("zh"), listed.consultation, tz, listed.turnout)
    assert "已参与 10" in line and "同意" not in line and "反对" not in line
    open_post, _ = consult_post(Translator("zh"), listed.consultation, tz, 10)
    assert "已参与 10" in open_post and "同意 " not in open_post
    async with su.w.ctx.read() as s:
        assert await ConsultationSheetPart().rows(s, su.cid, None, None, "zh") == []
    assert await su.outbox("result:%") == []

    su.clock.advance(timedelta(days=4))  # past Thursday 18:00
    with pytest.raises(UserError) as late:  # a ballot after the close (its job not run yet)
        await su.svc.vote(actor_id=users[0], consultation_id=c.id, choice=DISAGREE)
    assert late.value.key == "err_consult_closed"
    assert await su.fire_due() == ["closed"]
    assert await su.fire_due() == []  # once
    closed = await su.get()
    assert (closed.state, closed.agree, closed.disagree, closed.abstain, closed.turnout) == ("closed", 6, 2, 2, 10)
    assert closed.eligible == 11  # the ten and Bob were seen in a resident chat before it opened
    results = await su.outbox("result:%")
    assert sorted(r.chat_id for r in results) == sorted([RES.id, RES2.id])
    text = results[0].text
    assert "同意：6（60%）" in text and "反对：2（20%）" in text and "弃权：2（20%）" in text
    assert "参与 10 人" in text and "征询意见" in text and "不是业主大会表决" in text
    # A second run of the close (say two timers) publishes nothing more.
    async with su.w.ctx.tx() as s:
        row = await s.get(Consultation, c.id)
        assert row is not None
        assert await su.svc._close(s, row) is False
    assert len(await su.outbox("result:%")) == 2
    async with su.w.ctx.read() as s:
        [sheet] = await ConsultationSheetPart().rows(s, su.cid, None, None, "zh")
    assert sheet[0] == 1 and sheet[5:9] == [10, 6, 2, 2]
    assert ConsultationSheetPart().title("zh") == "议事" and len(ConsultationSheetPart().headers("en")) == len(sheet)


async def test_closeconsult_decide_progress_and_finish(su: Setup) -> None:
    c = await su.open()
    await su.svc.vote(actor_id=BOB.id, consultation_id=c.id, choice=AGREE)
    before = await su.counts()
    for call, key in (
        (su.svc.decide(actor_id=ALICE.id, community_id=su.cid, number=1, text="装"), "err_consult_decide_open"),
        (su.svc.progress(actor_id=ALICE.id, community_id=su.cid, number=1, note="x", photo=None),
         "err_consult_undecided"),
        (su.svc.close_early(actor_id=BOB.id, community_id=su.cid, number=1), "err_not_secretary"),
        (su.svc.close_early(actor_id=ALICE.id, community_id=su.cid, number=7), "err_consult_unknown"),
    ):
        with pytest.raises(UserError) as err:
            await call
        assert err.value.key == key
    assert await su.counts() == before
    closed = await su.svc.close_early(actor_id=ALICE.id, community_id=su.cid, number=1)
    assert (closed.state, closed.turnout, closed.agree) == ("closed", 1, 1)
    with pytest.raises(UserError):
        await su.svc.close_early(actor_id=ALICE.id, community_id=su.cid, number=1)
    su.clock.advance(timedelta(days=4))
    assert await su.fire_due() == ["moved-on"]  # the job finds it closed
    assert len(await su.outbox("result:%")) == 2
    await su.svc.decide(actor_id=ALICE.id, community_id=su.cid, number=1, text="东门安装 4 个充电桩")
    async with su.w.ctx.read() as s:
        text, _ = await su.svc._render(s, "result", c.id, "zh") or ("", None)
    assert "议定事项：东门安装 4 个充电桩" in text
    _, chats = await su.svc.progress(actor_id=ALICE.id, community_id=su.cid, number=1, note="已进场施工", photo="PH")
    assert chats == 2
    progress = await su.outbox("consult:%:progress")
    assert len(progress) == 2 and all(p.photo == "PH" and "已进场施工" in p.text for p in progress)
    await su.svc.finish(actor_id=ALICE.id, community_id=su.cid, number=1)
    with pytest.raises(UserError) as err:
        await su.svc.progress(actor_id=ALICE.id, community_id=su.cid, number=1, note="again", photo=None)
    assert err.value.key == "err_consult_finished"


# ---------------------------------------------------------------------- comments


async def test_comments_are_private_and_published_by_choice_without_names(su: Setup) -> None:
    c = await su.open()
    await su.svc.add_comment(actor_id=BOB.id, consultation_id=c.id, text="建议装在北侧，别占消防通道")
    await su.svc.add_comment(actor_id=BOB.id, consultation_id=c.id, text="费用怎么分摊？")
    with pytest.raises(UserError) as err:
        await su.svc.add_comment(actor_id=BOB.id, consultation_id=c.id, text="  ")
    assert err.value.key == "err_consult_comment_empty"
    _, rows = await su.svc.comments(actor_id=ALICE.id, community_id=su.cid, number=1)
    assert [(cm.seq, name) for cm, name in rows] == [(1, "Bob"), (2, "Bob")]
    with pytest.raises(Denied):
        await su.svc.comments(actor_id=BOB.id, community_id=su.cid, number=1)
    await su.svc.publish(actor_id=ALICE.id, community_id=su.cid, number=1, seqs=[1], on=True)
    with pytest.raises(NotFound):
        await su.svc.publish(actor_id=ALICE.id, community_id=su.cid, number=1, seqs=[9], on=True)
    await su.svc.close_early(actor_id=ALICE.id, community_id=su.cid, number=1)
    [result, _] = await su.outbox("result:%")
    assert "别占消防通道" in result.text and "费用怎么分摊" not in result.text and "Bob" not in result.text
    with pytest.raises(UserError) as closed:
        await su.svc.add_comment(actor_id=BOB.id, consultation_id=c.id, text="晚了")
    assert closed.value.key == "err_consult_closed"


# ---------------------------------------------------------------------- proposals


async def test_proposal_seconds_are_exact_and_the_secretaries_are_told_once(engine: AsyncEngine) -> None:
    su = await build(engine, proposal_threshold=3)
    p = await su.svc.propose(actor_id=BOB.id, community_id=su.cid, chat_id=RES.id, thread_id=None, message_id=None,
                             text="东门加装充电桩")
    [post] = await su.outbox("proposal:%")
    assert "p1" in post.text and any("附议" in b["text"] for row in post.keyboard["rows"] for b in row)
    with pytest.raises(UserError) as own:
        await su.svc.second(actor_id=BOB.id, proposal_id=p.id)
    assert own.value.key == "err_proposal_own"
    with pytest.raises(Denied):  # only in the member chat
        await su.svc.second(actor_id=CAROL.id, proposal_id=p.id)
    users = await su.residents(6)
    results = await asyncio.gather(*(su.svc.second(actor_id=u, proposal_id=p.id) for u in users + users))
    assert sum(r.outcome == "seconded" for r in results) == 6
    async with su.w.ctx.read() as s:
        row = await s.get(Proposal, p.id)
        assert row is not None and row.seconds == 6
        alerts = list(await s.scalars(select(Outbox).where(Outbox.text.contains("p1 已有"))))
    assert len(alerts) == 1 and alerts[0].chat_id == MEM.id  # no secretary started the bot: the member chat
    # A consultation from the proposal takes its text as the title; the proposal takes no more seconds.
    done = await su.svc.open(actor_id=ALICE.id, community_id=su.cid, args=f"p1 | {UNTIL}")
    assert done.consultation.title == "东门加装充电桩" and done.proposal_number == 1
    with pytest.raises(UserError) as consulted:
        await su.svc.second(actor_id=users[0], proposal_id=p.id)
    assert consulted.value.key == "err_proposal_consulted"
    with pytest.raises(UserError):
        await su.svc.open(actor_id=ALICE.id, community_id=su.cid, args=f"p1 | {UNTIL}")
    with pytest.raises(UserError) as where:
        await su.svc.propose(actor_id=CAROL.id, community_id=su.cid, chat_id=MEM.id, thread_id=None,
                             message_id=None, text="x")
    assert where.value.key == "err_propose_where"
    await su.svc.set_threshold(actor_id=ALICE.id, community_id=su.cid, value=15)
    _, threshold = await su.svc.proposals(actor_id=BOB.id, community_id=su.cid)
    assert threshold == 15


# ---------------------------------------------------------------------- personal data


async def test_mydata_and_forget_keep_the_counts(su: Setup) -> None:
    from bot.services.people import PeopleService

    c = await su.open()
    await su.svc.vote(actor_id=BOB.id, consultation_id=c.id, choice=AGREE)
    await su.svc.add_comment(actor_id=BOB.id, consultation_id=c.id, text="支持 Bob 的提议")
    people = PeopleService(su.w.ctx)
    doc = json.loads(await people.export(BOB.id))
    mine = doc["consultations"]
    assert [b["choice"] for b in mine["ballots"]] == [AGREE] and mine["comments"][0]["text"] == "支持 Bob 的提议"
    await people.forget(BOB.id)
    assert await su.ballots(c) == [(None, AGREE)]
    async with su.w.ctx.read() as s:
        assert await s.scalar(select(func.count()).select_from(ConsultComment)) == 0
    closed = await su.svc.close_early(actor_id=ALICE.id, community_id=su.cid, number=1)
    assert (closed.turnout, closed.agree) == (1, 1)


async def test_a_close_amid_a_burst_counts_exactly_what_was_stored(su: Setup) -> None:
    """Ballots racing the close: each either commits before it (and is counted) or finds it closed."""
    users = await su.residents(60)
    c = await su.open()

    async def close_soon() -> Consultation:
        await asyncio.sleep(0.01)
        return await su.svc.close_early(actor_id=ALICE.id, community_id=su.cid, number=1)

    votes = [su.svc.vote(actor_id=uid, consultation_id=c.id, choice=AGREE) for uid in users]
    *results, _ = await asyncio.gather(*votes, close_soon(), return_exceptions=True)
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, UserError) and r.key == "err_consult_closed" for r in refused), refused
    closed = await su.get()
    assert closed.turnout == closed.agree == len(accepted) == len(await su.ballots(c))


async def test_forget_leaves_no_trace_of_the_person_and_the_counts_stand(su: Setup) -> None:
    from tests.personal_search import Person, traces

    han = TUser(777_001, "韩梅梅", username="hanmeimei")
    await su.w.see(han, RES)
    await su.w.see(han, TChat(han.id, "private"), "/start")
    p = await su.svc.propose(actor_id=han.id, community_id=su.cid, chat_id=RES.id, thread_id=None, message_id=None,
                             text="我是韩梅梅，提议东门加装充电桩")
    await su.svc.second(actor_id=BOB.id, proposal_id=p.id)
    other = await su.svc.propose(actor_id=BOB.id, community_id=su.cid, chat_id=RES.id, thread_id=None,
                                 message_id=None, text="楼道加装扶手")
    await su.svc.second(actor_id=han.id, proposal_id=other.id)
    c = await su.open()
    await su.svc.vote(actor_id=han.id, consultation_id=c.id, choice=DISAGREE)
    await su.svc.vote(actor_id=BOB.id, consultation_id=c.id, choice=AGREE)
    await su.svc.add_comment(actor_id=han.id, consultation_id=c.id, text="韩梅梅：希望装在北侧")
    await su.svc.add_comment(actor_id=BOB.id, consultation_id=c.id, text="同意韩梅梅的意见")
    await su.svc.publish(actor_id=ALICE.id, community_id=su.cid, number=1, seqs=[1, 2], on=True)
    await su.svc.close_early(actor_id=ALICE.id, community_id=su.cid, number=1)
    who = Person(han.id, ("韩梅梅",), "hanmeimei")
    assert {t.split(".")[0] for t in await traces(su.w.ctx.sessions, who)} >= {
        "proposals", "proposal_seconds", "consultation_ballots", "consultation_comments"}

    await PeopleService(su.w.ctx).forget(han.id)

    assert await traces(su.w.ctx.sessions, who) == []
    closed = await su.get()
    assert (closed.turnout, closed.agree, closed.disagree) == (2, 1, 1)  # the published counts stand
    async with su.w.ctx.read() as s:
        seconds = list(await s.scalars(select(Proposal.seconds).order_by(Proposal.id)))
        comments = list(await s.scalars(select(ConsultComment.text)))
    assert seconds == [1, 1] and comments == ["同意（已匿名）的意见"]
    assert len(await su.ballots(c)) == 2
