"""Privacy and abuse (issue 13) at the service level, on SQLite and PostgreSQL:

- /forget leaves nothing personal in any table, and nothing pending reaches the person;
- /mydata includes what the shared tables hold (messages, timers, quota, links followed);
- a demand is public only where it was typed (and where its submitter chose, for the form);
- a de-duplicated secretary alert counts as told (no fallback with private text);
- the filing link: secretaries only, renewable, a wrong or old token names no community;
  private filing only for people the community knows;
- the per-person filing limit, and the same for reports;
- retention: delivered messages, finished timers and stale forms are pruned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.scheduler.runner import add_job
from bot.services.base import ServiceContext
from bot.services.demands import DemandService
from bot.services.errors import Denied, UserError
from bot.services.notify import alert_secretaries, enqueue
from bot.services.retention import JOB_PRUNE, RetentionService
from bot.services.roles import secretary_users
from bot.storage.models import (
    AuditEntry,
    Community,
    CommunityVisitor,
    Conversation,
    Demand,
    DemandEvent,
    Job,
    Outbox,
    QuotaEvent,
)
from bot.transport.outbox import OutboxWorker
from bot.transport.port import Chat as TChat
from bot.transport.port import Keyboard, OutMessage
from bot.transport.port import User as TUser
from bot.transport.sender import SendResult
from bot.ui.demands import Shown, demand_card, demand_line
from bot.ui.html import mention
from bot.ui.i18n import Translator, catalog
from tests.integration.conftest import ALICE, BOB, CAROL, MEM, RES
from tests.integration.test_demands import DAVE, GINA, HANK, IVY, JUDY, RES_B, Loop, build_loop
from tests.personal_search import Person, traces

ZED = TUser(7300123457, "Zelda", last_name="Quimby", username="zq_forget")
ZED_PERSON = Person(ZED.id, ("Zelda Quimby", "Zelda", "Quimby"), "zq_forget")
RES2 = TChat(-110, "supergroup", "幸福里二区居民群")
STRANGER = TUser(66, "Mallory", username="mallory")
ZH = Translator("zh")


@pytest.fixture
def make(engine: AsyncEngine) -> Callable[..., Awaitable[Loop]]:
    async def factory(**settings: Any) -> Loop:
        lp = await build_loop(engine, **settings)
        # A second resident chat of community A, bound by its secretary.
        lp.w.book.statuses[(RES2.id, ALICE.id)] = "creator"
        await lp.w.see(ALICE, RES2)
        await lp.w.communities.setup(actor_id=ALICE.id, chat_id=RES2.id, chat_is_group=True, thread_id=None,
                                     kind="resident", name="幸福里")
        await lp.w.see(DAVE, RES2)
        return lp

    return factory


@pytest.fixture
async def lp(make: Callable[..., Awaitable[Loop]]) -> Loop:
    return await make()


async def count(lp: Loop, model: type[Any], *where: Any) -> int:
    async with lp.w.ctx.read() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


class RecordingSender:
    """The outbox worker's sender: accepts everything and remembers it."""

    def __init__(self) -> None:
        self.sent: list[OutMessage] = []

    async def send(self, msg: OutMessage, parts: object = None) -> SendResult:
        self.sent.append(msg)
        return SendResult(ok=True, message_ids=[len(self.sent)])

    def delay(self, chat_id: int) -> float:  # never busy: nothing folds
        return 0.0

    def pace(self, chat_id: int) -> float:
        return 1.0


# ---------------------------------------------------------------------------------------------- /forget


