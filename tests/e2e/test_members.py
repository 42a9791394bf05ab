"""Members in the open, played through the fake Bot API server on aiogram and on PTB: a pledge
proposed, returned with a reason, proposed again, approved, and shown on the 承诺墙 in the resident
chat; the wall is one message edited in place; 200 members page within 4,096 characters; a member
who hides their identity is named nowhere residents look; the evaluation's close across restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from bot.storage.models import (
    Chat,
    ChatMember,
    Evaluation,
    Job,
    MemberProfile,
    Pledge,
    User,
)
from tests.e2e.harness import BotUnderTest
from tests.e2e.test_demand_loop import community
from tests.e2e.test_tasks import answered
from tests.fakeapi.server import FakeTelegram
from tests.fakeapi.world import find_button


async def settle(bot: BotUnderTest) -> None:
    assert bot.app is not None
    await bot.settle()
    await bot.app.services.members.wall.idle()
    await bot.settle(quiet=0.1)


def texts_to(tg: FakeTelegram, chat_id: int) -> list[str]:
    """Everything the bot sent or edited into a chat (text, captions, buttons)."""
    out = []
    for r in tg.sent:
        if r.chat_id == chat_id and r.text:
            out.append(r.text)
    return out


def sends(tg: FakeTelegram, chat_id: int, marker: str) -> int:
    return sum(1 for r in tg.sent if r.chat_id == chat_id and r.method == "sendMessage" and r.text and marker in r.text)


@pytest.mark.both_databases
async def test_pledge_returned_then_approved_and_the_wall_edited_in_place(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res, mem_user, res_user = w["sec"], w["res"], w["mem_user"], w["res_user"]
    sec_chat, mem_chat = tg.private_chat(sec), tg.private_chat(mem_user)

    # Proposed: the secretaries get it privately with 批准 / 退回.
    since = tg.mark()
    tg.send(mem_user, mem_chat, "/pledge 每周清理一次3号楼楼道")
    await tg.wait_text(mem_user["id"], "已提交承诺 #1", since=since)
    alert = await tg.wait_text(sec["id"], "提出承诺 #1", since=since)
    assert alert.message is not None

    # Returned with a reason (asked privately), which the member is told.
    since = tg.mark()
    tg.click(sec, alert.message, "退回")
    await tg.wait_text(sec["id"], "退回承诺 #1 的原因", since=since)
    tg.send(sec, sec_chat, "请写明完成期限")
    await tg.wait_text(sec["id"], "已退回承诺 #1", since=since)
    told = await tg.wait_text(mem_user["id"], "被退回", since=since)
    assert "请写明完成期限" in told.text

    # Proposed again, approved.
    since = tg.mark()
    tg.send(mem_user, mem_chat, "/pledge 每周清理一次3号楼楼道 | 2030-12-31")
    await tg.wait_text(mem_user["id"], "已提交承诺 #2", since=since)
    alert = await tg.wait_text(sec["id"], "提出承诺 #2", since=since)
    assert alert.message is not None
    since = tg.mark()
    tg.click(sec, alert.message, "批准")
    await tg.wait_text(mem_user["id"], "已获批准", since=since)
    await settle(bot)

    # The wall: one message in the resident chat; the member hides their identity (default).
    since = tg.mark()
    tg.send(sec, sec_chat, "/wall")
    await tg.wait_text(sec["id"], "承诺墙已发布到 1 个居民群", since=since)
    wall = await tg.wait_text(res, "承诺墙", since=since)
    assert wall.message is not None
    shown = tg.current(wall.message)["text"]
    assert "每周清理一次3号楼楼道" in shown and "一名党员" in shown and "进行中" in shown
    assert "张党员" not in shown

    # Three changes, three edits of the same message.
    tg.send(mem_user, mem_chat, "/pledgeupdate 2 本周已清理两次")
    await settle(bot)
    assert "进展 1 条" in tg.current(wall.message)["text"]
    tg.send(sec, sec_chat, "/post @zhang 环境卫生岗")
    await settle(bot)
    assert "环境卫生岗" in tg.current(wall.message)["text"]
    tg.send(res_user, tg.private_chat(res_user), "/pledges")
    await settle(bot)
    for text in texts_to(tg, res["id"]) + texts_to(tg, res_user["id"]):
        assert "张党员" not in text  # hidden: never named where residents look
    tg.send(mem_user, mem_chat, "/showid on")
    await settle(bot)
    current = tg.current(wall.message)
    assert "张党员" in current["text"] and "环境卫生岗" in current["text"]
    assert current["message_id"] == wall.message["message_id"]
    assert sends(tg, res["id"], "承诺墙") == 1  # never posted again: edited in place
    edits = [r for r in tg.sent_by("editMessageText") if r.chat_id == res["id"]]
    assert len(edits) >= 3

    # Kept: the wall says so, and the points count in 先锋指数.
    since = tg.mark()
    tg.send(mem_user, mem_chat, "/pledgedone 2")
    ask = await tg.wait_text(sec["id"], "申请确认承诺 #2", since=since)
    assert ask.message is not None
    tg.click(sec, ask.message, "已践诺")
    await tg.wait_text(mem_user["id"], "已确认践诺", since=since)
    await settle(bot)
    assert "已践诺" in tg.current(wall.message)["text"]
    since = tg.mark()
    tg.send(mem_user, mem_chat, "/points")
    mine = await tg.wait_text(mem_user["id"], "我的先锋积分", since=since)
    assert "5 积分" in mine.text
    assert tg.unanswered_callbacks() == []


async def add_members(bot: BotUnderTest, mem_chat_id: int, n: int) -> None:
    """n members in the member chat, each with a post and two approved pledges of full length."""
    assert bot.app is not None
    async with bot.app.services.ctx.tx() as s:
        cid = await s.scalar(select(Chat.community_id).where(Chat.id == mem_chat_id))
        assert cid is not None
        for i in range(n):
            uid = 50_000 + i
            s.add(User(id=uid, first_name=f"党员{i:03d}" + "长" * 40))
            await s.flush()
            s.add(ChatMember(chat_id=mem_chat_id, user_id=uid, status="member"))
            s.add(MemberProfile(community_id=cid, user_id=uid, showid=i % 2 == 0, post="楼栋长岗" * 5))
            for k in range(2):
                s.add(Pledge(community_id=cid, number=1000 + 2 * i + k, user_id=uid, text="承诺" * 100,
                             state="active", updates=k))


async def test_wall_of_200_members_pages_within_telegram_limit(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res, mem = w["sec"], w["res"], w["mem"]
    await add_members(bot, mem["id"], 200)
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/wall")
    wall = await tg.wait_text(res, "承诺墙", since=since)
    await settle(bot)
    assert wall.message is not None
    first = tg.current(wall.message)
    assert len(first["text"]) < 4096 and "第 1/" in first["text"]
    pages = int(first["text"].rsplit("第 1/", 1)[1].split(" ", 1)[0])
    assert pages > 10
    # Every page stays within the limit; ▶ and ◀ turn the same message.
    seen = set()
    for page in range(2, pages + 1):
        tg.click(w["res_user"], tg.current(wall.message), "▶")
        await settle(bot)
        cur = tg.current(wall.message)
        assert f"第 {page}/{pages} 页" in cur["text"] and len(cur["text"]) < 4096
        seen.update(line for line in cur["text"].splitlines() if "党员" in line and "👤" in line)
    tg.click(w["res_user"], tg.current(wall.message), "◀")
    await settle(bot)
    assert f"第 {pages - 1}/{pages} 页" in tg.current(wall.message)["text"]
    assert sends(tg, res["id"], "承诺墙") == 1
    for text in texts_to(tg, res["id"]):
        assert len(text) < 4096
        for i in range(1, 200, 2):  # odd ones hide their identity
            assert f"党员{i:03d}" not in text
    assert tg.unanswered_callbacks() == []


@pytest.mark.both_databases
async def test_evaluation_close_runs_once_across_restarts(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res, res_user = w["sec"], w["res"], w["res_user"]
    sec_chat = tg.private_chat(sec)
    tg.send(sec, w["mem"], "/help")  # seen in the member chat since its binding: a member too
    for who in (w["mem_user"], sec):  # both show their identity: the residents' ballot has two questions
        since = tg.mark()
        tg.send(who, tg.private_chat(who), "/showid on")
        await tg.wait_text(who["id"], "已亮明身份", since=since)
    since = tg.mark()
    tg.send(sec, sec_chat, "/evaluation open 年度党员测评 | 2030-12-31 18:00 | members")
    await tg.wait_text(sec["id"], "已发起民主测评 #1", since=since)
    post = await tg.wait_text(res, "民主测评 #1", since=since)
    assert post.message is not None

    # A resident's private ballot: 去测评 sends it, an answer moves on in the same message.
    since = tg.mark()
    tg.click(res_user, post.message, "去测评")
    ballot = await tg.wait_text(res_user["id"], "请评价", since=since)
    assert ballot.message is not None and "（1/2）" in ballot.text and "王书记" in ballot.text
    first = find_button(tg.current(ballot.message), "满意")
    tg.click(res_user, ballot.message, "满意")
    await settle(bot)
    assert "（2/2）" in tg.current(ballot.message)["text"] and "张党员" in tg.current(ballot.message)["text"]

    # Resumable after a restart: 去测评 again continues at the second question.
    await bot.restart()
    since = tg.mark()
    tg.click(res_user, post.message, "去测评")
    again = await tg.wait_text(res_user["id"], "请评价", since=since)
    assert again.message is not None and "（2/2）" in again.text and "张党员" in again.text
    tg.click(res_user, again.message, "不满意")
    await settle(bot)
    assert "已完成全部 2 项" in tg.current(again.message)["text"]
    # A second answer on the same subject is refused, and nothing in any answer says what was chosen.
    [refused] = await answered(tg, [tg.press(res_user, again.message, first, force=True)])
    assert "已经评过" in refused
    for r in tg.sent:
        if r.chat_id == res_user["id"] and r.text and "民主测评" in r.text:
            assert "不满意" not in r.text and "基本满意" not in r.text

    # Publishing before the close is refused.
    since = tg.mark()
    tg.send(sec, sec_chat, "/evaluation publish 1")
    await tg.wait_text(sec["id"], "还没有截止", since=since)

    # The close time passes while the bot is down: it closes on start, once, and never again.
    assert bot.app is not None
    await bot.stop()
    await bot.start()
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert bot.app is not None
    async with bot.app.services.ctx.tx() as s:
        await s.execute(update(Evaluation).values(until=past))
        await s.execute(update(Job).where(Job.kind == "evaluation_close")
                        .values(due_at=past, guard=past.isoformat(timespec="seconds")))
    await bot.restart()
    await tg.wait_text(sec["id"], "已截止", since=since, timeout=10)
    await settle(bot)
    await bot.restart()
    await settle(bot)
    closed = [r for r in tg.sent if r.chat_id == sec["id"] and r.text and "民主测评 #1（年度党员测评）已截止" in r.text]
    assert len(closed) == 1
    async with bot.app.services.ctx.read() as s:
        assert await s.scalar(select(Evaluation.state)) == "closed"
        assert await s.scalar(select(func.count()).select_from(Job).where(Job.kind == "evaluation_close",
                                                                          Job.done_at.is_not(None))) == 1

    # Published now, with 异议: the 1 rater shows 样本不足; an objection reaches the secretary.
    since = tg.mark()
    tg.send(sec, sec_chat, "/evaluation publish 1")
    await tg.wait_text(sec["id"], "已在 1 个居民群公示", since=since)
    pub = await tg.wait_text(res, "结果公示", since=since)
    assert pub.message is not None and "样本不足" in pub.text
    tg.click(res_user, pub.message, "异议")
    await tg.wait_text(res_user["id"], "请写下您对测评 #1", since=since)
    tg.send(res_user, tg.private_chat(res_user), "评价人数太少")
    objection = await tg.wait_text(sec["id"], "收到异议", since=since)
    assert "评价人数太少" in objection.text
    # After the publication period the button says it has ended.
    async with bot.app.services.ctx.tx() as s:
        await s.execute(update(Evaluation).values(publicity_until=datetime.now(UTC) - timedelta(seconds=1)))
    [ended] = await answered(tg, [tg.click(res_user, tg.current(pub.message), "异议")])
    assert "公示期已结束" in ended
    assert tg.unanswered_callbacks() == []


async def rows(bot: BotUnderTest) -> tuple[int, ...]:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        return tuple([await s.scalar(select(func.count()).select_from(m)) or 0
                      for m in (Pledge, MemberProfile, Evaluation, Job)])


async def test_bad_input_gets_a_clear_reply_and_changes_nothing(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res, mem, mem_user, res_user = w["sec"], w["res"], w["mem"], w["mem_user"], w["res_user"]
    mem_chat = tg.private_chat(mem_user)
    for text in ("第一条承诺", "第二条承诺"):
        since = tg.mark()
        tg.send(mem_user, mem_chat, f"/pledge {text}")
        await tg.wait_text(mem_user["id"], "已提交承诺", since=since)
    await settle(bot)
    before = await rows(bot)
    cases = [
        (mem_user, mem_chat, "/pledge 第三条承诺", "最多", "已有 2 条"),
        (res_user, res, "/pledge 我也承诺", "只有本社区的党员", None),
        (mem_user, mem, "/pledge", "请写明承诺内容", "/pledge 每周"),
        (mem_user, mem, "/post @li 环境卫生岗", "只有本社区的书记", None),
        (sec, tg.private_chat(sec), "/evaluation open 测评 | 2020-01-01 18:00 | members", "已经过去了", None),
        (sec, tg.private_chat(sec), "/evaluation open 测评 | 明天 18:00 | 大家", "members", None),
        (sec, tg.private_chat(sec), "/evaluation publish 9", "没有编号为 #9 的测评", None),
        (mem_user, mem_chat, "/showid maybe", "/showid on", None),
        (mem_user, mem_chat, "/pledgedone 1", "不是“进行中”", None),
        (sec, res, "/post @zhang 环境卫生岗", "居民群里不点名党员", None),
    ]
    for who, chat, text, expect, also in cases:
        since = tg.mark()
        tg.send(who, chat, text)
        reply = await tg.wait_text(chat["id"], expect, since=since)
        if also:
            assert also in reply.text, reply.text
    await settle(bot)
    assert await rows(bot) == before
