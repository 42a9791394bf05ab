"""The send windows shared through PostgreSQL: two limiters on two engines (two instances of one
bot) together keep every window, and a place left by a dead holder frees after `stale`."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import make_engine, make_session_factory
from bot.storage.models import SendSlot
from bot.transport.limits import Rate
from bot.transport.shared_limits import _TAKE, SharedLimiter
from tests.conftest import PG_URL, fresh_engine, skip_without_pg
from tests.unit.test_limits import most_in_window


@pytest.fixture
async def two_engines(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    skip_without_pg("postgresql")
    first = await fresh_engine("postgresql", tmp_path)
    second = make_engine(PG_URL)  # type: ignore[arg-type]
    try:
        yield first, second
    finally:
        await first.dispose()
        await second.dispose()


async def ask(engine: AsyncEngine, key: str, rate: Rate, answered_ago: list[float], inflight: int = 0) -> float:
    """The function's answer for one key holding these places: 0 (a place taken), the wait in
    seconds, or -1 (every place in flight)."""
    async with engine.begin() as conn:
        for ago in answered_ago:
            await conn.execute(text("INSERT INTO send_slots (key, started, answered) VALUES (:k, "
                                    "clock_timestamp() - make_interval(secs => :a + 0.01), "
                                    "clock_timestamp() - make_interval(secs => :a))"), {"k": key, "a": ago})
        for _ in range(inflight):
            await conn.execute(text("INSERT INTO send_slots (key, started) VALUES (:k, clock_timestamp())"),
                               {"k": key})
    async with engine.connect() as conn:
        rows = (await conn.execute(_TAKE, {"keys": [key], "windows": [rate.seconds], "counts": [rate.count],
                                           "stale": 30.0})).all()
        await conn.commit()
    [(k, slot, wait)] = rows
    assert k == key and (slot is not None) == (wait == 0)
    return float(wait)


async def test_the_window_rules_in_the_database(two_engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    engine = two_engines[0]
    # Room while the window is not full (answers and calls in flight both count).
    assert await ask(engine, "a", Rate(3, 1.0), [0.5, 0.2]) == 0
    assert await ask(engine, "b", Rate(3, 1.0), [0.5], inflight=1) == 0
    # Full: it frees when the oldest answer that keeps it full is a window old.
    assert await ask(engine, "c", Rate(3, 1.0), [0.7, 0.5, 0.2]) == pytest.approx(0.3, abs=0.05)
    # Two answered, one in flight (counting as the newest): the oldest answer frees first.
    assert await ask(engine, "d", Rate(3, 1.0), [0.5, 0.2], inflight=1) == pytest.approx(0.5, abs=0.05)
    # More answers logged than the count: the count-th newest decides.
    assert await ask(engine, "e", Rate(2, 1.0), [0.9, 0.8, 0.1]) == pytest.approx(0.2, abs=0.05)
    # Every place in flight: only an answer frees one.
    assert await ask(engine, "f", Rate(2, 1.0), [], inflight=2) == -1
    # An answer a window old no longer counts.
    assert await ask(engine, "g", Rate(1, 1.0), [1.0]) == 0


GLOBAL = ("global", Rate(6, 0.4))
CHAT_RATE = Rate(3, 0.5)


async def test_two_instances_together_keep_every_window(two_engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    limiters = [SharedLimiter(make_session_factory(e)) for e in two_engines]
    arrivals: dict[object, list[float]] = {"global": [], 1: [], 2: []}
    rng = random.Random(17)

    async def call(limiter: SharedLimiter, chat: int) -> None:
        permit = await limiter.acquire([(("chat", chat), CHAT_RATE), GLOBAL])
        start = time.monotonic()
        latency = rng.uniform(0.0, 0.03)
        arrive = start + rng.random() * latency  # Telegram counts it somewhere on the wire
        await asyncio.sleep(latency)
        permit.done()
        arrivals["global"].append(arrive)
        arrivals[chat].append(arrive)

    # Each "instance" has 12 callers at once for each of two chats: 48 calls.
    calls = [call(lim, chat) for lim in limiters for chat in (1, 2) for _ in range(12)]
    began = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*calls), 60)
    took = time.monotonic() - began
    for lim in limiters:
        await lim.close()

    assert len(arrivals["global"]) == 48
    assert most_in_window(arrivals["global"], GLOBAL[1].seconds) <= GLOBAL[1].count
    for chat in (1, 2):
        assert most_in_window(arrivals[chat], CHAT_RATE.seconds) <= CHAT_RATE.count
    # Alone, each instance would have let its own 24 through at 6 per 0.4 s; together they shared
    # one window: 48 calls need at least 7 full windows after the first burst.
    assert took >= (48 // GLOBAL[1].count - 1) * GLOBAL[1].seconds
    # Both instances got places (not one starving the other).
    assert all(lim.asks > 0 for lim in limiters)


async def test_each_instance_alone_would_exceed_the_fleet_rate(two_engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    """The control: what the shared windows prevent. Two in-process limiters let twice through."""
    from bot.transport.limits import LocalLimiter

    locals_ = [LocalLimiter(), LocalLimiter()]
    starts: list[float] = []

    async def call(limiter: LocalLimiter) -> None:
        permit = await limiter.acquire([GLOBAL])
        starts.append(time.monotonic())
        permit.done()

    await asyncio.gather(*(call(lim) for lim in locals_ for _ in range(GLOBAL[1].count)))
    assert most_in_window(starts, GLOBAL[1].seconds) == 2 * GLOBAL[1].count


async def test_a_place_left_by_a_dead_instance_expires(two_engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    dead_engine, live_engine = two_engines
    rule = [(("chat", 7), Rate(1, 0.2))]
    dead = SharedLimiter(make_session_factory(dead_engine), stale=1.0)
    await dead.acquire(rule)  # its holder dies before the answer: never done, never cancelled
    await dead.close()
    await dead_engine.dispose()
    died = time.monotonic()

    live = SharedLimiter(make_session_factory(live_engine), stale=1.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(live.acquire(rule), 0.5)  # still in flight as far as anyone knows
    permit = await asyncio.wait_for(live.acquire(rule), 5)
    assert time.monotonic() - died >= 0.9  # only once the place went stale
    permit.done()
    await live.close()


async def test_answers_are_logged_and_old_rows_pruned(two_engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    engine = two_engines[0]
    sessions = make_session_factory(engine)
    limiter = SharedLimiter(sessions, stale=5.0)
    permit = await limiter.acquire([(("chat", 3), Rate(5, 0.1))])
    permit.done()
    await limiter.close()
    async with sessions() as s:
        rows = (await s.execute(select(SendSlot.key, SendSlot.answered))).all()
    assert [(k, a is not None) for k, a in rows] == [("chat:3", True)]
    cancelled = await limiter.acquire([(("chat", 4), Rate(5, 0.1))])
    cancelled.cancel()  # never called: its place is given back, not logged
    await limiter.close()
    async with sessions() as s:
        assert await s.scalar(select(func.count()).where(SendSlot.key == "chat:4")) == 0
    # Pruned once no window needs them: rows answered longer ago than the longest window seen.
    limiter._keep = 0.05
    limiter._last_prune = -1e9
    await asyncio.sleep(0.1)
    await limiter.acquire([(("chat", 5), Rate(5, 0.05))])
    async with sessions() as s:
        assert await s.scalar(select(func.count()).where(SendSlot.key == "chat:3")) == 0


async def test_two_senders_on_shared_windows_keep_the_bots_limits(
        two_engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    """The sender as the app wires it on PostgreSQL: two instances' senders, one bot's limits."""
    from bot.transport.port import OutMessage
    from bot.transport.sender import Sender, SendLimits
    from tests.unit.test_sender import FakeApi

    api = FakeApi(delay=0.005)  # one Telegram for both instances
    limits = SendLimits(global_per_second=20, per_chat_per_second=6, per_chat_burst=3)
    senders = [Sender(api, limits, limiter=SharedLimiter(make_session_factory(e))) for e in two_engines]
    busy_chat = 900
    messages = [(s, OutMessage(1000 + i, f"公告 {i}")) for s in senders for i in range(20)]
    messages += [(s, OutMessage(busy_chat, f"回复 {i}")) for s in senders for i in range(6)]
    results = await asyncio.wait_for(asyncio.gather(*(s.send(m) for s, m in messages)), 60)
    assert all(r.ok for r in results)
    for s in senders:
        await s.close()
        assert isinstance(s.limiter, SharedLimiter)
        await s.limiter.close()

    starts = [c.at for c in api.calls]
    assert len(starts) == 52
    assert most_in_window(starts, 1.0) <= 20  # not 40: the instances share one global window
    busy = [c.at for c in api.calls if c.chat_id == busy_chat]
    assert most_in_window(busy, 0.5) <= 3