async def zelda_everywhere(lp: Loop) -> None:
    """Zelda leaves traces in every table the core and demands have."""
    w, d = lp.w, lp.d
    await w.see(ZED, RES)
    await w.see(ZED, MEM)  # a member too: demands get assigned to her
    await lp.start(ZED)
    await lp.start(ALICE)
    # Her own demands: one typed in the group naming herself, one through the form (posted publicly).
    await lp.file(ZED, "我是Zelda Quimby，家门口的路灯坏了", chat=RES, msg=90)
    await d.file(actor_id=ZED.id, community_id=lp.cid, text="楼道堆满杂物", public=True, origin_chat_id=ZED.id,
                 via="form")
    # Assigned a neighbour's demand; the secretary's resolution note names her.
    n = (await lp.file(BOB, "健身器材松动")).number
    await d.assign(actor_id=ALICE.id, community_id=lp.cid, number=n, assignee_id=ZED.id)
    await d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=n, note="Zelda Quimby 已加固")
    # A timeline note from before assignees were kept by id held the name itself.
    async with w.ctx.tx() as s:
        s.add(DemandEvent(demand_id=1, actor_id=ALICE.id, action="assign", note="Zelda Quimby"))
    # Pending messages for her: the secretary accepts her demand (she started the bot).
    await d.accept(actor_id=ALICE.id, community_id=lp.cid, number=1)
    # A report she makes: the secretaries' alert names her.
    await d.report(actor_id=ZED.id, chat_id=RES.id, reported_text="卖保健品的广告", author_name="Spammer",
                   reporter_name=ZED.full_name)
    # Rows written before outbox rows named their person: a mention in a group, a button with her id.
    async with w.ctx.tx() as s:
        await enqueue(s, chat_id=RES.id, text=f"{mention(ZED.id, ZED.full_name)} 请查看 @zq_forget")
        await enqueue(s, chat_id=RES.id, text="确认删除？", keyboard=Keyboard.from_json(
            [[{"text": "确认", "data": f"forget:{ZED.id}"}]]))
        # A timer about her alone (a capability's reminder to one person).
        await add_job(s, "task_remind", 1, lp.clock() + timedelta(hours=1), "g", user_id=ZED.id)
    # A secretary of A who names another secretary; she followed community B's filing link.
    await w.communities.set_secretary(actor_id=ALICE.id, chat_id=RES.id, target=ZED, add=True)
    await w.communities.set_secretary(actor_id=ZED.id, chat_id=RES.id, target=DAVE, add=True)
    _, token = await w.communities.filing_link(actor_id=HANK.id, community_id=lp.cid_b)
    await w.communities.follow_link(user_id=ZED.id, token=token)
    # A form in progress.
    async with w.ctx.tx() as s:
        s.add(Conversation(user_id=ZED.id, chat_id=ZED.id, kind="demand_form", step="what",
                           data={"community_id": lp.cid}))


async def test_forget_leaves_nothing_personal(lp: Loop) -> None:
    await zelda_everywhere(lp)
    before = await traces(lp.w.ctx.sessions, ZED_PERSON)
    tables = {t.split(".")[0] for t in before}
    # The scenario reaches every table that can hold a person.
    assert {"users", "chat_members", "secretaries", "conversations", "outbox", "jobs", "demands", "demand_events",
            "audit_log", "quota_events", "community_visitors"} <= tables, tables
    async with lp.w.ctx.read() as s:
        rates_before = (await s.execute(select(Demand.number, Demand.state, Demand.rating).order_by(Demand.id))).all()

    await lp.w.people.forget(ZED.id)

    assert await traces(lp.w.ctx.sessions, ZED_PERSON) == []
    # The ledger keeps every demand, anonymised: the rates do not change.
    async with lp.w.ctx.read() as s:
        assert (await s.execute(select(Demand.number, Demand.state, Demand.rating).order_by(Demand.id))).all() \
            == rates_before
        texts = (await s.scalars(select(Demand.text).order_by(Demand.id))).all()
        assert texts[0] == "我是（已匿名），家门口的路灯坏了"
        bob_rows = (await s.scalars(select(Outbox.text).where(Outbox.chat_id == RES.id))).all()
    # Messages to others stay, without her name.
    assert any("已加固" in t and "（已匿名）" in t for t in bob_rows)
    assert await count(lp, Outbox, Outbox.chat_id == ZED.id) == 0


async def test_a_namesake_in_another_community_keeps_their_name(lp: Loop) -> None:
    await lp.w.see(ZED, RES)
    await lp.file(ZED, "Zelda Quimby 反映：路灯坏了")
    await lp.file(IVY, "楼下的 Zelda Quimby 装修太吵", chat=RES_B, cid=lp.cid_b)  # someone else of that name
    await lp.w.people.forget(ZED.id)
    assert (await lp.get(1)).text == "（已匿名） 反映：路灯坏了"
    assert (await lp.get(1, lp.cid_b)).text == "楼下的 Zelda Quimby 装修太吵"


