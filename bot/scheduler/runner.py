"""Timers for rows in the `jobs` table. The row decides; the runner only keeps time.

Only the next window is armed: on start and on every sweep the runner reads the pending jobs
due within the window (twice the sweep interval) into an in-memory heap, and one timer task
sleeps until the earliest of them. Everything due then is fired in batches: a batch claims its
jobs with one conditional UPDATE (FOR UPDATE SKIP LOCKED on PostgreSQL, so instances take
different rows) and runs their handlers in the same transaction. So a job runs once, survives
restarts (a job whose time passed while the bot was down fires on start) and never runs twice,
even with several instances. Handlers re-read their subject and do nothing if it moved on
meanwhile. If a batch fails, its jobs are run again one by one, each in its own transaction, so
one broken job holds up no other; a failing job is retried a few times, then given up.

Why not one timer per job: a thousand reminders due in the same minute would be a thousand
transactions queueing for the database; in batches (and with handlers that take a whole batch,
see `register_batch`) they fire within a second. The window keeps memory flat however many
jobs wait in the database (bench/reminders.py measures both).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import metrics
from bot.services.clock import Clock, system_clock
from bot.storage.db import writing
from bot.storage.models import Job

log = logging.getLogger("linli.scheduler")

JobHandler = Callable[[AsyncSession, Job], Awaitable[str | None]]
# Runs several jobs of one kind at once; returns each job's result by id.
BatchHandler = Callable[[AsyncSession, list[Job]], Awaitable[dict[int, str | None]]]
MAX_ATTEMPTS = 5
MAX_SLEEP = 1.0  # the timer looks at the clock at least this often (a test or the sandbox may move it)


def observe_lateness(jobs: Iterable[Job], now: datetime) -> None:
    """How late each claimed timer runs after its due time (the linli_job_lateness_seconds histogram)."""
    aware_now = now if now.tzinfo else now.replace(tzinfo=UTC)
    for job in jobs:
        due = job.due_at if job.due_at.tzinfo else job.due_at.replace(tzinfo=UTC)
        metrics.JOB_LATENESS.observe(max(0.0, (aware_now - due).total_seconds()))


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
        window_seconds: float | None = None,
        batch: int = 200,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.sweep_seconds = sweep_seconds
        # How far ahead timers are armed; a sweep comes (at the latest) halfway through it.
        self.window = timedelta(seconds=window_seconds if window_seconds is not None else 2 * sweep_seconds)
        self.batch = batch
        self.after_run = after_run or (lambda: None)
        self.handlers: dict[str, JobHandler] = {}
        self.batch_handlers: dict[str, BatchHandler] = {}
        self._armed: dict[int, datetime] = {}  # job id -> the due time its timer is set for
        self._heap: list[tuple[datetime, int]] = []  # (due, id); entries re-armed since are skipped
        self._inflight: set[int] = set()  # fired, transaction not finished: not re-armed meanwhile
        self._kick = asyncio.Event()
        self._started = False
        self._loops: list[asyncio.Task[None]] = []
        self._sweep_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[Any]] = set()

    def register(self, kind: str, handler: JobHandler) -> None:
        self.handlers[kind] = handler

    def register_batch(self, kind: str, handler: BatchHandler) -> None:
        """A handler that takes every due job of its kind at once (one query for all, not one each)."""
        self.batch_handlers[kind] = handler

    @property
    def armed(self) -> int:
        """How many timers are set (benchmarks and tests)."""
        return len(self._armed)

    def is_armed(self, job_id: int) -> bool:
        return job_id in self._armed

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        self._started = True
        await self.sweep()
        self._loops = [
            asyncio.create_task(self._timer_loop(), name="jobs-timer"),
            asyncio.create_task(self._sweep_loop(), name="jobs-sweep"),
        ]

    async def stop(self) -> None:
        self._started = False
        tasks = [*self._loops, *([self._sweep_task] if self._sweep_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops = []
        # Jobs already running finish: their transactions commit (or roll back) whole.
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
        self._armed.clear()
        self._heap.clear()

    def wake(self) -> None:
        """New jobs were committed: arm them soon (debounced to one sweep at a time)."""
        if not self._started:
            return
        if self._sweep_task is None or self._sweep_task.done():
            self._sweep_task = asyncio.get_running_loop().create_task(self._safe_sweep())

    async def _sweep_loop(self) -> None:
        while self._started:
            await asyncio.sleep(self.sweep_seconds)
            await self._safe_sweep()

    async def _safe_sweep(self) -> None:
        try:
            await self.sweep()
        except Exception:  # the database away for a moment: the next sweep tries again
            log.exception("sweep failed")

    async def sweep(self) -> None:
        horizon = self.clock() + self.window
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Job.id, Job.due_at).where(Job.done_at.is_(None), Job.due_at <= horizon).order_by(Job.due_at)
                )
            ).all()
        for job_id, due_at in rows:
            self.arm(job_id, due_at)

    def arm(self, job_id: int, due_at: datetime) -> None:
        if not self._started or job_id in self._inflight or self._armed.get(job_id) == due_at:
            return
        self._armed[job_id] = due_at
        heapq.heappush(self._heap, (due_at, job_id))
        if self._heap[0][1] == job_id:
            self._kick.set()  # earlier than what the timer sleeps for

    # ------------------------------------------------------------------ the timer

    async def _timer_loop(self) -> None:
        while self._started:
            self._kick.clear()
            now = self.clock()
            due: list[int] = []
            while self._heap and self._heap[0][0] <= now:
                at, job_id = heapq.heappop(self._heap)
                if self._armed.get(job_id) == at:  # else re-armed for another time since
                    del self._armed[job_id]
                    due.append(job_id)
            for i in range(0, len(due), self.batch):
                self._spawn(self.fire_many(due[i : i + self.batch]))
            delay = (self._heap[0][0] - now).total_seconds() if self._heap else MAX_SLEEP
            try:
                await asyncio.wait_for(self._kick.wait(), timeout=min(max(delay, 0.0), MAX_SLEEP))
            except TimeoutError:
                pass

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    # ------------------------------------------------------------------ firing

    async def fire(self, job_id: int) -> str | None:
        """Run one job if it is due and not done yet; None when there was nothing to run."""
        return (await self.fire_many([job_id])).get(job_id)

    async def fire_many(self, job_ids: Iterable[int]) -> dict[int, str | None]:
        """Claim the due, not yet done jobs among `job_ids` and run them in one transaction.

        Returns each run job's result ("error" for a failed one); jobs done already (another
        instance, a double timer) or not due yet are left out.
        """
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return {}
        self._inflight.update(ids)
        try:
            now = self.clock()
            try:
                async with writing(self.sessions) as session:
                    jobs = sorted(await self._claim(session, ids, now), key=lambda j: (j.due_at, j.id))
                    if not jobs:
                        return {}
                    observe_lateness(jobs, now)
                    results = await self._run(session, jobs)
                    stored: dict[str, list[int]] = defaultdict(list)
                    for jid, result in results.items():
                        stored[(result or "done")[:32]].append(jid)
                    for value, group in stored.items():
                        await session.execute(
                            update(Job).where(Job.id.in_(group)).values(result=value)
                            .execution_options(synchronize_session=False)
                        )
            except Exception:
                if len(ids) == 1:
                    log.exception("job %s failed", ids[0])
                    await self._retry_later(ids[0])
                    return {ids[0]: "error"}
                # One of them broke the batch: run each alone, so the others go ahead.
                log.warning("a batch of %d jobs failed; running them one by one", len(ids), exc_info=True)
                out: dict[int, str | None] = {}
                for jid in ids:
                    out.update(await self.fire_many([jid]))
                return out
        finally:
            self._inflight.difference_update(ids)
        self.after_run()
        return results

    async def _claim(self, session: AsyncSession, ids: list[int], now: datetime) -> list[Job]:
        """Mark the claimable jobs done; a conditional UPDATE, so only one claimer wins each. The
        jobs come back from the same statement (one round trip, not two)."""
        claimable = (
            select(Job.id)
            .where(Job.id.in_(ids), Job.done_at.is_(None), Job.due_at <= now)
            .with_for_update(skip_locked=True)  # PostgreSQL: rows another instance holds are its own
        )
        res = await session.scalars(
            update(Job)
            .where(Job.id.in_(claimable.scalar_subquery()))
            .values(done_at=now, attempts=Job.attempts + 1)
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        return list(res)

    async def _run(self, session: AsyncSession, jobs: list[Job]) -> dict[int, str | None]:
        by_kind: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            by_kind[job.kind].append(job)
        results: dict[int, str | None] = {}
        for kind, group in by_kind.items():
            many = self.batch_handlers.get(kind)
            if many is not None:
                got = await many(session, group)
                results.update({job.id: got.get(job.id) for job in group})
                continue
            one = self.handlers.get(kind)
            for job in group:
                results[job.id] = await one(session, job) if one is not None else "no-handler"
        return results

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
        self._inflight.discard(job_id)  # its run is over: the retry gets a timer now
        self.arm(job_id, due)
