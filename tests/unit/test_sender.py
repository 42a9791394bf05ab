"""The sender against a scriptable fake BotApi: limits, order, retries, splitting, coalescing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from bot import metrics
from bot.transport.errors import ErrorKind
from bot.transport.port import (
    Accepted,
    Button,
    CallbackAnswer,
    Document,
    Keyboard,
    OutMessage,
    PermanentError,
    RetryAfter,
    Sent,
    TransientError,
    User,
)
from bot.transport.sender import RETRY_AFTER_MARGIN, Sender, SendLimits
from bot.transport.split import visible_length
from tests.fakeapi.server import max_in_window

FAST = SendLimits(
    global_per_second=10_000,
    per_chat_per_second=10_000,
    per_chat_burst=10_000,
    per_group_per_minute=10_000,
    max_attempts=5,
    backoff_base=0.001,
    backoff_max=0.01,
)
KB = Keyboard.of([Button("Yes", "y")])


@dataclass
class Call:
    method: str
    chat_id: int
    args: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


Rule = Callable[[Call], BaseException | None]


class FakeApi:
    """Records every call; `fail(...)` queues errors, `rules` decide per call."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[Call] = []
        self.delay = delay
        self.delays: dict[int, float] = {}  # per chat
        self.queued: dict[str, list[BaseException]] = {}
        self.rules: list[Rule] = []
        self._next_id = 100

    def fail(self, method: str, *errors: BaseException) -> None:
        self.queued.setdefault(method, []).extend(errors)

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def _do(self, method: str, chat_id: int, **args: Any) -> Sent:
        call = Call(method, chat_id, args)
        self.calls.append(call)
        delay = self.delays.get(chat_id, self.delay)
        if delay:
            await asyncio.sleep(delay)
        for rule in self.rules:
            err = rule(call)
            if err is not None:
                raise err
        queue = self.queued.get(method)
        if queue:
            raise queue.pop(0)
        self._next_id += 1
        return Sent(self._next_id, chat_id)

    async def get_me(self) -> User:
        return User(1, "bot", is_bot=True)

    async def send_message(self, chat_id: int, text: str, *, thread_id: int | None = None,
                           reply_to_message_id: int | None = None, keyboard: Keyboard | None = None) -> Sent:
        return await self._do("send_message", chat_id, text=text, thread_id=thread_id,
                              reply_to=reply_to_message_id, keyboard=keyboard)

    async def send_photo(self, chat_id: int, photo: str | bytes, *, caption: str | None = None,
                         thread_id: int | None = None, reply_to_message_id: int | None = None,
                         keyboard: Keyboard | None = None) -> Sent:
        return await self._do("send_photo", chat_id, photo=photo, caption=caption, thread_id=thread_id,
                              reply_to=reply_to_message_id, keyboard=keyboard)

    async def send_document(self, chat_id: int, document: Document, *, caption: str | None = None,
                            thread_id: int | None = None, reply_to_message_id: int | None = None) -> Sent:
        return await self._do("send_document", chat_id, document=document, caption=caption, thread_id=thread_id,
                              reply_to=reply_to_message_id)

    async def edit_message_text(self, chat_id: int, message_id: int, text: str, *,
                                keyboard: Keyboard | None = None) -> None:
        await self._do("edit", chat_id, message_id=message_id, text=text, keyboard=keyboard)

    async def edit_message_keyboard(self, chat_id: int, message_id: int, keyboard: Keyboard | None) -> None:
        await self._do("edit_keyboard", chat_id, message_id=message_id, keyboard=keyboard)

    async def pin_message(self, chat_id: int, message_id: int) -> None:
        await self._do("pin", chat_id, message_id=message_id)

    async def answer_callback(self, answer: CallbackAnswer) -> None:
        await self._do("answer", 0, answer=answer)

    async def get_chat_member_status(self, chat_id: int, user_id: int) -> str:
        return "member"


