"""The durable inbox under kill -9: an update confirmed to Telegram is never lost, and one
redelivered is never handled twice. The bot runs as a subprocess (main.py), killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.storage.db import make_engine, make_session_factory
from bot.storage.models import Demand, InboxUpdate, User
from tests.fakeapi.server import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]


async def spawn(tg: FakeTelegram, framework: str, database_url: str, **env: str) -> asyncio.subprocess.Process:
    full = {
        **os.environ,
        "BOT_TOKEN": tg.token,
        "TELEGRAM_API_BASE": tg.base_url,
        "BOT_FRAMEWORK": framework,
        "DATABASE_URL": database_url,
        "SEND_RATE_GLOBAL": "1000",
        "SEND_RATE_PER_CHAT": "200",
        "SEND_RATE_PER_GROUP": "100000",
        "POLL_TIMEOUT": "1",
        "OUTBOX_LEASE_SECONDS": "1",
        "ADMIN_CACHE_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "main.py", cwd=ROOT, env=full, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def kill9(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def until(cond, proc: asyncio.subprocess.Process | None, timeout: float, what: str) -> None:  # noqa: ANN001, ASYNC109
    deadline = time.monotonic() + timeout
    while not await cond():
        if proc is not None and proc.returncode is not None:
            err = (await proc.stderr.read()).decode() if proc.stderr else ""
            raise AssertionError(f"the bot exited ({proc.returncode}) while waiting for {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.both_databases
async def test_backlog_of_300_survives_kill_9_after_confirmation(
    tg: FakeTelegram, framework: str, database_url: str,
) -> None:
    n = 300
    users = [tg.user(5000 + i, f"新人{i}") for i in range(n)]
    for u in users:
        tg.send(u, tg.private_chat(u), "/lang en")
    last = tg.last_update_id
    # Nothing reaches Telegram before the kill: every answer must then come exactly once after it.
    tg.hold_sends = True
    proc = await spawn(tg, framework, database_url)
    try:
        async def confirmed() -> bool:  # the bot asked for updates past the last: all confirmed
            return not tg.updates and tg.max_delivered >= last
        await until(confirmed, proc, 120, "the backlog to be confirmed")
    finally:
        await kill9(proc)
    assert not tg.updates, "Telegram still holds updates: the kill came before the confirmation"

    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    async with sessions() as s:
        stored = await s.scalar(select(func.count()).select_from(InboxUpdate))
        handled_before = await s.scalar(
            select(func.count()).select_from(InboxUpdate).where(InboxUpdate.handled_at.is_not(None)))
    assert stored == n  # every confirmed update was stored before it was confirmed
    assert handled_before is not None and handled_before < n, "the kill came too late to test anything"

    tg.hold_sends = False
    proc = await spawn(tg, framework, database_url)
    try:
        async def answered() -> bool:
            return len({r.chat_id for r in tg.sent if r.method == "sendMessage"}) >= n
        await until(answered, proc, 180, "every user to be answered")
        await asyncio.sleep(1.5)  # an answer sent twice would show by now (the outbox lease is 1 s)
        async with sessions() as s:
            english = await s.scalar(select(func.count()).select_from(User).where(User.language == "en"))
            unhandled = await s.scalar(
                select(func.count()).select_from(InboxUpdate).where(InboxUpdate.handled_at.is_(None)))
        assert english == n, "a confirmed /lang was never applied"
        assert unhandled == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        await engine.dispose()
    answers = Counter(r.chat_id for r in tg.sent if r.method == "sendMessage")
    assert set(answers) == {u["id"] for u in users}
    assert all(c == 1 for c in answers.values()), {k: c for k, c in answers.items() if c != 1}
    assert all("English" in (r.text or "") for r in tg.sent if r.method == "sendMessage")


@pytest.mark.slow
async def test_demand_fetched_while_database_locked_then_kill_9(
    tg: FakeTelegram, framework: str, tmp_path: Path,
) -> None:
    db_file = tmp_path / "linli-locked.sqlite3"
    url = f"sqlite+aiosqlite:///{db_file}"
    sec = tg.user(8001, "王书记")
    resident = tg.user(8002, "李阿姨")
    res = tg.group("幸福里居民群")
    tg.set_status(res, sec, "creator")
    proc = await spawn(tg, framework, url)
    try:
        tg.send(sec, res, "/setup resident 幸福里")
        await tg.wait_text(res, "已创建社区", timeout=60)
        # The bot cannot commit: another process holds the database's write lock.
        lock = sqlite3.connect(db_file, timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            since = tg.mark()
            tg.send(resident, res, "/demand 3号楼电梯坏了")
            demand_update = tg.last_update_id

            async def fetched() -> bool:
                return tg.max_delivered >= demand_update
            await until(fetched, proc, 30, "the demand to be fetched")
            await asyncio.sleep(1.0)  # it tries to store it, and cannot
            assert not any("电梯" in (r.text or "") for r in tg.sent[since:])
            await kill9(proc)
        finally:
            lock.rollback()
            lock.close()
    finally:
        await kill9(proc)

    proc = await spawn(tg, framework, url)
    try:
        await tg.wait_text(res, "电梯", timeout=60, since=since)
        await asyncio.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    engine = make_engine(url)
    async with make_session_factory(engine)() as s:
        demands = list(await s.scalars(select(Demand)))
    await engine.dispose()
    assert len(demands) == 1, "the demand was lost or filed twice"
    replies = [r for r in tg.sent[since:] if r.method == "sendMessage" and "电梯" in (r.text or "")
               and r.chat_id == res["id"]]
    assert len(replies) == 1, [r.text for r in replies]
