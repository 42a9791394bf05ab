"""Updates handled per second: Linli beside a bare echo bot, on the same fake Bot API server.

Each bot drains the same backlog of private-chat commands from many users. Linli's command
(/lang) reads and writes the database (the user row and their language) and replies; the
echo bot only replies. Both run in this one process, one after the other, so the ratio is
measured side by side on the same noisy machine. Printed: updates/s for each, and the ratio
Linli / echo (the figure this benchmark is judged by; 1.0 would mean Linli costs nothing).

Linli runs as deployed, with its durable inbox: every update is stored before its offset is
confirmed, and handled in one transaction with its reply (an outbox row), which the outbox then
delivers. The echo bot keeps nothing. Linli's clock starts before its start (as the echo bot's
does), on a database whose tables exist already, as a deployed bot's do.

    python -m bench.updates_throughput [--updates N] [--frameworks aiogram,ptb]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot import heap
from bot.storage.db import make_engine, migrate
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram

TOKEN = "42:BENCH"


def backlog(tg: FakeTelegram, n: int, text: Callable[[int], str]) -> int:
    users = 200
    for i in range(users):
        tg.user(10_000 + i, f"居民{i}")
        tg.private_chat(10_000 + i)
    for i in range(n):
        uid = 10_000 + i % users
        tg.send(uid, uid, text(i))
    return n


async def wait_replies(tg: FakeTelegram, n: int, timeout: float = 300.0) -> None:  # noqa: ASYNC109
    deadline = time.perf_counter() + timeout
    seen = got = 0  # counted as they come: a recount of every reply each turn would weigh on the slower bot
    while got < n:
        new = tg.sent[seen:]
        seen += len(new)
        got += sum(1 for r in new if r.method == "sendMessage")
        if got >= n:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError("benchmark timed out")
        await asyncio.sleep(0.005)


async def _schema(url: str) -> None:
    """The database as a deployed bot finds it: with its tables (creating them is not handling updates;
    the start timed below still checks the schema, as every start does)."""
    engine = make_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


async def run_linli(framework: str, n: int) -> float:
    async with FakeTelegram(token=TOKEN) as tg:
        backlog(tg, n, lambda i: "/lang zh" if i % 2 else "/lang en")
        with tempfile.TemporaryDirectory() as tmp:
            bot = BotUnderTest(tg, framework, Path(tmp), poll_timeout=1)
            await _schema(bot.settings.database_url)
            t0 = time.perf_counter()
            await bot.start()
            heap.settle()  # as main.py does once the bot has started
            await wait_replies(tg, n)
            elapsed = time.perf_counter() - t0
            await bot.stop()
    return n / elapsed


async def _echo_aiogram(tg: FakeTelegram, n: int) -> float:
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import Message

    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    t0 = time.perf_counter()
    task = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    await wait_replies(tg, n)
    elapsed = time.perf_counter() - t0
    await dp.stop_polling()
    await task
    await bot.session.close()
    return n / elapsed


async def _echo_ptb(tg: FakeTelegram, n: int) -> float:
    from telegram import Update
    from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters

    app = ApplicationBuilder().token(TOKEN).base_url(tg.api_url).job_queue(None).build()

    async def echo(update: Update, _ctx: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(update.effective_message.text or "", do_quote=False)

    app.add_handler(MessageHandler(filters.ALL, echo))
    t0 = time.perf_counter()
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(timeout=1)
    await wait_replies(tg, n)
    elapsed = time.perf_counter() - t0
    await app.updater.stop()
    await app.stop()
    await app.shutdown()
    return n / elapsed


async def run_echo(framework: str, n: int) -> float:
    runner: Callable[[FakeTelegram, int], Awaitable[float]] = _echo_aiogram if framework == "aiogram" else _echo_ptb
    async with FakeTelegram(token=TOKEN) as tg:
        backlog(tg, n, lambda i: f"echo {i}")
        return await runner(tg, n)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--frameworks", default="aiogram,ptb")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for fw in args.frameworks.split(","):
        echo = await run_echo(fw, args.updates)
        linli = await run_linli(fw, args.updates)
        rows.append((fw, linli, echo))
    print(f"updates per second, {args.updates} updates each (Linli: /lang, a database read and write per update,"
          " with the durable inbox and replies through the outbox)")
    print(f"{'framework':<10} {'linli':>10} {'bare echo':>10} {'ratio':>7}")
    for fw, linli, echo in rows:
        print(f"{fw:<10} {linli:>10.1f} {echo:>10.1f} {linli / echo:>7.2f}")
    if len(rows) == 2:
        (fa, la, _), (fb, lb, _) = rows
        print(f"Linli {fa} / Linli {fb}: {la / lb:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
