"""Community-local numbers (#n) for demands, tasks, meetings and notices."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import Counter
from bot.storage.upsert import upsert


async def next_number(session: AsyncSession, community_id: int, kind: str) -> int:
    """The next #n of `kind` in the community; one atomic UPDATE, so concurrent filers never share one."""
    await upsert(session, Counter, {"community_id": community_id, "kind": kind, "value": 0}, ["community_id", "kind"])
    value = await session.scalar(
        update(Counter)
        .where(Counter.community_id == community_id, Counter.kind == kind)
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    )
    assert value is not None
    return int(value)
