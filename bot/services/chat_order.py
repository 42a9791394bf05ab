"""Per-chat order across instances: an update waits until its chat's earlier ones are handled.

One instance handles a chat's updates one after another (bot/dispatch.py). Behind a load
balancer, update 5 of a chat may reach instance A and update 6 instance B; B must not handle 6
before A has handled 5. The inbox already says what is pending: a chat's row with a lower
update_id and no `handled_at` is an earlier update not yet handled, and its mark commits with its
effects (bot/services/unit.py), so once it is gone from that query the effects are visible to the
next handler's transaction. So before handling, an update waits (polling, a few milliseconds
apart at first) until no such row is left. No lock is needed besides: the lower row's existence
is what orders, and the handled mark is the release.

A holder may die in between (kill -9): after `wait` seconds the rows still unhandled are handled
here, first, in update order (handling stays once: the first unit to mark a row wins, the other
finds it handled and commits nothing). Orphan adoption (Inbox.adopt_orphans) picks up the rest.

Only PostgreSQL is shared by several instances; on SQLite nothing of this runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import InboxUpdate

if TYPE_CHECKING:
    from bot.transport.inbox import Inbox, InboxItem

log = logging.getLogger("linli.chat_order")

FIRST_POLL = 0.005  # seconds; doubled up to LAST_POLL while an earlier update is being handled
LAST_POLL = 0.1


class ChatOrder:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], inbox: Inbox, *, wait: float = 15.0) -> None:
        self.sessions = sessions
        self.inbox = inbox
        self.wait = wait
        self.waited = 0  # updates that found an earlier one pending (for tests and logs)
        self.took_over = 0  # earlier updates handled here after `wait`

    async def _earlier(self, item: InboxItem) -> int | None:
        async with self.sessions() as s:
            return await s.scalar(
                select(InboxUpdate.update_id)
                .where(InboxUpdate.chat_id == item.chat_id, InboxUpdate.update_id < item.update_id,
                       InboxUpdate.handled_at.is_(None))
                .limit(1))

    async def turn(self, item: InboxItem) -> list[InboxItem]:
        """Return when `item` may be handled: at once, or once its chat's earlier updates are handled
        (wherever). After `wait` seconds, returns the earlier ones still unhandled, oldest first:
        the caller handles them before `item`."""
        if not item.chat_id:
            return []
        if await self._earlier(item) is None:
            return []
        self.waited += 1
        deadline = time.monotonic() + self.wait
        delay = FIRST_POLL
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, LAST_POLL)
            if await self._earlier(item) is None:
                return []
        async with self.sessions() as s:
            rows = (await s.execute(
                select(InboxUpdate.update_id, InboxUpdate.payload)
                .where(InboxUpdate.chat_id == item.chat_id, InboxUpdate.update_id < item.update_id,
                       InboxUpdate.handled_at.is_(None))
                .order_by(InboxUpdate.update_id).limit(100))).all()
        if rows:
            log.warning("chat %s: %d earlier updates still unhandled after %.0f s; handling them here first",
                        item.chat_id, len(rows), self.wait)
            self.took_over += len(rows)
        return [self.inbox.item_of(p if p else {"update_id": uid}) for uid, p in rows]
