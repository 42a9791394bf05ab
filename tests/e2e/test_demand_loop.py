"""The demand loop, played by a resident, a secretary and a member through the fake server:
点单 → 受理 → 派单 → 办结 → 评单, with Not fixed, a duplicate and a rejection."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.storage.models import Demand, DemandEvent
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram


async def community(tg: FakeTelegram, bot: BotUnderTest) -> dict[str, Any]:
    """A community with a resident chat and a member chat; everyone has started the bot."""
    sec = tg.user(1001, "王书记", username="wang")
    res_user = tg.user(1002, "李阿姨", username="li")
    mem_user = tg.user(1003, "张党员", username="zhang")
    neighbour = tg.user(1004, "赵大爷", username="zhao")
    res = tg.group("幸福里居民群")
    mem = tg.group("幸福里党支部")
    tg.set_status(res, sec, "creator")
    tg.set_status(mem, sec, "creator")
    tg.send(sec, res, "/setup resident 幸福里")
    await tg.wait_text(res, "已创建社区")
    tg.send(sec, mem, "/setup member 幸福里")
    await tg.wait_text(mem, "党员群")
    tg.send(mem_user, mem, "/help")
    tg.send(res_user, res, "/help")
    await bot.settle()
    for u in (sec, res_user, mem_user):
        tg.send(u, tg.private_chat(u), "/start")
    await bot.settle()
    return {"sec": sec, "res_user": res_user, "mem_user": mem_user, "neighbour": neighbour, "res": res, "mem": mem}


async def demand_row(bot: BotUnderTest, number: int) -> Demand:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        d = await s.scalar(select(Demand).where(Demand.number == number))
        assert d is not None
        return d


async def test_whole_loop_three_users(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, mem_user, res, mem = w["sec"], w["res_user"], w["mem_user"], w["res"], w["mem"]

    # 点单 in the resident group: the answer shows number, category and an excerpt.
    since = tg.mark()
    tg.send(res_user, res, "/demand 3号楼电梯坏了，老人下不了楼")
    rec = await tg.wait_text(res, "#1", since=since)
    assert "电梯" in rec.text and "老人下不了楼" in rec.text
    # The secretary hears of it privately, with an Accept button.
    alert = await tg.wait_text(sec["id"], "新诉求", since=since)
    assert any("受理" in b for b, _ in alert.buttons)

    # 受理 by button.
    since = tg.mark()
    tg.click(sec, alert.message, "受理")
    await tg.wait_text(res_user["id"], "已受理", since=since)

    # 派单 by replying to the member's message in the member chat.
    member_msg = tg.send(mem_user, mem, "我可以去看看")
    since = tg.mark()
    tg.send(sec, mem, "/assign 1", reply_to=member_msg)
    await tg.wait_text(mem, "已派给", since=since)
    dispatched = await tg.wait_text(mem_user["id"], "派给您的诉求", since=since)
    assert "老人下不了楼" in dispatched.text
    await tg.wait_text(res_user["id"], "已派给 张党员", since=since)

    # 办结 by the member; the resident gets the six rating buttons.
    since = tg.mark()
    tg.send(mem_user, tg.private_chat(mem_user), "/resolve 1 已联系维保公司修好")
    rating = await tg.wait_text(res_user["id"], "已办结", since=since)
    labels = [b for b, _ in rating.buttons]
    assert labels[:5] == ["⭐", "⭐⭐", "⭐⭐⭐", "⭐⭐⭐⭐", "⭐⭐⭐⭐⭐"]
    assert "未解决" in labels[5]

    # Not fixed reopens it and alerts the secretary.
    since = tg.mark()
    tg.click(res_user, rating.message, "未解决")
    await tg.wait_text(sec["id"], "未解决", since=since)
    await bot.settle()
    assert (await demand_row(bot, 1)).state == "reopened"
    assert tg.current(rating.message).get("reply_markup") is None  # the buttons are gone

    # Resolved again by the secretary; four stars, then a comment.
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/resolve 1 已更换电梯控制板")
    rating = await tg.wait_text(res_user["id"], "已办结", since=since)
    since = tg.mark()
    tg.click(res_user, rating.message, "⭐⭐⭐⭐")
    await tg.wait_text(res_user["id"], "补充", since=since)
    tg.send(res_user, tg.private_chat(res_user), "师傅很耐心")
    await tg.wait_text(res_user["id"], "已记录", since=since)
    d = await demand_row(bot, 1)
    assert (d.state, d.rating, d.rating_comment) == ("rated", 4, "师傅很耐心")

    # One rating per demand.
    since = tg.mark()
    tg.send(res_user, tg.private_chat(res_user), "/rate 1 5")
    await tg.wait_text(res_user["id"], "只能评价一次", since=since)

    # The timeline shows every step.
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/view 1")
    card = await tg.wait_text(sec["id"], "办理记录", since=since)
    for step in ("提交诉求", "受理", "派单", "办结", "反馈未解决", "评价"):
        assert step in card.text
    assert tg.unanswered_callbacks() == []


async def test_duplicate_and_rejection(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, neighbour, res = w["sec"], w["res_user"], w["neighbour"], w["res"]
    tg.send(res_user, res, "#诉求 小区东门路灯不亮")
    await tg.wait_text(res, "#1")
    tg.send(neighbour, res, "#报事 东门那边路灯坏了好几天")
    await tg.wait_text(res, "#2")
    tg.send(res_user, res, "/demand 楼下广场舞太吵")
    await tg.wait_text(res, "#3")

    # #2 is a duplicate of #1: its submitter (who never started the bot) is told in the group.
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/duplicate 2 1")
    await tg.wait_text(sec["id"], "已合并", since=since)
    told = await tg.wait_text(res, "#1", since=since)
    assert "赵大爷" in told.text and told.reply_to is not None
    # ... and follows #1 from now on.
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/resolve 1 已更换灯泡")
    await tg.wait_text(res, "已办结", since=since)

    # Rejection with a reason the submitter sees.
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/reject 3 请联系物业协调")
    note = await tg.wait_text(res_user["id"], "不予受理", since=since)
    assert "请联系物业协调" in note.text
    assert (await demand_row(bot, 3)).state == "rejected"
    assert (await demand_row(bot, 2)).state == "duplicate"
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        actions = (await s.scalars(select(DemandEvent.action).order_by(DemandEvent.id))).all()
    assert {"duplicate", "merged", "reject"} <= set(actions)


@pytest.mark.both_databases  # restarts mid-form
async def test_private_form_keeps_privacy(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, res, mem = w["sec"], w["res_user"], w["res"], w["mem"]
    chat = tg.private_chat(res_user)
    tg.send(res_user, chat, "/demand")
    await tg.wait_text(res_user["id"], "描述")
    tg.send(res_user, chat, "邻居家漏水渗到我家天花板，不想让邻居知道是我反映的")
    rec = await tg.wait_text(res_user["id"], "在哪里")

    # A restart mid-form loses nothing.
    await bot.restart()
    tg.click(res_user, rec.message, "跳过")
    rec = await tg.wait_text(res_user["id"], "照片")
    since = tg.mark()  # the welcome's command list may say 公开 too
    tg.send(res_user, chat, photo=True)
    rec = await tg.wait_text(res_user["id"], "公开", since=since)
    tg.click(res_user, rec.message, "不公开")
    rec = await tg.wait_text(res_user["id"], "请确认")
    since = tg.mark()
    tg.click(res_user, rec.message, "提交")
    await tg.wait_text(res_user["id"], "#1", since=since)
    await tg.wait_text(sec["id"], "天花板", since=since)  # the secretary sees all of it
    await bot.settle()
    group_texts = [r.text or "" for r in tg.sent if r.chat_id in (res["id"], mem["id"])]
    assert not any("天花板" in t for t in group_texts)
    d = await demand_row(bot, 1)
    assert d.public is False and d.photo_file_id

    # In the resident group, even the secretary's list hides its text.
    since = tg.mark()
    tg.send(sec, res, "/demands")
    rec = await tg.wait_text(res, "/view_1", since=since)
    assert "天花板" not in rec.text and "不公开" in rec.text


async def test_private_demand_of_a_member_of_two_communities(tg: FakeTelegram, bot: BotUnderTest) -> None:
    """The bot asks which community; a long text or a photo is not lost while the user picks."""
    w = await community(tg, bot)
    res_user = w["res_user"]
    boss = tg.user(1100, "刘书记")
    other = tg.group("和平里居民群")
    tg.set_status(other, boss, "creator")
    tg.send(boss, other, "/setup resident 和平里")
    await tg.wait_text(other, "已创建社区")
    tg.send(res_user, other, "/help")
    await bot.settle()

    chat = tg.private_chat(res_user)
    long_text = "和平里小区北门外的人行道地砖大面积松动翘起，下雨天一踩就溅水，老人孩子经过很容易摔倒，希望尽快修补"
    since = tg.mark()
    tg.send(res_user, chat, f"/demand {long_text}")
    pick = await tg.wait_text(res_user["id"], "请选择", since=since)
    since = tg.mark()
    tg.click(res_user, pick.message, "和平里")
    await tg.wait_text(res_user["id"], "#1", since=since)

    since = tg.mark()
    tg.send(res_user, chat, photo=True, caption="/demand 楼道里的灭火器过期了")
    pick = await tg.wait_text(res_user["id"], "请选择", since=since)
    since = tg.mark()
    tg.click(res_user, pick.message, "幸福里")
    await tg.wait_text(res_user["id"], "#1", since=since)
    await bot.settle()
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        rows = (await s.scalars(select(Demand).order_by(Demand.id))).all()
    assert [(r.text, r.photo_file_id is not None) for r in rows] == [(long_text, False), ("楼道里的灭火器过期了", True)]
    assert rows[0].community_id != rows[1].community_id
