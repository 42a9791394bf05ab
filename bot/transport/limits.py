"""Sliding-window rate limits, exact in every window whatever the network's latency.

Telegram states its limits per window: at most 30 messages in any second in all, 20 in any
minute to one group, and (our reading of "about one a second, short bursts allowed") 5 in any
5 s to one chat. A leaky bucket whose capacity equals its rate lets twice that through in the
first window; a log of the last `count` send times cannot.

Telegram counts a call when it *arrives*, which we never see: it lies between the moment we
start the call and the moment its answer comes back. So a call holds a place in its windows
from its start ("in flight", counting as if it were at the end of time) and, once answered, is
logged at the answer's time. A new call starts only when the call `count` places back was
answered at least one window ago: then its arrival is surely more than a window after that
one's, however long either spent on the wire. The cost is one round trip per window (a few
milliseconds locally, ~2 % at 30/s over a 50 ms link).

`RateLimiter` is the small interface the sender uses; `LocalLimiter` keeps the logs in this
process. Several instances serving one bot (issue 17) need one shared log per key (the database
or Redis); such a limiter implements the same three calls.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` calls in any window of `seconds`."""

    count: int
    seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.seconds <= 0:
            raise ValueError(f"a rate needs count >= 1 and seconds > 0, not {self.count}/{self.seconds}")

    @classmethod
    def per_second(cls, rate: float) -> Rate:
        """`rate` a second as a window: 30 -> 30 in 1 s; 0.5 -> 1 in 2 s; 2.5 -> 3 in 1.2 s."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        count = max(1, math.ceil(rate - 1e-9))
        return cls(count, count / rate)

    @property
    def pace(self) -> float:
        """Seconds per call when the window is kept full: the sustainable spacing."""
        return self.seconds / self.count


Rule = tuple[Hashable, Rate]  # a key (e.g. ("chat", -100123)) and the rate that holds for it


class Permit(Protocol):
    def done(self, at: float | None = None) -> None:
        """The call was answered (or failed): log it now, or at `at` (the limiter's clock) when the
        answer came earlier than this is called."""

    def cancel(self) -> None:
        """The call was never made: give its places back."""


class RateLimiter(Protocol):
    async def acquire(self, rules: Sequence[Rule]) -> Permit:
        """Wait until every rule has room, take a place in each (in the order given), return."""
        ...

    def delay(self, rules: Sequence[Rule]) -> float:
        """Seconds until every rule would have room (0: now; math.inf: only after calls in flight end)."""
        ...


# ---------------------------------------------------------------------- one key's log


@dataclass(eq=False)
class WindowLog:
    """The answer times of the last calls under one rate, and the calls in flight. Pure: the
    caller passes the time, so it can be tested (and reasoned about) without a clock."""

    rate: Rate
    times: deque[float] = field(default_factory=deque)  # answer times, ascending
    inflight: int = 0

    def _trim(self, now: float) -> None:
        # A call answered at t holds its place until t + seconds (inclusive of the boundary).
        # (In the form the far end compares in, `now - t >= seconds`, so float rounding agrees.)
        while self.times and (now - self.times[0] >= self.rate.seconds or len(self.times) > self.rate.count):
            self.times.popleft()

    def delay(self, now: float) -> float:
        """0 when a call may start now; else how long until one may (inf: wait for an answer)."""
        self._trim(now)
        used = len(self.times) + self.inflight
        if used < self.rate.count:
            return 0.0
        if self.inflight >= self.rate.count:
            return math.inf
        # The place that frees first: the oldest logged call that keeps the window full.
        return max(self.times[used - self.rate.count] + self.rate.seconds - now, 1e-9)

    def take(self) -> None:
        self.inflight += 1

    def done(self, now: float) -> None:
        self.inflight -= 1
        if self.times and now < self.times[-1]:
            now = self.times[-1]  # never out of order (a clock that stepped back)
        self.times.append(now)
        self._trim(now)

    def cancel(self) -> None:
        self.inflight -= 1

    def idle(self, now: float) -> bool:
        self._trim(now)
        return self.inflight == 0 and not self.times


# ---------------------------------------------------------------------- in this process


@dataclass(eq=False)
class _Key:
    log: WindowLog
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    timer: asyncio.TimerHandle | None = None
    timer_at: float = math.inf


class _LocalPermit:
    def __init__(self, owner: LocalLimiter, keys: list[_Key]) -> None:
        self._owner = owner
        self._keys = keys
        self._open = True

    def done(self, at: float | None = None) -> None:
        if self._open:
            self._open = False
            now = self._owner.clock() if at is None else min(at, self._owner.clock())
            for key in self._keys:
                key.log.done(now)
                self._owner._pump(key)

    def cancel(self) -> None:
        if self._open:
            self._open = False
            for key in self._keys:
                key.log.cancel()
                self._owner._pump(key)


class LocalLimiter:
    """Sliding-window logs in memory, one per key; waiters of a key are served first come, first
    served (so a broadcast to 1,000 chats wakes one waiter per free place, not all of them)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, idle_after: float = 120.0) -> None:
        self.clock = clock
        self._keys: dict[Hashable, _Key] = {}
        self._idle_after = idle_after
        self._last_prune = clock()

    def __len__(self) -> int:
        return len(self._keys)

    def _key(self, name: Hashable, rate: Rate) -> _Key:
        key = self._keys.get(name)
        if key is None or key.log.rate != rate:
            if key is not None and (key.log.inflight or key.waiters):
                return key  # a changed rate takes effect once the key is idle
            key = self._keys[name] = _Key(WindowLog(rate))
        return key

    def delay(self, rules: Sequence[Rule]) -> float:
        now = self.clock()
        waits = [0.0]
        for name, _rate in rules:
            key = self._keys.get(name)
            if key is not None:
                waits.append(key.log.delay(now))
                if key.waiters:
                    waits.append(max(key.log.rate.pace * len(key.waiters), waits[-1]))
        return max(waits)

    async def acquire(self, rules: Sequence[Rule]) -> Permit:
        self._prune()
        taken: list[_Key] = []
        try:
            # One key after the other, scarcest first (the caller's order): a call waiting on its
            # chat's limit holds no place in the global window meanwhile.
            for name, rate in rules:
                key = self._key(name, rate)
                await self._take(key)
                taken.append(key)
        except BaseException:
            for key in taken:
                key.log.cancel()
                self._pump(key)
            raise
        return _LocalPermit(self, taken)

    async def _take(self, key: _Key) -> None:
        if not key.waiters and key.log.delay(self.clock()) == 0:
            key.log.take()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key.waiters.append(fut)
        self._pump(key)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                key.log.cancel()  # granted in the same instant we were cancelled: give it back
            else:
                try:
                    key.waiters.remove(fut)
                except ValueError:
                    pass
            self._pump(key)
            raise

    def _pump(self, key: _Key) -> None:
        """Grant places to the waiters at the head while there is room; else set a timer."""
        while key.waiters:
            head = key.waiters[0]
            if head.done():  # cancelled
                key.waiters.popleft()
                continue
            wait = key.log.delay(self.clock())
            if wait <= 0:
                key.waiters.popleft()
                key.log.take()
                head.set_result(None)
                continue
            if wait == math.inf:
                return  # an answer (done/cancel) pumps again
            at = self.clock() + wait
            if key.timer is None or at < key.timer_at:
                if key.timer is not None:
                    key.timer.cancel()
                loop = asyncio.get_running_loop()
                key.timer_at = at
                key.timer = loop.call_later(wait, self._fire, key)
            return

    def _fire(self, key: _Key) -> None:
        key.timer = None
        key.timer_at = math.inf
        self._pump(key)

    def _prune(self) -> None:
        now = self.clock()
        if now - self._last_prune < self._idle_after / 4:
            return
        self._last_prune = now
        for name in [n for n, k in self._keys.items() if not k.waiters and k.timer is None and k.log.idle(now)]:
            del self._keys[name]
