"""The per-person limit on actions that alert people (filings, reports): N in any sliding hour.

Counted from rows in the database, inside the transaction of the action itself, so the limit
holds across restarts and instances and a refused or failed action uses up nothing. The person's
`users` row is locked first (PostgreSQL), so two instances taking the last slot at once queue
instead of both getting it; SQLite's writers take turns anyway.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.errors import UserError
from bot.storage.models import QuotaEvent, User

WINDOW = timedelta(hours=1)
KINDS = ("file", "report")


async def _state(s: AsyncSession, user_id: int, kind: str, now: datetime) -> tuple[int, datetime | None]:
    """(actions in the window, the oldest of them)."""
    count, oldest = (
        await s.execute(
            select(func.count(), func.min(QuotaEvent.at)).where(
                QuotaEvent.user_id == user_id, QuotaEvent.kind == kind, QuotaEvent.at > now - WINDOW
            )
        )
    ).one()
    return int(count or 0), oldest


def _refusal(kind: str, limit: int, oldest: datetime | None, now: datetime) -> UserError:
    wait = (oldest + WINDOW - now) if oldest is not None else WINDOW
    minutes = max(1, math.ceil(wait.total_seconds() / 60))
    return UserError(f"err_{kind}_limit", limit=limit, minutes=minutes)


async def check(s: AsyncSession, user_id: int, kind: str, limit: int, now: datetime) -> None:
    """Refuse early (say, before a form is filled in) when no slot is free; takes nothing."""
    count, oldest = await _state(s, user_id, kind, now)
    if count >= limit:
        raise _refusal(kind, limit, oldest, now)


async def take(s: AsyncSession, user_id: int, kind: str, limit: int, now: datetime) -> None:
    """Use one slot, or refuse with the limit named and when the next slot frees up."""
    assert kind in KINDS
    if await s.scalar(select(User.id).where(User.id == user_id).with_for_update()) is None:
        return  # nobody to count for (the bot records everyone it hears from before a handler runs)
    count, oldest = await _state(s, user_id, kind, now)
    if count >= limit:
        raise _refusal(kind, limit, oldest, now)
    s.add(QuotaEvent(user_id=user_id, kind=kind, at=now))
    await s.flush()


async def prune(s: AsyncSession, now: datetime) -> int:
    """Rows past the window count for nothing."""
    res = await s.execute(delete(QuotaEvent).where(QuotaEvent.at <= now - WINDOW))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
