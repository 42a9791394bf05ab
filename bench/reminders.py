"""Meeting reminders at scale: 10,000 pending in the database, 1,000 of them due at once.

Measured on one database file (SQLite; PostgreSQL with --db):
- arming: the time from the job runner's start until its timers are set, in the runner's mode
  (the next window only, swept again every SCHEDULER_SWEEP_SECONDS) and, for comparison,
  arming every pending job and one APScheduler timer per job (the previous runner's way);
- memory: the resident set of a process that started the runner beside the same with an empty
  database (each in a fresh child process);
- lateness: how long after its due time each reminder of a burst fired (committed, its messages
  in the outbox), when 1,000 of the 10,000 fall due in the same second (the worst case of "within
  the same minute"); max and p99 (and, with --compare, with one transaction per reminder).

The reminder handler is the real one (MeetingService): each reminder reads its meeting, chat and
attendees and writes one chat message and one private message per attendee (3) to the outbox.
Judged by: arming time ÷ 2 s and p99 lateness ÷ 1 s (both must be ≤ 1).

    python -m bench.reminders [--db URL] [--pending 10000] [--burst 1000] [--quick] [--compare]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.scheduler.runner import JobRunner
from bot.services.base import ServiceContext
from bot.services.meetings import JOB_END, JOB_MINUTES, JOB_REMIND, MeetingService
from bot.services.roles import AdminCache, Roles
from bot.storage.db import make_engine, make_session_factory, migrate
from bot.storage.models import Chat, ChatMember, Community, Job, Meeting, MeetingAttendee, User
from config.settings import load_settings

COMMUNITIES = 100
USERS_PER_COMMUNITY = 10
ATTENDEES = 3
LEAD = 12.0  # seconds from the end of seeding to the burst's due time


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _remove_sqlite(url: str) -> None:
    path = url.split(":///", 1)[1]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _fresh(url: str) -> AsyncEngine:
    """An empty, migrated database at `url` (a SQLite file is recreated; PostgreSQL's schema dropped)."""
    if url.startswith("sqlite"):
        _remove_sqlite(url)
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await migrate(engine)
    return engine


async def seed(url: str, pending: int, burst: int) -> datetime:
    """Communities, members, meetings and their pending jobs; returns the burst's due time."""
    engine = await _fresh(url)
    rnd = random.Random(8)
    now = datetime.now(UTC).replace(microsecond=0)
    burst_due = now + timedelta(seconds=LEAD + 60)  # moved to its final time below
    meetings: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    attendees: list[dict[str, Any]] = []
    spread = pending - burst
    two_reminders = spread // 2
    mid = 0

    def meeting(start: datetime, offsets: list[int], cid: int) -> int:
        nonlocal mid
        mid += 1
        meetings.append({
            "id": mid, "community_id": cid, "number": mid, "kind": "congress", "audience": "member",
            "title": f"学习会 {mid}", "place": "党员活动室", "starts_at": start, "ends_at": start + timedelta(hours=2),
            "planned_at": start, "offsets": offsets, "status": "scheduled", "version": 1,
            "created_at": now, "updated_at": now,
        })
        for o in offsets:
            jobs.append({"kind": JOB_REMIND, "ref_id": mid, "guard": f"v1:{o}", "due_at": start - timedelta(seconds=o),
                         "attempts": 0, "created_at": now})
        jobs.append({"kind": JOB_END, "ref_id": mid, "guard": "v1", "due_at": start + timedelta(hours=2),
                     "attempts": 0, "created_at": now})
        jobs.append({"kind": JOB_MINUTES, "ref_id": mid, "guard": "v1", "due_at": start + timedelta(hours=14),
                     "attempts": 0, "created_at": now})
        base = (cid - 1) * USERS_PER_COMMUNITY
        for uid in rnd.sample(range(base + 1, base + USERS_PER_COMMUNITY + 1), ATTENDEES):
            attendees.append({"meeting_id": mid, "user_id": uid, "response": "attend", "responded_at": now})
        return mid

    for i in range(two_reminders):  # the rest: spread over the next four weeks
        start = now + timedelta(days=2, seconds=rnd.randrange(26 * 86400))
        meeting(start, [86400, 3600], i % COMMUNITIES + 1)
    for i in range(spread - 2 * two_reminders):
        meeting(now + timedelta(days=2, seconds=rnd.randrange(26 * 86400)), [3600], i % COMMUNITIES + 1)
    burst_ids = [meeting(burst_due + timedelta(hours=1), [3600], i % COMMUNITIES + 1) for i in range(burst)]

    async with engine.begin() as conn:
        await conn.execute(insert(Community), [
            {"id": c, "name": f"社区{c}", "timezone": "Asia/Shanghai", "locale": "zh", "config": {}, "created_at": now}
            for c in range(1, COMMUNITIES + 1)])
        await conn.execute(insert(Chat), [
            {"id": -1000 - c, "type": "supergroup", "title": f"社区{c}党支部", "is_forum": False, "community_id": c,
             "kind": "member", "bot_status": "member", "updated_at": now} for c in range(1, COMMUNITIES + 1)])
        users = range(1, COMMUNITIES * USERS_PER_COMMUNITY + 1)
        await conn.execute(insert(User), [
            {"id": u, "first_name": f"党员{u}", "started": True, "created_at": now, "updated_at": now} for u in users])
        await conn.execute(insert(ChatMember), [
            {"chat_id": -1000 - ((u - 1) // USERS_PER_COMMUNITY + 1), "user_id": u, "status": "member", "seen_at": now}
            for u in users])
        for table, rows in ((Meeting, meetings), (MeetingAttendee, attendees), (Job, jobs)):
            for i in range(0, len(rows), 2000):
                await conn.execute(insert(table), rows[i : i + 2000])
    # The burst falls due LEAD seconds from now, whatever seeding took.
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD)
    start = due + timedelta(hours=1)
    async with engine.begin() as conn:
        for i in range(0, len(burst_ids), 500):
            chunk = burst_ids[i : i + 500]
            await conn.execute(Meeting.__table__.update().where(Meeting.id.in_(chunk)).values(
                starts_at=start, ends_at=start + timedelta(hours=2), planned_at=start))
            for kind, at in ((JOB_REMIND, due), (JOB_END, start + timedelta(hours=2)),
                             (JOB_MINUTES, start + timedelta(hours=14))):
                await conn.execute(Job.__table__.update().where(Job.ref_id.in_(chunk), Job.kind == kind).values(due_at=at))
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    await engine.dispose()
    return due


def build(url: str, *, window: float | None = None, batch: int = 200) -> tuple[AsyncEngine, JobRunner, MeetingService]:
    settings = load_settings(bot_token="1:bench", database_url=url)

    async def no_lookup(*_: Any) -> Any:
        return "member"

    roles = Roles([], AdminCache(no_lookup, ttl=300))
    engine = make_engine(url)
    ctx = ServiceContext(sessions=make_session_factory(engine), roles=roles, settings=settings)
    runner = JobRunner(ctx.sessions, sweep_seconds=settings.scheduler_sweep_seconds, window_seconds=window, batch=batch)
    svc = MeetingService(ctx)
    svc.register_jobs(runner)
    return engine, runner, svc


# ---------------------------------------------------------------- child processes (memory, arming)


async def child(url: str, mode: str) -> dict[str, Any]:
    """Start the runner in `mode` (window | all | aps) in a fresh process; report time and memory."""
    engine, runner, _ = build(url, window=10 * 365 * 86400 if mode == "all" else None)
    async with engine.connect():
        pass  # connect first: the pool's first connection is not the runner's cost
    gc.collect()
    before = rss_kib()
    t0 = time.perf_counter()
    armed: int
    if mode == "aps":
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.date import DateTrigger
        from sqlalchemy import select

        aps = AsyncIOScheduler(timezone=UTC)
        aps.start()

        async def noop(_: int) -> None:
            return None

        async with runner.sessions() as s:
            rows = (await s.execute(select(Job.id, Job.due_at).where(Job.done_at.is_(None), Job.kind == JOB_REMIND))).all()
        for job_id, due in rows:
            aps.add_job(noop, DateTrigger(run_date=due), args=[job_id], id=f"job-{job_id}", misfire_grace_time=None)
        armed = len(rows)
        elapsed = time.perf_counter() - t0
        aps.shutdown(wait=False)
    else:
        await runner.start()
        elapsed = time.perf_counter() - t0
        armed = runner.armed
    gc.collect()
    after = rss_kib()
    if mode != "aps":
        await runner.stop()
    await engine.dispose()
    return {"mode": mode, "seconds": elapsed, "armed": armed, "rss_kib": after, "rss_before_kib": before}


def run_child(url: str, mode: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.reminders", "--child", mode, "--db", url],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- lateness


class TimedRunner(JobRunner):
    """Notes when each job's transaction committed."""

    fired: dict[int, float]

    async def fire_many(self, job_ids: Any) -> dict[int, str | None]:
        results = await super().fire_many(job_ids)
        stamp = time.time()
        for jid, result in results.items():
            if result == "reminded":
                self.fired.setdefault(jid, stamp)
        return results


async def lateness(url: str, due: datetime, burst: int, *, batch: int) -> dict[str, Any]:
    engine, plain, svc = build(url, batch=batch)
    runner = TimedRunner(plain.sessions, sweep_seconds=plain.sweep_seconds, batch=batch)
    runner.fired = {}
    svc.register_jobs(runner)
    await runner.start()
    cpu_at_due: float | None = None
    try:
        deadline = time.monotonic() + LEAD + 300
        while len(runner.fired) < burst and time.monotonic() < deadline:
            if cpu_at_due is None and time.time() >= due.timestamp():
                cpu_at_due = time.process_time()
            await asyncio.sleep(0.01)
        cpu = time.process_time() - (cpu_at_due or time.process_time())
    finally:
        await runner.stop()
        await engine.dispose()
    late = sorted(stamp - due.timestamp() for stamp in runner.fired.values())
    if not late:
        raise RuntimeError("no reminder fired")
    p99 = late[min(len(late) - 1, int(0.99 * len(late)))]
    return {"fired": len(late), "max": late[-1], "p99": p99, "p50": late[len(late) // 2], "min": late[0],
            "cpu": cpu}


# ---------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> None:
    tmp = tempfile.TemporaryDirectory()
    url = args.db or f"sqlite+aiosqlite:///{Path(tmp.name) / 'reminders.sqlite3'}"
    db_name = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    settings = load_settings(bot_token="1:bench")
    window = 2 * settings.scheduler_sweep_seconds
    print(f"reminders benchmark on {db_name}: {args.pending} pending reminders, {args.burst} due in the same second")
    print(f"mode: arm only the next window ({window:.0f} s ahead) and sweep every "
          f"{settings.scheduler_sweep_seconds:.0f} s; due jobs fire in batches (one transaction each)")

    await (await _fresh(url)).dispose()
    base = run_child(url, "window")  # the same database, empty
    t0 = time.perf_counter()
    await seed(url, args.pending, args.burst)
    print(f"seeded in {time.perf_counter() - t0:.1f} s (not measured)")
    print("\narming (a fresh process each; time from the runner's start until its timers are set):")
    results = {}
    for mode, label in (("window", "next window (the runner)"), ("all", "every pending job"),
                        ("aps", "APScheduler, one timer per reminder")):
        if args.quick and mode != "window":
            continue
        r = run_child(url, mode)
        results[mode] = r
        print(f"  {label:38s} {r['seconds'] * 1000:8.1f} ms  armed {r['armed']:6d}  "
              f"RSS {r['rss_kib'] / 1024:6.1f} MiB (+{(r['rss_kib'] - base['rss_kib']) / 1024:5.1f} MiB beside an empty database)")
    print(f"  empty database                         {base['seconds'] * 1000:8.1f} ms  armed {base['armed']:6d}  "
          f"RSS {base['rss_kib'] / 1024:6.1f} MiB")

    # The burst: reseed so it falls due LEAD seconds after the start of each run.
    late_runs = [("the runner (batches of 200)", 200)] + ([("one transaction per reminder", 1)] if args.compare else [])
    print(f"\nlateness of {args.burst} reminders due in the same second (fired = committed with their messages;"
          f" CPU = this process's CPU time from the due time until the last one fired):")
    main_late = None
    for label, batch in late_runs:
        due = await seed(url, args.pending, args.burst)
        load = os.getloadavg()[0]
        r = await lateness(url, due, args.burst, batch=batch)
        main_late = main_late or r
        print(f"  {label:30s} fired {r['fired']:5d}  p50 {r['p50']:6.3f} s  p99 {r['p99']:6.3f} s  "
              f"max {r['max']:6.3f} s  CPU {r['cpu']:5.2f} s  (load average {load:.1f} on {os.cpu_count()} cores)")

    assert main_late is not None
    arm = results["window"]["seconds"]
    print(f"\narming ÷ target 2 s:        {arm / 2.0:.3f}")
    print(f"p99 lateness ÷ target 1 s:  {main_late['p99'] / 1.0:.3f}")
    tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="database URL (its public schema is dropped and rebuilt); default a temporary SQLite file")
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=1_000)
    parser.add_argument("--quick", action="store_true", help="the runner's mode only")
    parser.add_argument("--compare", action="store_true", help="also the burst with one transaction per reminder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        print(json.dumps(asyncio.run(child(args.db, args.child))))
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
