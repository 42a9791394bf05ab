"""Instances of one bot starting together on an empty PostgreSQL migrate it once, in turn."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import make_engine, migrate
from bot.storage.models import Base
from tests.conftest import PG_URL, reset_pg_schema


async def test_instances_starting_together_migrate_once(engine: AsyncEngine) -> None:
    """Three instances starting at once on an empty PostgreSQL: one migrates, the others wait for
    it and find the schema current (without the lock two of three fail on duplicate types)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite is one instance's own file: nothing starts beside it")
    await reset_pg_schema()
    engines = [make_engine(PG_URL or "") for _ in range(3)]
    try:
        await asyncio.gather(*(migrate(e) for e in engines))
    finally:
        for e in engines:
            await e.dispose()

    def tables(conn: Connection) -> set[str]:
        return set(inspect(conn).get_table_names())

    async with engine.connect() as conn:
        assert set(Base.metadata.tables) <= await conn.run_sync(tables)
