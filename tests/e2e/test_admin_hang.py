"""No network call inside a transaction: with getChatAdministrators hanging, another chat's command
is answered at once, and the update that needs the admin list is still handled (its lookup's
failure is remembered briefly, so later checks do not wait again)."""

from __future__ import annotations

import asyncio
import time

from tests.e2e import test_demand_loop as loop
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram


async def test_hanging_admin_lookup_stalls_no_other_chat(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await loop.community(tg, bot)
    other = tg.user(4242, "路人")
    tg.send(other, tg.private_chat(other), "/start")
    await bot.settle()

    tg.stall["getChatAdministrators"] = 60.0
    calls = len(tg.calls)
    since = tg.mark()
    tg.send(w["res_user"], w["res"], "/demand 小区东门路灯不亮")  # its alert needs the member chat's admins
    deadline = time.monotonic() + 10
    while not any(m == "getChatAdministrators" for m, _ in tg.calls[calls:]):
        assert time.monotonic() < deadline, "the admin list was never asked for"
        await asyncio.sleep(0.01)
    latencies = []
    for text, expect in (("/lang en", "English"), ("/lang zh", "已切换为中文")):
        t0 = time.monotonic()
        tg.send(other, tg.private_chat(other), text)
        await tg.wait_text(other["id"], expect, timeout=5, since=since)
        latencies.append(time.monotonic() - t0)
    assert max(latencies) < 0.2, latencies
    # The demand itself is filed once the lookup gave up, and the resident answered.
    await tg.wait_text(w["res"], "路灯", timeout=20, since=since)
    tg.stall.clear()
    await bot.settle()