async def test_forget_cancels_what_is_pending_for_them(lp: Loop) -> None:
    """Nothing queued for them reaches them after /forget, privately or by a mention."""
    await lp.start(ZED)
    await lp.w.see(ZED, RES)
    await lp.file(ZED, "路灯坏了")
    await lp.d.accept(actor_id=ALICE.id, community_id=lp.cid, number=1)  # a private note to her
    async with lp.w.ctx.tx() as s:  # a mention of her in the group, waiting its turn
        await enqueue(s, chat_id=RES.id, user_id=ZED.id, text=f"{mention(ZED.id, ZED.full_name)} 提醒")
    assert await count(lp, Outbox, Outbox.user_id == ZED.id, Outbox.status == "pending") == 2

    await lp.w.people.forget(ZED.id)
    sender = RecordingSender()
    worker = OutboxWorker(lp.w.ctx.sessions, sender)  # type: ignore[arg-type]  # rows are due by the wall clock
    await worker.start()
    try:
        await worker.drain(within=30)
    finally:
        await worker.stop()
    assert sender.sent  # the rest still goes out (the secretaries' alerts)
    assert not [m for m in sender.sent if m.chat_id == ZED.id or "Zelda" in m.text or str(ZED.id) in m.text]


async def test_mydata_includes_what_the_shared_tables_hold(lp: Loop) -> None:
    await zelda_everywhere(lp)
    import json

    doc = json.loads(await lp.w.people.export(ZED.id))
    assert doc["user"]["username"] == "zq_forget"
    assert any(m["chat_id"] == ZED.id for m in doc["messages"])  # the accept note, pending
    assert [j["kind"] for j in doc["timers"]] == ["task_remind"]
    assert {q["kind"] for q in doc["filing_limit"]} == {"file", "report"}
    assert [v["community_id"] for v in doc["filing_links_followed"]] == [lp.cid_b]
    assert any(a["subject"] == f"user:{ZED.id}" for a in doc["audit_log"])
    assert any(e["action"] == "assign" for e in doc["demands"]["timeline_about_you"])
    assert doc["conversations"] and doc["chats"]


# ---------------------------------------------------------------------------------------------- who sees what


async def card_in(lp: Loop, user: TUser, number: int, chat: TChat | None) -> str:
    view = await lp.d.view(actor_id=user.id, community_id=lp.cid, number=number,
                           chat_id=chat.id if chat else None)
    return str(demand_card(ZH, view, lp.clock()))


async def test_demand_typed_in_resident_chat_a_is_not_shown_in_b(lp: Loop) -> None:
    await lp.file(BOB, "3号楼电梯困人了，有老人", chat=RES)
    # In chat A, where it was typed: its text, but never the submitter's name, even to a secretary.
    here = await card_in(lp, ALICE, 1, RES)
    assert "电梯困人" in here and "Bob" not in here and "提交人" not in here
    # In chat B of the same community: its number and state only.
    there = await card_in(lp, ALICE, 1, RES2)
    assert "电梯" not in there and "Bob" not in there and "不在本群公开" in there
    listing = await lp.d.listing(actor_id=ALICE.id, community_id=lp.cid, scope="all", chat_id=RES2.id)
    line = str(demand_line(ZH, listing.demands[0], lp.clock(), shown=listing.shown[listing.demands[0].id]))
    assert listing.shown[listing.demands[0].id] == Shown.HIDDEN and "电梯" not in line
    # The member chat, where it is worked on: an excerpt, no name.
    work = await card_in(lp, ALICE, 1, MEM)
    assert "电梯困人" in work and "Bob" not in work
    # Privately the secretary sees all of it, with the submitter.
    full = await card_in(lp, ALICE, 1, None)
    assert "电梯困人了，有老人" in full and "Bob" in full


async def test_form_demand_shown_only_where_its_submitter_chose(lp: Loop) -> None:
    await lp.start(BOB)
    await lp.d.file(actor_id=BOB.id, community_id=lp.cid, text="东门路灯坏了", public=True, origin_chat_id=BOB.id,
                    via="form")
    await lp.d.file(actor_id=BOB.id, community_id=lp.cid, text="邻居家漏水渗到我家", public=False,
                    origin_chat_id=BOB.id, via="form")
    await lp.d.file(actor_id=BOB.id, community_id=lp.cid, text="想反映物业收费问题", origin_chat_id=BOB.id)
    # Posted in RES (Bob is in it), not in RES2.
    assert "东门路灯" in await card_in(lp, ALICE, 1, RES)
    assert "东门路灯" not in await card_in(lp, ALICE, 1, RES2)
    for n, text in ((2, "漏水"), (3, "物业收费")):  # kept private; /demand typed privately is private too
        for chat in (RES, RES2, MEM):
            card = await card_in(lp, ALICE, n, chat)
            assert text not in card and "不在本群公开" in card, (n, chat, card)
        assert text in await card_in(lp, ALICE, n, None)


