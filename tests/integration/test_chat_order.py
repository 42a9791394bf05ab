"""Per-chat order across instances: two bot instances (two App objects, two engines) on one
PostgreSQL, fed the updates of one chat alternately, handle them in update order; an earlier
update whose instance died is handled first by the one that waits for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import App
from bot.storage.models import InboxUpdate, User
from tests.conftest import PG_URL, fresh_engine, skip_without_pg
from tests.integration.test_inbox import message

CHAT = 4242


@pytest.fixture
async def two_apps(tmp_path: Path) -> AsyncIterator[list[App]]:
    skip_without_pg("postgresql")
    from bot.storage.db import make_engine
    from config.settings import load_settings

    engines: list[AsyncEngine] = [await fresh_engine("postgresql", tmp_path), make_engine(PG_URL)]  # type: ignore[arg-type]
    # Not started: the test plays the webhook listener's part (store, then hand over) itself, and
    # the replies stay in the outbox. Telegram is never called.
    settings = load_settings(bot_token="1:x", database_url=PG_URL, telegram_api_base="http://127.0.0.1:9",
                             chat_order_wait_seconds=1.0)
    apps = [App(settings, engine=e) for e in engines]
    try:
        yield apps
    finally:
        for app in apps:
            await app.dispatcher.stop()
            await app.transport.stop()
        for e in engines:
            await e.dispose()


async def deliver(app: App, payload: dict[str, Any]) -> None:
    """What the webhook listener does with a request: store, then hand over."""
    await app.inbox.hand_over(await app.inbox.store([payload]))


async def handled_order(app: App) -> list[int]:
    async with app.services.ctx.read() as s:
        rows = (await s.execute(select(InboxUpdate.update_id, InboxUpdate.handled_at)
                                .where(InboxUpdate.chat_id == CHAT))).all()
    assert all(at is not None for _uid, at in rows), "every update handled"
    return [uid for uid, _at in sorted(rows, key=lambda r: r[1])]


async def test_one_chat_alternating_between_two_instances_is_handled_in_order(two_apps: list[App]) -> None:
    a, b = two_apps
    assert a.dispatcher.order is not None and b.dispatcher.order is not None  # on by itself on PostgreSQL
    ids = list(range(1, 31))
    for uid in ids:  # the load balancer's round robin: odd ones to A, even ones to B
        text = "/lang en" if uid % 2 else "/lang zh"
        await deliver(a if uid % 2 else b, message(uid, user_id=CHAT, chat_id=CHAT, text=text))
    await asyncio.gather(a.dispatcher.idle(30), b.dispatcher.idle(30))

    assert await handled_order(a) == ids
    # Each instance found the other's earlier update pending at least once, and waited for it.
    assert a.dispatcher.order.waited + b.dispatcher.order.waited > 0
    assert a.dispatcher.order.took_over == b.dispatcher.order.took_over == 0
    async with a.services.ctx.read() as s:
        user = await s.get(User, CHAT)
    assert user is not None and user.language == "zh"  # the last update's effect is the one that stays


async def test_an_earlier_update_left_by_a_dead_instance_is_handled_first(two_apps: list[App]) -> None:
    a, b = two_apps
    # Update 1 was stored by an instance that died before handling it (never handed over).
    await a.inbox.store([message(1, user_id=CHAT, chat_id=CHAT, text="/lang en")])
    await deliver(b, message(2, user_id=CHAT, chat_id=CHAT, text="/lang zh"))
    await b.dispatcher.idle(30)

    assert await handled_order(b) == [1, 2]  # B waited CHAT_ORDER_WAIT_SECONDS, then handled 1 first
    assert b.dispatcher.order is not None and b.dispatcher.order.took_over == 1
    async with b.services.ctx.read() as s:
        user = await s.get(User, CHAT)
    assert user is not None and user.language == "zh"