class Sleeps:
    """A sleep that records what it was asked for and returns at once."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0)


def make(limits: SendLimits = FAST, **kw: Any) -> tuple[FakeApi, Sender]:
    api = FakeApi(delay=kw.pop("delay", 0.0))
    return api, Sender(api, limits, **kw)


# ---- order and concurrency


async def test_messages_to_one_chat_keep_their_order() -> None:
    api, sender = make()
    api.delays[1] = 0.002
    api.fail("send_message", TransientError("reset"))  # the first one even needs a retry
    results = await asyncio.gather(*(sender.send(OutMessage(1, f"m{i}")) for i in range(20)))
    assert all(r.ok for r in results)
    assert [c.args["text"] for c in api.of("send_message") if c is not api.calls[0]] == [f"m{i}" for i in range(20)]


async def test_chats_proceed_concurrently_while_one_waits_out_a_429() -> None:
    api, sender = make()
    api.rules.append(lambda c: RetryAfter(0.4) if c.chat_id == 1 and len(api.of("send_message")) == 1 else None)
    t0 = time.monotonic()
    slow = asyncio.create_task(sender.send(OutMessage(1, "slow")))
    await asyncio.sleep(0)
    fast = await asyncio.gather(*(sender.send(OutMessage(2, f"f{i}")) for i in range(3)))
    fast_done = time.monotonic() - t0
    assert all(r.ok for r in fast)
    assert fast_done < 0.2
    assert (await slow).ok
    assert time.monotonic() - t0 >= 0.4


async def test_slow_chat_does_not_stall_others() -> None:
    api, sender = make()
    api.delays[1] = 0.5
    slow = asyncio.create_task(sender.send(OutMessage(1, "slow")))
    t0 = time.monotonic()
    for i in range(5):
        assert (await sender.send(OutMessage(2 + i, "x"))).ok
    assert time.monotonic() - t0 < 0.2
    await slow


# ---- rate limits


async def test_global_rate_limit() -> None:
    api, sender = make(SendLimits(global_per_second=20, per_chat_per_second=100, per_chat_burst=10))
    t0 = time.monotonic()
    results = await asyncio.gather(*(sender.send(OutMessage(1000 + i, "x")) for i in range(40)))
    elapsed = time.monotonic() - t0
    assert all(r.ok for r in results)
    assert 0.95 <= elapsed < 3.0  # 20 at once, then the next 20 once the first have left the window
    times = sorted(c.at for c in api.calls)
    # A sliding window, not a leaky bucket: never more than 20 in any second (a bucket of 20
    # refilling at 20/s would have let ~40 through in the first one).
    assert max_in_window(times, 1.0) <= 20
    assert times[20] - times[0] >= 1.0


async def test_per_chat_rate_allows_a_burst_then_the_average() -> None:
    api, sender = make(SendLimits(global_per_second=1000, per_chat_per_second=10, per_chat_burst=3))
    t0 = time.monotonic()
    await asyncio.gather(*(sender.send(OutMessage(5, f"{i}")) for i in range(8)))
    times = [c.at - t0 for c in api.calls]
    assert max(times[:3]) < 0.05  # the burst
    assert times[-1] >= 0.45  # 5 more at 10/s


async def test_group_chats_also_have_a_per_minute_limit() -> None:
    api, sender = make(SendLimits(global_per_second=1000, per_chat_per_second=1000, per_chat_burst=1000,
                                  per_group_per_minute=2))
    assert (await sender.send(OutMessage(-100, "1"))).ok
    assert (await sender.send(OutMessage(-100, "2"))).ok
    third = asyncio.create_task(sender.send(OutMessage(-100, "3")))
    # A private chat is not bound by the group limit, and the third group message must wait ~30 s.
    for i in range(5):
        assert (await sender.send(OutMessage(7, f"p{i}"))).ok
    await asyncio.sleep(0.2)
    assert not third.done()
    assert [c.args["text"] for c in api.calls if c.chat_id == -100] == ["1", "2"]
    for t in list(sender._inflight):
        t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third


async def test_callback_answers_are_not_rate_limited() -> None:
    api, sender = make(SendLimits(global_per_second=1, per_chat_per_second=1, per_chat_burst=1))
    t0 = time.monotonic()
    for i in range(5):
        assert await sender.answer_callback(CallbackAnswer(f"q{i}"))
    assert time.monotonic() - t0 < 0.2
    assert len(api.of("answer")) == 5


# ---- errors


async def test_retry_after_is_honoured_exactly() -> None:
    sleeps = Sleeps()
    api, sender = make(sleep=sleeps)
    api.fail("send_message", RetryAfter(7), RetryAfter(3))
    result = await sender.send(OutMessage(1, "hi"))
    assert result.ok and len(result.message_ids) == 1
    assert sleeps.asked == [pytest.approx(7 + RETRY_AFTER_MARGIN), pytest.approx(3 + RETRY_AFTER_MARGIN)]
    assert len(api.of("send_message")) == 3


async def test_retry_after_does_not_use_up_attempts_but_is_bounded() -> None:
    sleeps = Sleeps()
    api, sender = make(replace(FAST, max_attempts=2), sleep=sleeps)
    api.fail("send_message", *[RetryAfter(1) for _ in range(5)])
    assert (await sender.send(OutMessage(1, "a"))).ok  # 5 floods > max_attempts, still fine
    api.fail("send_message", *[RetryAfter(1) for _ in range(50)])
    result = await sender.send(OutMessage(1, "b"))
    assert not result.ok and not result.permanent
    assert "429" in (result.error or "")
    assert len(api.of("send_message")) == 6 + 11


async def test_very_long_retry_after_is_left_to_the_caller() -> None:
    sleeps = Sleeps()
    api, sender = make(replace(FAST, max_retry_after=60), sleep=sleeps)
    api.fail("send_message", RetryAfter(3600))
    result = await sender.send(OutMessage(1, "a"))
    assert not result.ok and not result.permanent
    assert sleeps.asked == []


async def test_transient_errors_are_retried_with_growing_backoff() -> None:
    sleeps = Sleeps()
    api, sender = make(replace(FAST, backoff_base=0.5, backoff_max=30), sleep=sleeps)
    api.fail("send_message", TransientError("502 Bad Gateway"), TransientError("timeout"), TransientError("reset"))
    result = await sender.send(OutMessage(1, "hi"))
    assert result.ok
    assert len(api.of("send_message")) == 4
    assert [0.5, 1.0, 2.0] == [pytest.approx(s, rel=0.11) for s in sleeps.asked]
    assert all(s >= b for s, b in zip(sleeps.asked, [0.5, 1.0, 2.0], strict=True))


async def test_transient_errors_give_up_after_max_attempts() -> None:
    sleeps = Sleeps()
    api, sender = make(replace(FAST, max_attempts=3, backoff_base=1, backoff_max=1.5), sleep=sleeps)
    api.fail("send_message", *[TransientError("500") for _ in range(10)])
    result = await sender.send(OutMessage(1, "hi"))
    assert not result.ok and not result.permanent
    assert len(api.of("send_message")) == 3
    assert max(sleeps.asked) <= 1.5  # capped at backoff_max


async def test_permanent_error_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    api, sender = make()
    api.fail("send_message", PermanentError(403, "Forbidden: bot was blocked by the user"))
    with caplog.at_level(logging.WARNING, logger="linli.sender"):
        result = await sender.send(OutMessage(1, "hi"))
    assert result == type(result)(False, [], "403: Forbidden: bot was blocked by the user", permanent=True,
                                  kind=ErrorKind.USER_GONE)
    assert len(api.calls) == 1
    assert "blocked by the user" in caplog.text


async def test_edit_not_modified_counts_as_success() -> None:
    api, sender = make()
    api.fail("edit", PermanentError(400, "Bad Request: message is not modified: specified new message content "
                                         "and reply markup are exactly the same"))
    result = await sender.send(OutMessage(1, "same", edit_message_id=55))
    assert result.ok and result.message_ids == [55]
    assert len(api.calls) == 1


async def test_other_edit_errors_fail() -> None:
    api, sender = make()
    api.fail("edit", PermanentError(400, "Bad Request: message to edit not found"))
    result = await sender.send(OutMessage(1, "x", edit_message_id=55))
    assert not result.ok and result.permanent


async def test_vanished_reply_target_is_dropped_once() -> None:
    api, sender = make()
    api.rules.append(lambda c: PermanentError(400, "Bad Request: message to be replied not found")
                     if c.args.get("reply_to") else None)
    result = await sender.send(OutMessage(1, "hi", reply_to_message_id=9))
    assert result.ok
    assert [c.args["reply_to"] for c in api.calls] == [9, None]


async def test_vanished_topic_is_dropped_once() -> None:
    api, sender = make()
    api.rules.append(lambda c: PermanentError(400, "Bad Request: message thread not found")
                     if c.args.get("thread_id") else None)
    result = await sender.send(OutMessage(-100, "x" * 5000, thread_id=3))
    assert result.ok and len(result.message_ids) == 2
    assert [c.args["thread_id"] for c in api.calls] == [3, None, None]  # later parts skip the dead topic


async def test_empty_text_is_refused_without_a_call() -> None:
    api, sender = make()
    result = await sender.send(OutMessage(1, "  "))
    assert not result.ok and result.permanent
    assert api.calls == []


# ---- shapes


async def test_long_text_is_split_keyboard_last_reply_first() -> None:
    api, sender = make()
    text = "\n".join(f"<b>{i}</b> " + "邻" * 90 for i in range(100))  # ~9,500 visible
    result = await sender.send(OutMessage(1, text, reply_to_message_id=7, keyboard=KB, thread_id=4))
    calls = api.of("send_message")
    assert result.ok and len(result.message_ids) == len(calls) == 3
    assert [c.args["reply_to"] for c in calls] == [7, None, None]
    assert [c.args["keyboard"] for c in calls] == [None, None, KB]
    assert all(c.args["thread_id"] == 4 for c in calls)
    assert all(visible_length(c.args["text"]) <= 4096 for c in calls)


async def test_partial_failure_reports_what_was_sent() -> None:
    api, sender = make()
    api.rules.append(lambda c: PermanentError(400, "Bad Request: boom") if len(api.calls) == 2 else None)
    result = await sender.send(OutMessage(1, "x " * 5000))
    assert not result.ok and result.permanent
    assert len(result.message_ids) == 1


async def test_photo_with_short_caption_is_one_call() -> None:
    api, sender = make()
    result = await sender.send(OutMessage(1, "<b>cap</b>", photo="file-1", keyboard=KB, reply_to_message_id=3))
    assert result.ok and len(result.message_ids) == 1
    [call] = api.calls
    assert call.method == "send_photo"
    assert call.args == {"photo": "file-1", "caption": "<b>cap</b>", "thread_id": None, "reply_to": 3, "keyboard": KB}


async def test_photo_caption_overflow_becomes_photo_then_text() -> None:
    api, sender = make()
    text = "长" * 2000
    result = await sender.send(OutMessage(1, text, photo_bytes=b"\x89PNG", keyboard=KB, reply_to_message_id=3))
    assert result.ok and len(result.message_ids) == 2
    photo, msg = api.calls
    assert photo.method == "send_photo" and photo.args["caption"] is None and photo.args["keyboard"] is None
    assert photo.args["photo"] == b"\x89PNG" and photo.args["reply_to"] == 3
    assert msg.method == "send_message" and msg.args["text"] == text
    assert msg.args["keyboard"] == KB and msg.args["reply_to"] is None


async def test_document_with_caption() -> None:
    api, sender = make()
    doc = Document("report.csv", b"a,b\n")
    result = await sender.send(OutMessage(1, "report", document=doc))
    assert result.ok
    [call] = api.calls
    assert call.method == "send_document" and call.args["caption"] == "report" and call.args["document"] == doc


async def test_pin_first_message_and_pin_failure_does_not_fail() -> None:
    api, sender = make()
    result = await sender.send(OutMessage(-100, "y " * 3000, pin=True))
    assert result.ok and len(result.message_ids) == 2
    assert api.of("pin")[0].args["message_id"] == result.message_ids[0]

    api.fail("pin", PermanentError(400, "Bad Request: not enough rights to manage pinned messages in the chat"))
    result = await sender.send(OutMessage(-100, "z", pin=True))
    assert result.ok and len(result.message_ids) == 1


# ---- coalescing


async def test_rapid_edits_coalesce_into_the_last() -> None:
    api, sender = make(delay=0.01)
    results = await asyncio.gather(*(sender.send(OutMessage(1, f"roster v{i}", edit_message_id=42))
                                     for i in range(50)))
    edits = api.of("edit")
    assert len(edits) < 5
    assert edits[-1].args["text"] == "roster v49"
    assert all(r.ok and r.message_ids == [42] for r in results)


async def test_edits_queue_behind_one_in_flight_and_collapse() -> None:
    api, sender = make(delay=0.05)
    first = asyncio.create_task(sender.send(OutMessage(1, "v0", edit_message_id=42, coalesce_key="roster")))
    await asyncio.sleep(0.01)  # v0 is now in flight
    later = [asyncio.create_task(sender.send(OutMessage(1, f"v{i}", edit_message_id=42, coalesce_key="roster")))
             for i in range(1, 50)]
    results = await asyncio.gather(first, *later)
    assert [c.args["text"] for c in api.of("edit")] == ["v0", "v49"]
    assert all(r.ok for r in results)
    assert sender.coalesced == 48


async def test_edits_of_different_messages_are_not_merged() -> None:
    api, sender = make(delay=0.01)
    await asyncio.gather(*(sender.send(OutMessage(1, f"t{i}", edit_message_id=i)) for i in range(5)))
    assert sorted(c.args["message_id"] for c in api.of("edit")) == [0, 1, 2, 3, 4]


async def test_over_long_edit_is_truncated() -> None:
    api, sender = make()
    assert (await sender.send(OutMessage(1, "e" * 5000, edit_message_id=1))).ok
    assert visible_length(api.calls[0].args["text"]) == 4096


# ---- lifecycle


async def test_close_waits_for_in_flight_sends() -> None:
    api, sender = make(delay=0.1)
    tasks = [asyncio.create_task(sender.send(OutMessage(i, "x"))) for i in range(3)]
    await asyncio.sleep(0)
    await sender.close()
    assert len(api.calls) == 3
    assert all(t.done() for t in tasks)


async def test_a_cancelled_caller_does_not_cut_the_send() -> None:
    api, sender = make(delay=0.05)
    task = asyncio.create_task(sender.send(OutMessage(1, "x " * 3000)))
    await asyncio.sleep(0.01)
    task.cancel()
    await sender.close()
    assert len(api.calls) == 2


async def test_idle_chat_limiters_are_dropped() -> None:
    now = [0.0]
    api, sender = make(clock=lambda: now[0])
    for i in range(100):
        await sender.send(OutMessage(i, "x"))
    assert len(sender._chats) == 100
    now[0] += FAST.idle_seconds + 1
    await sender.send(OutMessage(1000, "x"))
    assert set(sender._chats) == {1000}


async def test_edit_after_a_cancelled_queued_edit_still_goes_out() -> None:
    api, sender = make(delay=0.05)
    first = asyncio.create_task(sender.send(OutMessage(1, "busy")))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(sender.send(OutMessage(1, "v1", edit_message_id=42)))
    await asyncio.sleep(0)
    [slot] = sender._edits.values()
    assert slot.task is not None
    slot.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert (await sender.send(OutMessage(1, "v2", edit_message_id=42))).ok
    await first
    assert [c.args["text"] for c in api.of("edit")] == ["v2"]
    assert sender._chats[1].refs == 0


# ---- exactness: parts, unreadable answers, lost answers, refusals that say where to go


class Parts:
    """A PartLog that remembers what it was told (the outbox persists the same calls)."""

    def __init__(self, done: list[int | None] | None = None) -> None:
        self.done: list[int | None] = list(done or [])
        self.events: list[tuple[str, int, int | None]] = []

    async def sending(self, part: int) -> None:
        self.events.append(("sending", part, None))

    async def sent(self, part: int, message_id: int | None, last: bool = False) -> None:
        self.events.append(("sent", part, message_id))


async def test_each_part_is_marked_in_flight_then_delivered() -> None:
    api, sender = make()
    parts = Parts()
    result = await sender.send(OutMessage(1, "x " * 3000), parts)
    assert result.ok and len(result.message_ids) == 2
    assert parts.events == [("sending", 0, None), ("sent", 0, result.message_ids[0]),
                            ("sending", 1, None), ("sent", 1, result.message_ids[1])]


async def test_a_retry_never_sends_a_delivered_part_again() -> None:
    api, sender = make(replace(FAST, max_attempts=1))
    api.rules.append(lambda c: TransientError("502") if len(api.calls) == 2 else None)
    parts = Parts()
    first = await sender.send(OutMessage(1, "x " * 3000), parts)
    assert not first.ok and not first.permanent and len(first.message_ids) == 1
    delivered = [mid for kind, _, mid in parts.events if kind == "sent"]
    again = Parts(delivered)  # what the outbox row recorded
    second = await sender.send(OutMessage(1, "x " * 3000), again)
    assert second.ok and second.message_ids[0] == first.message_ids[0]
    texts = [c.args["text"] for c in api.of("send_message")]
    assert len(texts) == 3 and texts[0] != texts[1] == texts[2]  # part 1 once, part 2 twice (it failed once)


async def test_an_unreadable_200_is_a_delivery_never_repeated(caplog: pytest.LogCaptureFixture) -> None:
    api, sender = make()
    api.fail("send_message", Accepted(None, "ValidationError: chat missing"))
    parts = Parts()
    with caplog.at_level(logging.WARNING, logger="linli.sender"):
        result = await sender.send(OutMessage(1, "hi"), parts)
    assert result.ok and result.message_ids == [None]
    assert parts.events == [("sending", 0, None), ("sent", 0, None)]
    assert len(api.calls) == 1 and "unreadable" in caplog.text


async def test_a_lost_answer_is_retried_and_counted_as_a_resend() -> None:
    api, sender = make()
    api.fail("send_message", TransientError("ReadTimeout", maybe_sent=True), TransientError("502"))
    before = metrics.RESENDS._value.get()
    result = await sender.send(OutMessage(1, "hi"))
    assert result.ok and len(api.calls) == 3
    assert metrics.RESENDS._value.get() - before == 1  # only the retry after the lost answer


async def test_a_migrated_group_is_reported_with_its_new_id() -> None:
    api, sender = make()
    api.fail("send_message", PermanentError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                                            migrate_to_chat_id=-100777))
    result = await sender.send(OutMessage(-5, "hi"))
    assert not result.ok and result.permanent
    assert (result.kind, result.migrate_to_chat_id) == (ErrorKind.MIGRATED, -100777)


async def test_to_one_chat_at_most_the_burst_in_any_window() -> None:
    api, sender = make(SendLimits(global_per_second=1000, per_chat_per_second=20, per_chat_burst=5))
    await asyncio.gather(*(sender.send(OutMessage(5, f"{i}")) for i in range(12)))
    times = [c.at for c in api.calls]
    assert max_in_window(times, 0.25) <= 5  # 5 in any 5 / 20 s
    assert times[-1] - times[0] >= 0.5


async def test_a_keyboard_only_edit_uses_edit_reply_markup() -> None:
    api, sender = make()
    assert (await sender.send(OutMessage(1, "", keyboard=KB, edit_message_id=9))).ok
    assert [c.method for c in api.calls] == ["edit_keyboard"]
