"""What the scale-out parts cost and keep, on PostgreSQL (TEST_DATABASE_URL or --database).

1. One instance, updates handled per second without the parts several instances need, with the
   per-chat order across instances, and with the send windows in the database too: the same
   backlog of /lang commands on the same fake server as bench/updates_throughput.py (its fast test
   limits, so every reply asks the shared windows). Judged by the ratios to the first (1.0: free).
2. The fleet's sends per second through the shared windows with 1, 2 and 3 instances (senders on
   engines of their own) all sending as fast as they are let, at Telegram's limits (30 in any
   second): judged by the most calls in any 1 s window, which must not exceed 30 however many
   instances there are, and by the rate beside 30/s.

    python -m bench.scale_core [--database URL] [--updates 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bot.app import App
from bot.storage.db import make_engine, make_session_factory, migrate
from bot.transport.port import OutMessage
from bot.transport.sender import Sender, SendLimits
from bot.transport.shared_limits import SharedLimiter
from tests.e2e.harness import e2e_settings
from tests.fakeapi.server import FakeTelegram
from tests.unit.test_limits import most_in_window
from tests.unit.test_sender import FakeApi

from .updates_throughput import TOKEN, backlog, wait_replies


async def fresh(url: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await migrate(engine)
    await engine.dispose()


async def updates_per_second(url: str, n: int, *, order: bool, shared_windows: bool) -> float:
    await fresh(url)
    async with FakeTelegram(token=TOKEN) as tg:
        backlog(tg, n, lambda i: "/lang zh" if i % 2 else "/lang en")
        with tempfile.TemporaryDirectory() as tmp:
            settings = e2e_settings(tg, "aiogram", Path(tmp) / "unused.sqlite3", database_url=url, poll_timeout=1,
                                    send_limiter="database" if shared_windows else "local")
            app = App(settings)
            if not order:
                app.dispatcher.order = None
            t0 = time.perf_counter()
            await app.start()
            await wait_replies(tg, n)
            elapsed = time.perf_counter() - t0
            await app.stop()
    return n / elapsed


async def fleet_sends(url: str, instances: int, seconds: float) -> tuple[float, int]:
    await fresh(url)
    api = FakeApi(delay=0.01)  # 10 ms a call, one Telegram for the whole fleet
    engines = [make_engine(url) for _ in range(instances)]
    senders = [Sender(api, SendLimits(), limiter=SharedLimiter(make_session_factory(e))) for e in engines]
    stop = time.monotonic() + seconds

    async def pump(sender: Sender, base: int) -> None:
        k = 0
        pending: set[asyncio.Task[object]] = set()
        while time.monotonic() < stop:
            while len(pending) < 60:  # a broadcast's worth queued at any time, one message per chat
                k += 1
                pending.add(asyncio.create_task(sender.send(OutMessage(base + k, "通知"))))
            _done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    t0 = time.monotonic()
    await asyncio.gather(*(pump(s, 10_000_000 * (i + 1)) for i, s in enumerate(senders)))
    starts = [c.at for c in api.calls if t0 <= c.at <= stop]
    for s in senders:
        await s.close()
        assert isinstance(s.limiter, SharedLimiter)
        await s.limiter.close()
    for e in engines:
        await e.dispose()
    return len(starts) / seconds, most_in_window(starts, 1.0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--part", choices=["1", "2", "both"], default="both")
    args = parser.parse_args()
    if not args.database or not args.database.startswith("postgresql"):
        raise SystemExit("a PostgreSQL database is needed: --database postgresql+asyncpg://... (it is emptied)")
    logging.basicConfig(level=logging.ERROR)
    if args.part in ("1", "both"):
        print(f"1. one instance on PostgreSQL, {args.updates} updates (/lang), updates per second")
        base = await updates_per_second(args.database, args.updates, order=False, shared_windows=False)
        order = await updates_per_second(args.database, args.updates, order=True, shared_windows=False)
        both = await updates_per_second(args.database, args.updates, order=True, shared_windows=True)
        print(f"   neither (order off, SEND_LIMITER=local)   {base:8.1f}/s")
        print(f"   per-chat order across instances          {order:8.1f}/s   ratio {order / base:.2f}")
        print(f"   order and the send windows in PostgreSQL {both:8.1f}/s   ratio {both / base:.2f}")
    if args.part == "1":
        return
    print(f"2. the fleet's sends through the shared windows, Telegram's 30/s, {args.seconds:g} s each")
    print(f"   {'instances':>9} {'sends/s':>8} {'most in any 1 s':>16} {'÷ 30/s':>7}")
    for k in (1, 2, 3):
        rate, most = await fleet_sends(args.database, k, args.seconds)
        print(f"   {k:>9} {rate:>8.1f} {most:>16} {rate / 30:>7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
