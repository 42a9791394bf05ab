"""A consultation in two resident chats: N residents each press 同意 and then 反对 (2 N presses)
within one second, through the real bot on the fake Bot API server with Telegram's limits on (the
server answers 429 past them) and the bot's default send rates. Printed, per framework: ballots
stored (must be N: one per person), the turnout each post shows at the end (must be N), the time
from the first press until every press has its answer (target <= 2 s; the ratio printed is
time / 2 s, <= 1 passes), post edits sent, and the 429 and 400 answers the bot got (target 0, 0).

    python -m bench.ballots [--residents N] [--frameworks aiogram,ptb] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from bench.claims import TELEGRAM, fresh_schema
from bot import heap
from bot.storage.models import Ballot
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram

TOKEN = "42:BENCH"
TARGET = 2.0


@dataclass
class Result:
    framework: str
    ballots: int
    shown: list[bool]
    answer_time: float
    cpu: float
    edits: int
    throttled: int
    bad_requests: int


async def run(framework: str, n: int, database_url: str | None) -> Result:
    async with FakeTelegram(token=TOKEN, enforce_limits=True) as tg:
        sec = tg.user(1, "书记")
        chats = [tg.group("幸福里一期"), tg.group("幸福里二期")]
        for chat in chats:
            tg.set_status(chat, sec, "creator")
        people = [tg.user(10_000 + i, f"居民{i}") for i in range(n)]
        with tempfile.TemporaryDirectory() as tmp:
            extra = {"database_url": database_url} if database_url else {}
            if database_url:
                await fresh_schema(database_url)
            bot = BotUnderTest(tg, framework, Path(tmp), poll_timeout=1, **TELEGRAM, **extra)
            await bot.start()
            heap.settle()  # as main.py does once the bot has started
            assert bot.app is not None
            for chat in chats:
                since = tg.mark()
                tg.send(sec, chat, "/setup resident 幸福里")
                await tg.wait_text(chat, "幸福里", since=since, timeout=30)
            for i, u in enumerate(people):  # residents the bot has seen (no answer to plain text)
                tg.send(u, chats[i % 2], "大家好")
            await bot.settle(timeout=120)
            since = tg.mark()
            tg.send(sec, tg.private_chat(sec), "/consult 东门加装充电桩 | 2030-12-10 18:00")
            posts = []
            for chat in chats:
                rec = await tg.wait_text(chat, "议事协商 #1", since=since, timeout=60)
                assert rec.message is not None
                posts.append(rec.message)
            await bot.settle(timeout=60)
            edits_before = len(tg.sent_by("editMessageText"))
            throttled_before, rejected_before = len(tg.throttled), len(tg.rejections) + len(tg.refusals)
            presses = [(u, posts[i % 2], tg.find_button(posts[i % 2], label))
                       for label in ("同意", "反对") for i, u in enumerate(people)]

            t0 = time.perf_counter()
            cpu0 = time.process_time()
            queries = []
            for i, (u, post, data) in enumerate(presses):  # spread evenly over one second
                queries.append(tg.press(u, post, data))
                delay = t0 + (i + 1) / len(presses) - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            while any(tg.callbacks[q["id"]]["answered"] is None for q in queries):
                if time.perf_counter() - t0 > 300:
                    raise RuntimeError("presses left unanswered")
                await asyncio.sleep(0.005)
            answer_time = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            await bot.app.services.consultations.posts.idle(60)
            await bot.settle(timeout=60)
            async with bot.app.services.ctx.read() as s:
                ballots = int(await s.scalar(select(func.count()).select_from(Ballot)) or 0)
            shown = [f"已参与 {n}" in tg.current(p)["text"] for p in posts]
            await bot.stop()
        return Result(framework, ballots, shown, answer_time, cpu,
                      len(tg.sent_by("editMessageText")) - edits_before, len(tg.throttled) - throttled_before,
                      sum(1 for r in (tg.rejections + tg.refusals)[rejected_before:] if r.status == 400))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=500)
    parser.add_argument("--frameworks", default="aiogram,ptb")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL URL whose public schema may be dropped (default: a fresh SQLite file)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = [await run(fw, args.residents, args.database_url) for fw in args.frameworks.split(",")]
    n = args.residents
    print(f"{2 * n} presses (同意 then 反对) by {n} residents within 1 s in two resident chats, Telegram's limits on")
    print(f"{'framework':<10} {'ballots':>8} {'turnout':>8} {'answered in':>12} {'cpu':>7} {'edits':>6} {'429':>5}"
          f" {'400':>5} {'time/2s':>8}")
    for r in results:
        print(f"{r.framework:<10} {r.ballots:>8} {'ok' if all(r.shown) else 'WRONG':>8} {r.answer_time:>11.2f}s "
              f"{r.cpu:>6.2f}s {r.edits:>6} {r.throttled:>5} {r.bad_requests:>5} {r.answer_time / TARGET:>8.2f}")
    print("The machine's load average now:", " ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    asyncio.run(main())
