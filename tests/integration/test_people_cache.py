"""PeopleService.observe remembers the user, chat and community rows between updates (no query for
a known person in a known chat), and never hands out a row older than a committed change made in
this process, whichever way the change was written. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, select, text, update

from bot.storage.models import Chat, ChatMember, Community, User
from bot.transport.port import Event, EventKind
from tests.integration.conftest import ALICE, BOB, MEM, RES, World
from tests.integration.test_communities import bind_both


@contextmanager
def statements(world: World) -> Iterator[list[str]]:
    """The SQL statements sent meanwhile through the services' engine."""
    seen: list[str] = []
    engine = world.ctx.sessions.kw["bind"].sync_engine

    def note(_conn: object, _cur: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def press(world: World, user=BOB, chat=MEM):  # type: ignore[no-untyped-def]
    return await world.people.observe(Event(EventKind.CALLBACK, chat, user, callback_data="x", callback_id="1"))


def reads(seen: list[str]) -> list[str]:
    return [s for s in seen if s.lstrip().upper().startswith("SELECT")]


async def test_a_known_person_in_a_known_chat_costs_no_query(world: World) -> None:
    cid = await bind_both(world)
    await press(world)  # first sight: written and read
    with statements(world) as seen:
        for _ in range(5):
            got = await press(world)
    assert seen == []
    assert got.user is not None and got.user.first_name == "Bob"
    assert got.chat is not None and got.chat.kind == "member" and got.community is not None
    assert got.community.id == cid
    # Each update gets its own copies: changing one changes nothing for the next update.
    got.user.first_name = "changed"
    again = await press(world)
    assert again.user is not None and again.user.first_name == "Bob" and again.user is not got.user


async def test_changes_through_the_services_are_seen_at_once(world: World) -> None:
    await bind_both(world)
    await press(world)
    await world.people.set_language(BOB.id, "en")
    assert (await press(world)).user.language == "en"  # type: ignore[union-attr]
    # A rename in Telegram is written by observe itself, and read back.
    renamed = type(BOB)(BOB.id, "Robert", username="bob")
    assert (await press(world, renamed)).user.first_name == "Robert"  # type: ignore[union-attr]


async def test_orm_core_and_raw_sql_changes_are_all_seen(world: World) -> None:
    cid = await bind_both(world)
    await press(world)
    await press(world, ALICE, RES)
    # An ORM change of a loaded row.
    async with world.ctx.tx() as s:
        chat = await s.get(Chat, MEM.id)
        assert chat is not None
        chat.topic_id = 99
    assert (await press(world)).chat.topic_id == 99  # type: ignore[union-attr]
    # A Core UPDATE of the community (the chat's community is remembered with the chat).
    async with world.ctx.tx() as s:
        await s.execute(update(Community).where(Community.id == cid).values(locale="en"))
    assert (await press(world)).community.locale == "en"  # type: ignore[union-attr]
    # Raw SQL.
    async with world.ctx.tx() as s:
        await s.execute(text("UPDATE users SET language = 'zh' WHERE id = :id"), {"id": BOB.id})
    assert (await press(world)).user.language == "zh"  # type: ignore[union-attr]
    # Unbinding the chat.
    async with world.ctx.tx() as s:
        await s.execute(update(Chat).where(Chat.id == MEM.id).values(community_id=None, kind=None))
    got = await press(world)
    assert got.chat is not None and got.chat.kind is None and got.community is None


async def test_a_change_of_one_person_by_id_keeps_the_others_remembered(world: World) -> None:
    await bind_both(world)
    await press(world)
    await press(world, ALICE, RES)
    # A Core UPDATE of one row by its id drops that row only.
    async with world.ctx.tx() as s:
        await s.execute(update(User.__table__).where(User.__table__.c.id == BOB.id).values(language="en"))
    with statements(world) as seen:
        alice = await press(world, ALICE, RES)
    assert reads(seen) == [] and alice.user is not None and alice.user.first_name == "Alice"
    with statements(world) as seen:
        bob = await press(world)
    assert len(reads(seen)) == 1 and bob.user is not None and bob.user.language == "en"
    # /lang returns the row it wrote and remembers it once committed: the next update reads nothing.
    await world.people.set_language(BOB.id, "zh")
    with statements(world) as seen:
        bob = await press(world)
    assert reads(seen) == [] and bob.user is not None and bob.user.language == "zh"
    # Anything wider than one row by id (here: every user) still drops every person.
    async with world.ctx.tx() as s:
        await s.execute(update(User).where(User.id > 0).values(telegram_language="de"))
    with statements(world) as seen:
        alice = await press(world, ALICE, RES)
    assert len(reads(seen)) == 1 and alice.user is not None and alice.user.telegram_language == "de"


async def test_a_rolled_back_change_keeps_what_is_remembered(world: World) -> None:
    await bind_both(world)
    await press(world)
    try:
        async with world.ctx.tx() as s:
            await s.execute(update(User).where(User.id == BOB.id).values(language="en"))
            raise RuntimeError("abandon")
    except RuntimeError:
        pass
    with statements(world) as seen:
        got = await press(world)
    assert got.user is not None and got.user.language is None
    assert reads(seen) == []


async def test_forget_drops_the_person(world: World) -> None:
    await bind_both(world)
    await press(world)
    await world.people.forget(BOB.id)
    async with world.ctx.read() as s:
        assert await s.get(User, BOB.id) is None
    # Seen again after /forget: a new row, not the remembered one.
    got = await press(world)
    assert got.user is not None
    async with world.ctx.read() as s:
        assert await s.get(User, BOB.id) is not None


async def test_a_read_that_overlaps_a_commit_is_not_remembered(world: World) -> None:
    """A read that began before a change was committed may hold the old row: it is used for
    that update but not remembered."""
    await bind_both(world)
    await press(world)
    cache = world.people.cache
    cache.drop({("users", BOB.id)})  # forgotten, as after a while
    generation = cache.generation
    async with world.ctx.read() as s:
        old = await s.get(User, BOB.id)
    assert old is not None
    async with world.ctx.tx() as s:
        await s.execute(update(User).where(User.id == BOB.id).values(language="en"))
    cache.put_user(generation, old)
    assert cache.user(BOB.id) is None
    assert (await press(world)).user.language == "en"  # type: ignore[union-attr]


async def test_a_burst_of_first_sightings_shares_transactions(world: World) -> None:
    """Many people seen for the first time at once: every row written, each update returning only
    after its own write is committed, in a handful of transactions rather than one each."""
    await bind_both(world)
    await press(world)
    people = [type(BOB)(10_000 + i, f"队员{i}") for i in range(60)]
    before = world.people._writes.transactions
    seen = await asyncio.gather(*(press(world, p) for p in people))
    assert [o.user.first_name for o in seen] == [p.first_name for p in people]  # type: ignore[union-attr]
    assert world.people._writes.transactions - before < 20
    async with world.ctx.read() as s:
        users = set(await s.scalars(select(User.id).where(User.id >= 10_000)))
        members = set(await s.scalars(select(ChatMember.user_id).where(ChatMember.chat_id == MEM.id,
                                                                       ChatMember.user_id >= 10_000)))
    assert users == members == {p.id for p in people}


async def test_one_failing_write_fails_only_its_own_update(world: World) -> None:
    writes = world.people._writes
    done: list[int] = []

    def ok(n: int):  # type: ignore[no-untyped-def]
        async def write(s: object) -> None:
            done.append(n)
        return write

    async def bad(s: object) -> None:
        raise RuntimeError("this one")

    results = await asyncio.gather(writes.run(1, ok(1)), writes.run(2, bad), writes.run(3, ok(3)),
                                   return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], RuntimeError)
    assert 1 in done and 3 in done
