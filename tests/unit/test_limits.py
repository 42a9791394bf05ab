"""Sliding-window limits: never more than `count` in any window of its length, however the calls
are timed and however long their answers take (property tests over random schedules)."""

from __future__ import annotations

import asyncio
import heapq
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.transport.limits import LocalLimiter, Rate, WindowLog


def most_in_window(times: list[float], seconds: float) -> int:
    """The most events in any half-open window (t - seconds, t], the way a server counts them."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while t - times[j] >= seconds:  # as the fake server (and Telegram, we assume) compares
            j += 1
        best = max(best, i - j + 1)
    return best


def simulate(rate: Rate, wants: list[float], latencies: list[float], arrive_at: list[float]) -> tuple[
        list[float], list[float]]:
    """Calls made one after another through one WindowLog (as a chat's sends are): returns the
    start times and the times Telegram would see them arrive (somewhere on the wire)."""
    log = WindowLog(rate)
    answers: list[float] = []  # a heap of answer times of calls in flight
    starts: list[float] = []
    arrivals: list[float] = []
    t = 0.0
    for want, latency, frac in zip(wants, latencies, arrive_at, strict=True):
        t = max(t, want)
        while True:
            while answers and answers[0] <= t:
                log.done(heapq.heappop(answers))
            wait = log.delay(t)
            if wait <= 0:
                break
            nxt = answers[0] if answers else math.inf
            t = min(t + wait, nxt) if wait != math.inf else nxt
            assert t != math.inf, "waiting for an answer that will never come"
        log.take()
        starts.append(t)
        arrivals.append(t + frac * latency)
        heapq.heappush(answers, t + latency)
    return starts, arrivals


rates = st.builds(Rate, st.integers(1, 30), st.floats(0.05, 60.0))


@settings(max_examples=300, deadline=None)
@given(
    rate=rates,
    data=st.lists(st.tuples(st.floats(0, 120), st.floats(0, 3), st.floats(0, 1)), min_size=1, max_size=200),
)
def test_never_more_than_count_in_any_window_whatever_the_latency(
    rate: Rate, data: list[tuple[float, float, float]]
) -> None:
    wants = sorted(w for w, _, _ in data)
    _, arrivals = simulate(rate, wants, [lat for _, lat, _ in data], [f for _, _, f in data])
    assert most_in_window(arrivals, rate.seconds) <= rate.count


@settings(max_examples=100, deadline=None)
@given(rate=rates, wants=st.lists(st.floats(0, 120), min_size=1, max_size=200))
def test_with_instant_answers_it_is_exactly_the_sliding_window(rate: Rate, wants: list[float]) -> None:
    """No slower than needed: each call starts as soon as the window allows, never later."""
    wants.sort()
    starts, _ = simulate(rate, wants, [0.0] * len(wants), [0.0] * len(wants))
    for i, s in enumerate(starts):
        ideal = max(wants[i], starts[i - 1] if i else 0.0,
                    starts[i - rate.count] + rate.seconds if i >= rate.count else 0.0)
        assert s == pytest.approx(ideal, abs=1e-6)


def test_per_second_rates() -> None:
    assert Rate.per_second(30) == Rate(30, 1.0)
    assert Rate.per_second(0.5) == Rate(1, 2.0)
    assert Rate.per_second(2.5) == Rate(3, 1.2)
    assert Rate(20, 60).pace == 3.0
    with pytest.raises(ValueError):
        Rate(0, 1)


def test_a_call_in_flight_holds_its_place_until_answered() -> None:
    log = WindowLog(Rate(2, 1.0))
    log.take()
    log.take()
    assert log.delay(0.0) == math.inf  # both places in flight: only an answer frees one
    log.done(5.0)
    assert log.delay(5.0) == pytest.approx(1.0)  # counted from the answer, not the start
    assert log.delay(6.0) == 0.0


# ---- the asyncio limiter, in real time with small windows


async def test_local_limiter_holds_the_window_and_serves_in_order() -> None:
    limiter = LocalLimiter()
    rule = [("k", Rate(5, 0.2))]
    starts: list[tuple[int, float]] = []

    async def call(i: int) -> None:
        permit = await limiter.acquire(rule)
        starts.append((i, time.monotonic()))
        await asyncio.sleep(0.001)
        permit.done()

    await asyncio.gather(*(call(i) for i in range(23)))
    assert [i for i, _ in starts] == list(range(23))  # first come, first served
    times = [t for _, t in starts]
    assert most_in_window(times, 0.2) <= 5
    assert times[-1] - times[0] >= 0.8  # 23 calls at 5 per 0.2 s need four more windows


async def test_several_keys_each_hold_and_a_cancelled_waiter_gives_its_place_back() -> None:
    limiter = LocalLimiter()
    chat = ("chat", 1)
    glob = ("global", Rate(3, 0.3))
    first = [await limiter.acquire([(chat, Rate(10, 10)), glob]) for _ in range(3)]
    waiter = asyncio.create_task(limiter.acquire([(("chat", 2), Rate(10, 10)), glob]))
    await asyncio.sleep(0.05)
    assert not waiter.done()  # the global window is full (all three in flight)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    for p in first:
        p.done()
    assert limiter.delay([glob]) == pytest.approx(0.3, abs=0.05)
    await asyncio.sleep(0.31)
    p = await asyncio.wait_for(limiter.acquire([(("chat", 2), Rate(10, 10)), glob]), 1)
    p.cancel()
    assert limiter.delay([(("chat", 2), Rate(10, 10))]) == 0.0  # cancelled: the chat's place is back
