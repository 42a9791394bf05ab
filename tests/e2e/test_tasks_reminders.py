"""Task reminders are jobs rows: each claimer is reminded once, also when the bot was stopped across
the reminder's time; after /movetask only the new time's reminders fire; after /canceltask none.

The offsets are a setting (TASK_REMIND_BEFORE), so the "1 h" reminder here comes 20 s before a task
announced less than a minute ahead; the 24 h one is already past at announcement and is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import BotUnderTest
from tests.e2e.test_demand_loop import community
from tests.fakeapi.server import FakeTelegram

OFFSET = 20  # seconds before the task


@pytest.fixture
async def quick_bot(tg: FakeTelegram, framework: str, tmp_path: Path) -> AsyncIterator[BotUnderTest]:
    under_test = BotUnderTest(tg, framework, tmp_path, task_remind_before=f"24h,{OFFSET}s")
    await under_test.start()
    try:
        yield under_test
    finally:
        await under_test.stop()


def at(t0: datetime, seconds: int) -> str:
    """A time the date parser reads to the second (ISO with its offset)."""
    return (t0 + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S+00:00")


def reminders(tg: FakeTelegram, user: dict[str, Any], number: int) -> list[str]:
    return [r.text for r in tg.sent if r.chat_id == user["id"] and r.method == "sendMessage" and r.text
            and "提醒" in r.text and f"#{number}" in r.text]


async def until(t: datetime) -> None:
    delay = (t - datetime.now(UTC)).total_seconds()
    if delay > 0:
        await asyncio.sleep(delay)


async def test_task_reminders_once_across_a_stop_moved_and_cancelled(tg: FakeTelegram,
                                                                     quick_bot: BotUnderTest) -> None:
    w = await community(tg, quick_bot)
    sec, mem = w["sec"], w["mem"]
    people = [tg.user(3000 + i, f"提醒{i}") for i in range(4)]
    for u in people:
        tg.send(u, tg.private_chat(u), "/start")
        tg.send(u, mem, "/help")
    await quick_bot.settle()
    sec_chat = tg.private_chat(sec)
    t0 = datetime.now(UTC)
    plan = [  # number, start (s after t0), claimers
        (1, 45, people[:2]),  # moved to t0+35: reminded at t0+15, never at the old t0+25
        (2, 45, people[2:3]),  # cancelled: never reminded
        (3, 40, people[3:]),  # reminded at t0+20, while the bot is down
    ]
    for n, start, claimers in plan:
        since = tg.mark()
        tg.send(sec, sec_chat, f"/task 任务{n} | {at(t0, start)} | 5 | 1")
        await tg.wait_text(sec["id"], f"已发布志愿任务 #{n}", since=since)
        for u in claimers:
            since = tg.mark()
            tg.send(u, tg.private_chat(u), f"/claim {n}")
            await tg.wait_text(u["id"], "认领成功", since=since)
    since = tg.mark()
    tg.send(sec, sec_chat, f"/movetask 1 {at(t0, 35)}")
    await tg.wait_text(sec["id"], "已改到", since=since)
    tg.send(sec, sec_chat, "/canceltask 2")
    await tg.wait_text(sec["id"], "已取消任务 #2", since=since)
    await quick_bot.settle()
    assert datetime.now(UTC) < t0 + timedelta(seconds=15), "setup took too long for the planned times"

    await quick_bot.stop()  # down across every reminder's time
    await until(t0 + timedelta(seconds=27))
    await quick_bot.start()
    for u in people[:2]:
        await tg.wait_text(u["id"], "提醒", timeout=10)
    await tg.wait_text(people[3]["id"], "提醒", timeout=10)
    await quick_bot.settle()
    await quick_bot.restart()  # a second start repeats nothing
    await asyncio.sleep(1.5)
    await quick_bot.settle()

    for u in people[:2]:
        got = reminders(tg, u, 1)
        assert len(got) == 1, got
    assert reminders(tg, people[3], 3) and len(reminders(tg, people[3], 3)) == 1
    assert reminders(tg, people[2], 2) == []
    # The moved task's reminder names the new time; no reminder names the old one.
    new_local = (t0 + timedelta(seconds=35)).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    assert f"{new_local:%H:%M}" in reminders(tg, people[0], 1)[0]
