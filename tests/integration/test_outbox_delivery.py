"""The outbox worker's exactness on a real database: parts recorded one by one, in-flight marks,
coalesced edits, edits of another row's message, chats that move or drop the bot, folding."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot import metrics
from bot.storage.db import make_session_factory, writing
from bot.storage.models import Outbox
from bot.transport.port import Fold, Keyboard, PermanentError, TransientError
from bot.transport.sender import SendLimits
from tests.integration.test_outbox_jobs import FakeApi, enqueue, load_row, load_rows, until, worker


class EditingApi(FakeApi):
    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.edits: list[tuple[int, int, str]] = []

    async def edit_message_text(self, chat_id: int, message_id: int, text: str, *,
                                keyboard: Keyboard | None = None) -> None:
        self.edits.append((chat_id, message_id, text))

    async def edit_message_keyboard(self, chat_id: int, message_id: int, keyboard: Keyboard | None) -> None:
        self.edits.append((chat_id, message_id, ""))


@dataclass
class Events:
    """A ChatEvents that records what the outbox tells it."""

    migrated: list[tuple[int, int]] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    users: list[int] = field(default_factory=list)

    async def chat_migrated(self, session: AsyncSession, old: int, new: int) -> None:
        self.migrated.append((old, new))

    async def chat_gone(self, session: AsyncSession, chat_id: int, error: str) -> None:
        self.gone.append(chat_id)

    async def user_gone(self, session: AsyncSession, user_id: int) -> None:
        self.users.append(user_id)


async def test_a_failed_second_part_never_resends_the_first(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    api = FakeApi()
    long = "长 " * 3000  # two parts
    failures = iter([TransientError("502"), TransientError("502")])
    api.fail = lambda chat, text: next(failures, None) if len(api.calls) in (2, 3) else None
    (row_id,) = await enqueue(sessions, [(-1, long)])
    w = worker(sessions, api, retry_delay=0.05)  # FAST gives up after 2 attempts: the row waits a retry
    await w.start()
    try:
        await until(lambda: len(api.sent) == 2, within=5)
        await w.drain(within=5)
    finally:
        await w.stop()
    row = await load_row(sessions, row_id)
    assert row.status == "sent" and row.attempts == 1 and row.inflight_at is None
    assert row.part_ids == [api.sent[0][2], api.sent[1][2]] and row.message_id == api.sent[0][2]
    first_part = api.sent[0][1]
    assert [t for _, t in api.calls].count(first_part) == 1  # part 1 went out once, whatever part 2 did


async def test_in_flight_is_marked_before_the_call_and_cleared_with_the_id(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    api = FakeApi()
    (row_id,) = await enqueue(sessions, [(-1, "-1:0")])
    release, entered = api.gate("-1:0")
    w = worker(sessions, api)
    await w.start()
    try:
        await asyncio.wait_for(entered.wait(), 3)
        during = await load_row(sessions, row_id)
        assert during.status == "sending" and during.inflight_at is not None and during.message_id is None
        release.set()
        await w.drain(within=3)
    finally:
        release.set()
        await w.stop()
    after = await load_row(sessions, row_id)
    assert after.status == "sent" and after.inflight_at is None and after.message_id == api.sent[0][2]


async def test_a_row_reclaimed_while_in_flight_counts_as_a_resend(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    api = FakeApi()
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    await enqueue(sessions, [(-1, "-1:0")], status="sending", claimed_at=long_ago, inflight_at=long_ago)
    await enqueue(sessions, [(-2, "-2:0")], status="sending", claimed_at=long_ago)  # claimed, never called
    before = metrics.RESENDS._value.get()
    w = worker(sessions, api, lease=1.0)
    await w.start()
    try:
        await w.drain(within=3)
    finally:
        await w.stop()
    assert sorted(api.texts()) == ["-1:0", "-2:0"]
    assert metrics.RESENDS._value.get() - before == 1


async def test_queued_edits_with_one_key_send_only_the_last(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    api = EditingApi()
    async with writing(sessions) as s:
        first = Outbox(chat_id=5, text="进度 0/3")
        s.add(first)
        await s.flush()
        for i in (1, 2, 3):
            s.add(Outbox(chat_id=5, text=f"进度 {i}/3", edit_of=first.id, coalesce_key="progress"))
    w = worker(sessions, api)
    await w.start()
    try:
        await w.drain(within=3)
    finally:
        await w.stop()
    assert api.texts() == ["进度 0/3"]
    assert api.edits == [(5, api.sent[0][2], "进度 3/3")]  # the message the first row sent, edited once
    rows = await load_rows(sessions)
    assert [r.error for r in rows] == [None, "superseded", "superseded", None]
    assert {r.status for r in rows} == {"sent"}


async def test_a_migrated_group_takes_its_queue_to_the_new_id(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    api = FakeApi()
    api.fail = lambda chat, text: (
        PermanentError(400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=-200)
        if chat == -1 else None
    )
    await enqueue(sessions, [(-1, "-1:0"), (-1, "-1:1"), (-3, "-3:0")])
    events = Events()
    w = worker(sessions, api)
    w.chat_events = events
    await w.start()
    try:
        await until(lambda: len(api.sent) == 3, within=5)
        await w.drain(within=3)
    finally:
        await w.stop()
    assert events.migrated == [(-1, -200)]
    assert [(c, t) for c, t, _ in api.sent if c == -200] == [(-200, "-1:0"), (-200, "-1:1")]  # in order
    rows = await load_rows(sessions)
    assert [(r.chat_id, r.moved_from, r.status) for r in rows[:2]] == [(-200, -1, "sent"), (-200, -1, "sent")]


async def test_a_kicked_bot_tries_once_and_fails_the_chats_queue(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    api = FakeApi()
    api.fail = lambda chat, text: (
        PermanentError(403, "Forbidden: bot was kicked from the supergroup chat") if chat == -1 else None
    )
    await enqueue(sessions, [(-1, "-1:0"), (-1, "-1:1"), (-1, "-1:2")])
    events = Events()
    w = worker(sessions, api)
    w.chat_events = events
    await w.start()
    try:
        await w.drain(within=3)
    finally:
        await w.stop()
    assert api.calls == [(-1, "-1:0")] and events.gone == [-1]
    rows = await load_rows(sessions)
    assert {(r.status, r.error) for r in rows} == {("failed", "403: Forbidden: bot was kicked from the supergroup chat")}


async def test_a_person_who_blocked_the_bot_is_reached_in_the_group(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    api = FakeApi()
    api.fail = lambda chat, text: PermanentError(403, "Forbidden: bot was blocked by the user") if chat == 7 else None
    fallback = {"chat_id": -9, "thread_id": None, "reply_to": None, "text": "@阿姨 您的诉求已受理"}
    (row_id,) = await enqueue(sessions, [(7, "您的诉求已受理")], fallback=fallback)
    events = Events()
    w = worker(sessions, api)
    w.chat_events = events
    await w.start()
    try:
        await until(lambda: len(api.sent) == 1, within=5)
        await w.drain(within=3)
    finally:
        await w.stop()
    assert events.users == [7]
    assert [(c, t) for c, t, _ in api.sent] == [(-9, "@阿姨 您的诉求已受理")]
    row = await load_row(sessions, row_id)
    assert (row.status, row.chat_id, row.moved_from) == ("sent", -9, 7)


@dataclass
class Filed:
    n: int
    private: bool

    def fold(self) -> dict[str, Any]:
        return Fold(key="filed", head="新诉求 {n} 条：", line=f"#{self.n}",
                    private_chat_id=1000 + self.n if self.private else None,
                    private_text=f"私信 #{self.n}" if self.private else None).to_json()


async def test_a_busy_chat_answers_privately_and_folds_the_rest(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    api = FakeApi()
    # Two to the group in any 0.4 s: the first two go as they are, the rest wait, so they fold.
    limits = SendLimits(global_per_second=1000, per_chat_per_second=5, per_chat_burst=2,
                        per_group_per_minute=100_000, max_attempts=2, backoff_base=0.01)
    filed = [Filed(n, private=n % 3 == 0) for n in range(1, 13)]
    async with writing(sessions) as s:
        for f in filed:
            s.add(Outbox(chat_id=-50, text=f"已收到 #{f.n}", fold=f.fold()))
    w = worker(sessions, api, limits)
    await w.start()
    try:
        await until(lambda: len(api.sent) >= 3, within=5)
        await w.drain(within=5)
    finally:
        await w.stop()
    group = [t for c, t, _ in api.sent if c == -50]
    private = sorted(t for c, t, _ in api.sent if c != -50)
    assert group[:2] == ["已收到 #1", "已收到 #2"]  # room for these: sent as they are
    assert private == sorted(f"私信 #{f.n}" for f in filed if f.private)
    folded = group[2:]
    assert len(folded) == 1 and folded[0].startswith("新诉求 6 条：")
    assert folded[0].split("\n")[1:] == [f"#{f.n}" for f in filed[2:] if not f.private]
    rows = list(await _rows(sessions))
    assert {r.status for r in rows} == {"sent"}
    lead = next(r for r in rows if r.chat_id == -50 and r.folded_into is None and r.text.endswith("#4"))
    assert all(r.folded_into == lead.id for r in rows if r.chat_id == -50 and r.id > lead.id)


async def _rows(sessions: Any) -> list[Outbox]:
    async with sessions() as s:
        return list(await s.scalars(select(Outbox).order_by(Outbox.id)))

