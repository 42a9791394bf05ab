"""One transaction per update: the handler's effects, its replies and the inbox mark commit together.

While an update is handled, every `ctx.tx()` of the handling task joins the update's
`UpdateUnit` (a context variable says which), and so does every `ctx.read()` after the first
write (reads before it use short sessions of their own, so a unit never holds a connection while
it waits for the writer lock): a `tx()` block becomes a SAVEPOINT, so a
refused action still rolls back only its own block, as before. The first write also marks the
update's inbox rows handled (a conditional UPDATE: a row someone else marked already makes the
unit "lost", and nothing of it commits). On SQLite that first write is a plain DML statement, so
the driver opens a real transaction before any SAVEPOINT (a SAVEPOINT outside a transaction would
commit on release); the process-wide writer lock is taken then and held until the commit, which
is why nothing may wait on the network after a handler's first write (see AdminCache.prefetch).

Other tasks (a claim batch, a roster refresh) keep their own transactions even though they
inherit the context variable: only the tasks the unit adopted join it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import datetime

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.db import _writer_lock
from bot.storage.models import InboxUpdate

_INBOX = InboxUpdate.__table__
# Built once: every update runs it, and making a statement (and its cache key) costs more than running it.
MARK_HANDLED = (
    update(_INBOX)
    .where(_INBOX.c.update_id.in_(bindparam("ids", expanding=True)), _INBOX.c.handled_at.is_(None))
    .values(handled_at=bindparam("now", type_=_INBOX.c.handled_at.type), attempts=_INBOX.c.attempts + 1)
)

_CURRENT: ContextVar[UpdateUnit | None] = ContextVar("linli_update_unit", default=None)


class AlreadyHandled(Exception):
    """The update was handled meanwhile (another instance, a redelivery): nothing of this commits."""


def current_unit() -> UpdateUnit | None:
    unit = _CURRENT.get()
    if unit is None or unit.closed:
        return None
    task = asyncio.current_task()
    return unit if task is not None and task in unit.tasks else None


class UpdateUnit:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], update_ids: Sequence[int], now: datetime) -> None:
        self.sessions = sessions
        self.update_ids = list(update_ids)
        self.now = now
        self.session = sessions()
        self.tasks: set[asyncio.Task[object]] = set()
        self.writing = False
        self.lost = False
        self.marked = False  # its inbox rows were marked by a transaction that committed its effects
        self.closed = False
        self._lock = _writer_lock(sessions)
        self._locked = False
        self._token: object | None = None

    # ---- binding to the handling task(s)

    def enter(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self._token = _CURRENT.set(self)

    def adopt(self, task: asyncio.Task[object]) -> None:
        """A task the handler runs its steps in (e.g. the gate of parallel presses) joins the unit."""
        self.tasks.add(task)

    def leave(self) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)  # type: ignore[arg-type]
            self._token = None

    def marked_elsewhere(self) -> None:
        """Its inbox rows were marked handled in the transaction that committed its effects (a claim
        batch, bot/services/task_batches.py): what the unit still writes needs no mark."""
        self.marked = True

    # ---- the transaction

    async def write(self) -> AsyncSession:
        """The unit's session, in a write transaction that has marked the update handled."""
        if self.lost:
            raise AlreadyHandled()
        if not self.writing:
            if self._lock is not None and not self._locked:
                await self._lock.acquire()
                self._locked = True
            if self.marked:
                self.writing = True
                return self.session
            # On the table, not the ORM entity: the ORM's bulk-update path costs more than the statement.
            result = await self.session.execute(MARK_HANDLED, {"ids": list(self.update_ids), "now": self.now})
            self.writing = True
            if result.rowcount != len(self.update_ids):  # type: ignore[attr-defined]
                self.lost = True
                raise AlreadyHandled()
        return self.session

    async def undo(self) -> None:
        """The first write block failed: back to before it (the writer lock stays held)."""
        await self.session.rollback()
        self.writing = False

    async def commit(self) -> None:
        try:
            await self.session.commit()
        finally:
            self._release()

    async def rollback(self) -> None:
        try:
            await self.session.rollback()
        finally:
            self._release()

    async def close(self) -> None:
        self.closed = True
        self.leave()
        try:
            await self.session.close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._locked and self._lock is not None:
            self._locked = False
            self._lock.release()
