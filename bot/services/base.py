"""What every service gets: sessions, roles, the clock, the outbox and the job table."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from bot.services.clock import Clock, system_clock
from bot.services.personal import PersonalData
from bot.services.roles import Roles
from bot.services.unit import current_unit
from bot.storage.db import writing
from bot.storage.models import Job, Outbox
from config.settings import Settings


@event.listens_for(Session, "before_flush")
def _note_new_work(session: Session, _ctx: object, _instances: object) -> None:
    # Remember whether this unit of work queued messages or timers, to wake only what has work.
    for obj in session.new:
        if isinstance(obj, Outbox):
            session.info["outbox"] = True
        elif isinstance(obj, Job):
            session.info["jobs"] = True


def _noop() -> None:
    return None


@dataclass
class ServiceContext:
    sessions: async_sessionmaker[AsyncSession]
    roles: Roles
    settings: Settings
    clock: Clock = system_clock
    # Called after a commit that wrote outbox rows or jobs, so delivery and timers wake at once.
    wake_outbox: Callable[[], None] = field(default=_noop)
    wake_jobs: Callable[[], None] = field(default=_noop)
    # Each capability's share of /mydata and /forget, registered by its service.
    personal: PersonalData = field(default_factory=PersonalData)

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back on any error, then wake the workers.

        Inside an update's unit (bot/services/unit.py) it is a SAVEPOINT of the update's transaction,
        which commits with the update's replies (and wakes the workers then)."""
        unit = current_unit()
        if unit is not None:
            if not unit.writing:
                # The update's first write: no SAVEPOINT needed, a failure rolls back the whole
                # transaction (the mark included; the next write marks the update again).
                s = await unit.write()
                try:
                    yield s
                    await s.flush()
                except BaseException:
                    await unit.undo()
                    raise
                return
            s = await unit.write()
            async with s.begin_nested():
                yield s
            return
        async with writing(self.sessions) as session:
            yield session
        # Committed: now the workers can see what it queued.
        if session.info.pop("outbox", False):
            self.wake_outbox()
        if session.info.pop("jobs", False):
            self.wake_jobs()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        unit = current_unit()
        if unit is not None and unit.writing:  # sees what the update wrote so far
            yield unit.session
            return
        # Before an update's first write its reads take a connection only while they run: a unit
        # holds one (and, on SQLite, the writer lock) only from its first write to its commit.
        async with self.sessions() as session:
            yield session
