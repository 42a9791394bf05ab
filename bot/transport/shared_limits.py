"""Telegram's limits kept by every instance together: the window logs live in PostgreSQL.

Telegram counts per bot, not per instance: three instances each keeping 30 a second would send
90. So on PostgreSQL each place in a window is a row of `send_slots`, shared by every instance,
with the model of bot/transport/limits.py unchanged: a call holds a place from its start
(`answered` empty, counting as if at the end of time) and is logged at its answer. A call starts
only when every one of its keys has room, checked and taken in one statement (a function made by
migration 0012, one round trip) that holds `pg_advisory_xact_lock` on each key (in a fixed order),
so two instances never both take the last place. Times are the database's, so instances' clocks
never disagree; an answer is logged when its UPDATE reaches the database, a little after it came
back, which only ever holds a place longer than needed.

A place whose holder died (kill -9, a lost connection) would hold it for ever: a place in flight
longer than `stale` seconds stops counting. Rows older than the longest window are pruned.

Why PostgreSQL and not Redis with `limits`' moving window: that logs a hit when it is taken, with
no notion of a call in flight logged at its answer (what keeps every window exact whatever the
network's latency), and it would make a second service necessary for every fleet; the database
is already shared, and at Telegram's 30 a second the three short statements per send (the
chat's ask, the global ask, the answers logged in batches) cost it little.

Each instance keeps a `LocalLimiter` in front: waiters of this process queue there, first come
first served, and only the head of each key's queue asks the database, so the database sees at
most one waiter per key per instance.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, DOUBLE_PRECISION, INTEGER, TEXT
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.transport.limits import LocalLimiter, Permit, Rate, Rule

log = logging.getLogger("linli.limits")

# The first int of pg_advisory_xact_lock(int, int) the function takes ("LNL" 1, the send windows),
# so its locks never meet another use of advisory locks.
LOCK_NAMESPACE = 0x4C4E4C01
# The many per-chat keys of a broadcast ask side by side through at most this many connections, so
# they never take the whole pool (the global key, one asker per instance, does not wait for them).
MAX_ASKS = 4
POOL_SIZE, POOL_OVERFLOW = MAX_ASKS + 2, 2  # the windows' own engine: per-chat asks, the global asker, answers
SHARED_BY_ALL = "global"
POLL_MAX = 0.25  # seconds between asks while every place of a key is in flight (an answer frees one)
PRUNE_EVERY = 10.0  # seconds between deletions of rows no window needs any more

# One round trip: bot/storage/migrations/versions/0012_scale_out.py (linli_take_send_slots).
_TAKE = text("SELECT slot_key, slot_id, wait FROM linli_take_send_slots("
             "CAST(:keys AS text[]), CAST(:windows AS float8[]), CAST(:counts AS int[]), CAST(:stale AS float8))"
             ).bindparams(bindparam("keys", type_=ARRAY(TEXT)), bindparam("windows", type_=ARRAY(DOUBLE_PRECISION)),
                          bindparam("counts", type_=ARRAY(INTEGER)))
_ANSWERED = text("UPDATE send_slots SET answered = clock_timestamp() "
                 "WHERE id = ANY(CAST(:ids AS bigint[])) AND answered IS NULL").bindparams(
    bindparam("ids", type_=ARRAY(BIGINT)))
_GIVE_BACK = text("DELETE FROM send_slots WHERE id = ANY(CAST(:ids AS bigint[]))").bindparams(
    bindparam("ids", type_=ARRAY(BIGINT)))
_PRUNE = text(
    "DELETE FROM send_slots WHERE (answered IS NULL AND started < clock_timestamp() - make_interval(secs => CAST(:stale AS float8)))"
    " OR answered < clock_timestamp() - make_interval(secs => CAST(:keep AS float8))")


def key_name(name: Hashable) -> str:
    """("chat", -100123) -> "chat:-100123"; "global" -> "global"."""
    if isinstance(name, tuple):
        return ":".join(str(part) for part in name)
    return str(name)


class _Turn:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _SharedPermit:
    def __init__(self, owner: SharedLimiter, local: Permit, ids: list[int]) -> None:
        self._owner = owner
        self._local = local
        self._ids = ids

    def done(self, at: float | None = None) -> None:
        self._local.done(at)
        ids, self._ids = self._ids, []
        if ids:
            self._owner._later(ids, answered=True)

    def cancel(self) -> None:
        self._local.cancel()
        ids, self._ids = self._ids, []
        if ids:
            self._owner._later(ids, answered=False)


class SharedLimiter:
    """The RateLimiter of several instances on one PostgreSQL database."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        stale: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.stale = stale
        self.clock = clock  # the sender passes answer times on this clock to the local limiter
        self.local = LocalLimiter(clock)
        self._turns: dict[tuple[str, ...], _Turn] = {}
        self._asks = asyncio.Semaphore(MAX_ASKS)
        self._full_until: dict[Hashable, float] = {}  # what the database last said, for delay()
        self._answered: list[int] = []
        self._given_back: list[int] = []
        self._flusher: asyncio.Task[None] | None = None
        self._keep = 60.0  # the longest window seen: answered rows older than this are pruned
        self._last_prune = -math.inf
        self._engine: AsyncEngine | None = None
        self.asks = 0  # database round trips of acquire, for tests and benchmarks

    # ---- RateLimiter

    def delay(self, rules: Sequence[Rule]) -> float:
        now = self.clock()
        waits = [self.local.delay(rules)]
        for name, _rate in rules:
            until = self._full_until.get(name)
            if until is not None:
                if until <= now:
                    del self._full_until[name]
                else:
                    waits.append(until - now)
        return max(waits)

    async def acquire(self, rules: Sequence[Rule]) -> Permit:
        local = await self.local.acquire(rules)
        try:
            ids = await self._take(rules)
        except BaseException:
            local.cancel()
            raise
        return _SharedPermit(self, local, ids)

    # ---- the database

    async def _take(self, rules: Sequence[Rule]) -> list[int]:
        if not rules:
            return []
        ordered = sorted(((key_name(n), n, r) for n, r in rules), key=lambda x: x[0])
        names = tuple(k for k, _n, _r in ordered)
        turn = self._turns.get(names)
        if turn is None:
            turn = self._turns[names] = _Turn()
        turn.users += 1
        try:
            async with turn.lock:  # one asker per key set in this process; the others queue behind it
                failures = 0
                while True:
                    try:
                        if names == (SHARED_BY_ALL,):
                            wait, ids = await self._try(ordered)
                        else:
                            async with self._asks:
                                wait, ids = await self._try(ordered)
                    except (DBAPIError, OSError) as exc:  # a dropped connection; the database down
                        failures += 1
                        if failures >= 3:
                            raise
                        log.warning("asking the shared send windows failed: %s", type(exc).__name__)
                        await asyncio.sleep(0.1 * 2**failures)
                        continue
                    if ids is not None:
                        return ids
                    await asyncio.sleep(wait)
        finally:
            turn.users -= 1
            if turn.users == 0 and self._turns.get(names) is turn:
                del self._turns[names]

    def _connect(self) -> AsyncConnection:
        if self._engine is None:
            base = self.sessions.kw["bind"]
            assert isinstance(base, AsyncEngine)
            # A few connections of its own, in autocommit and without a ping at each checkout: one
            # round trip per ask. A connection the database dropped fails its ask, which is retried.
            self._engine = create_async_engine(
                base.url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_pre_ping=False,
                isolation_level="AUTOCOMMIT", hide_parameters=True)
        return self._engine.connect()

    async def _try(self, ordered: list[tuple[str, Hashable, Rate]]) -> tuple[float, list[int] | None]:
        params = {"keys": [k for k, _n, _r in ordered], "windows": [r.seconds for _k, _n, r in ordered],
                  "counts": [r.count for _k, _n, r in ordered], "stale": self.stale}
        self._keep = max(self._keep, *params["windows"])
        self.asks += 1
        # Autocommit: the function's statement is its own transaction, so its locks go at its end.
        async with self._connect() as conn:
            rows = {k: (slot, wait) for k, slot, wait in (await conn.execute(_TAKE, params)).all()}
            prune = self.clock() - self._last_prune >= PRUNE_EVERY
            if prune:
                self._last_prune = self.clock()
                await conn.execute(_PRUNE, {"stale": self.stale, "keep": self._keep})
        wait = 0.0
        for key, name, rate in ordered:
            delay = rows[key][1]
            if delay < 0:  # every place in flight: an answer frees one, soon
                delay = min(POLL_MAX, max(rate.pace / 2, 0.005))
            if delay > 0:
                if len(self._full_until) > 10_000:
                    self._full_until.clear()
                self._full_until[name] = self.clock() + delay
            else:
                self._full_until.pop(name, None)
            wait = max(wait, delay)
        if wait > 0:
            return wait, None
        return 0.0, [int(rows[k][0]) for k, _n, _r in ordered]

    def _later(self, ids: list[int], *, answered: bool) -> None:
        """Log the answer (or give the places back) in the background: Permit.done is not async."""
        (self._answered if answered else self._given_back).extend(ids)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="send-slots")

    async def _flush(self) -> None:
        delay = 0.05
        while self._answered or self._given_back:
            answered, self._answered = self._answered, []
            given_back, self._given_back = self._given_back, []
            try:
                async with self._connect() as conn:
                    if answered:
                        await conn.execute(_ANSWERED, {"ids": answered})
                    if given_back:
                        await conn.execute(_GIVE_BACK, {"ids": given_back})
                delay = 0.05
            except Exception as exc:
                # Not logged: the places stay "in flight" (never too few counted) until stale.
                log.warning("logging %d send answers failed: %s", len(answered) + len(given_back), type(exc).__name__)
                self._answered[:0] = answered
                self._given_back[:0] = given_back
                if delay > self.stale:
                    self._answered.clear()  # they have expired meanwhile anyway
                    self._given_back.clear()
                    return
                await asyncio.sleep(delay)
                delay *= 2

    async def close(self) -> None:
        """Log what is still pending (at stop), then close the connections."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
