"""Follow-up timers survive restarts and fire once: the accept-deadline reminder and the rating
re-ask, with the bot stopped across their due times (short SLA and re-ask delay from settings)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import BotUnderTest
from tests.e2e.test_demand_loop import community
from tests.fakeapi.server import FakeTelegram

SHORT = {"sla_overrides": {"*": {"*": {"accept": "2s", "resolve": "1h"}}}, "rating_reask_after": "2s"}


@pytest.fixture
async def quick_bot(tg: FakeTelegram, framework: str, tmp_path: Path, database_url: str) -> AsyncIterator[BotUnderTest]:
    under_test = BotUnderTest(tg, framework, tmp_path, database_url=database_url, **SHORT)
    await under_test.start()
    try:
        yield under_test
    finally:
        await under_test.stop()


def count(tg: FakeTelegram, chat_id: int, substring: str) -> int:
    return sum(1 for r in tg.sent if r.chat_id == chat_id and r.text and substring in r.text
               and r.method != "answerCallbackQuery")


@pytest.mark.both_databases
async def test_accept_reminder_fires_once_across_restart(tg: FakeTelegram, quick_bot: BotUnderTest) -> None:
    w = await community(tg, quick_bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    tg.send(res_user, res, "/demand 2号楼楼道灯不亮")
    await tg.wait_text(res, "#1")
    tg.send(res_user, res, "/demand 垃圾桶满了没人清")
    await tg.wait_text(res, "#2")
    tg.send(sec, tg.private_chat(sec), "/accept 2")  # accepted in time: no reminder for #2
    await tg.wait_text(sec["id"], "已受理诉求 #2")
    await quick_bot.settle()

    await quick_bot.stop()  # down across the deadline
    await asyncio.sleep(2.5)
    await quick_bot.start()
    rec = await tg.wait_text(sec["id"], "超过受理时限", timeout=10)
    assert "#1" in rec.text
    await quick_bot.settle()
    await quick_bot.restart()  # a second start must not repeat it
    await asyncio.sleep(1.5)
    await quick_bot.settle()
    assert count(tg, sec["id"], "超过受理时限") == 1
    assert not [r for r in tg.sent if r.text and "超过受理时限" in r.text and "#2" in r.text]


@pytest.mark.both_databases
async def test_rating_reask_once_across_restart(tg: FakeTelegram, quick_bot: BotUnderTest) -> None:
    w = await community(tg, quick_bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    tg.send(res_user, res, "/demand 单元门禁坏了")
    await tg.wait_text(res, "#1")
    tg.send(res_user, res, "/demand 健身器材松动")
    await tg.wait_text(res, "#2")
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/resolve 1 已修好门禁")
    first = await tg.wait_text(res_user["id"], "已办结", since=since)
    assert len(first.buttons) == 6
    tg.send(sec, tg.private_chat(sec), "/resolve 2 已加固")
    second = await tg.wait_text(res_user["id"], "#2", since=since)
    tg.click(res_user, second.message, "⭐⭐⭐⭐⭐")  # #2 is rated at once: never asked again
    await quick_bot.settle()

    await quick_bot.stop()
    await asyncio.sleep(2.5)
    await quick_bot.start()
    again = await tg.wait_text(res_user["id"], "还没有收到您的评价", timeout=10)
    assert "#1" in again.text and len(again.buttons) == 6
    await quick_bot.restart()
    await asyncio.sleep(1.5)
    await quick_bot.settle()
    assert count(tg, res_user["id"], "还没有收到您的评价") == 1  # once more, then never again
    # The re-asked buttons work.
    tg.click(res_user, again.message, "⭐⭐⭐")
    await tg.wait_text(res_user["id"], "谢谢")
    await quick_bot.settle()
    assert tg.unanswered_callbacks() == []
