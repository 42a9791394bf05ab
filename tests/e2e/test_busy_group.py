"""A busy group is not flooded: 60 residents file /demand in one group within two seconds, at
Telegram's own limits against a server that enforces them. No 429; every submitter learns their
number within seconds (privately when they started the bot, else in one folded group message per
interval); the secretary's alerts fold too; numbers 1..60 are given once each."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.storage.models import Demand
from tests.e2e.communities import TELEGRAM_LIMITS
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram

pytestmark = pytest.mark.slow  # broadcasts and bursts at Telegram's limits take their time


async def test_sixty_demands_in_two_seconds(tg: FakeTelegram, framework: str, tmp_path: Path) -> None:
    tg.enforce_limits = True
    bot = BotUnderTest(tg, framework, tmp_path, **TELEGRAM_LIMITS)
    await bot.start()
    try:
        sec = tg.user(4000, "王书记")
        group = tg.group("幸福里居民群")
        tg.set_status(group, sec, "creator")
        tg.send(sec, group, "/setup resident 幸福里")
        await tg.wait_text(group, "已创建社区", timeout=30)
        tg.send(sec, tg.private_chat(sec), "/start")
        people = [tg.user(4100 + i, f"居民{i}") for i in range(60)]
        started = people[::2]  # half of them have a private chat with the bot
        for p in started:
            tg.send(p, tg.private_chat(p), "/start")
        await bot.settle(timeout=60)

        since = tg.mark()
        t0 = time.monotonic()
        asked = {}
        for i, p in enumerate(people):
            asked[p["id"]] = tg.send(p, group, f"/demand 第{i}号问题：楼道灯坏了")["message_id"]
        assert time.monotonic() - t0 < 2.0

        assert bot.app is not None

        async def numbers() -> dict[int, int]:
            async with bot.app.services.ctx.read() as s:  # type: ignore[union-attr]
                return {d.submitter_id: d.number for d in await s.scalars(select(Demand)) if d.submitter_id}

        def told(uid: int, n: int) -> bool:
            for r in tg.sent[since:]:
                if not r.method.startswith("send") or not r.text:
                    continue
                if r.chat_id == uid and f"#{n}" in r.text:
                    return True  # privately
                if r.chat_id == group["id"] and r.reply_to == asked[uid] and f"#{n}" in r.text:
                    return True  # a reply to their own message
                if r.chat_id == group["id"] and r.raw_text and any(
                        f"tg://user?id={uid}" in line and re.search(rf"#{n}\b", line)
                        for line in r.raw_text.split("\n")):
                    return True  # their line in a folded answer
            return False

        deadline = time.monotonic() + 90
        while True:
            got = await numbers()
            missing = [p["id"] for p in people if p["id"] not in got or not told(p["id"], got[p["id"]])]
            if not missing:
                break
            assert time.monotonic() < deadline, f"{len(missing)} submitters not told; {tg.describe()}"
            await asyncio.sleep(0.2)
        everyone_told = time.monotonic() - t0

        got = await numbers()
        assert sorted(got.values()) == list(range(1, 61))
        assert tg.throttled == [], f"{len(tg.throttled)} answers of 429"
        assert everyone_told < 30, f"took {everyone_told:.1f}s"  # seconds, not the minutes 20/min would take
        to_group = [r for r in tg.sent[since:] if r.chat_id == group["id"] and r.method == "sendMessage"]
        assert len(to_group) <= 12, "the group was flooded"
        for p in started:  # who started the bot is answered privately (or before the group got busy)
            assert told(p["id"], got[p["id"]])
        # The secretary's sixty alerts fold too: far fewer messages, every number in them.
        await bot.settle(timeout=60)
        alerts = [r for r in tg.sent[since:] if r.chat_id == sec["id"] and r.method == "sendMessage"]
        assert len(alerts) < 20
        seen = {int(n) for r in alerts for n in re.findall(r"#(\d+)", r.text or "")}
        assert seen == set(range(1, 61))
        assert any("新诉求" in (r.text or "") and "条" in (r.text or "") for r in alerts)
        assert tg.throttled == []
    finally:
        await bot.stop()
