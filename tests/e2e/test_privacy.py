"""Privacy and abuse, played through the fake Bot API on both frameworks (issue 13):
/forget through its button leaves nothing and cancels what was queued; a demand typed in one
resident chat is not shown in another; the filing link; the filing limit; the member-chat
fallback of a private demand."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from bot.storage.models import Demand, Outbox
from tests.e2e.harness import BotUnderTest
from tests.e2e.test_demand_loop import community
from tests.fakeapi.server import FakeTelegram
from tests.fakeapi.world import BOT_USERNAME
from tests.personal_search import Person, traces


async def count_demands(bot: BotUnderTest) -> int:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        return int(await s.scalar(select(func.count()).select_from(Demand)) or 0)


async def test_forget_leaves_nothing_and_cancels_what_was_queued(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res, res_user = w["sec"], w["res"], w["res_user"]
    zed = tg.user(7300123457, "Zelda", username="zq_forget", last_name="Quimby")
    chat = tg.private_chat(zed)
    tg.send(zed, chat, "/start")
    await tg.wait_text(zed["id"], "Zelda")
    since = tg.mark()
    tg.send(zed, res, "/demand 我是Zelda Quimby，家门口的路灯坏了")
    await tg.wait_text(res, "#1", since=since)
    spam = tg.send(res_user, res, "加微信领鸡蛋")
    since = tg.mark()
    tg.send(zed, res, "/report", reply_to=spam)
    await tg.wait_text(sec["id"], "Zelda Quimby", since=since)  # the secretary learns who reported
    tg.send(zed, chat, "/demand")  # a form left half-way
    await tg.wait_text(zed["id"], "描述")
    await bot.settle()
    assert bot.app is not None
    # A note to her that waits its turn (a retry, say) when she asks to be forgotten.
    async with bot.app.services.ctx.tx() as s:
        s.add(Outbox(chat_id=zed["id"], user_id=zed["id"], text="排队中的通知",
                     not_before=datetime.now(UTC) + timedelta(seconds=2)))
    person = Person(zed["id"], ("Zelda Quimby", "Zelda"), "zq_forget")
    assert await traces(bot.app.services.ctx.sessions, person)

    since = tg.mark()
    tg.send(zed, chat, "/forget")
    confirm = await tg.wait_text(zed["id"], "确定要删除", since=since)
    query = tg.click(zed, confirm.message, "确认删除")
    await bot.settle()
    (answer,) = [r for r in tg.sent_by("answerCallbackQuery") if r.params.get("callback_query_id") == query["id"]]
    assert "已删除" in str(answer.params.get("text")) and answer.params.get("show_alert")
    assert await traces(bot.app.services.ctx.sessions, person) == []

    # Later steps of her demand tell nobody; the queued note never goes out.
    after = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/accept 1")
    await tg.wait_text(sec["id"], "已受理", since=after)
    await asyncio.sleep(2.5)
    await bot.settle()
    later = tg.sent[after:]
    assert not [r for r in later if r.chat_id == zed["id"]], tg.describe()
    assert not [r for r in later if r.text and ("Zelda" in r.text or str(zed["id"]) in r.text)]
    assert await count_demands(bot) == 1  # her demand stays in the ledger, anonymised


async def test_demand_typed_in_one_resident_chat_is_not_shown_in_another(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, res, mem = w["sec"], w["res_user"], w["res"], w["mem"]
    res2 = tg.group("幸福里二区居民群")
    tg.set_status(res2, sec, "creator")
    tg.send(sec, res2, "/setup resident 幸福里")
    await tg.wait_text(res2, "居民群")
    since = tg.mark()
    tg.send(res_user, res, "/demand 3号楼电梯困人了，有老人")
    await tg.wait_text(res, "#1", since=since)

    since = tg.mark()
    tg.send(sec, res2, "/view 1")
    card = await tg.wait_text(res2, "#1", since=since)
    assert "电梯" not in (card.text or "") and "李阿姨" not in (card.text or "") and "不在本群公开" in (card.text or "")
    since = tg.mark()
    tg.send(sec, res2, "/demands")
    listing = await tg.wait_text(res2, "/view_1", since=since)
    assert "电梯" not in (listing.text or "")
    # Where it was typed: its text, never the submitter's name; privately: everything.
    since = tg.mark()
    tg.send(sec, res, "/view 1")
    card = await tg.wait_text(res, "办理记录", since=since)
    assert "电梯困人" in (card.text or "") and "李阿姨" not in (card.text or "")
    since = tg.mark()
    tg.send(sec, mem, "/view 1")
    card = await tg.wait_text(mem, "办理记录", since=since)
    assert "李阿姨" not in (card.text or "")
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/view 1")
    card = await tg.wait_text(sec["id"], "办理记录", since=since)
    assert "李阿姨" in (card.text or "") and "有老人" in (card.text or "")


async def fill_form(tg: FakeTelegram, user: dict[str, Any], text: str, *, where: str | None) -> None:
    """The private form after its first prompt: text, place (or skip), no photo, not public, submit."""
    chat = tg.private_chat(user)
    since = tg.mark()
    tg.send(user, chat, text)
    rec = await tg.wait_text(user["id"], "在哪里", since=since)
    if where:
        since = tg.mark()
        tg.send(user, chat, where)
    else:
        since = tg.mark()
        tg.click(user, rec.message, "跳过")
    rec = await tg.wait_text(user["id"], "可以发一张照片", since=since)
    for press, expect in (("跳过", "是否允许"), ("不公开", "请确认"), ("提交", "#")):
        since = tg.mark()
        tg.click(user, rec.message, press)
        rec = await tg.wait_text(user["id"], expect, since=since)


def link_token(text: str) -> str:
    m = re.search(rf"https://t\.me/{BOT_USERNAME}\?start=d([A-Za-z0-9_-]+)", text)
    assert m, text
    return m.group(1)


async def test_filing_link_lets_a_newcomer_file_and_refuses_guesses(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, mem = w["sec"], w["res_user"], w["mem"]
    newcomer = tg.user(2001, "新住户", username="newcomer")
    chat = tg.private_chat(newcomer)
    # A stranger cannot file privately: no community is theirs.
    since = tg.mark()
    tg.send(newcomer, chat, "/demand 刷屏广告")
    refusal = await tg.wait_text(newcomer["id"], "社区", since=since)
    assert "幸福里" not in (refusal.text or "")
    # Guessed, numeric (the old sequential style) and wrong tokens name no community.
    for payload in ("d1", "d2", "dAAAAAAAAAAAAAAAA", "d"):
        since = tg.mark()
        tg.send(newcomer, chat, f"/start {payload}")
        rec = await tg.wait_text(newcomer["id"], "链接", since=since)
        assert "幸福里" not in (rec.text or "") and "描述" not in (rec.text or ""), rec.text
    # Only a secretary gets the link.
    since = tg.mark()
    tg.send(res_user, tg.private_chat(res_user), "/link")
    await tg.wait_text(res_user["id"], "书记", since=since)
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/link")
    token = link_token((await tg.wait_text(sec["id"], "t.me", since=since)).text or "")
    # The newcomer follows it: the form opens for that community, and the filing goes through.
    since = tg.mark()
    tg.send(newcomer, chat, f"/start d{token}")
    await tg.wait_text(newcomer["id"], "幸福里", since=since)
    await fill_form(tg, newcomer, "小区东门的监控坏了很久", where=None)
    await tg.wait_text(newcomer["id"], "#1", since=since)
    await tg.wait_text(sec["id"], "监控坏了", since=since)
    # Later, a plain /demand in private works for them too (they came by the link).
    since = tg.mark()
    tg.send(newcomer, chat, "/demand 垃圾桶满了")
    await tg.wait_text(newcomer["id"], "#2", since=since)
    # /link new: the old link stops working at once.
    since = tg.mark()
    tg.send(sec, mem, "/link new")
    fresh = link_token((await tg.wait_text(mem, "t.me", since=since)).text or "")
    assert fresh != token
    other = tg.user(2002, "另一位")
    since = tg.mark()
    tg.send(other, tg.private_chat(other), f"/start d{token}")
    rec = await tg.wait_text(other["id"], "链接", since=since)
    assert "幸福里" not in (rec.text or "")
    since = tg.mark()
    tg.send(other, tg.private_chat(other), f"/start d{fresh}")
    await tg.wait_text(other["id"], "幸福里", since=since)


async def test_sixth_filing_in_an_hour_is_refused_naming_the_limit(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    res_user, res = w["res_user"], w["res"]
    for n in range(1, 6):
        since = tg.mark()
        tg.send(res_user, res, f"/demand 第{n}个问题")
        await tg.wait_text(res, f"#{n}", since=since)
    since = tg.mark()
    tg.send(res_user, res, "#诉求 第6个问题")
    refusal = await tg.wait_text(res, "上限", since=since)
    assert "5 条" in (refusal.text or "") and "#6" not in (refusal.text or "")
    # Privately too, before the form even starts.
    since = tg.mark()
    tg.send(res_user, tg.private_chat(res_user), "/demand")
    await tg.wait_text(res_user["id"], "5 条", since=since)
    await bot.settle()
    assert await count_demands(bot) == 5


async def test_member_chat_fallback_keeps_a_private_demand_private(tg: FakeTelegram, bot: BotUnderTest) -> None:
    """No secretary has started the bot: the member chat hears of a private demand, not its text."""
    sec = tg.user(3001, "周书记")
    resident = tg.user(3002, "钱阿姨")
    res, mem = tg.group("和平里居民群"), tg.group("和平里党支部")
    for chat, kind in ((res, "resident"), (mem, "member")):
        tg.set_status(chat, sec, "creator")
        tg.send(sec, chat, f"/setup {kind} 和平里")
        await tg.wait_text(chat, "和平里")
    tg.send(resident, res, "/help")
    await bot.settle()
    chat = tg.private_chat(resident)
    since = tg.mark()
    tg.send(resident, chat, "/demand")
    await tg.wait_text(resident["id"], "描述", since=since)
    await fill_form(tg, resident, "丈夫酗酒打人，求助", where="7号楼101")
    alert = await tg.wait_text(mem, "新诉求", since=since)
    await bot.settle()
    assert "不公开" in (alert.text or "")
    group_texts: list[Any] = [r.text or "" for r in tg.sent if r.chat_id in (res["id"], mem["id"])]
    assert not [t for t in group_texts if "打人" in t or "酗酒" in t or "7号楼101" in t or "钱阿姨" in t]