async def test_group_card_hides_the_submitters_private_words(lp: Loop) -> None:
    await lp.file(BOB, "楼道灯不亮", chat=RES)
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=1, note="换了灯泡")
    await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=1, stars_given=2, comment="王师傅态度不好")
    card = await card_in(lp, BOB, 1, RES)
    assert "换了灯泡" in card and "⭐⭐" in card
    assert "态度不好" not in card and "Bob" not in card
    assert "态度不好" in await card_in(lp, BOB, 1, None)


# ---------------------------------------------------------------------------------------------- secretary alerts


async def test_deduplicated_alert_counts_as_told(lp: Loop) -> None:
    """The issue's case: the alert was queued once already; the second call must not fall back to
    the member chat (where it would post the full private text)."""
    await lp.start(ALICE)
    await lp.start(BOB)
    d = (await lp.d.file(actor_id=BOB.id, community_id=lp.cid, text="家暴求助，请勿公开", public=False,
                         origin_chat_id=BOB.id, via="form")).demand
    async with lp.w.ctx.tx() as s:
        community = await s.get(Community, lp.cid)
        assert community is not None
        secretaries = await secretary_users(s, lp.w.ctx.roles, lp.cid)

        def render(tr: Translator) -> tuple[str, Keyboard | None]:
            return f"#{d.number} {d.text}", None

        told = [await alert_secretaries(s, community, secretaries, render, default_locale="zh", dedup_key="k")
                for _ in range(2)]
    assert told == [1, 1]
    # The filing alerted Alice privately too; nothing at all went to a group.
    rows = await lp.outbox()
    assert rows and all(r.chat_id == ALICE.id for r in rows)


async def test_private_demand_fallback_shows_no_private_text(lp: Loop) -> None:
    """No secretary has started the bot: the member chat hears of a private demand, without its text,
    through the filing alert and every later alert (a timer, a low rating with a comment)."""
    await lp.start(BOB)
    await lp.d.file(actor_id=BOB.id, community_id=lp.cid, text="家暴求助，请勿公开", location="5号楼302",
                    public=False, origin_chat_id=BOB.id, via="form")
    lp.clock.advance(timedelta(days=2))
    for job in await lp.jobs(1, "demand_accept_due"):
        await lp.runner.fire(job.id)
    await lp.d.resolve(actor_id=ALICE.id, community_id=lp.cid, number=1, note="已联系")
    await lp.d.rate(actor_id=BOB.id, community_id=lp.cid, number=1, stars_given=1, comment="邻居还在打人")
    rows = [r for r in await lp.outbox() if r.chat_id == MEM.id]
    assert len(rows) >= 3, [r.text for r in rows]
    for r in rows:
        assert "家暴" not in r.text and "5号楼302" not in r.text and "打人" not in r.text, r.text
    assert "不公开" in rows[0].text


# ---------------------------------------------------------------------------------------------- the filing link


async def test_link_is_for_secretaries_and_renews(lp: Loop) -> None:
    for outsider in (BOB, CAROL, HANK):
        with pytest.raises(Denied):
            await lp.w.communities.filing_link(actor_id=outsider.id, community_id=lp.cid)
    community, token = await lp.w.communities.filing_link(actor_id=ALICE.id, community_id=lp.cid)
    assert community.id == lp.cid and len(token) >= 16
    assert (await lp.w.communities.filing_link(actor_id=GINA.id, community_id=lp.cid))[1] == token  # stable
    _, fresh = await lp.w.communities.filing_link(actor_id=ALICE.id, community_id=lp.cid, renew=True)
    assert fresh != token
    assert (await lp.w.communities.follow_link(user_id=BOB.id, token=fresh)).id == lp.cid
    # The old link stops working, and the refusal names no community.
    for bad in (token, "", "x", str(lp.cid), "1", fresh[:-1]):
        with pytest.raises(UserError) as err:
            await lp.w.communities.follow_link(user_id=BOB.id, token=bad)
        assert err.value.key == "err_bad_link" and err.value.params == {}
    for locale in ("zh", "en"):
        assert "幸福里" not in catalog(locale)["err_bad_link"] and "{" not in catalog(locale)["err_bad_link"]


