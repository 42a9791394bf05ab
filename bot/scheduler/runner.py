"""Timers for rows in the `jobs` table. APScheduler only keeps time; the row decides.

On start and on every sweep the runner reads pending jobs from the database and arms a
one-shot timer for each. A fired timer marks its row done with a conditional UPDATE and runs
the job's handler in the same transaction, so a job runs once, survives restarts (a job whose
time passed while the bot was down fires on start), and never runs twice, even with several
instances. Handlers re-read their subject and do nothing if it moved on meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.clock import Clock, system_clock
from bot.storage.db import writing
from bot.storage.models import Job

log = logging.getLogger("linli.scheduler")

JobHandler = Callable[[AsyncSession, Job], Awaitable[str | None]]
MAX_ATTEMPTS = 5


async def add_job(session: AsyncSession, kind: str, ref_id: int, due_at: datetime, guard: str = "", *,
                  user_id: int | None = None) -> Job | None:
    """Store a job unless the same (kind, ref, guard) exists: producers may call this twice.

    `user_id`: the one person the timer is about (a reminder to a claimer), so /forget drops it."""
    existing = await session.scalar(
        select(Job).where(Job.kind == kind, Job.ref_id == ref_id, Job.guard == guard)
    )
    if existing is not None:
        return None
    job = Job(kind=kind, ref_id=ref_id, due_at=due_at, guard=guard, user_id=user_id)
    session.add(job)
    await session.flush()
    return job


class JobRunner:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Clock = system_clock,
        sweep_seconds: float = 30.0,
        after_run: Callable[[], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.sweep_seconds = sweep_seconds
        self.after_run = after_run or (lambda: None)
        self.handlers: dict[str, JobHandler] = {}
        self.aps = AsyncIOScheduler(timezone=UTC)
        self._sweep_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def register(self, kind: str, handler: JobHandler) -> None:
        self.handlers[kind] = handler

    async def start(self) -> None:
        self.aps.start()
        self.aps.add_job(self.sweep, "interval", seconds=self.sweep_seconds, id="sweep", replace_existing=True)
        await self.sweep()

    async def stop(self) -> None:
        if self.aps.running:
            self.aps.shutdown(wait=False)
        # Jobs already running finish (they are our tasks, not APScheduler's, so it cannot cancel them).
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    def wake(self) -> None:
        """New jobs were committed: arm them soon (debounced to one sweep at a time)."""
        if self._sweep_task is None or self._sweep_task.done():
            self._sweep_task = asyncio.get_running_loop().create_task(self.sweep())

    async def sweep(self) -> None:
        horizon = self.clock() + timedelta(seconds=self.sweep_seconds * 2)
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Job.id, Job.due_at).where(Job.done_at.is_(None), Job.due_at <= horizon).order_by(Job.due_at)
                )
            ).all()
        for job_id, due_at in rows:
            self.arm(job_id, due_at)

    def arm(self, job_id: int, due_at: datetime) -> None:
        if not self.aps.running:
            return
        # Due times are in the service clock's terms (a test or the sandbox may run it ahead of the
        # wall clock); APScheduler counts wall time, so arm by the distance from the clock's now.
        delay = max(0.0, (due_at - self.clock()).total_seconds())
        run_at = datetime.now(UTC) + timedelta(seconds=delay)
        self.aps.add_job(
            self._fire_tracked,
            DateTrigger(run_date=run_at),
            args=[job_id],
            id=f"job-{job_id}",
            replace_existing=True,
            misfire_grace_time=None,  # late is better than never: fire whenever we get to it
            coalesce=True,
        )

    async def _fire_tracked(self, job_id: int) -> None:
        """The timer's callback: run the job in a task of our own, so a stop lets it finish
        (APScheduler cancels the jobs it runs itself when it shuts down)."""
        task = asyncio.get_running_loop().create_task(self.fire(job_id), name=f"job-{job_id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def fire(self, job_id: int) -> str | None:
        now = self.clock()
        try:
            async with writing(self.sessions) as session:
                claimed = await session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.done_at.is_(None), Job.due_at <= now)
                    .values(done_at=now, attempts=Job.attempts + 1)
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    return None  # done already (another instance, a double timer) or not yet due
                job = await session.get(Job, job_id)
                assert job is not None
                handler = self.handlers.get(job.kind)
                result = await handler(session, job) if handler else "no-handler"
                job.result = (result or "done")[:32]
        except Exception:
            log.exception("job %s failed", job_id)
            await self._retry_later(job_id)
            return "error"
        self.after_run()
        return result

    async def _retry_later(self, job_id: int) -> None:
        async with writing(self.sessions) as session:
            job = await session.get(Job, job_id)
            if job is None or job.done_at is not None:
                return
            job.attempts += 1
            if job.attempts >= MAX_ATTEMPTS:
                job.done_at = self.clock()
                job.result = "gave-up"
                return
            due = self.clock() + timedelta(seconds=10 * job.attempts)
            job.due_at = due
        self.arm(job_id, due)
