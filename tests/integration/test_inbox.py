"""The inbox and the per-update transaction, on SQLite and PostgreSQL: a redelivered update is
stored once; an update's effects and its mark commit together or not at all; a unit that finds its
update handled already commits nothing; /forget empties the person's stored updates; handled rows
are pruned after the retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot.services.unit import AlreadyHandled, UpdateUnit
from bot.storage.models import InboxUpdate, User
from bot.storage.models.base import utcnow
from bot.transport.inbox import Inbox, InboxItem, is_update, who
from tests.integration.conftest import World


def message(update_id: int, user_id: int = 7, chat_id: int = 7, text: str = "/start") -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 0, "text": text,
        "from": {"id": user_id, "is_bot": False, "first_name": "甲"},
        "chat": {"id": chat_id, "type": "private", "first_name": "甲"},
    }}


@pytest.fixture
def inbox(world: World) -> tuple[Inbox, list[InboxItem]]:
    got: list[InboxItem] = []

    async def sink(item: InboxItem) -> None:
        got.append(item)

    return Inbox(world.ctx.sessions, lambda p: [], sink), got


async def count(world: World, *where: Any) -> int:
    async with world.ctx.read() as s:
        return int(await s.scalar(select(func.count()).select_from(InboxUpdate).where(*where)) or 0)


def test_reading_raw_updates() -> None:
    assert who(message(1, user_id=5, chat_id=-100)) == (-100, 5)
    press = {"update_id": 2, "callback_query": {"id": "q", "from": {"id": 9}, "message": {"chat": {"id": -3}}}}
    assert who(press) == (-3, 9)
    assert who({"update_id": 3, "poll": {}}) == (None, None)
    assert is_update(message(1))
    for bad in ({"update_id": 1}, {"update_id": "1", "message": {}}, {"update_id": True, "x": 1}, [1], None, {}):
        assert not is_update(bad)


async def test_a_redelivered_update_is_stored_once(world: World, inbox: tuple[Inbox, list[InboxItem]]) -> None:
    box, got = inbox
    assert [p["update_id"] for p in await box.store([message(1), message(2)])] == [1, 2]
    assert [p["update_id"] for p in await box.store([message(2), message(3)])] == [3]
    assert await count(world) == 3
    async with world.ctx.read() as s:
        stored = await s.get(InboxUpdate, 1)
    assert stored is not None and stored.user_id == 7 and stored.chat_id == 7 and stored.payload == message(1)


async def test_recovery_hands_over_unhandled_rows_in_order(
    world: World, inbox: tuple[Inbox, list[InboxItem]]
) -> None:
    box, got = inbox
    await box.store([message(5, chat_id=-1), message(3), message(4)])
    async with world.ctx.tx() as s:
        await s.execute(update(InboxUpdate).where(InboxUpdate.update_id == 4).values(handled_at=utcnow()))
    assert await box.recover() == 2
    assert [i.update_id for i in got] == [3, 5]
    assert [i.chat_id for i in got] == [7, -1]
    assert await box.backlog() == 2


async def test_effects_and_mark_commit_together(world: World, inbox: tuple[Inbox, list[InboxItem]]) -> None:
    box, _ = inbox
    await box.store([message(10), message(11)])
    # A unit whose transaction fails leaves neither its effects nor its mark.
    unit = UpdateUnit(world.ctx.sessions, [10], utcnow())
    unit.enter()
    try:
        async with world.ctx.tx() as s:
            s.add(User(id=77, first_name="甲"))
        async with world.ctx.read() as s:  # the update sees its own writes
            assert await s.get(User, 77) is not None
        await unit.rollback()
    finally:
        await unit.close()
    async with world.ctx.read() as s:
        assert await s.get(User, 77) is None
    assert await count(world, InboxUpdate.handled_at.is_(None)) == 2
    # One that commits marks its update handled with its effects; a refused step rolls back alone.
    unit = UpdateUnit(world.ctx.sessions, [10], utcnow())
    unit.enter()
    try:
        async with world.ctx.tx() as s:
            s.add(User(id=78, first_name="乙"))
        with pytest.raises(ValueError):
            async with world.ctx.tx() as s:
                s.add(User(id=79, first_name="丙"))
                await s.flush()
                raise ValueError("refused")
        await unit.commit()
    finally:
        await unit.close()
    async with world.ctx.read() as s:
        assert await s.get(User, 78) is not None
        assert await s.get(User, 79) is None
        row = await s.get(InboxUpdate, 10)
        assert row is not None and row.handled_at is not None and row.attempts == 1
    # Handled already (a redelivery, another instance): nothing of a second unit commits.
    unit = UpdateUnit(world.ctx.sessions, [10], utcnow())
    unit.enter()
    try:
        with pytest.raises(AlreadyHandled):
            async with world.ctx.tx() as s:
                s.add(User(id=80, first_name="丁"))
        await unit.rollback()
    finally:
        await unit.close()
    async with world.ctx.read() as s:
        assert await s.get(User, 80) is None


async def test_forget_and_prune(world: World, inbox: tuple[Inbox, list[InboxItem]]) -> None:
    box, _ = inbox
    await box.store([message(20, user_id=5, chat_id=5), message(21, user_id=6, chat_id=6)])
    async with world.ctx.read() as s:
        assert [u["update_id"] for u in (await box.export_user(s, 5))["updates"]] == [20]
    async with world.ctx.tx() as s:
        await box.erase_user(s, 5)
    async with world.ctx.read() as s:
        gone = await s.get(InboxUpdate, 20)
        kept = await s.get(InboxUpdate, 21)
        assert gone is not None and gone.payload is None and gone.user_id is None
        assert kept is not None and kept.payload is not None
        assert (await box.export_user(s, 5))["updates"] == []
    old = utcnow() - timedelta(days=8)
    async with world.ctx.tx() as s:
        await s.execute(update(InboxUpdate).where(InboxUpdate.update_id == 20).values(handled_at=old))
        await s.execute(update(InboxUpdate).where(InboxUpdate.update_id == 21).values(handled_at=utcnow()))
    assert await box.prune() == 1
    assert await count(world) == 1


async def test_rows_another_instance_left_are_taken_over(
    world: World, inbox: tuple[Inbox, list[InboxItem]]
) -> None:
    box, got = inbox
    await box.store([message(30), message(31)])
    async with world.ctx.tx() as s:  # 30 was stored long ago by an instance that died
        await s.execute(update(InboxUpdate).where(InboxUpdate.update_id == 30)
                        .values(received_at=utcnow() - timedelta(minutes=5)))
    assert await box.adopt_orphans() == 1
    assert [i.update_id for i in got] == [30]
    assert await box.adopt_orphans() == 0  # in hand already: not handed over twice
    box.settled(30)
    assert await box.adopt_orphans() == 1


async def test_a_refused_first_write_leaves_nothing_and_the_update_goes_on(
    world: World, inbox: tuple[Inbox, list[InboxItem]]
) -> None:
    box, _ = inbox
    await box.store([message(40)])
    unit = UpdateUnit(world.ctx.sessions, [40], utcnow())
    unit.enter()
    try:
        with pytest.raises(ValueError):
            async with world.ctx.tx() as s:
                s.add(User(id=90, first_name="甲"))
                await s.flush()
                raise ValueError("refused")
        async with world.ctx.tx() as s:  # the refusal's answer, say
            s.add(User(id=91, first_name="乙"))
        await unit.commit()
    finally:
        await unit.close()
    async with world.ctx.read() as s:
        assert await s.get(User, 90) is None
        assert await s.get(User, 91) is not None
        row = await s.get(InboxUpdate, 40)
        assert row is not None and row.handled_at is not None and row.attempts == 1
