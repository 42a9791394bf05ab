"""The 承诺墙 under a burst of changes: a community of N members (default 200) with two pledges each,
the wall posted in R resident chats (default 3), then C pledge changes (default 100 progress
notes, all within about a second), through the real bot on the fake Bot API server with
Telegram's limits on (20 messages a minute to one group). Printed, per framework: edits sent to
the resident chats, the longest wall text, how long until every wall shows the last change, and
the 429 / 400 answers. Judged by edits per change per chat (target <= 0.2: a burst coalesces
into a few edits; the ratio printed is that / 0.2, <= 1 passes) and the wall staying < 4,096.

    python -m bench.wall [--members N] [--changes N] [--chats N] [--frameworks aiogram,ptb]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from bot import heap
from bot.storage.models import Chat, ChatMember, MemberProfile, Pledge, User
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram

TOKEN = "42:BENCH"
TARGET = 0.2  # edits per change per chat
TELEGRAM = {"send_rate_global": 30.0, "send_rate_per_chat": 1.0, "send_rate_per_group": 20}


@dataclass
class Result:
    framework: str
    edits: int
    longest: int
    final_after: float
    throttled: int
    bad_requests: int


async def run(framework: str, members: int, changes: int, chats: int) -> Result:
    async with FakeTelegram(token=TOKEN, enforce_limits=True) as tg:
        sec = tg.user(1, "书记")
        mem = tg.group("党支部")
        groups = [tg.group(f"居民群{i}") for i in range(chats)]
        for g in (mem, *groups):
            tg.set_status(g, sec, "creator")
        tg.send(sec, tg.private_chat(sec), "/start")
        with tempfile.TemporaryDirectory() as tmp:
            bot = BotUnderTest(tg, framework, Path(tmp), poll_timeout=1, **TELEGRAM)
            await bot.start()
            heap.settle()  # as main.py does once the bot has started
            assert bot.app is not None
            tg.send(sec, groups[0], "/setup resident 幸福里")
            await tg.wait_text(groups[0], "已创建社区", timeout=30)
            for g in groups[1:]:
                tg.send(sec, g, "/setup resident 幸福里")
            tg.send(sec, mem, "/setup member 幸福里")
            await bot.settle(timeout=120)
            svc = bot.app.services
            async with svc.ctx.tx() as s:
                cid = await s.scalar(select(Chat.community_id).where(Chat.id == mem["id"]))
                assert cid is not None
                for i in range(members):
                    uid = 50_000 + i
                    s.add(User(id=uid, first_name=f"党员{i:03d}"))
                    await s.flush()
                    s.add(ChatMember(chat_id=mem["id"], user_id=uid, status="member"))
                    s.add(MemberProfile(community_id=cid, user_id=uid, showid=i % 2 == 0, post="楼栋长岗"))
                    for k in range(2):
                        s.add(Pledge(community_id=cid, number=1 + 2 * i + k, user_id=uid, text="每周清理楼道" * 10,
                                     state="active"))
            since = tg.mark()
            tg.send(sec, tg.private_chat(sec), "/wall")
            await tg.wait_text(sec["id"], "承诺墙已发布", since=since, timeout=120)
            await svc.members.wall.idle(120)
            await bot.settle(timeout=120)
            walls = [(await tg.wait_text(g, "承诺墙", since=since, timeout=120)).message for g in groups]
            edits_before = len(tg.sent_by("editMessageText"))
            throttled_before, rejected_before = len(tg.throttled), len(tg.rejections) + len(tg.refusals)

            t0 = time.perf_counter()
            for i in range(changes):  # the first member's first pledge (on the first page) gets every note
                await svc.members.add_update(actor_id=50_000, community_id=cid, number=1, note=f"进展 {i}", photo=None)
                await asyncio.sleep(1.0 / changes)
            final = f"进展 {changes} 条"
            while not all(w is not None and final in tg.current(w)["text"] for w in walls):
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError("the walls never showed the last change")
                await asyncio.sleep(0.05)
            final_after = time.perf_counter() - t0
            await svc.members.wall.idle(120)
            await bot.settle(timeout=120)
            longest = max(len(r.text or "") for r in tg.sent if r.chat_id in {g["id"] for g in groups})
            await bot.stop()
        return Result(framework, len(tg.sent_by("editMessageText")) - edits_before, longest, final_after,
                      len(tg.throttled) - throttled_before,
                      sum(1 for r in (tg.rejections + tg.refusals)[rejected_before:] if r.status == 400))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--chats", type=int, default=3)
    parser.add_argument("--frameworks", default="aiogram,ptb")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = [await run(fw, args.members, args.changes, args.chats) for fw in args.frameworks.split(",")]
    print(f"{args.changes} pledge changes within ~1 s, {args.members} members, the wall in {args.chats} resident "
          "chats, Telegram's limits on")
    print(f"{'framework':<10} {'edits':>6} {'per change/chat':>16} {'longest':>8} {'final after':>12} {'429':>5}"
          f" {'400':>5} {'ratio':>6}")
    for r in results:
        per = r.edits / (args.changes * args.chats)
        print(f"{r.framework:<10} {r.edits:>6} {per:>16.3f} {r.longest:>8} {r.final_after:>11.2f}s "
              f"{r.throttled:>5} {r.bad_requests:>5} {per / TARGET:>6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
