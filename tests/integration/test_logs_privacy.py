"""Logs hold ids and errors, not content: a database error names no bound value (a demand's text, a
name), so a failing job or handler logs none; the frameworks' loggers never go below INFO."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.logs import configure_logging
from bot.scheduler.runner import JobRunner, add_job
from bot.storage.db import make_session_factory, writing
from bot.storage.models import Job, User

SECRET = "秘密：3号楼502的家暴求助"


async def test_database_errors_carry_no_values(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    async with writing(sessions) as s:
        await s.execute(insert(User).values(id=1, first_name=SECRET))
    with pytest.raises(IntegrityError) as err:
        async with writing(sessions) as s:
            await s.execute(insert(User).values(id=1, first_name=SECRET))
    assert SECRET not in str(err.value) and "users" in str(err.value)


async def test_a_failing_job_logs_no_content(engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    sessions = make_session_factory(engine)
    async with writing(sessions) as s:
        await s.execute(insert(User).values(id=1, first_name="x"))
        job = await add_job(s, "boom", 1, datetime(2026, 1, 1, tzinfo=UTC))
        assert job is not None
        job_id = job.id

    async def boom(s: AsyncSession, job: Job) -> str:
        await s.execute(insert(User).values(id=1, first_name=SECRET))  # a bug: a duplicate key
        return "never"

    runner = JobRunner(sessions)
    runner.register("boom", boom)
    with caplog.at_level(logging.ERROR, logger="linli.scheduler"):
        assert await runner.fire(job_id) == "error"
    assert f"job {job_id} failed" in caplog.text and "IntegrityError" in caplog.text
    assert SECRET not in caplog.text


def test_framework_loggers_stay_above_debug() -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {n: logging.getLogger(n).level for n in ("telegram", "httpx", "aiogram")})
    try:
        configure_logging("DEBUG")
        assert logging.getLogger("telegram.Bot").getEffectiveLevel() == logging.INFO  # logs call parameters at DEBUG
        assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING  # URLs with the token
        assert logging.getLogger("linli.dispatch").getEffectiveLevel() == logging.DEBUG
        configure_logging("ERROR")
        assert logging.getLogger("telegram").getEffectiveLevel() == logging.ERROR
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
