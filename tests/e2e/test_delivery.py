"""Talking to Telegram safely: 429, 5xx and dropped connections still deliver each message once;
a 400 is logged and not retried; queued notifications survive a restart."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.storage.models import Outbox
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram


async def test_faults_still_deliver_once(tg: FakeTelegram, bot: BotUnderTest) -> None:
    users = [tg.user(400 + i, f"用户{i}") for i in range(4)]
    chats = [tg.private_chat(u) for u in users]
    tg.fail_next("sendMessage", status=429, retry_after=1)
    tg.fail_next("sendMessage", status=502)
    tg.fail_next("sendMessage", drop=True)
    for u, c in zip(users, chats, strict=True):
        tg.send(u, c, "/help")
    await bot.settle(timeout=20)
    for c in chats:
        helps = [r for r in tg.sent if r.method == "sendMessage" and r.chat_id == c["id"]]
        assert len(helps) == 1, tg.describe()
    statuses = sorted(str(f.status) for f in tg.failed_calls)
    assert statuses == ["429", "502", "None"]


async def test_bad_request_is_logged_not_retried(
    tg: FakeTelegram, bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    user = tg.user(450, "Zhao")
    chat = tg.private_chat(user)
    tg.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
    with caplog.at_level(logging.WARNING):
        tg.send(user, chat, "/help")
        await bot.settle()
    attempts = [c for c in tg.calls if c[0].lower() == "sendmessage"]
    assert len(attempts) == 1
    assert not [r for r in tg.sent if r.chat_id == user["id"]]
    assert any("chat not found" in r.getMessage() for r in caplog.records)
    # The next message to the same chat goes through normally.
    tg.send(user, chat, "/help")
    await tg.wait_text(user["id"], "/help")


@pytest.mark.both_databases
async def test_outbox_resumes_after_restart_without_duplicates(
    tg: FakeTelegram, bot: BotUnderTest, tmp_path: object
) -> None:
    """Rows left by a crashed instance: pending ones are sent, ones claimed by the dead process
    are sent after the lease, sent ones are never sent again."""
    users = [tg.user(500 + i, f"居民{i}") for i in range(3)]
    for u in users:
        tg.private_chat(u)
    await bot.stop()
    from bot.storage.db import make_engine, make_session_factory

    engine = make_engine(bot.settings.database_url)
    sessions = make_session_factory(engine)
    long_ago = datetime(2026, 1, 1, tzinfo=UTC)
    async with sessions() as s, s.begin():
        s.add(Outbox(chat_id=users[0]["id"], text="待发送 pending"))
        s.add(Outbox(chat_id=users[1]["id"], text="发送中 claimed", status="sending", claimed_at=long_ago))
        s.add(Outbox(chat_id=users[2]["id"], text="已发送 sent", status="sent", sent_at=long_ago, message_id=1))
    await engine.dispose()

    await bot.start()
    await tg.wait_text(users[0]["id"], "pending")
    await tg.wait_text(users[1]["id"], "claimed")
    await bot.settle()
    await bot.restart()
    await bot.settle()
    texts = [r.text for r in tg.sent if r.method == "sendMessage"]
    assert texts.count("待发送 pending") == 1
    assert texts.count("发送中 claimed") == 1
    assert "已发送 sent" not in texts
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        rows = (await s.scalars(select(Outbox))).all()
        assert {r.status for r in rows} == {"sent"}