async def test_private_filing_only_for_people_the_community_knows(lp: Loop) -> None:
    await lp.w.people.ensure_user(STRANGER.id, STRANGER.first_name)
    await lp.start(STRANGER)
    with pytest.raises(Denied) as err:
        await lp.d.file(actor_id=STRANGER.id, community_id=lp.cid, text="刷屏", origin_chat_id=STRANGER.id)
    assert err.value.key == "err_file_not_known"
    assert await count(lp, Demand) == 0 and await count(lp, Outbox) == 0 and await count(lp, QuotaEvent) == 0
    with pytest.raises(UserError):  # nor does a private command find a community for them
        await lp.w.communities.community_for(user_id=STRANGER.id, chat_id=STRANGER.id, chat_is_group=False)
    # Someone seen in one of its chats may; a resident of another community may not.
    await lp.d.file(actor_id=DAVE.id, community_id=lp.cid, text="路灯坏了", origin_chat_id=DAVE.id)
    with pytest.raises(Denied):
        await lp.d.file(actor_id=IVY.id, community_id=lp.cid, text="路灯坏了", origin_chat_id=IVY.id)
    # Coming by the community's link is recorded and lets them file.
    _, token = await lp.w.communities.filing_link(actor_id=ALICE.id, community_id=lp.cid)
    await lp.w.communities.follow_link(user_id=STRANGER.id, token=token)
    assert await count(lp, CommunityVisitor, CommunityVisitor.user_id == STRANGER.id) == 1
    chosen = await lp.w.communities.community_for(user_id=STRANGER.id, chat_id=STRANGER.id, chat_is_group=False)
    assert chosen.id == lp.cid
    d = (await lp.d.file(actor_id=STRANGER.id, community_id=lp.cid, text="小区门口积水", origin_chat_id=STRANGER.id,
                         via="form", public=False)).demand
    assert d.submitter_id == STRANGER.id
    # A visitor of A is still a stranger to B.
    with pytest.raises(Denied):
        await lp.d.file(actor_id=STRANGER.id, community_id=lp.cid_b, text="刷屏", origin_chat_id=STRANGER.id)


# ---------------------------------------------------------------------------------------------- the filing limit


async def test_sixth_filing_within_an_hour_is_refused_with_the_limit_named(lp: Loop) -> None:
    for i in range(5):
        await lp.file(BOB, f"问题{i}")
        lp.clock.advance(timedelta(minutes=10))
    # 50 minutes after the first: the sixth is refused, naming the limit and the wait.
    snapshot = (await count(lp, Demand), await count(lp, Outbox), await count(lp, Job), await count(lp, QuotaEvent))
    with pytest.raises(UserError) as err:
        await lp.file(BOB, "第六条")
    assert err.value.key == "err_file_limit" and err.value.params == {"limit": 5, "minutes": 10}
    text = str(ZH(err.value.key, **err.value.params))
    assert "5 条" in text and "10 分钟" in text
    assert (await count(lp, Demand), await count(lp, Outbox), await count(lp, Job),
            await count(lp, QuotaEvent)) == snapshot
    # In private the same (and the form refuses before it starts).
    with pytest.raises(UserError):
        await lp.d.check_quota(actor_id=BOB.id)
    # Others are not limited by Bob's filings; on-behalf filing by a secretary is not counted.
    await lp.file(DAVE, "路灯坏了")
    await lp.file(ALICE, "楼道灯不亮", chat=RES, on_behalf_of=BOB.id, via="reply")
    # A sliding hour: once the first filing is an hour old, one more fits, and only one.
    lp.clock.advance(timedelta(minutes=10))
    await lp.file(BOB, "第六条")
    with pytest.raises(UserError):
        await lp.file(BOB, "第七条")


async def test_the_limit_is_a_setting_and_holds_across_restarts(make: Callable[..., Awaitable[Loop]]) -> None:
    lp = await make(filing_limit_per_hour=2)
    await lp.file(BOB, "一")
    await lp.file(BOB, "二")
    # A fresh service (a restart, or another instance) over the same database still counts them.
    ctx = ServiceContext(sessions=lp.w.ctx.sessions, roles=lp.w.ctx.roles, settings=lp.w.ctx.settings,
                         clock=lp.clock)
    with pytest.raises(UserError) as err:
        await DemandService(ctx).file(actor_id=BOB.id, community_id=lp.cid, text="三", origin_chat_id=RES.id)
    assert err.value.params["limit"] == 2


async def test_concurrent_filings_never_pass_the_limit(lp: Loop) -> None:
    results = await asyncio.gather(*[lp.file(BOB, f"并发{i}", msg=100 + i) for i in range(9)], return_exceptions=True)
    refused = [r for r in results if isinstance(r, UserError)]
    assert len(results) - len(refused) == 5, results
    assert all(r.key == "err_file_limit" for r in refused)
    assert await count(lp, Demand) == 5 and await count(lp, QuotaEvent) == 5


