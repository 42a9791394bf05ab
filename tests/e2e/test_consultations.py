"""Consultations played through the fake Bot API server, on aiogram and on PTB: a consultation in two
resident chats; one resident's 同意 in one and 反对 in the other make one ballot; 200 simultaneous
presses by 100 residents store 100 ballots and show 已参与 100; a member only in the member chat is
refused; no tally is shown before the close; the bot stopped across the close publishes the result
once in each resident chat; proposals with 附议; the private 意见 form; bad input."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.storage.models import Ballot, Consultation, ConsultComment, ConsultPost, Job, Outbox
from tests.e2e.harness import BotUnderTest
from tests.e2e.test_demand_loop import community
from tests.e2e.test_tasks import answered
from tests.fakeapi.server import FakeTelegram

UNTIL = "2030-12-10 18:00"  # a Tuesday
WEEKDAY = "星期二"


async def settle(bot: BotUnderTest) -> None:
    """Updates handled, replies sent, and every post edit out."""
    assert bot.app is not None
    await bot.settle()
    await bot.app.services.consultations.posts.idle()
    await bot.settle(quiet=0.1)


async def two_chats(tg: FakeTelegram, bot: BotUnderTest) -> dict[str, Any]:
    w = await community(tg, bot)
    res2 = tg.group("幸福里二期居民群")
    tg.set_status(res2, w["sec"], "creator")
    tg.send(w["sec"], res2, "/setup resident 幸福里")
    await tg.wait_text(res2, "幸福里")
    await bot.settle()
    w["res2"] = res2
    return w


async def open_consult(tg: FakeTelegram, w: dict[str, Any], args: str, n: int,
                       weekday: str | None = None) -> list[dict[str, Any]]:
    """/consult privately; returns its post in each resident chat. The reply echoes the close time."""
    sec = w["sec"]
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), f"/consult {args}")
    reply = await tg.wait_text(sec["id"], f"已发起议事协商 #{n}", since=since)
    assert "2 个居民群" in reply.text and "截止：" in reply.text
    if weekday is not None:
        assert weekday in reply.text
    posts = []
    for chat in (w["res"], w["res2"]):
        rec = await tg.wait_text(chat, f"议事协商 #{n}", since=since)
        assert rec.message is not None
        posts.append(rec.message)
    return posts


async def counts(bot: BotUnderTest) -> tuple[int, ...]:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        rows = [await s.scalar(select(func.count()).select_from(m)) or 0
                for m in (Consultation, Ballot, ConsultComment, ConsultPost, Job)]
        closed = await s.scalar(select(func.count()).where(Consultation.state == "closed")) or 0
        decided = await s.scalar(select(func.count()).where(Consultation.decision.is_not(None))) or 0
    return (*rows, closed, decided)


async def ballots(bot: BotUnderTest, number: int) -> list[tuple[int | None, str]]:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        cid = await s.scalar(select(Consultation.id).where(Consultation.number == number))
        return [(u, c) for u, c in (await s.execute(select(Ballot.user_id, Ballot.choice)
                                                    .where(Ballot.consultation_id == cid))).all()]


@pytest.mark.both_databases
async def test_one_ballot_across_two_chats_200_presses_and_no_tally_before_the_close(
        tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await two_chats(tg, bot)
    sec, res, res2, res_user, mem_user = w["sec"], w["res"], w["res2"], w["res_user"], w["mem_user"]
    people = [tg.user(5000 + i, f"居民{i}") for i in range(100)]
    for i, u in enumerate(people):  # seen in one of the resident chats before the consultation opens
        tg.send(u, (res, res2)[i % 2], "大家好")
    await settle(bot)

    posts = await open_consult(tg, w, f"东门加装充电桩 | {UNTIL} | 在东门停车区安装 4 个", 1, WEEKDAY)
    assert WEEKDAY in tg.current(posts[0])["text"] and "已参与 0" in tg.current(posts[0])["text"]

    # The same resident: 同意 in one chat, then 反对 in the other -> one ballot, 反对.
    [first] = await answered(tg, [tg.click(res_user, posts[0], "同意")])
    assert "已记录：同意" in first
    [second] = await answered(tg, [tg.click(res_user, posts[1], "反对")])
    assert "已改为：反对" in second
    assert await ballots(bot, 1) == [(res_user["id"], "disagree")]
    # A member who is only in the member chat is refused, with the reason.
    [refused] = await answered(tg, [tg.click(mem_user, posts[0], "同意")])
    assert "发起征询前" in refused
    await settle(bot)
    for post in posts:
        assert "已参与 1" in tg.current(post)["text"]

    # 200 simultaneous presses by 100 residents (each presses 同意 and 弃权 in their own chat).
    posts2 = await open_consult(tg, w, f"楼道加装扶手 | {UNTIL}", 2)
    queries = [tg.click(u, posts2[i % 2], label) for label in ("同意", "弃权") for i, u in enumerate(people)]
    texts = await answered(tg, queries, timeout=60)
    assert all("议事 #2" in t for t in texts), texts[:5]
    await settle(bot)
    stored = await ballots(bot, 2)
    assert len(stored) == 100 and {u for u, _ in stored} == {u["id"] for u in people}
    # The turnout edits of a burst coalesce: a few per post, not one per press.
    edits = [r for r in tg.sent_by("editMessageText") if r.text and "楼道加装扶手" in r.text]
    assert 2 <= len(edits) <= 40, len(edits)
    for post in posts2:
        shown = tg.current(post)["text"]
        assert "已参与 100" in shown
        assert "同意：" not in shown and "反对：" not in shown and "弃权：" not in shown

    # Nobody sees a tally before the close: not the secretary's /consults, not a resident's.
    for user, chat in ((sec, tg.private_chat(sec)), (res_user, res)):
        since = tg.mark()
        tg.send(user, chat, "/consults")
        listing = await tg.wait_text(chat, "议事协商", since=since)
        assert "已参与 100" in listing.text and "已参与 1" in listing.text
        assert "同意" not in listing.text and "反对" not in listing.text and "弃权" not in listing.text
    assert not [r for r in tg.sent if r.text and "征询结果公示" in r.text]
    assert tg.unanswered_callbacks() == []


def at(t0: datetime, seconds: int) -> str:
    return (t0 + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S+00:00")


@pytest.mark.both_databases
async def test_the_close_is_published_once_in_each_chat_across_a_stop(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await two_chats(tg, bot)
    sec, res, res2, res_user = w["sec"], w["res"], w["res2"], w["res_user"]
    neighbour = w["neighbour"]
    tg.send(neighbour, res2, "你好")
    tg.send(neighbour, tg.private_chat(neighbour), "/start")
    await settle(bot)
    t0 = datetime.now(UTC)
    posts = await open_consult(tg, w, f"周末开放活动室 | {at(t0, 8)}", 1)
    disagree = tg.find_button(posts[0], "反对")  # pressed again after the close
    await answered(tg, [tg.click(res_user, posts[0], "同意")])
    await answered(tg, [tg.click(neighbour, posts[1], "反对")])
    # 意见: a private form; the secretary chooses it for the 公示.
    since = tg.mark()
    [asked] = await answered(tg, [tg.click(neighbour, posts[1], "意见")])
    assert "私聊" in asked
    await tg.wait_text(neighbour["id"], "请写下您对议事协商 #1", since=since)
    tg.send(neighbour, tg.private_chat(neighbour), "希望晚上九点前关门")
    await tg.wait_text(neighbour["id"], "意见已提交", since=since)
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/comments 1")
    listed = await tg.wait_text(sec["id"], "希望晚上九点前关门", since=since)
    assert "赵大爷" in listed.text
    tg.send(sec, tg.private_chat(sec), "/comments 1 publish 1")
    await tg.wait_text(sec["id"], "已选入公示", since=since)
    await settle(bot)
    assert datetime.now(UTC) < t0 + timedelta(seconds=8), "setup took too long for the planned close"

    assert bot.app is not None
    await bot.stop()  # down across the close
    await asyncio.sleep(max(0.0, (t0 + timedelta(seconds=9) - datetime.now(UTC)).total_seconds()))
    await bot.start()
    for chat in (res, res2):
        await tg.wait_text(chat, "征询结果公示", timeout=10)
    await settle(bot)
    await bot.restart()  # a second start publishes nothing more
    await asyncio.sleep(1.5)
    await settle(bot)

    for chat in (res, res2):
        results = [m for m in tg.messages_to(chat) if "征询结果公示" in m["text"]]
        assert len(results) == 1, results
        text = results[0]["text"]
        assert "同意：1（50%）" in text and "反对：1（50%）" in text and "参与 2 人" in text
        assert "希望晚上九点前关门" in text and "赵大爷" not in text
        assert "不是业主大会表决" in text
    for post in posts:  # the posts say it closed, without buttons
        now = tg.current(post)
        assert "已截止" in now["text"] and not (now.get("reply_markup") or {}).get("inline_keyboard")

    # A ballot after the close: refused; nothing changes. /decide is edited into the 公示.
    before = await counts(bot)
    stale = tg.press(res_user, posts[0], disagree, force=True)
    [late] = await answered(tg, [stale])
    assert "已截止" in late
    assert await counts(bot) == before
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/decide 1 每周六、周日 9:00-21:00 开放")
    await tg.wait_text(sec["id"], "已记录议事 #1 的议定事项", since=since)
    await settle(bot)
    for chat in (res, res2):
        [result] = [m for m in tg.messages_to(chat) if "征询结果公示" in m["text"]]
        assert "议定事项：每周六、周日 9:00-21:00 开放" in result["text"]
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/progress 1 已安排志愿者值守")
    for chat in (res, res2):
        await tg.wait_text(chat, "已安排志愿者值守", since=since)
    tg.send(sec, tg.private_chat(sec), "/finish 1")
    await tg.wait_text(sec["id"], "已办结", since=since)


async def test_proposal_seconds_and_bad_input(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await two_chats(tg, bot)
    sec, res, res_user, mem, mem_user = w["sec"], w["res"], w["res_user"], w["mem"], w["mem_user"]
    neighbours = [tg.user(6000 + i, f"邻居{i}") for i in range(3)]
    for u in neighbours:
        tg.send(u, res, "在")
    await settle(bot)
    since = tg.mark()
    tg.send(res_user, res, "/propose 小区东门加装一个充电桩")
    post = await tg.wait_text(res, "居民提议 p1", since=since)
    assert post.message is not None
    texts = await answered(tg, [tg.click(u, post.message, "附议") for u in neighbours])
    assert all("已附议" in t for t in texts)
    [own] = await answered(tg, [tg.click(res_user, post.message, "附议")])
    assert "自己的提议" in own
    await settle(bot)
    assert "附议 3 人" in tg.current(post.message)["text"]

    sec_chat = tg.private_chat(sec)
    await open_consult(tg, w, f"p1 | {UNTIL}", 1)
    await settle(bot)
    assert "已转为议事协商 #1" in tg.current(post.message)["text"]
    cases: list[tuple[dict[str, Any], dict[str, Any], str, tuple[str, ...]]] = [
        (sec, sec_chat, "/consult 东门充电桩 | 2020-01-01 09:00", ("已经过去", "下周三 18:00")),  # past
        (sec, sec_chat, "/consult 东门充电桩 | 下下下周八", ("看不懂截止时间", "明天 19:30")),  # unreadable
        (sec, sec_chat, f"/consult  | {UNTIL}", ("缺少标题", "/consult")),  # an empty title
        (sec, sec_chat, "/consult 东门充电桩", ("用法", "<code>")),
        (res_user, res, f"/consult 东门充电桩 | {UNTIL}", ("只有本社区的书记",)),  # a resident's /consult
        (sec, sec_chat, "/decide 1 装", ("还在征询中", "/closeconsult 1")),  # /decide before the close
        (sec, sec_chat, "/decide 9 装", ("没有议事协商 #9",)),
        (sec, sec_chat, "/progress 1 开工", ("还没有议定事项",)),
        (mem_user, mem, "/propose 加个篮球架", ("居民群",)),  # /propose outside a resident chat
        (res_user, res, "/propose", ("用法",)),
    ]
    for user, chat, text, expected in cases:
        before = await counts(bot)
        since = tg.mark()
        tg.send(user, chat, text)
        rec = await tg.wait_text(chat["id"], expected[0], since=since)
        for piece in expected[1:]:
            assert piece in rec.raw_text or piece in rec.text, f"{text!r}: {piece!r} not in {rec.raw_text!r}"
        await settle(bot)
        assert await counts(bot) == before, f"{text!r} changed something"
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        sent = list(await s.scalars(select(Outbox.text).where(Outbox.ref.like("result:%"))))
    assert sent == []
