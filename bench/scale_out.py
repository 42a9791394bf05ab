"""Scale-out: what more instances behind HAProxy buy, and whether the fleet keeps Telegram's limits.

1. Updates handled per second by 1, 2 and 3 instances (aiogram, webhook mode, deploy/haproxy.cfg,
   one PostgreSQL), for the same backlog of private commands from 200 users (/lang: a database
   read and write and a reply each) pushed by the same fake Telegram over up to 40 connections.
   Timed from the first push until every update is marked handled in the inbox. Send limits are
   raised here, as in bench/updates_throughput.py, so that the bot is measured, not Telegram.
   Printed as a curve, with each figure's ratio to one instance (the figure it is judged by).
2. A /notice to 1,000 bound groups from a fleet of 3 at Telegram's own limits, against a fake
   server that enforces them (429 past 30 in any second). Printed: the most send calls the fake
   server received in any 1 s window (accepted or refused; Telegram allows 30), the mean rate
   from first to last copy, and the number of 429s (target 0).

The machine's load matters (all instances, HAProxy, PostgreSQL and the fake server share its
cores): the load average is printed beside the figures.

    python -m bench.scale_out [--database-url postgresql+asyncpg://...] [--updates N] [--chats N]

The database (TEST_DATABASE_URL unless --database-url) loses its public schema: use a test one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from bench.broadcast import SEC, _database
from bench.updates_throughput import backlog
from bot.storage.models import InboxUpdate
from tests.conftest import reset_pg_schema
from tests.e2e.fleet import HAPROXY, Fleet
from tests.fakeapi.server import FakeTelegram, max_in_window

TOKEN = "42:BENCH"
RAISED = {"SEND_RATE_GLOBAL": "100000", "SEND_RATE_PER_CHAT": "100000", "SEND_BURST_PER_CHAT": "1000",
          "SEND_RATE_PER_GROUP": "100000"}
TELEGRAM = 30  # sends in any second, per bot


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


async def handled(fleet: Fleet) -> int:
    async with fleet.read() as s:
        return int(await s.scalar(select(func.count()).select_from(InboxUpdate)
                                  .where(InboxUpdate.handled_at.is_not(None))) or 0)


async def updates_per_second(url: str, instances: int, n: int) -> float:
    await reset_pg_schema(url)
    async with FakeTelegram(token=TOKEN, push_connections=40) as tg:
        with tempfile.TemporaryDirectory() as tmp:
            fleet = Fleet(tg, url, Path(tmp), frameworks=["aiogram"] * instances, env=RAISED)
            try:
                await fleet.start()
                tg.push_paused = True  # the whole backlog is queued before the first push
                backlog(tg, n, lambda i: "/lang zh" if i % 2 else "/lang en")
                t0 = time.perf_counter()
                tg.push_paused = False
                deadline = t0 + 600
                while await handled(fleet) < n:
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"benchmark timed out\n{fleet.logs()}")
                    await asyncio.sleep(0.1)
                elapsed = time.perf_counter() - t0
            finally:
                await fleet.stop()
    return n / elapsed


async def broadcast(url: str, chats: int, instances: int = 3) -> tuple[int, float, int, float]:
    await reset_pg_schema(url)
    async with FakeTelegram(token=TOKEN, enforce_limits=True, push_connections=40) as tg:
        groups = [tg.group(f"群{i}") for i in range(chats)]
        sec = tg.user(SEC, "书记")
        private = tg.private_chat(sec)
        with tempfile.TemporaryDirectory() as tmp:
            fleet = Fleet(tg, url, Path(tmp), frameworks=["aiogram"] * instances)
            try:
                await fleet.start()
                await _database(url, groups)  # the schema exists now (the fleet migrated it)
                t0 = time.perf_counter()
                tg.send(sec, private, "/notice all 基准测试：明天停水")
                await tg.wait_text(SEC, f"已送达 {chats}/{chats}", timeout=chats / 10 + 300)
                elapsed = time.perf_counter() - t0
            finally:
                await fleet.stop()
    group_ids = {g["id"] for g in groups}
    copies = [r.time for r in tg.sent if r.method == "sendMessage" and r.chat_id in group_ids]
    assert len(copies) == chats, (len(copies), chats)
    received = [t for t, _ in tg.accepted_sends] + [f.time for f in tg.throttled]
    mean = (chats - 1) / (max(copies) - min(copies))
    return max_in_window(received), mean, len(tg.throttled), elapsed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--instances", default="1,2,3")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if not args.database_url or not HAPROXY:
        why = "haproxy is not installed" if not HAPROXY else "set TEST_DATABASE_URL or --database-url (PostgreSQL)"
        print(f"bench.scale_out skipped: {why}")
        return 0
    url = args.database_url
    curve: list[tuple[int, float]] = []
    for n in (int(x) for x in args.instances.split(",")):
        rate = await updates_per_second(url, n, args.updates)
        curve.append((n, rate))
        print(f"  {n} instance(s): {rate:7.1f} updates/s  ({load()})", flush=True)
    base = curve[0][1]
    print(f"updates handled per second, {args.updates} updates (/lang from 200 users) through HAProxy, "
          "PostgreSQL, aiogram")
    print(f"{'instances':>9} {'updates/s':>10} {'ratio to 1':>10}  curve")
    for n, rate in curve:
        print(f"{n:>9} {rate:>10.1f} {rate / base:>10.2f}  {'#' * round(40 * rate / max(r for _, r in curve))}")
    peak, mean, floods, wall = await broadcast(url, args.chats)
    print(f"notice to {args.chats} groups from 3 instances: {wall:.1f} s; sends received by Telegram: at most "
          f"{peak} in any 1 s (Telegram allows {TELEGRAM}: {'within' if peak <= TELEGRAM else 'OVER'}), "
          f"{mean:.1f}/s from first to last copy; 429s: {floods}  ({load()})")
    return 0


async def run() -> int:
    # SIGTERM / SIGINT stop the fleet it started (its processes would outlive a plain exit).
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await main()
    except asyncio.CancelledError:
        print("bench.scale_out interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(run()))
