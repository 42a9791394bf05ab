"""Group commit for what updates record about people (bot/services/people.py).

A burst of first sightings (a thousand members pressing a button they never pressed before) used
to cost a write transaction each, queueing for SQLite's one writer. Here the writes of the updates
that arrive while a transaction runs wait together and go into the next one: each caller still
returns only once its own write is committed. If a shared transaction fails, its writes are run
again one by one, so one bad write fails only its own update.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.base import ServiceContext

log = logging.getLogger("linli.people")

Write = Callable[[AsyncSession], Awaitable[None]]


class GroupWrites:
    MAX_BATCH = 200

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._pending: list[tuple[int, Write, asyncio.Future[None]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.transactions = 0  # committed (tests and benchmarks)

    async def run(self, order: int, write: Write) -> None:
        """Run `write` in a transaction, shared with other callers meanwhile; returns once committed.
        `order`: writes of one transaction run sorted by it (rows locked in one order, by user id)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((order, write, fut))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain(), name="people-writes")
        await asyncio.shield(fut)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.MAX_BATCH], self._pending[self.MAX_BATCH:]
            batch.sort(key=lambda item: item[0])
            try:
                async with self.ctx.tx() as s:
                    for _, write, _ in batch:
                        await write(s)
                self.transactions += 1
            except Exception:
                if len(batch) == 1:
                    _, _, fut = batch[0]
                    await self._alone(batch[0][1], fut)
                    continue
                log.warning("a group of %d writes failed; writing them one by one", len(batch), exc_info=True)
                for _, write, fut in batch:
                    await self._alone(write, fut)
                continue
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def _alone(self, write: Write, fut: asyncio.Future[None]) -> None:
        try:
            async with self.ctx.tx() as s:
                await write(s)
            self.transactions += 1
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(None)
