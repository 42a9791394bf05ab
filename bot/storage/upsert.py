"""INSERT ... ON CONFLICT for SQLite and PostgreSQL: concurrent first sightings must not collide."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


async def upsert(
    session: AsyncSession,
    model: type[Any],
    values: dict[str, Any],
    keys: list[str],
    update: list[str] | None = None,
) -> None:
    """Insert `values`; on a key conflict update the `update` columns (or do nothing)."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model).values(**values)
    if update:
        stmt = ins.on_conflict_do_update(index_elements=keys, set_={c: ins.excluded[c] for c in update})
    else:
        stmt = ins.on_conflict_do_nothing(index_elements=keys)
    await session.execute(stmt)
