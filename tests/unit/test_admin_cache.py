"""AdminCache against fake lookups: TTL, timeouts and failures, updates from events, fallbacks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from bot.services import roles
from bot.services.roles import AdminCache

CHAT = -100
OTHER = -200


class FakeTime:
    """Stands in for the `time` module inside roles.py only (the event loop keeps the real one)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(roles, "time", fake)
    return fake


@dataclass
class Telegram:
    """What getChatMember / getChatAdministrators answer; can hang or fail."""

    statuses: dict[tuple[int, int], str] = field(default_factory=dict)
    status_calls: list[tuple[int, int]] = field(default_factory=list)
    admin_calls: list[int] = field(default_factory=list)
    hang: bool = False
    error: Exception | None = None

    async def _trouble(self) -> None:
        if self.hang:
            await asyncio.sleep(10)
        if self.error is not None:
            raise self.error

    async def lookup(self, chat_id: int, user_id: int) -> str:
        self.status_calls.append((chat_id, user_id))
        await self._trouble()
        return self.statuses.get((chat_id, user_id), "left")

    async def admins(self, chat_id: int) -> Iterable[int]:
        self.admin_calls.append(chat_id)
        await self._trouble()
        return [
            u for (c, u), s in self.statuses.items() if c == chat_id and s in ("creator", "administrator")
        ]


def telegram() -> Telegram:
    return Telegram(
        {(CHAT, 1): "creator", (CHAT, 2): "administrator", (CHAT, 3): "member", (OTHER, 3): "administrator"}
    )


# ---- TTL


async def test_admin_ids_is_one_lookup_per_chat_within_the_ttl(clock: FakeTime) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60, admins=tg.admins)
    assert await cache.admin_ids(CHAT) == {1, 2}
    assert await cache.admin_ids(CHAT) == {1, 2}
    assert await cache.admin_ids(OTHER) == {3}
    clock.now += 59
    assert await cache.admin_ids(CHAT) == {1, 2}
    assert tg.admin_calls == [CHAT, OTHER]

    tg.statuses[(CHAT, 2)] = "member"  # demoted meanwhile; seen once the entry is stale
    clock.now += 1
    assert await cache.admin_ids(CHAT) == {1}
    assert tg.admin_calls == [CHAT, OTHER, CHAT]


async def test_is_admin_answers_from_the_cached_admin_list(clock: FakeTime) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60, admins=tg.admins)
    assert await cache.is_admin(CHAT, 1)
    assert await cache.is_admin(CHAT, 2)
    assert not await cache.is_admin(CHAT, 3)
    assert not await cache.is_admin(CHAT, 42)
    assert await cache.is_admin(OTHER, 3)
    assert tg.admin_calls == [CHAT, OTHER]  # one call per chat answers for everyone
    assert tg.status_calls == []  # no getChatMember needed


async def test_ttl_zero_caches_nothing(clock: FakeTime) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=0, admins=tg.admins)
    await cache.admin_ids(CHAT)
    await cache.admin_ids(CHAT)
    await cache.status(CHAT, 1)
    await cache.status(CHAT, 1)
    assert len(tg.admin_calls) == 2 and len(tg.status_calls) == 2


async def test_status_is_cached_per_user_within_the_ttl(clock: FakeTime) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60, admins=tg.admins)
    assert await cache.status(CHAT, 3) == "member"
    assert await cache.status(CHAT, 3) == "member"
    assert await cache.status(CHAT, 4) == "left"
    assert tg.status_calls == [(CHAT, 3), (CHAT, 4)]
    clock.now += 60
    tg.statuses[(CHAT, 3)] = "administrator"
    assert await cache.status(CHAT, 3) == "administrator"
    assert len(tg.status_calls) == 3


# ---- slow or failing Telegram


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AdminCache, "LOOKUP_TIMEOUT", 0.05)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "linli.roles" and r.levelno == logging.WARNING
    ]


@pytest.mark.usefixtures("short_timeout")
async def test_a_hanging_admins_lookup_gives_the_stale_list(
    clock: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60, admins=tg.admins)
    assert await cache.admin_ids(CHAT) == {1, 2}
    clock.now += 61
    tg.hang = True
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await cache.admin_ids(CHAT) == {1, 2}  # stale beats nothing
    assert loop.time() - started < 1.0
    assert await cache.is_admin(CHAT, 2)
    assert any("getChatAdministrators" in m and str(CHAT) in m for m in warnings(caplog))
    tg.hang = False  # Telegram is back, but the failure is remembered briefly: no second wait
    tg.statuses[(CHAT, 2)] = "member"
    assert await cache.admin_ids(CHAT) == {1, 2}
    clock.now += AdminCache.FAILURE_TTL  # then the stale entry is refreshed
    assert await cache.admin_ids(CHAT) == {1}