async def test_reports_have_the_same_limit(lp: Loop) -> None:
    for _ in range(5):
        await lp.d.report(actor_id=BOB.id, chat_id=RES.id, reported_text="广告", author_name="x", reporter_name="Bob")
    before = await count(lp, Outbox)
    with pytest.raises(UserError) as err:
        await lp.d.report(actor_id=BOB.id, chat_id=RES.id, reported_text="广告", author_name="x", reporter_name="Bob")
    assert err.value.key == "err_report_limit" and err.value.params["limit"] == 5
    assert await count(lp, Outbox) == before
    await lp.file(BOB, "报事不受举报次数影响")  # separate counts


async def test_member_chat_never_learns_who_reported(lp: Loop) -> None:
    await lp.d.report(actor_id=JUDY.id, chat_id=RES.id, reported_text="广告", author_name="x", reporter_name="Judy")
    (row,) = await lp.outbox()
    assert row.chat_id == MEM.id and "Judy" not in row.text and "广告" in row.text


# ---------------------------------------------------------------------------------------------- retention


async def test_prune_drops_old_delivered_rows_only(lp: Loop) -> None:
    ret = RetentionService(lp.w.ctx)
    now = lp.clock()
    old, recent = now - timedelta(days=31), now - timedelta(days=29)
    async with lp.w.ctx.tx() as s:
        for status, at in (("sent", old), ("failed", old), ("sent", recent), ("pending", old), ("sending", old)):
            s.add(Outbox(chat_id=BOB.id, text=status, status=status, created_at=at))
        s.add(Job(kind="x", ref_id=1, guard="old", due_at=old, done_at=old))
        s.add(Job(kind="x", ref_id=1, guard="new", due_at=recent, done_at=recent))
        s.add(Job(kind="x", ref_id=1, guard="pending", due_at=old))
        s.add(Conversation(user_id=BOB.id, chat_id=BOB.id, kind="demand_form", step="what", data={}, updated_at=old))
        s.add(QuotaEvent(user_id=BOB.id, kind="file", at=now - timedelta(hours=2)))
        s.add(QuotaEvent(user_id=BOB.id, kind="file", at=now - timedelta(minutes=5)))
    done = await ret.prune_now()
    assert (done.messages, done.timers, done.forms, done.quota) == (2, 1, 1, 1)
    async with lp.w.ctx.read() as s:
        left = sorted((r.status, r.created_at == old) for r in await s.scalars(select(Outbox)))
        guards = sorted(await s.scalars(select(Job.guard).where(Job.kind == "x")))
    assert left == [("pending", True), ("sending", True), ("sent", False)]
    assert guards == ["new", "pending"]


async def test_pruning_runs_every_hour_once(make: Callable[..., Awaitable[Loop]]) -> None:
    lp = await make(retention_days=7)
    ret = RetentionService(lp.w.ctx)
    ret.register_jobs(lp.runner)
    await ret.schedule()
    await ret.schedule()  # a restart, or a second instance: still one pending run
    async with lp.w.ctx.read() as s:
        (job,) = (await s.scalars(select(Job).where(Job.kind == JOB_PRUNE))).all()
    assert job.due_at == (lp.clock() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    async with lp.w.ctx.tx() as s:
        s.add(Outbox(chat_id=BOB.id, text="old", status="sent", created_at=lp.clock() - timedelta(days=8)))
    lp.clock.now = job.due_at
    assert (await lp.runner.fire(job.id) or "").startswith("pruned 1/")
    async with lp.w.ctx.read() as s:
        jobs = (await s.scalars(select(Job).where(Job.kind == JOB_PRUNE).order_by(Job.id))).all()
        assert await s.scalar(select(func.count()).select_from(Outbox).where(Outbox.text == "old")) == 0
    assert [j.done_at is not None for j in jobs] == [True, False]
    assert jobs[1].due_at == job.due_at + timedelta(hours=1)


async def test_audit_keeps_no_link_to_the_forgotten(lp: Loop) -> None:
    await lp.w.communities.set_secretary(actor_id=ALICE.id, chat_id=RES.id, target=CAROL, add=True)
    await lp.w.people.forget(CAROL.id)
    async with lp.w.ctx.read() as s:
        subjects = set(await s.scalars(select(AuditEntry.subject)))
    assert f"user:{CAROL.id}" not in subjects
