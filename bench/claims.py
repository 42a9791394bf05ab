"""1,000 members press 认领 within one second on a 10-slot task, through the real bot on the fake
Bot API server with Telegram's limits on (the server answers 429 past them) and the bot's default
send rates. Printed, per framework: claimers (must be 10), the time from the first press until
every press has its answer (target <= 2 s; the ratio printed is time / 2 s, <= 1 passes), roster
edits sent, and the 429 and 400 answers the bot got (target 0 and 0).

    python -m bench.claims [--members N] [--slots N] [--frameworks aiogram,ptb] [--cold] [--database-url URL]

By default the members are active ones: each pressed an earlier task's button in this run of the
bot, so the bot has their rows and remembers them (the usual case in a member chat). --cold: the
bot meets every member for the first time at the press (recording a person costs two writes each,
before the claim is reached).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from bot import heap
from bot.storage.models import Task, TaskClaim
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram

TOKEN = "42:BENCH"
TARGET = 2.0  # seconds until every press is answered
TELEGRAM = {"send_rate_global": 30.0, "send_rate_per_chat": 1.0, "send_rate_per_group": 20}  # the defaults


@dataclass
class Result:
    framework: str
    claimers: int
    waiting: int
    answer_time: float
    cpu: float  # CPU seconds this process (bot and fake server) used meanwhile, all threads
    edits: int
    throttled: int
    bad_requests: int
    roster_ok: bool


def by_area(stats: pstats.Stats) -> None:
    """Where the CPU went: own time summed per package."""
    areas: dict[str, float] = {}
    for (path, _line, _fn), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for key in ("tests/fakeapi", "bot/", "aiogram", "telegram", "sqlalchemy", "aiosqlite", "asyncpg", "aiohttp",
                    "pydantic", "json", "asyncio", "sqlite3", "greenlet", "httpx", "httpcore"):
            if key in path:
                areas[key] = areas.get(key, 0.0) + tt
                break
        else:
            areas["other"] = areas.get("other", 0.0) + tt
    for key, tt in sorted(areas.items(), key=lambda kv: -kv[1]):
        print(f"  {key:<14} {tt:6.2f}s")


async def fresh_schema(url: str) -> None:
    from sqlalchemy import text

    from bot.storage.db import make_engine

    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def run(framework: str, n: int, slots: int, cold: bool, profile: bool, database_url: str | None) -> Result:
    async with FakeTelegram(token=TOKEN, enforce_limits=True) as tg:
        sec = tg.user(1, "书记")
        mem = tg.group("党支部")
        tg.set_status(mem, sec, "creator")
        people = [tg.user(10_000 + i, f"队员{i}") for i in range(n)]
        with tempfile.TemporaryDirectory() as tmp:
            extra = {"database_url": database_url} if database_url else {}
            if database_url:
                await fresh_schema(database_url)
            bot = BotUnderTest(tg, framework, Path(tmp), poll_timeout=1, **TELEGRAM, **extra)
            await bot.start()
            heap.settle()  # as main.py does once the bot has started
            assert bot.app is not None
            tg.send(sec, mem, "/setup member 幸福里")
            await tg.wait_text(mem, "党员群", timeout=30)
            if not cold:  # active members: each pressed an earlier task's button (not measured)
                since = tg.mark()
                tg.send(sec, tg.private_chat(sec), "/task 热身 | 2030-12-06 09:00 | 1 | 1")
                warm = await tg.wait_text(mem, "热身", since=since, timeout=60)
                assert warm.message is not None
                warm_data = tg.find_button(warm.message, "认领")
                warm_queries = [tg.press(u, warm.message, warm_data) for u in people]
                while any(tg.callbacks[q["id"]]["answered"] is None for q in warm_queries):
                    await asyncio.sleep(0.05)
                await bot.app.services.tasks.roster.idle(60)
                await bot.settle(timeout=120)
            since = tg.mark()
            tg.send(sec, tg.private_chat(sec), f"/task 社区大扫除 | 2030-12-07 09:00 | {slots} | 10 | 广场")
            post = await tg.wait_text(mem, "社区大扫除", since=since, timeout=60)
            assert post.message is not None
            await bot.settle(timeout=60)
            edits_before = len(tg.sent_by("editMessageText"))
            throttled_before, rejected_before = len(tg.throttled), len(tg.rejections) + len(tg.refusals)
            data = tg.find_button(post.message, "认领")

            prof = cProfile.Profile() if profile else None
            if prof:
                prof.enable()
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            queries = []
            for i, u in enumerate(people):  # spread evenly over one second
                queries.append(tg.press(u, post.message, data))
                due = t0 + (i + 1) / n
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            first_open = 0  # presses before it are answered (scanned once, not at every look)
            while True:
                while first_open < n and tg.callbacks[queries[first_open]["id"]]["answered"] is not None:
                    first_open += 1
                if first_open == n:
                    break
                if time.perf_counter() - t0 > 300:
                    raise RuntimeError("presses left unanswered")
                await asyncio.sleep(0.005)
            answer_time = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            if prof:
                prof.disable()
            await bot.app.services.tasks.roster.idle(60)
            await bot.settle(timeout=60)
            async with bot.app.services.ctx.read() as s:
                task = await s.scalar(select(Task).where(Task.title == "社区大扫除"))
                assert task is not None
                rows = list(await s.scalars(select(TaskClaim.status).where(TaskClaim.task_id == task.id)))
            shown = tg.current(post.message)["text"]
            roster_ok = f"已认领 {slots}/{slots}" in shown and f"等 {n - slots - 10} 人" in shown
            await bot.stop()
            if prof:
                by_area(pstats.Stats(prof))
        assert task is not None
        return Result(
            framework=framework,
            claimers=rows.count("claimed"),
            waiting=rows.count("waiting"),
            answer_time=answer_time,
            cpu=cpu,
            edits=len(tg.sent_by("editMessageText")) - edits_before,
            throttled=len(tg.throttled) - throttled_before,
            bad_requests=sum(1 for r in (tg.rejections + tg.refusals)[rejected_before:] if r.status == 400),
            roster_ok=roster_ok,
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--frameworks", default="aiogram,ptb")
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL URL whose public schema may be dropped (default: a fresh SQLite file)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = [await run(fw, args.members, args.slots, args.cold, args.profile, args.database_url) for fw in args.frameworks.split(",")]
    who = "members met for the first time" if args.cold else "active members"
    print(f"{args.members} presses of 认领 within 1 s on a {args.slots}-slot task ({who}), Telegram's limits on")
    print(f"{'framework':<10} {'claimers':>8} {'waiting':>8} {'answered in':>12} {'cpu':>7} {'edits':>6} {'429':>5}"
          f" {'400':>5} {'roster':>7} {'time/2s':>8}")
    for r in results:
        print(f"{r.framework:<10} {r.claimers:>8} {r.waiting:>8} {r.answer_time:>11.2f}s {r.cpu:>6.2f}s {r.edits:>6} "
              f"{r.throttled:>5} {r.bad_requests:>5} {'ok' if r.roster_ok else 'WRONG':>7} "
              f"{r.answer_time / TARGET:>8.2f}")
    print("cpu: CPU time of this process (bot + fake server) during the presses; on an idle machine the")
    print("answer time approaches it. The machine's load average now:", " ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    asyncio.run(main())