@pytest.mark.usefixtures("short_timeout")
async def test_a_hanging_admins_lookup_with_nothing_cached_gives_empty(
    clock: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    tg = telegram()
    tg.hang = True
    cache = AdminCache(tg.lookup, ttl=60, admins=tg.admins)
    assert await cache.admin_ids(CHAT) == frozenset()
    assert not await cache.is_admin(CHAT, 1)  # unknown is not an admin
    assert warnings(caplog)
    tg.hang = False  # a failure is cached briefly, then asked again
    assert await cache.admin_ids(CHAT) == frozenset()
    clock.now += AdminCache.FAILURE_TTL
    assert await cache.admin_ids(CHAT) == {1, 2}


@pytest.mark.usefixtures("short_timeout")
async def test_a_hanging_status_lookup_gives_stale_else_unknown(
    clock: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60)
    assert await cache.status(CHAT, 2) == "administrator"
    clock.now += 61
    tg.hang = True
    assert await cache.status(CHAT, 2) == "administrator"
    assert await cache.status(CHAT, 3) == "unknown"
    assert not await cache.is_admin(CHAT, 3)
    msgs = warnings(caplog)
    assert any("getChatMember" in m and f"{CHAT}/3" in m for m in msgs)
    assert any("TimeoutError" in m for m in msgs)


async def test_a_failing_lookup_gives_stale_else_unknown(
    clock: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60, admins=tg.admins)
    assert await cache.admin_ids(CHAT) == {1, 2}
    assert await cache.status(OTHER, 3) == "administrator"
    clock.now += 61
    tg.error = ConnectionError("network down")
    assert await cache.admin_ids(CHAT) == {1, 2}
    assert await cache.admin_ids(OTHER) == frozenset()
    assert await cache.status(OTHER, 3) == "administrator"
    assert await cache.status(CHAT, 3) == "unknown"
    msgs = warnings(caplog)
    assert len(msgs) == 4 and all("network down" in m for m in msgs)


# ---- what updates report


async def test_note_updates_the_user_and_the_cached_admin_list(clock: FakeTime) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60, admins=tg.admins)
    assert await cache.admin_ids(CHAT) == {1, 2}

    cache.note(CHAT, 3, "administrator")  # promoted
    assert await cache.status(CHAT, 3) == "administrator"
    assert await cache.admin_ids(CHAT) == {1, 2, 3}
    assert await cache.is_admin(CHAT, 3)

    cache.note(CHAT, 2, "left")  # an admin left
    assert await cache.status(CHAT, 2) == "left"
    assert await cache.admin_ids(CHAT) == {1, 3}
    assert not await cache.is_admin(CHAT, 2)

    cache.note(CHAT, 1, "member")  # demoted, still present
    assert await cache.admin_ids(CHAT) == {3}
    assert tg.admin_calls == [CHAT] and tg.status_calls == []  # all from the cache


async def test_note_without_a_cached_list_answers_for_that_user(clock: FakeTime) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60, admins=tg.admins)
    cache.note(CHAT, 7, "administrator")
    assert await cache.is_admin(CHAT, 7)  # the fresh per-user answer wins
    assert tg.admin_calls == [] and tg.status_calls == []
    cache.note(CHAT, 2, "kicked")
    assert not await cache.is_admin(CHAT, 2)
    assert tg.admin_calls == []
    # Other users still need the list, which does not know about the noted user 7.
    assert await cache.is_admin(CHAT, 1)
    assert tg.admin_calls == [CHAT]


async def test_forget_a_chat_drops_its_list_and_every_user_in_it(clock: FakeTime) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60, admins=tg.admins)
    await cache.admin_ids(CHAT)
    await cache.admin_ids(OTHER)
    await cache.status(CHAT, 3)
    await cache.status(OTHER, 3)
    cache.forget(CHAT)
    await cache.admin_ids(CHAT)
    await cache.status(CHAT, 3)
    assert tg.admin_calls == [CHAT, OTHER, CHAT]
    assert tg.status_calls == [(CHAT, 3), (OTHER, 3), (CHAT, 3)]
    await cache.admin_ids(OTHER)  # other chats keep theirs
    await cache.status(OTHER, 3)
    assert len(tg.admin_calls) == 3 and len(tg.status_calls) == 3


async def test_forget_one_user_drops_that_user_and_the_chat_list(clock: FakeTime) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60, admins=tg.admins)
    await cache.admin_ids(CHAT)
    await cache.status(CHAT, 2)
    await cache.status(CHAT, 3)
    cache.note(CHAT, 3, "administrator")
    cache.forget(CHAT, 3)
    assert await cache.status(CHAT, 3) == "member"  # asked again: the note is gone
    await cache.status(CHAT, 2)  # others in the chat keep theirs
    assert tg.status_calls == [(CHAT, 2), (CHAT, 3), (CHAT, 3)]
    assert await cache.admin_ids(CHAT) == {1, 2}  # the list is fetched again
    assert tg.admin_calls == [CHAT, CHAT]


# ---- without getChatAdministrators


async def test_without_an_admins_lookup_is_admin_asks_per_user(clock: FakeTime) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60)
    assert await cache.is_admin(CHAT, 1)  # creator
    assert await cache.is_admin(CHAT, 2)
    assert not await cache.is_admin(CHAT, 3)
    assert not await cache.is_admin(CHAT, 99)
    assert await cache.is_admin(CHAT, 1)
    assert tg.status_calls == [(CHAT, 1), (CHAT, 2), (CHAT, 3), (CHAT, 99)]
    assert await cache.admin_ids(CHAT) == frozenset()  # no list to give, and no call made
    assert tg.admin_calls == []


async def test_a_fresh_per_user_answer_beats_the_admin_list(clock: FakeTime) -> None:
    tg = telegram()
    cache = AdminCache(tg.lookup, ttl=60, admins=tg.admins)
    assert await cache.status(CHAT, 3) == "member"
    tg.statuses[(CHAT, 3)] = "administrator"
    assert not await cache.is_admin(CHAT, 3)  # the cached answer, within the TTL
    assert tg.admin_calls == []
    clock.now += 60
    assert await cache.is_admin(CHAT, 3)  # stale: the admin list decides
    assert tg.admin_calls == [CHAT]


async def test_callers_at_once_share_one_lookup() -> None:
    calls = 0
    release = asyncio.Event()

    async def admins(chat_id: int) -> list[int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return [7]

    async def status(chat_id: int, user_id: int) -> str:
        return "member"

    cache = AdminCache(status, ttl=60, admins=admins)
    waiting = [asyncio.create_task(cache.is_admin(-1, u)) for u in (7, 8, 9)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*waiting) == [True, False, False]
    assert calls == 1
