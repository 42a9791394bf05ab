"""Nothing lost, nothing twice: the outbox worker and the job runner on a real database.

Two "instances" are two workers (or runners) on one database: on PostgreSQL each has its own
engine, as separate processes would; on SQLite, which serves one process, they share the engine
(and so its writer lock). Telegram is a fake BotApi that records sends and can fail or block.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.scheduler.runner import MAX_ATTEMPTS, JobRunner, add_job
from bot.services.clock import ManualClock
from bot.storage.db import make_engine, make_session_factory, writing
from bot.storage.models import Job, Outbox
from bot.transport.outbox import OutboxWorker
from bot.transport.port import (
    CallbackAnswer,
    Document,
    Keyboard,
    PermanentError,
    RetryAfter,
    Sent,
    TransientError,
    User,
)
from bot.transport.sender import Sender, SendLimits

Sessions = async_sessionmaker[AsyncSession]

FAST = SendLimits(
    global_per_second=1000,
    per_chat_per_second=1000,
    per_chat_burst=1000,
    per_group_per_minute=100_000,
    max_attempts=2,
    backoff_base=0.01,
    backoff_max=0.02,
)


# ---- a fake Telegram


class FakeApi:
    """Records every send; `fail` decides an error per call, `gates` hold a text's send until set."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[tuple[int, str]] = []  # every attempt, in order
        self.sent: list[tuple[int, str, int]] = []  # accepted: (chat, text, message_id)
        self.accepted = 0  # by this connection only (see `twin`)
        self.fail: Callable[[int, str], BaseException | None] | None = None
        self.gates: dict[str, asyncio.Event] = {}
        self.entered: dict[str, asyncio.Event] = {}  # set when a gated send has begun
        self._next_id = 1000

    def twin(self) -> FakeApi:
        """Another instance's connection to the same Telegram: one shared record, its own counter."""
        other = FakeApi(self.delay)
        other.calls, other.sent, other.gates, other.entered = self.calls, self.sent, self.gates, self.entered
        other._next_id = self._next_id + 1_000_000  # message ids stay unique
        return other

    def gate(self, text: str) -> tuple[asyncio.Event, asyncio.Event]:
        self.gates[text] = asyncio.Event()
        self.entered[text] = asyncio.Event()
        return self.gates[text], self.entered[text]

    def texts(self) -> list[str]:
        return [t for _, t, _ in self.sent]

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        keyboard: Keyboard | None = None,
    ) -> Sent:
        self.calls.append((chat_id, text))
        if text in self.gates:
            self.entered[text].set()
            await self.gates[text].wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        err = self.fail(chat_id, text) if self.fail else None
        if err is not None:
            raise err
        self._next_id += 1
        self.accepted += 1
        self.sent.append((chat_id, text, self._next_id))
        return Sent(self._next_id, chat_id)

    async def get_me(self) -> User:
        return User(1, "bot", is_bot=True)

    async def send_photo(self, chat_id: int, photo: str | bytes, **kw: Any) -> Sent:
        raise NotImplementedError

    async def send_document(self, chat_id: int, document: Document, **kw: Any) -> Sent:
        raise NotImplementedError

    async def edit_message_text(
        self, chat_id: int, message_id: int, text: str, *, keyboard: Keyboard | None = None
    ) -> None:
        raise NotImplementedError

    async def pin_message(self, chat_id: int, message_id: int) -> None:
        raise NotImplementedError

    async def answer_callback(self, answer: CallbackAnswer) -> None:
        raise NotImplementedError

    async def get_chat_member_status(self, chat_id: int, user_id: int) -> str:
        return "member"

    async def get_chat_admin_ids(self, chat_id: int) -> list[int]:
        return []


# ---- helpers


@pytest.fixture
async def two(engine: AsyncEngine) -> AsyncIterator[tuple[Sessions, Sessions]]:
    """Sessions of two instances on one database."""
    if engine.dialect.name == "sqlite":
        yield make_session_factory(engine), make_session_factory(engine)
        return
    other = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        yield make_session_factory(engine), make_session_factory(other)
    finally:
        await other.dispose()


