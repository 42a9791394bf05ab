"""No instance holds state another needs: two instances (two engines, two sets of services) on
one PostgreSQL. A change made through one — /lang, /forget, a promotion Telegram reported to it —
is what the other acts on at its next update, though each remembers people and admin lists in
process. A third "instance" without the notification listener shows what would go wrong."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.services.base import ServiceContext
from bot.services.people import PeopleService
from bot.services.people_sync import PeopleSync
from bot.services.roles import AdminCache, Roles
from bot.storage.db import make_engine, make_session_factory
from bot.storage.models import User as UserRow
from bot.transport.port import Chat, Event, EventKind, User
from config.settings import load_settings
from tests.conftest import PG_URL, fresh_engine, skip_without_pg
from tests.integration.conftest import StatusBook

XIAO = User(31, "小王", username="xiaowang")
GROUP = Chat(-3100, "supergroup", "幸福里居民群")


@dataclass
class Instance:
    ctx: ServiceContext
    people: PeopleService
    admins: AdminCache
    sync: PeopleSync | None


async def instance(engine: AsyncEngine, book: StatusBook, *, listen: bool = True) -> Instance:
    settings = load_settings(bot_token="1:x")
    admins = AdminCache(book.lookup, ttl=3600, admins=book.admins)  # remembered for an hour
    ctx = ServiceContext(sessions=make_session_factory(engine), roles=Roles([], admins), settings=settings)
    people = PeopleService(ctx)
    sync = None
    if listen:
        sync = PeopleSync(engine, people, admins)
        await sync.start()
        await sync.listening()
    return Instance(ctx, people, admins, sync)


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[Instance, Instance, Instance, StatusBook]]:
    skip_without_pg("postgresql")
    engines = [await fresh_engine("postgresql", tmp_path), make_engine(PG_URL), make_engine(PG_URL)]  # type: ignore[arg-type]
    book = StatusBook()
    a, b = await instance(engines[0], book), await instance(engines[1], book)
    deaf = await instance(engines[2], book, listen=False)
    try:
        yield a, b, deaf, book
    finally:
        for inst in (a, b):
            assert inst.sync is not None
            await inst.sync.stop()
        for e in engines:
            await e.dispose()


def said(user: User, chat: Chat, text: str = "你好") -> Event:
    return Event(EventKind.MESSAGE, chat, user, text=text)


async def until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


async def test_a_language_set_through_one_instance_is_used_by_the_other(
        fleet: tuple[Instance, Instance, Instance, StatusBook]) -> None:
    a, b, deaf, _ = fleet
    private = Chat(XIAO.id, "private")
    for inst in (a, deaf):
        first = await inst.people.observe(said(XIAO, private))
        assert first.user is not None and first.user.language is None
        assert inst.people.cache.user(XIAO.id) is not None  # remembered: the next update reads nothing

    await b.people.set_language(XIAO.id, "en")  # /lang en, handled by instance B

    await until(lambda: a.people.cache.user(XIAO.id) is None, "A drops what it remembered of 小王")
    again = await a.people.observe(said(XIAO, private))
    assert again.user is not None and again.user.language == "en"
    # Without the listener the old row is served until the cache's TTL: the bug this prevents.
    stale = await deaf.people.observe(said(XIAO, private))
    assert stale.user is not None and stale.user.language is None


async def test_a_person_forgotten_through_one_instance_is_recorded_afresh_by_the_other(
        fleet: tuple[Instance, Instance, Instance, StatusBook]) -> None:
    a, b, _deaf, _ = fleet
    private = Chat(XIAO.id, "private")
    await a.people.observe(said(XIAO, private))
    assert a.people.cache.user(XIAO.id) is not None
    await b.people.forget(XIAO.id)  # /forget, handled by instance B
    async with a.ctx.read() as s:
        assert await s.get(UserRow, XIAO.id) is None
    await until(lambda: a.people.cache.user(XIAO.id) is None, "A hears of the erasure")

    # 小王 writes again, to A: A must record the person anew, not skip the write as "known".
    seen = await a.people.observe(said(XIAO, private))
    assert seen.user is not None
    async with a.ctx.read() as s:
        row = await s.scalar(select(UserRow).where(UserRow.id == XIAO.id))
    assert row is not None and row.started  # the row is back, with what a first private message sets


async def test_an_admin_change_telegram_reported_to_one_instance_reaches_the_other(
        fleet: tuple[Instance, Instance, Instance, StatusBook]) -> None:
    a, b, deaf, book = fleet
    await b.people.observe(said(XIAO, GROUP))  # the chat and the person exist
    book.statuses[(GROUP.id, XIAO.id)] = "administrator"
    await b.people.record_presence(GROUP.id, XIAO.id, "administrator")  # chat_member update to B
    await until(lambda: a.admins._cache.get((GROUP.id, XIAO.id), (0, ""))[1] == "administrator",
                "A notes the promotion")
    assert await a.admins.is_admin(GROUP.id, XIAO.id)
    assert await deaf.admins.is_admin(GROUP.id, XIAO.id)  # asked Telegram; remembered for an hour

    # Demoted: Telegram tells instance B only.
    book.statuses[(GROUP.id, XIAO.id)] = "member"
    calls = book.calls
    await b.people.record_presence(GROUP.id, XIAO.id, "member")
    await until(lambda: a.admins._cache.get((GROUP.id, XIAO.id), (0, ""))[1] == "member", "A notes the demotion")
    assert not await a.admins.is_admin(GROUP.id, XIAO.id)
    assert book.calls == calls  # known from the notification, not by asking Telegram again
    assert await deaf.admins.is_admin(GROUP.id, XIAO.id)  # the bug this prevents: still an admin here
