"""Shared fixtures: databases (SQLite always, PostgreSQL when TEST_DATABASE_URL is set)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import make_engine, migrate

pytest_plugins = ["tests.netguard"]

# PTB's documented opt-in to timedelta retry_after (the adapter sets it too); the raw-PTB
# self-tests of the fake server would otherwise warn.
os.environ.setdefault("PTB_TIMEDELTA", "true")

PG_URL = os.environ.get("TEST_DATABASE_URL")
DB_KINDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


async def fresh_engine(kind: str, tmp_path: Path) -> AsyncEngine:
    if kind == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}")
    else:
        assert PG_URL
        engine = make_engine(PG_URL)
        async with engine.begin() as conn:  # each test starts from an empty schema
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await migrate(engine)
    return engine


@pytest.fixture(params=DB_KINDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = await fresh_engine(request.param, tmp_path)
    try:
        yield eng
    finally:
        await eng.dispose()
