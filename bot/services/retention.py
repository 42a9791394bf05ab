"""Keeping less: delivered messages, finished timers and abandoned forms go after RETENTION_DAYS.

The pruning is itself a row in the jobs table, due at the top of every hour: it runs once per
hour whatever the number of instances (they all schedule the same hour, and the job table's
unique key keeps one), survives restarts, and schedules the next hour when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.scheduler.runner import JobRunner
from bot.services import quota
from bot.services.base import ServiceContext
from bot.storage.models import Conversation, Job, Outbox
from bot.storage.upsert import upsert

JOB_PRUNE = "retention_prune"
EVERY = timedelta(hours=1)
DONE = ("sent", "failed")  # an outbox row in any other state still has work to do


@dataclass
class Pruned:
    messages: int = 0
    timers: int = 0
    forms: int = 0
    quota: int = 0


def next_slot(now: datetime) -> datetime:
    """The next top of the hour: every instance computes the same one."""
    return now.replace(minute=0, second=0, microsecond=0) + EVERY


class RetentionService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def register_jobs(self, jobs: JobRunner) -> None:
        jobs.register(JOB_PRUNE, self._job_prune)

    @property
    def keep(self) -> timedelta:
        return timedelta(days=self.ctx.settings.retention_days)

    async def schedule(self) -> None:
        """At start: make sure the next pruning is on the table (a no-op when it is)."""
        async with self.ctx.tx() as s:
            pending = await s.scalar(select(Job.id).where(Job.kind == JOB_PRUNE, Job.done_at.is_(None)).limit(1))
            if pending is None:
                await self._plan(s, next_slot(self.ctx.clock()))

    async def _plan(self, s: AsyncSession, due: datetime) -> None:
        # ON CONFLICT DO NOTHING: instances planning the same hour at once leave one row and no error.
        await upsert(s, Job, {"kind": JOB_PRUNE, "ref_id": 0, "guard": due.isoformat(timespec="minutes"),
                              "due_at": due}, ["kind", "ref_id", "guard"])
        s.info["jobs"] = True  # wake the job runner after the commit

    async def prune(self, s: AsyncSession, now: datetime) -> Pruned:
        cutoff = now - self.keep
        out = Pruned()
        res = await s.execute(delete(Outbox).where(Outbox.status.in_(DONE), Outbox.created_at < cutoff)
                              .execution_options(synchronize_session=False))
        out.messages = int(res.rowcount or 0)  # type: ignore[attr-defined]
        res = await s.execute(delete(Job).where(Job.done_at.is_not(None), Job.done_at < cutoff)
                              .execution_options(synchronize_session=False))
        out.timers = int(res.rowcount or 0)  # type: ignore[attr-defined]
        res = await s.execute(delete(Conversation).where(Conversation.updated_at < cutoff)
                              .execution_options(synchronize_session=False))
        out.forms = int(res.rowcount or 0)  # type: ignore[attr-defined]
        out.quota = await quota.prune(s, now)
        return out

    async def prune_now(self) -> Pruned:
        async with self.ctx.tx() as s:
            return await self.prune(s, self.ctx.clock())

    async def _job_prune(self, s: AsyncSession, job: Job) -> str:
        now = self.ctx.clock()
        done = await self.prune(s, now)
        await self._plan(s, next_slot(max(now, job.due_at)))
        return f"pruned {done.messages}/{done.timers}"[:32]
