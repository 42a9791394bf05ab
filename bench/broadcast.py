"""Broadcast at Telegram's limits: how close the sender comes to the limits, and whether it ever
crosses them, against a fake Bot API server that enforces them as sliding windows (30 in any
second in all, 5 in any 5 s to one chat, 20 in any minute to one group) and answers 429 beyond.

1. A notice to 1,000 bound groups: from the secretary's /notice to the summary 已送达 1000/1000.
   Judged by wall time ÷ (1,000 / 30 s): a perfect sender is just under 1.0; target ≤ 1.10.
2. 200 chats, 50 of them groups receiving 25 messages each (the other 150 one each), queued in the
   outbox at once. Printed: wall time ÷ (1,400 / 30 s), as for 1., though no sender can come near
   1.0 here: the group limit sets the floor. The 21st to 25th message to a group cannot go before
   a minute has passed since its 1st, so those 250 messages all go after 60 s, 30 a second: the
   floor is 60 s + 250 / 30 s = 68.3 s, and wall time ÷ floor is the ratio this one is judged by.
Both print the number of 429s (target 0).

    python -m bench.broadcast [--frameworks aiogram,ptb] [--chats 1000]
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

from bot.storage.db import make_engine, make_session_factory, migrate, writing
from bot.storage.models import Chat, Community, Outbox, Secretary, User
from tests.fakeapi.server import FakeTelegram

TOKEN = "42:BENCH"
SEC = 900_001
ROOT = Path(__file__).resolve().parents[1]


async def _database(url: str, groups: list[dict]) -> None:
    """A community with these groups bound (written directly: 1,000 /setup commands would only
    measure the limits on their answers) and its secretary, who has started the bot."""
    engine = make_engine(url)
    await migrate(engine)
    async with writing(make_session_factory(engine)) as s:
        s.add(User(id=SEC, first_name="书记", started=True))
        community = Community(name="基准社区")
        s.add(community)
        await s.flush()
        s.add(Secretary(community_id=community.id, user_id=SEC, source="setup"))
        for g in groups:
            s.add(Chat(id=g["id"], type="supergroup", title=g["title"], community_id=community.id, kind="resident"))
    await engine.dispose()


async def _queue(url: str, rows: list[tuple[int, str]]) -> None:
    engine = make_engine(url)
    async with writing(make_session_factory(engine)) as s:
        s.add_all(Outbox(chat_id=c, text=t) for c, t in rows)
    await engine.dispose()


async def _bot(tg: FakeTelegram, framework: str, url: str) -> asyncio.subprocess.Process:
    """The bot in a process of its own, as in production (the fake Telegram is not on its CPU),
    with Telegram's limits (the defaults)."""
    env = {**os.environ, "BOT_TOKEN": tg.token, "TELEGRAM_API_BASE": tg.base_url, "BOT_FRAMEWORK": framework,
           "DATABASE_URL": url, "POLL_TIMEOUT": "1", "LOG_LEVEL": "ERROR"}
    for name in ("SEND_RATE_GLOBAL", "SEND_RATE_PER_CHAT", "SEND_BURST_PER_CHAT", "SEND_RATE_PER_GROUP"):
        env.pop(name, None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "main.py", cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.DEVNULL)
    deadline = time.perf_counter() + 60
    while not any(m.lower() == "getupdates" for m, _ in tg.calls):  # polling: it is up
        if time.perf_counter() > deadline or proc.returncode is not None:
            raise RuntimeError("the bot did not start")
        await asyncio.sleep(0.05)
    return proc


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def notice_to(framework: str, chats: int) -> tuple[float, float, int]:
    async with FakeTelegram(token=TOKEN, enforce_limits=True) as tg:
        groups = [tg.group(f"群{i}") for i in range(chats)]
        sec = tg.user(SEC, "书记")
        private = tg.private_chat(sec)
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
            await _database(url, groups)
            proc = await _bot(tg, framework, url)
            try:
                t0 = time.perf_counter()
                t0_mono = time.monotonic()
                tg.send(sec, private, "/notice all 基准测试：明天停水")
                await tg.wait_text(SEC, f"已送达 {chats}/{chats}", timeout=chats / 10 + 120)
                elapsed = time.perf_counter() - t0
            finally:
                await _stop(proc)
        delivered = [r.time for r in tg.sent if r.method == "sendMessage" and r.chat_id != SEC]
        assert len(delivered) == chats, (len(delivered), chats)
        first, last = min(delivered), max(delivered)
        print(f"    first copy after {first - t0_mono:.2f} s, last after {last - t0_mono:.2f} s: "
              f"{(chats - 1) / (last - first):.1f}/s between them", flush=True)
        return elapsed, elapsed / (chats / 30.0), len(tg.throttled)


async def busy_groups(framework: str, groups_n: int = 50, each: int = 25, privates_n: int = 150) -> tuple[
        float, float, int]:
    async with FakeTelegram(token=TOKEN, enforce_limits=True) as tg:
        groups = [tg.group(f"群{i}") for i in range(groups_n)]
        people = [tg.private_chat(tg.user(800_000 + i, f"居民{i}")) for i in range(privates_n)]
        total = groups_n * each + privates_n
        rows: list[tuple[int, str]] = []
        for k in range(each):  # interleaved, as a busy afternoon would queue them
            rows += [(g["id"], f"第{k + 1}条") for g in groups]
            if k == 0:
                rows += [(p["id"], "一条") for p in people]
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
            await _database(url, [])
            proc = await _bot(tg, framework, url)
            try:
                t0 = time.perf_counter()
                await _queue(url, rows)  # the outbox finds them on its next poll (within a second)
                deadline = time.perf_counter() + 600
                while sum(1 for r in tg.sent if r.method == "sendMessage") < total:
                    if time.perf_counter() > deadline:
                        raise RuntimeError("benchmark timed out")
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - t0
            finally:
                await _stop(proc)
        # The floor: the last 5 of each group's 25 cannot go before a minute after its first, so
        # those 250 all go after 60 s, at most 30 a second.
        tail = groups_n * max(0, each - 20)
        ideal = max(total / 30.0, 60.0 + tail / 30.0)
        return elapsed, elapsed / ideal, len(tg.throttled)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frameworks", default="aiogram,ptb")
    parser.add_argument("--chats", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for framework in args.frameworks.split(","):
        wall, ratio, floods = await notice_to(framework, args.chats)
        print(f"{framework:8} notice to {args.chats} groups: {wall:6.1f} s  "
              f"wall / ({args.chats} / 30 s) = {ratio:.3f}  (target <= 1.10)  429s: {floods}")
        wall, ratio, floods = await busy_groups(framework)
        print(f"{framework:8} 200 chats, 50 groups x 25: {wall:6.1f} s  wall / (1400 / 30 s) = {wall / (1400 / 30):.3f}"
              f"  wall / floor (60 s + 250 / 30 s) = {ratio:.3f}  (target <= 1.10)  429s: {floods}")


if __name__ == "__main__":
    asyncio.run(main())
