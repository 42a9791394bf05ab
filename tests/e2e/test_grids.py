"""Grids and the street through the fake server, on both frameworks and both databases:
a demand naming 3号楼 goes to 一网格's leader, who escalates it; the secretary escalates it to the
street; the officer finds it in /street queue and returns it with a reason; the secretary resolves
it; the submitter saw each move; /street stats counts it solved at the community."""

from __future__ import annotations

import re

import pytest

from tests.e2e.harness import BotUnderTest
from tests.e2e.test_demand_loop import community, demand_row
from tests.fakeapi.server import FakeTelegram


@pytest.mark.both_databases
async def test_grid_to_street_and_back(tg: FakeTelegram, bot: BotUnderTest) -> None:
    root = tg.user(9001, "管理员", username="root")
    await bot.restart(superadmins=[root["id"]])
    w = await community(tg, bot)
    sec, resident, leader, res, mem = w["sec"], w["res_user"], w["mem_user"], w["res"], w["mem"]
    officer = tg.user(1005, "陈干部", username="chen")
    for u in (root, officer):
        tg.send(u, tg.private_chat(u), "/start")
    await bot.settle()

    # The secretary draws the grid and names its leader.
    since = tg.mark()
    tg.send(sec, mem, "/grid add 一网格 1-6号楼")
    await tg.wait_text(mem, "6号楼", since=since)
    tg.send(sec, mem, "/grid lead 一网格 @zhang")
    await tg.wait_text(mem, "张党员 现为 一网格 的网格员", since=since)

    # The superadmin creates the street; the community joins with its code; an officer is named.
    since = tg.mark()
    tg.send(root, tg.private_chat(root), "/street create 城关街道")
    created = await tg.wait_text(root["id"], "邀请码", since=since)
    m = re.search(r"/street join (\w+)", created.text or "")
    assert m
    code = m.group(1)
    tg.send(sec, mem, "/street join WRONG999")
    await tg.wait_text(mem, "邀请码不正确", since=since)
    tg.send(sec, mem, f"/street join {code}")
    await tg.wait_text(mem, "已加入 城关街道", since=since)
    tg.send(root, tg.private_chat(root), f"/street officer add {code} @chen")
    await tg.wait_text(root["id"], "陈干部 现为 城关街道 的街道工作人员", since=since)

    # 3号楼: the grid's leader is alerted, not the secretary.
    since = tg.mark()
    tg.send(resident, res, "/demand 3号楼电梯坏了，老人下不了楼")
    await tg.wait_text(res, "#1", since=since)
    alert = await tg.wait_text(leader["id"], "一网格 新诉求 #1", since=since)
    assert any("受理" in b for b, _ in alert.buttons)
    await bot.settle()
    assert not any(r.chat_id == sec["id"] and r.text and "新诉求" in r.text for r in tg.sent[since:])

    # The leader escalates it; the submitter sees 已上报社区, the secretary is alerted.
    since = tg.mark()
    tg.send(leader, tg.private_chat(leader), "/escalate 1 电梯需物业协调")
    await tg.wait_text(leader["id"], "已上报社区", since=since)
    await tg.wait_text(resident["id"], "已上报社区", since=since)
    await tg.wait_text(sec["id"], "已由网格上报社区", since=since)

    # The secretary escalates it to the street; the officer is alerted.
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/escalate 1 需要街道协调维保单位")
    await tg.wait_text(resident["id"], "已上报街道", since=since)
    await tg.wait_text(officer["id"], "上报街道的诉求 #1", since=since)
    # Nothing is above the street.
    tg.send(sec, tg.private_chat(sec), "/escalate 1 再上报")
    await tg.wait_text(sec["id"], "已在街道", since=since)

    # The officer's queue has it in full; they return it with a reason.
    since = tg.mark()
    tg.send(officer, tg.private_chat(officer), "/street queue")
    queue = await tg.wait_text(officer["id"], "上报街道的诉求", since=since)
    assert "老人下不了楼" in (queue.text or "") and "李阿姨" in (queue.text or "")
    ref = re.search(r"（(\d+-\d+)）", queue.text or "")
    assert ref
    tg.send(officer, tg.private_chat(officer), f"/return {ref.group(1)} 属社区职责，请社区联系维保")
    await tg.wait_text(officer["id"], "已退回社区", since=since)
    await tg.wait_text(resident["id"], "属社区职责", since=since)

    # The secretary resolves it; the street counts it solved at the community.
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/resolve 1 已联系维保修好")
    await tg.wait_text(resident["id"], "已办结", since=since)
    d = await demand_row(bot, 1)
    assert (d.state, d.level) == ("resolved", "community")

    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/street stats")
    await tg.wait_text(sec["id"], "只有街道工作人员", since=since)
    tg.send(officer, tg.private_chat(officer), "/street stats")
    table = await tg.wait_text(officer["id"], "各社区三率", since=since)
    assert "幸福里" in (table.text or "") and "社区 100%" in (table.text or "")
    chart = await tg.wait_for(lambda r: r.chat_id == officer["id"] and r.method == "sendPhoto", since=since)
    assert chart.photo is not None

    # The timeline shows each move.
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/view 1")
    card = await tg.wait_text(sec["id"], "办理记录", since=since)
    for step in ("已上报社区", "已上报街道", "街道退回社区", "办结"):
        assert step in (card.text or "")

    # Bad input: an unknown building, returning below the grid, no number, nothing changed.
    since = tg.mark()
    tg.send(resident, res, "/mybuilding 99号楼")
    await tg.wait_text(res, "没有哪个网格包括 99号楼", since=since)
    tg.send(resident, res, "/demand 5号楼楼道灯不亮")
    await tg.wait_text(leader["id"], "一网格 新诉求 #2", since=since)
    tg.send(sec, tg.private_chat(sec), "/return 2 退回")
    await tg.wait_text(sec["id"], "已在网格，无法再退回", since=since)
    tg.send(leader, tg.private_chat(leader), "/escalate")
    await tg.wait_text(leader["id"], "请写明编号和上报原因", since=since)
    tg.send(resident, tg.private_chat(resident), "/escalate 2 我要上报")
    await tg.wait_text(resident["id"], "您不能上报诉求 #2", since=since)
    d2 = await demand_row(bot, 2)
    assert (d2.level, d2.state) == ("grid", "new")
    assert tg.unanswered_callbacks() == []
