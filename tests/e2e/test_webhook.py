"""Webhook mode on both frameworks: the fake server pushes updates to the bot's listener with the
secret, as Telegram does. Forged requests get 401 and file nothing; a redelivered update (a webhook
retry, a polling restart before the offset moved) is handled once; a kill -9 after the 200 loses
nothing."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.storage.db import make_engine, make_session_factory
from bot.storage.models import Demand, InboxUpdate
from tests.e2e import test_demand_loop as loop
from tests.e2e.harness import BotUnderTest
from tests.e2e.test_inbox_crash import kill9, spawn, until
from tests.fakeapi.server import FakeTelegram

SECRET = "linli-test-secret_0123456789abcdefXYZ"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook_settings() -> dict[str, Any]:
    port = free_port()
    return {"webhook_url": f"http://127.0.0.1:{port}/telegram/hook", "webhook_secret": SECRET,
            "webhook_listen": f"127.0.0.1:{port}"}


@pytest.fixture
async def hooked(tg: FakeTelegram, framework: str, tmp_path: Path) -> AsyncIterator[BotUnderTest]:
    bot = BotUnderTest(tg, framework, tmp_path, **webhook_settings())
    await bot.start()
    await until(lambda: _true(bool(tg.webhook_url)), None, 10, "setWebhook")
    try:
        yield bot
    finally:
        await bot.stop()


async def _true(value: bool) -> bool:
    return value


async def count(bot: BotUnderTest, model: Any) -> int:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


def held_update(tg: FakeTelegram) -> dict[str, Any]:
    """The update just enqueued, taken back so that only the test delivers it."""
    update = tg.updates.pop()
    return update


async def test_demand_loop_in_webhook_mode(tg: FakeTelegram, hooked: BotUnderTest) -> None:
    params = tg.webhook_params
    assert params["secret_token"] == SECRET
    assert set(params["allowed_updates"]) >= {"message", "callback_query", "my_chat_member"}
    assert params["max_connections"] == 40
    await loop.test_whole_loop_three_users(tg, hooked)
    assert all(status == 200 for _, status in tg.pushes)
    assert not any(m == "getUpdates" for m, _ in tg.calls)
    assert hooked.app is not None and hooked.app.listener is not None
    port = hooked.app.listener.port
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz") as resp:
        assert resp.status == 200  # the same listener serves health and metrics
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200 and "linli_updates_handled_total" in await resp.text()
    url = tg.webhook_url
    await hooked.stop()
    assert tg.webhook_url == url  # left in place at stop: other instances may be serving
    assert not any(m == "deleteWebhook" for m, _ in tg.calls)


async def test_forged_and_bad_requests_change_nothing(tg: FakeTelegram, hooked: BotUnderTest) -> None:
    w = await loop.community(tg, hooked)
    before = await count(hooked, InboxUpdate)
    tg.push_paused = True
    tg.send(w["res_user"], w["res"], "/demand 伪造的诉求")
    forged = held_update(tg)
    assert await tg.post_webhook(forged, None) == 401
    assert await tg.post_webhook(forged, "x" * len(SECRET)) == 401
    assert await tg.post_webhook(forged, SECRET[:-1]) == 401
    assert await tg.post_webhook(None, SECRET, raw=b"{not json") == 400
    assert await tg.post_webhook({"hello": "world"}, SECRET) == 400
    assert await tg.post_webhook([1, 2], SECRET) == 400
    assert await tg.post_webhook(None, SECRET, raw=b'{"update_id": 1, "x": "' + b"a" * (2 << 20) + b'"}') == 413
    tg.push_paused = False
    await hooked.settle()
    assert await count(hooked, Demand) == 0
    assert await count(hooked, InboxUpdate) == before
    assert not any("伪造" in (r.text or "") for r in tg.sent)


async def test_webhook_retry_is_handled_once(tg: FakeTelegram, hooked: BotUnderTest) -> None:
    w = await loop.community(tg, hooked)
    tg.push_paused = True
    since = tg.mark()
    tg.send(w["res_user"], w["res"], "/demand 东门路灯不亮")
    update = held_update(tg)
    tg.push_paused = False
    assert await tg.post_webhook(update, SECRET) == 200
    assert await tg.post_webhook(update, SECRET) == 200  # Telegram did not see the first 200
    await hooked.settle()
    assert await count(hooked, Demand) == 1
    answers = [r for r in tg.sent[since:] if r.chat_id == w["res"]["id"] and "路灯" in (r.text or "")]
    assert len(answers) == 1


async def test_polling_redelivery_is_handled_once(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await loop.community(tg, bot)
    since = tg.mark()
    tg.send(w["res_user"], w["res"], "/demand 东门路灯不亮")
    update = dict(tg.updates[-1])
    await tg.wait_text(w["res"], "路灯", since=since)
    await bot.settle()
    # The offset never reached Telegram (a restart in between): the same update comes again.
    await bot.stop()
    tg.updates.append(update)
    tg.max_delivered = update["update_id"] - 1
    await bot.start()
    await bot.settle()
    assert await count(bot, Demand) == 1
    answers = [r for r in tg.sent[since:] if r.chat_id == w["res"]["id"] and "路灯" in (r.text or "")]
    assert len(answers) == 1


@pytest.mark.slow
async def test_kill_9_after_the_200_loses_nothing(tg: FakeTelegram, framework: str, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hook.sqlite3'}"
    hook = webhook_settings()
    env = {"WEBHOOK_URL": hook["webhook_url"], "WEBHOOK_SECRET": SECRET, "WEBHOOK_LISTEN": hook["webhook_listen"]}
    sec, resident = tg.user(9101, "王书记"), tg.user(9102, "李阿姨")
    res = tg.group("幸福里居民群")
    tg.set_status(res, sec, "creator")
    proc = await spawn(tg, framework, url, **env)
    try:
        tg.send(sec, res, "/setup resident 幸福里")
        await tg.wait_text(res, "已创建社区", timeout=60)
        tg.hold_sends = True  # nothing of the demand reaches Telegram before the kill
        since = tg.mark()
        tg.send(resident, res, "/demand 3号楼电梯坏了")
        uid = tg.last_update_id
        await until(lambda: _true((uid, 200) in tg.pushes), proc, 30, "the 200")
        await kill9(proc)
    finally:
        await kill9(proc)
    engine = make_engine(url)
    async with make_session_factory(engine)() as s:
        row = await s.get(InboxUpdate, uid)
    assert row is not None, "answered 200 before the update was stored"
    tg.hold_sends = False
    proc = await spawn(tg, framework, url, **env)
    try:
        await tg.wait_text(res, "电梯", timeout=60, since=since)
        await asyncio.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    async with make_session_factory(engine)() as s:
        demands = int(await s.scalar(select(func.count()).select_from(Demand)) or 0)
    await engine.dispose()
    assert demands == 1
    replies = [r for r in tg.sent[since:] if r.chat_id == res["id"] and "电梯" in (r.text or "")]
    assert len(replies) == 1
