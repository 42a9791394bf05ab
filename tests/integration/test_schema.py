"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import make_engine, migrate
from bot.storage.models import Base
from tests.conftest import PG_URL, reset_pg_schema


async def test_migrations_match_models(engine: AsyncEngine) -> None:
    def diff(conn: Connection) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_migrate_is_idempotent(engine: AsyncEngine) -> None:
    await migrate(engine)  # the fixture migrated once already: a second start changes nothing

    def tables(conn: Connection) -> set[str]:
        return set(inspect(conn).get_table_names())

    async with engine.connect() as conn:
        assert set(Base.metadata.tables) <= await conn.run_sync(tables)


async def test_instances_starting_together_migrate_once(engine: AsyncEngine) -> None:
    """Three instances starting at once on an empty PostgreSQL: one migrates, the others wait for
    it and find the schema current (without the lock two of three fail on duplicate types)."""
    if engine.dialect.name != "postgresql":
        return  # SQLite is one instance's own file
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