def worker(sessions: Sessions, api: FakeApi, limits: SendLimits = FAST, **kw: Any) -> OutboxWorker:
    kw.setdefault("poll", 0.02)
    return OutboxWorker(sessions, Sender(api, limits), **kw)


async def enqueue(sessions: Sessions, rows: list[tuple[int, str]], **values: Any) -> list[int]:
    async with writing(sessions) as session:
        objs = [Outbox(chat_id=chat, text=text, **values) for chat, text in rows]
        session.add_all(objs)
        await session.flush()
        return [o.id for o in objs]


async def load_rows(sessions: Sessions) -> list[Outbox]:
    async with sessions() as session:
        return list(await session.scalars(select(Outbox).order_by(Outbox.id)))


async def load_row(sessions: Sessions, row_id: int) -> Outbox:
    async with sessions() as session:
        found = await session.get(Outbox, row_id)
        assert found is not None
        return found


async def running(*workers: OutboxWorker) -> None:
    for w in workers:
        await w.start()


async def stopped(*workers: OutboxWorker) -> None:
    for w in workers:
        await w.stop()


async def until(cond: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def per_chat(sent: list[tuple[int, str, int]]) -> dict[int, list[int]]:
    """chat -> the sequence numbers (text "chat:seq") in the order Telegram accepted them."""
    out: dict[int, list[int]] = {}
    for chat, text, _ in sent:
        out.setdefault(chat, []).append(int(text.split(":")[1]))
    return out


# ---- outbox: exactly once, in order


async def test_two_instances_send_every_row_exactly_once_in_chat_order(
    two: tuple[Sessions, Sessions],
) -> None:
    api = FakeApi(delay=0.005)
    api_b = api.twin()
    chats = [-1000 - c for c in range(50)]
    # Chat-major ids and a batch of whole chats: each chat's rows are claimed together, by one
    # instance, while the two instances share the chats between them.
    ids = await enqueue(two[0], [(chat, f"{chat}:{seq}") for chat in chats for seq in range(4)])
    a, b = worker(two[0], api, batch=20), worker(two[1], api_b, batch=20)
    await running(a, b)
    try:
        await a.drain(within=10)
        await b.drain(within=10)
    finally:
        await stopped(a, b)

    assert api.accepted > 0 and api_b.accepted > 0  # both instances really worked
    texts = api.texts()
    assert len(texts) == 200 and len(set(texts)) == 200
    assert len(api.calls) == 200  # nothing was even attempted twice
    by_id = {text: mid for _, text, mid in api.sent}
    stored = await load_rows(two[0])
    assert [r.id for r in stored] == ids
    for r in stored:
        assert r.status == "sent" and r.sent_at is not None and r.error is None
        assert r.message_id == by_id[r.text]
    assert per_chat(api.sent) == {chat: [0, 1, 2, 3] for chat in chats}


async def test_two_instances_small_batches_still_exactly_once(two: tuple[Sessions, Sessions]) -> None:
    """Small batches make the instances interleave claims; still no row twice, none lost."""
    api = FakeApi(delay=0.001)
    api_b = api.twin()
    chats = [-2000 - c for c in range(50)]
    await enqueue(two[0], [(chat, f"{chat}:{seq}") for seq in range(4) for chat in chats])
    a, b = worker(two[0], api, batch=7), worker(two[1], api_b, batch=7)
    await running(a, b)
    try:
        await a.drain(within=10)
        await b.drain(within=10)
    finally:
        await stopped(a, b)
    assert sorted(api.texts()) == sorted(f"{chat}:{seq}" for chat in chats for seq in range(4))
    assert len(api.calls) == 200
    assert api.accepted > 0 and api_b.accepted > 0
    assert all(r.status == "sent" and r.message_id for r in await load_rows(two[0]))


async def test_chat_order_is_kept_across_instances(two: tuple[Sessions, Sessions]) -> None:
    api = FakeApi()
    await enqueue(two[0], [(-1, f"-1:{seq}") for seq in range(4)])
    release, entered = api.gate("-1:0")
    a = worker(two[0], api, batch=2)  # A takes -1:0 and -1:1, and hangs on -1:0
    b = worker(two[1], api.twin(), batch=2)
    await a.start()
    try:
        await asyncio.wait_for(entered.wait(), 2)
        await b.start()
        await asyncio.sleep(0.3)  # B polls while A holds the chat
        release.set()
        await a.drain(within=5)
        await b.drain(within=5)
    finally:
        release.set()
        await stopped(a, b)
    assert sorted(api.texts()) == [f"-1:{seq}" for seq in range(4)]  # exactly once holds
    assert per_chat(api.sent) == {-1: [0, 1, 2, 3]}


async def test_a_busy_chat_with_a_backlog_does_not_stall_other_chats(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    api = FakeApi()
    await enqueue(sessions, [(-1, f"-1:{seq}") for seq in range(12)] + [(-2, "-2:0")])
    release, entered = api.gate("-1:0")  # chat -1 is slow (say, a long flood wait)
    w = worker(sessions, api, batch=5)
    await w.start()
    try:
        await asyncio.wait_for(entered.wait(), 2)
        await until(lambda: "-2:0" in api.texts(), within=1.0)
    finally:
        release.set()
        await w.stop()


# ---- outbox: crashes and leases


async def test_row_left_sending_by_a_crash_is_reclaimed_after_the_lease(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    api = FakeApi()
    now = datetime.now(UTC)
    (crashed,) = await enqueue(
        sessions, [(-1, "-1:0")], status="sending", claimed_at=now - timedelta(seconds=5)
    )
    (live,) = await enqueue(sessions, [(-2, "-2:0")], status="sending", claimed_at=now + timedelta(seconds=5))
    (done,) = await enqueue(
        sessions,
        [(-3, "-3:0")],
        status="sent",
        claimed_at=now - timedelta(seconds=50),
        message_id=7,
        sent_at=now - timedelta(seconds=50),
    )
    w = worker(sessions, api, lease=1.0)
    await w.start()
    try:
        await until(lambda: len(api.sent) >= 1)
        await asyncio.sleep(0.2)  # a few more polls: nothing else may go out
    finally:
        await w.stop()
    assert api.calls == [(-1, "-1:0")]
    assert (await load_row(sessions, crashed)).status == "sent"
    assert (await load_row(sessions, crashed)).message_id == api.sent[0][2]
    assert (await load_row(sessions, live)).status == "sending"  # another instance holds it, within its lease
    untouched = await load_row(sessions, done)
    assert (untouched.status, untouched.message_id) == ("sent", 7)


async def test_a_held_row_keeps_its_lease_while_its_send_is_slow(two: tuple[Sessions, Sessions]) -> None:
    api = FakeApi()
    (row_id,) = await enqueue(two[0], [(-1, "-1:0")])
    release, entered = api.gate("-1:0")
    a = worker(two[0], api, lease=0.4, poll=0.05)
    b = worker(two[1], api.twin(), lease=0.4, poll=0.05)
    await a.start()
    try:
        await asyncio.wait_for(entered.wait(), 2)
        await b.start()
        await asyncio.sleep(1.5)  # almost four leases: A must keep renewing, B keeps polling
        assert api.calls == [(-1, "-1:0")], "B took a row A still holds"
        held = await load_row(two[1], row_id)
        assert held.status == "sending"
        release.set()
        await a.drain(within=3)
        await b.drain(within=3)
        await asyncio.sleep(0.2)
    finally:
        release.set()
        await stopped(a, b)
    assert api.calls == [(-1, "-1:0")]
    assert len(api.sent) == 1
    done = await load_row(two[0], row_id)
    assert done.status == "sent" and done.message_id == api.sent[0][2]


# ---- outbox: errors


async def test_transient_errors_back_off_then_fail_after_max_attempts(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    api = FakeApi()
    api.fail = lambda chat, text: TransientError("502: Bad Gateway")
    (row_id,) = await enqueue(sessions, [(-1, "-1:0")], not_before=clock())
    w = worker(sessions, api, clock=clock, retry_delay=10, max_attempts=3)
    await w.start()
    try:
        await w.drain(within=3)
        first = await load_row(sessions, row_id)
        assert (first.status, first.attempts) == ("pending", 1)
        assert first.not_before == clock() + timedelta(seconds=10)
        assert first.claimed_at is None and "502" in (first.error or "")
        calls = len(api.calls)
        assert calls == FAST.max_attempts  # the sender retried within the attempt

        await w.drain(within=3)  # not due yet: left alone
        await asyncio.sleep(0.1)
        assert len(api.calls) == calls

        clock.advance(timedelta(seconds=10))
        await w.drain(within=3)
        second = await load_row(sessions, row_id)
        assert (second.status, second.attempts) == ("pending", 2)
        assert second.not_before == clock() + timedelta(seconds=20)  # exponential

        clock.advance(timedelta(seconds=20))
        await w.drain(within=3)
        last = await load_row(sessions, row_id)
        assert (last.status, last.attempts) == ("failed", 3)
        assert "502" in (last.error or "")
        calls = len(api.calls)

        clock.advance(timedelta(days=1))
        await w.drain(within=3)
        await asyncio.sleep(0.1)
        assert len(api.calls) == calls  # failed is final
    finally:
        await w.stop()
    assert api.sent == []


async def test_permanent_error_fails_at_once_and_is_not_retried(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    api = FakeApi()
    api.fail = lambda chat, text: (
        PermanentError(403, "Forbidden: bot was blocked by the user") if chat == -1 else None
    )
    bad, good = await enqueue(sessions, [(-1, "-1:0"), (-2, "-2:0")], not_before=clock())
    w = worker(sessions, api, clock=clock)
    await w.start()
    try:
        await w.drain(within=3)
        clock.advance(timedelta(days=1))
        await w.drain(within=3)
        await asyncio.sleep(0.1)
    finally:
        await w.stop()
    refused = await load_row(sessions, bad)
    assert refused.status == "failed" and refused.attempts == 0
    assert refused.error == "403: Forbidden: bot was blocked by the user"
    assert refused.message_id is None
    assert api.calls.count((-1, "-1:0")) == 1
    assert (await load_row(sessions, good)).status == "sent"  # one refusing chat holds up no other


async def test_long_retry_after_is_rescheduled_not_waited_out(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    api = FakeApi()
    api.fail = lambda chat, text: RetryAfter(600)
    limits = SendLimits(
        global_per_second=1000,
        per_chat_per_second=1000,
        per_group_per_minute=100_000,
        backoff_base=0.01,
        max_retry_after=1.0,
    )
    (row_id,) = await enqueue(sessions, [(-1, "-1:0")], not_before=clock())
    w = worker(sessions, api, limits, clock=clock, retry_delay=5)
    await w.start()
    started = time.monotonic()
    try:
        await w.drain(within=3)
    finally:
        await w.stop()
    assert time.monotonic() - started < 1.0  # not 600 s, not even max_retry_after
    assert len(api.calls) == 1
    later = await load_row(sessions, row_id)
    # Flood control is not a failed attempt: the row waits as long as Telegram asked.
    assert (later.status, later.attempts) == ("pending", 0)
    assert later.not_before >= clock() + timedelta(seconds=600) and later.claimed_at is None
    assert "429" in (later.error or "")


async def test_long_retry_after_is_rescheduled_no_earlier_than_telegram_asked(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    api = FakeApi()
    api.fail = lambda chat, text: RetryAfter(600)
    limits = SendLimits(
        global_per_second=1000,
        per_chat_per_second=1000,
        per_group_per_minute=100_000,
        backoff_base=0.01,
        max_retry_after=1.0,
    )
    (row_id,) = await enqueue(sessions, [(-1, "-1:0")], not_before=clock())
    w = worker(sessions, api, limits, clock=clock, retry_delay=5)
    await w.start()
    try:
        await w.drain(within=3)
    finally:
        await w.stop()
    assert (await load_row(sessions, row_id)).not_before >= clock() + timedelta(seconds=600)


async def test_drain_returns_once_nothing_due_is_pending(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    api = FakeApi(delay=0.05)
    due = await enqueue(sessions, [(-1, "-1:0"), (-1, "-1:1"), (-2, "-2:0")], not_before=clock())
    (later,) = await enqueue(sessions, [(-3, "-3:0")], not_before=clock() + timedelta(hours=1))
    w = worker(sessions, api, clock=clock, poll=5.0)  # a long poll: drain must wake the worker itself
    await w.start()
    try:
        started = time.monotonic()
        await w.drain(within=5)
        assert time.monotonic() - started < 2.0
        # Returned only after the in-flight sends were marked, not merely claimed.
        assert [(await load_row(sessions, i)).status for i in due] == ["sent"] * 3
        assert (await load_row(sessions, later)).status == "pending"
        started = time.monotonic()
        await w.drain(within=5)  # nothing due: at once
        assert time.monotonic() - started < 0.5
    finally:
        await w.stop()
    assert sorted(api.texts()) == ["-1:0", "-1:1", "-2:0"]


async def test_drain_with_an_empty_outbox_returns_at_once(engine: AsyncEngine) -> None:
    w = worker(make_session_factory(engine), FakeApi())
    started = time.monotonic()
    await w.drain(within=5)
    assert time.monotonic() - started < 0.5


# ---- jobs


class Counter:
    """A job handler that counts its runs and can write a row and fail."""

    def __init__(self, result: str | None = "ok", fail: bool = False, delay: float = 0.0) -> None:
        self.result = result
        self.fail = fail
        self.delay = delay
        self.runs: list[tuple[int, str, int]] = []  # (job id, kind, ref_id)

    async def __call__(self, session: AsyncSession, job: Job) -> str | None:
        self.runs.append((job.id, job.kind, job.ref_id))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            session.add(Outbox(chat_id=-99, text=f"from failed attempt {len(self.runs)}"))
            await session.flush()  # really written, then rolled back with the attempt
            raise RuntimeError("handler broke")
        return self.result


async def new_job(
    sessions: Sessions, due_at: datetime, kind: str = "remind", ref_id: int = 1, guard: str = ""
) -> int:
    async with writing(sessions) as session:
        job = await add_job(session, kind, ref_id, due_at, guard)
        assert job is not None
        return job.id


async def load_job(sessions: Sessions, job_id: int) -> Job:
    async with sessions() as session:
        found = await session.get(Job, job_id)
        assert found is not None
        return found


async def test_a_due_job_fired_by_two_runners_at_once_runs_once(two: tuple[Sessions, Sessions]) -> None:
    clock = ManualClock(datetime.now(UTC))
    job_id = await new_job(two[0], clock() - timedelta(seconds=1))
    handler = Counter(delay=0.05)  # widen the window the other runner races in
    ra, rb = JobRunner(two[0], clock=clock), JobRunner(two[1], clock=clock)
    ra.register("remind", handler)
    rb.register("remind", handler)
    results = await asyncio.gather(ra.fire(job_id), rb.fire(job_id))
    assert sorted(results, key=str) == [None, "ok"]
    assert handler.runs == [(job_id, "remind", 1)]
    assert await ra.fire(job_id) is None and await rb.fire(job_id) is None  # later fires: nothing
    assert len(handler.runs) == 1
    done = await load_job(two[0], job_id)
    assert done.done_at == clock() and done.result == "ok" and done.attempts == 1


async def test_many_timers_for_one_job_run_it_once(two: tuple[Sessions, Sessions]) -> None:
    clock = ManualClock(datetime.now(UTC))
    job_id = await new_job(two[0], clock())
    handler = Counter(result=None)
    runners = [JobRunner(two[n % 2], clock=clock) for n in range(6)]
    for r in runners:
        r.register("remind", handler)
    await asyncio.gather(*(r.fire(job_id) for r in runners))
    assert len(handler.runs) == 1
    assert (await load_job(two[0], job_id)).result == "done"  # a handler's None is stored as "done"


async def test_a_job_not_yet_due_does_nothing(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    job_id = await new_job(sessions, clock() + timedelta(minutes=5))
    handler = Counter()
    runner = JobRunner(sessions, clock=clock)
    runner.register("remind", handler)
    assert await runner.fire(job_id) is None
    waiting = await load_job(sessions, job_id)
    assert waiting.done_at is None and waiting.attempts == 0 and handler.runs == []
    clock.advance(timedelta(minutes=5))
    assert await runner.fire(job_id) == "ok"
    assert len(handler.runs) == 1


async def test_add_job_twice_stores_one_row(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    due = datetime.now(UTC) + timedelta(hours=1)
    first = await new_job(sessions, due, guard="deadline-1")
    async with writing(sessions) as session:
        assert await add_job(session, "remind", 1, due + timedelta(hours=1), "deadline-1") is None
    other = await new_job(sessions, due, guard="deadline-2")  # another occasion is another job
    async with sessions() as session:
        stored = list(await session.scalars(select(Job).order_by(Job.id)))
    assert [j.id for j in stored] == [first, other]
    assert stored[0].due_at == due  # the second add did not move the first


async def test_a_failing_job_is_retried_then_given_up_and_its_writes_roll_back(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    job_id = await new_job(sessions, clock())
    handler = Counter(fail=True)
    runner = JobRunner(sessions, clock=clock)
    runner.register("remind", handler)

    assert await runner.fire(job_id) == "error"
    retry = await load_job(sessions, job_id)
    assert retry.done_at is None and retry.attempts == 1 and retry.result is None
    assert retry.due_at == clock() + timedelta(seconds=10)
    assert await runner.fire(job_id) is None  # not due again yet
    assert len(handler.runs) == 1

    for n in range(2, MAX_ATTEMPTS + 1):
        clock.advance(timedelta(seconds=10 * (n - 1)))
        assert await runner.fire(job_id) == "error"
        state = await load_job(sessions, job_id)
        assert state.attempts == n
        if n < MAX_ATTEMPTS:
            assert state.done_at is None and state.due_at == clock() + timedelta(seconds=10 * n)

    gave_up = await load_job(sessions, job_id)
    assert gave_up.done_at == clock() and gave_up.result == "gave-up" and gave_up.attempts == MAX_ATTEMPTS
    assert len(handler.runs) == MAX_ATTEMPTS
    clock.advance(timedelta(days=1))
    assert await runner.fire(job_id) is None
    assert len(handler.runs) == MAX_ATTEMPTS
    async with sessions() as session:  # every failed attempt's row was rolled back
        assert await session.scalar(select(func.count()).select_from(Outbox)) == 0


async def test_a_job_without_a_handler_is_marked_done(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    job_id = await new_job(sessions, datetime.now(UTC) - timedelta(seconds=1), kind="retired")
    assert await JobRunner(sessions).fire(job_id) == "no-handler"
    assert (await load_job(sessions, job_id)).result == "no-handler"


async def test_start_and_sweep_arm_due_jobs_and_they_fire(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    now = datetime.now(UTC)
    overdue = await new_job(sessions, now - timedelta(minutes=5), ref_id=1)  # came due while "down"
    soon = await new_job(sessions, now + timedelta(seconds=0.2), ref_id=2)
    far = await new_job(sessions, now + timedelta(hours=1), ref_id=3)
    handler = Counter()
    ran: list[int] = []
    runner = JobRunner(sessions, sweep_seconds=0.1, after_run=lambda: ran.append(1))
    runner.register("remind", handler)
    await runner.start()
    try:
        # Added after start and beyond the first sweep's horizon: a later sweep must pick it up.
        late = await new_job(sessions, datetime.now(UTC) + timedelta(seconds=0.5), ref_id=4)
        await until(lambda: len(handler.runs) >= 3, within=2.5)
        await asyncio.sleep(0.2)  # more sweeps: nothing runs twice
    finally:
        await runner.stop()
    assert sorted(r[0] for r in handler.runs) == sorted([overdue, soon, late])
    assert len(ran) == 3
    for job_id in (overdue, soon, late):
        assert (await load_job(sessions, job_id)).result == "ok"
    assert (await load_job(sessions, far)).done_at is None


async def test_stop_lets_a_running_job_finish(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    job_id = await new_job(sessions, datetime.now(UTC) - timedelta(seconds=1))
    handler = Counter(delay=0.3)
    runner = JobRunner(sessions, sweep_seconds=0.1)
    runner.register("remind", handler)
    await runner.start()
    await until(lambda: len(handler.runs) == 1)
    await runner.stop()
    assert (await load_job(sessions, job_id)).result == "ok"  # committed before stop returned


async def test_a_job_running_at_stop_is_not_lost(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    job_id = await new_job(sessions, datetime.now(UTC) - timedelta(seconds=1))
    handler = Counter(delay=0.3)
    first = JobRunner(sessions, sweep_seconds=0.1)
    first.register("remind", handler)
    await first.start()
    await until(lambda: len(handler.runs) == 1)
    await first.stop()
    # A restart: whether the first run was finished or cut off, the job ends done exactly once.
    second = JobRunner(sessions, sweep_seconds=0.1)
    second.register("remind", Counter(result="ok"))
    await second.start()
    try:
        deadline = time.monotonic() + 2
        while (await load_job(sessions, job_id)).done_at is None:
            assert time.monotonic() < deadline, "the job was lost"
            await asyncio.sleep(0.02)
    finally:
        await second.stop()
    assert (await load_job(sessions, job_id)).result == "ok"


# ---- jobs: the next window, batches


async def test_only_the_next_window_is_armed_and_later_sweeps_arm_the_rest(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    near = await new_job(sessions, clock() + timedelta(seconds=30), ref_id=1)
    far = await new_job(sessions, clock() + timedelta(hours=1), ref_id=2)
    handler = Counter()
    runner = JobRunner(sessions, clock=clock, sweep_seconds=3600, window_seconds=60)
    runner.register("remind", handler)
    await runner.start()
    try:
        assert runner.is_armed(near) and not runner.is_armed(far) and runner.armed == 1
        clock.advance(timedelta(minutes=59, seconds=30))
        await runner.sweep()
        assert runner.is_armed(far)
        await until(lambda: len(handler.runs) == 1, within=3.0)  # the timer follows the clock
        assert [r[2] for r in handler.runs] == [1] and runner.is_armed(far)
    finally:
        await runner.stop()
    assert runner.armed == 0


async def test_due_jobs_fire_together_in_one_batch_handler_call(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    ids = [await new_job(sessions, clock(), ref_id=n) for n in range(1, 8)]
    calls: list[list[int]] = []

    async def many(session: AsyncSession, jobs: list[Job]) -> dict[int, str | None]:
        calls.append([j.ref_id for j in jobs])
        session.add_all([Outbox(chat_id=-j.ref_id, text=f"r{j.ref_id}") for j in jobs])
        return {j.id: "batched" for j in jobs}

    runner = JobRunner(sessions, clock=clock)
    runner.register_batch("remind", many)
    results = await runner.fire_many(ids)
    assert calls == [[1, 2, 3, 4, 5, 6, 7]]
    assert results == {i: "batched" for i in ids}
    assert await runner.fire_many(ids) == {}  # once
    assert {(await load_job(sessions, i)).result for i in ids} == {"batched"}
    assert len(await load_rows(sessions)) == 7


async def test_a_broken_job_in_a_batch_holds_up_no_other(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    ids = [await new_job(sessions, clock(), ref_id=n) for n in range(1, 5)]

    async def many(session: AsyncSession, jobs: list[Job]) -> dict[int, str | None]:
        session.add_all([Outbox(chat_id=-j.ref_id, text=f"r{j.ref_id}") for j in jobs])
        await session.flush()
        if any(j.ref_id == 3 for j in jobs):
            raise RuntimeError("job 3 is broken")
        return {j.id: "ok" for j in jobs}

    runner = JobRunner(sessions, clock=clock)
    runner.register_batch("remind", many)
    results = await runner.fire_many(ids)
    assert results == {ids[0]: "ok", ids[1]: "ok", ids[2]: "error", ids[3]: "ok"}
    assert sorted(r.text for r in await load_rows(sessions)) == ["r1", "r2", "r4"]  # the failed batch rolled back
    broken = await load_job(sessions, ids[2])
    assert broken.done_at is None and broken.attempts == 1 and broken.due_at == clock() + timedelta(seconds=10)


async def test_two_runners_firing_the_same_batch_run_each_job_once(two: tuple[Sessions, Sessions]) -> None:
    clock = ManualClock(datetime.now(UTC))
    ids = [await new_job(two[0], clock(), ref_id=n) for n in range(1, 41)]
    handler = Counter(delay=0.002)
    ra, rb = JobRunner(two[0], clock=clock, batch=10), JobRunner(two[1], clock=clock, batch=10)
    ra.register("remind", handler)
    rb.register("remind", handler)
    halves = [ra.fire_many(ids[i : i + 10]) for i in range(0, 40, 10)] + [
        rb.fire_many(ids[i : i + 10]) for i in range(0, 40, 10)]
    results = await asyncio.gather(*halves)
    ran = sorted(r[0] for r in handler.runs)
    assert ran == ids  # every job once, whichever runner got it
    assert sum(len(r) for r in results) == 40


async def test_the_timer_fires_a_job_at_its_time(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    handler = Counter()
    runner = JobRunner(sessions, sweep_seconds=30)
    runner.register("remind", handler)
    await runner.start()
    try:
        due = datetime.now(UTC) + timedelta(seconds=0.4)
        async with writing(sessions) as session:
            await add_job(session, "remind", 9, due)
        runner.wake()
        await until(lambda: len(handler.runs) == 1, within=3.0)
        fired = datetime.now(UTC)
    finally:
        await runner.stop()
    assert timedelta(0) <= fired - due < timedelta(seconds=1)


async def test_a_failed_job_is_armed_again_for_its_retry(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    job_id = await new_job(sessions, clock())
    handler = Counter(fail=True)
    runner = JobRunner(sessions, clock=clock, sweep_seconds=3600)
    runner.register("remind", handler)
    await runner.start()
    try:
        await until(lambda: len(handler.runs) == 1 and not runner._running and runner.is_armed(job_id), within=3.0)
        retry = await load_job(sessions, job_id)
        assert retry.attempts == 1 and retry.due_at == clock() + timedelta(seconds=10)
    finally:
        await runner.stop()


async def test_a_late_timer_is_counted_in_the_lateness_histogram(engine: AsyncEngine) -> None:
    from bot import metrics

    def observed() -> tuple[float, float]:
        samples = {s.name: s.value for m in metrics.JOB_LATENESS.collect() for s in m.samples}
        return samples["linli_job_lateness_seconds_count"], samples["linli_job_lateness_seconds_sum"]

    sessions = make_session_factory(engine)
    clock = ManualClock(datetime.now(UTC))
    job_id = await new_job(sessions, clock() - timedelta(seconds=7))
    runner = JobRunner(sessions, clock=clock)
    runner.register("remind", Counter())
    count, total = observed()
    assert await runner.fire(job_id) == "ok"
    count2, total2 = observed()
    assert count2 == count + 1 and total2 - total == pytest.approx(7.0, abs=0.5)
