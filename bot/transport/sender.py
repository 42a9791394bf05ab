"""The one way out: every outgoing message passes here, within Telegram's limits.

- Rate limits: sliding windows (bot/transport/limits.py), exact in every window: at most
  SEND_RATE_GLOBAL calls in any second in all; to one chat at most SEND_BURST_PER_CHAT in any
  burst / SEND_RATE_PER_CHAT seconds (5 in any 5 s); to one group at most SEND_RATE_PER_GROUP
  in any minute.
- Order: messages to one chat go out in the order `send` was called (a per-chat lock, which
  asyncio hands over first-come first-served); other chats are not held up by a slow one.
- Errors (one table for both frameworks, bot/transport/errors.py): a 429 waits out
  `retry_after` for that chat only; network errors and 5xx back off exponentially with jitter;
  400/403/404 give up at once with a logged reason and its kind (migrated, chat gone, user
  gone). A 200 whose answer the framework could not read is a delivery, never repeated.
- Parts: a long text is several messages; with a `PartLog` each part is recorded as it goes, so
  a retry (or a restart) never sends a delivered part again.
- Shape: an over-long caption becomes a bare photo plus text messages; queued edits of one
  message collapse into the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from bot import metrics
from bot.transport.errors import ErrorKind, kind_of, recording
from bot.transport.limits import LocalLimiter, Rate, RateLimiter, Rule
from bot.transport.port import (
    Accepted,
    BotApi,
    BotApiError,
    CallbackAnswer,
    Keyboard,
    OutMessage,
    PermanentError,
    RetryAfter,
    Sent,
    TransientError,
)
from bot.transport.split import (
    CAPTION_LIMIT,
    RAW_LIMIT,
    TEXT_LIMIT,
    split_html,
    truncate_html,
    visible_length,
)

log = logging.getLogger("linli.sender")

T = TypeVar("T")

RETRY_AFTER_MARGIN = 0.1  # seconds added to Telegram's retry_after, so we land after its window
MAX_RETRY_AFTERS = 10  # 429s tolerated per call before giving up (guards against an endless loop)
CALLBACK_MAX_WAIT = 5.0  # a callback answer later than this is useless: the spinner has timed out

_REPLY_GONE = ("message to be replied not found", "replied message not found")
_THREAD_GONE = "message thread not found"
_NOT_MODIFIED = "message is not modified"


@dataclass(frozen=True)
class SendLimits:
    global_per_second: float = 30.0
    per_chat_per_second: float = 1.0
    per_chat_burst: int = 5  # at most this many to one chat in any burst / per_chat_per_second seconds
    per_group_per_minute: int = 20
    max_attempts: int = 5
    backoff_base: float = 0.5  # seconds; exponential, capped at backoff_max, with small jitter
    backoff_max: float = 30.0
    # A 429 asking for longer than this is not waited out here: the send fails (not permanently)
    # so a caller with a queue (the outbox) can reschedule instead of holding the chat that long.
    max_retry_after: float = 300.0
    idle_seconds: float = 300.0  # per-chat state unused this long is dropped

    def chat_rates(self, chat_id: int) -> list[Rate]:
        burst = max(1, self.per_chat_burst)
        rates = [Rate(burst, burst / self.per_chat_per_second)]
        if chat_id < 0:
            rates.insert(0, Rate(max(1, self.per_group_per_minute), 60.0))
        return rates

    def rules(self, chat_id: int) -> list[Rule]:
        """The windows a call to `chat_id` must fit, scarcest first (a call waiting for its group's
        minute holds no place in the global second meanwhile)."""
        rates = self.chat_rates(chat_id)
        keyed: list[Rule] = [(("group", chat_id), rates[0])] if chat_id < 0 else []
        keyed.append((("chat", chat_id), rates[-1]))
        keyed.append(("global", Rate.per_second(self.global_per_second)))
        return keyed

    def pace(self, chat_id: int) -> float:
        """Seconds between messages that one chat can take for ever (3 s for a group at 20/min)."""
        return max(r.pace for r in self.chat_rates(chat_id))


class PartLog(Protocol):
    """Where a caller (the outbox) records each part of a message as it goes out."""

    @property
    def done(self) -> Sequence[int | None]:
        """Message ids of the parts delivered before: these are skipped."""
        ...

    async def sending(self, part: int) -> None:
        """Part `part` is about to be sent (called after its rate-limit wait, just before the call)."""

    async def sent(self, part: int, message_id: int | None, last: bool = False) -> None:
        """Telegram accepted part `part` (`last`: the message's last; the caller learns of it at once
        anyway, from send()'s result, so it may record that one together with the outcome)."""


@dataclass
class SendResult:
    ok: bool
    message_ids: list[int | None]  # one per part sent (None: accepted, id unreadable)
    error: str | None = None  # e.g. "403: Forbidden: bot was blocked by the user"
    permanent: bool = False  # True when Telegram refused (400/403): do not retry later
    retry_after: float | None = None  # a 429 asked for a longer wait than we sit out: retry after it
    kind: ErrorKind | None = None  # what the failure means for the chat (migrated, chat gone, ...)
    migrate_to_chat_id: int | None = None
    pin_error: str | None = None  # the message went out but could not be pinned


class _GaveUp(Exception):
    """Retries exhausted (transient errors or too many/too long 429s): worth trying later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # Telegram's own wait, when a 429 was too long to sit out


@dataclass(eq=False)
class _Chat:
    lock: asyncio.Lock
    rules: list[Rule]
    refs: int = 0  # sends queued or running; a chat with refs is never pruned
    last_used: float = 0.0


@dataclass(eq=False)
class _EditSlot:
    """An edit waiting for its chat; later edits with the same key replace `msg`."""

    msg: OutMessage
    task: asyncio.Task[SendResult] | None = None
    merged: int = 0


@dataclass
class _Route:
    """Where the next part goes; fallbacks clear a vanished reply target or topic for the rest."""

    thread_id: int | None
    reply_to: int | None
    sent: list[int | None] = field(default_factory=list)
    first_fresh: bool = False  # the first part went out in this attempt (not before a restart)


class _NoLog:
    done: Sequence[int | None] = ()

    async def sending(self, part: int) -> None:
        return None

    async def sent(self, part: int, message_id: int | None, last: bool = False) -> None:
        return None


class Sender:
    def __init__(
        self,
        api: BotApi,
        limits: SendLimits = SendLimits(),  # noqa: B008 - frozen, shared safely
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.api = api
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self.limiter: RateLimiter = limiter or LocalLimiter()
        self._gate = asyncio.Semaphore(Rate.per_second(limits.global_per_second).count)
        self._chats: dict[int, _Chat] = {}
        self._edits: dict[tuple[int, object], _EditSlot] = {}
        self._inflight: set[asyncio.Task[SendResult]] = set()
        self._last_prune = clock()
        self.api_calls = 0  # counters, for logs and benchmarks
        self.coalesced = 0

    # ---- public

    async def send(self, msg: OutMessage, parts: PartLog | None = None) -> SendResult:
        """Send (or edit) one message; never raises for Telegram or network errors."""
        if msg.edit_message_id is not None:
            key = (msg.chat_id, msg.coalesce_key if msg.coalesce_key is not None else msg.edit_message_id)
            slot = self._edits.get(key)
            if slot is not None and slot.task is not None and not slot.task.done():
                # An edit of the same message is still waiting: it will carry this text instead.
                slot.msg = msg
                slot.merged += 1
                self.coalesced += 1
                return await asyncio.shield(slot.task)
            slot = _EditSlot(msg)
            self._edits[key] = slot
            task = self._spawn(msg.chat_id, lambda: self._run_edit(key, slot))
            slot.task = task
        else:
            task = self._spawn(msg.chat_id, lambda: self._run_send(msg, parts or _NoLog()))
        # Shielded: a cancelled caller must not cut a send in half (or lose coalesced edits).
        return await asyncio.shield(task)

    async def answer_callback(self, answer: CallbackAnswer) -> bool:
        """Stop a button's spinner. Not rate limited; a late answer is dropped, not retried long."""
        try:
            await self._call(None, "answerCallbackQuery", lambda: self.api.answer_callback(answer),
                             max_wait=CALLBACK_MAX_WAIT)
            return True
        except Accepted:
            return True
        except PermanentError as exc:  # typically "query is too old"
            log.info("callback answer refused: %s", exc, extra={"error": str(exc)})
        except (_GaveUp, BotApiError) as exc:
            log.warning("callback answer failed: %s", exc, extra={"error": str(exc)})
        except Exception:
            log.exception("callback answer crashed")
        return False

    def delay(self, chat_id: int) -> float:
        """Seconds until a message to `chat_id` could start, by its own windows (not the global one)."""
        return self.limiter.delay(self.limits.rules(chat_id)[:-1])

    def pace(self, chat_id: int) -> float:
        return self.limits.pace(chat_id)

    def busy(self, chat_id: int) -> bool:
        """Sends to this chat are queued or running here."""
        chat = self._chats.get(chat_id)
        return chat is not None and chat.refs > 0

    async def close(self) -> None:
        """Wait for every send in flight (and any queued behind them)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    # ---- per-chat state

    def _chat(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = _Chat(lock=asyncio.Lock(), rules=self.limits.rules(chat_id))
            self._chats[chat_id] = chat
        return chat

    def _prune(self) -> None:
        now = self._clock()
        if now - self._last_prune < self.limits.idle_seconds / 4:
            return
        self._last_prune = now
        idle = [cid for cid, c in self._chats.items() if c.refs == 0 and now - c.last_used > self.limits.idle_seconds]
        for cid in idle:
            del self._chats[cid]

    def _spawn(self, chat_id: int, work: Callable[[], Coroutine[Any, Any, SendResult]]) -> asyncio.Task[SendResult]:
        self._prune()
        chat = self._chat(chat_id)
        chat.refs += 1  # taken now, synchronously, so the chat cannot be pruned while queued

        async def run() -> SendResult:
            return await work()  # made here, so a task cancelled before it starts leaves no coroutine behind

        def done(task: asyncio.Task[SendResult]) -> None:  # runs even when cancelled before starting
            self._inflight.discard(task)
            chat.refs -= 1
            chat.last_used = self._clock()

        task = asyncio.create_task(run(), name=f"send:{chat_id}")
        self._inflight.add(task)
        task.add_done_callback(done)
        return task

    # ---- one API call, with limits and retries

    async def _call(
        self,
        chat: _Chat | None,
        method: str,
        fn: Callable[[], Awaitable[T]],
        *,
        chat_id: int | None = None,
        max_wait: float | None = None,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """Run `fn` (one Bot API call) until it succeeds; PermanentError, Accepted and _GaveUp escape.

        `before` runs once, after the first wait for the rate limits and just before the first
        call: where the outbox marks the part "in flight"."""
        lim = self.limits
        max_wait = lim.max_retry_after if max_wait is None else max_wait
        attempts = 0
        floods = 0
        lost = False  # the last attempt's answer was lost: this one may deliver a second copy
        while True:
            permit = None
            local = await self.limiter.acquire(chat.rules[:-1]) if chat is not None else None
            try:
                # At most a window's worth of calls queue for the global window at once, so one
                # that has been marked in flight (`before`, a database write kept out of the window
                # itself) waits there a second at most; the mark costs the window no time.
                async with self._gate if chat is not None else contextlib.nullcontext():
                    if before is not None:
                        await before()
                        before = None
                    if chat is not None:
                        permit = await self.limiter.acquire(chat.rules[-1:])
                    if lost:
                        metrics.RESENDS.inc()
                    self.api_calls += 1
                    with recording() as answer:
                        try:
                            result = await fn()
                        finally:
                            # Logged when the answer came in, before the framework parsed it.
                            answered = answer.at if getattr(self.limiter, "clock", None) is time.monotonic else None
                            for p in (permit, local):
                                if p is not None:
                                    p.done(answered)
                metrics.MESSAGES_SENT.labels(method).inc()
                return result
            except Accepted:
                metrics.MESSAGES_SENT.labels(method).inc()
                raise
            except RetryAfter as exc:
                metrics.FLOOD_WAITS.inc()
                floods += 1
                lost = False
                if floods > MAX_RETRY_AFTERS or exc.seconds > max_wait:
                    raise _GaveUp(f"429: retry after {exc.seconds:g}s ({floods} times)", exc.seconds) from exc
                log.info("flood wait chat=%s method=%s seconds=%s", chat_id, method, exc.seconds,
                         extra={"chat_id": chat_id, "method": method, "retry_after": exc.seconds})
                metrics.RETRIES.labels("429").inc()
                for p in (permit, local):
                    if p is not None:
                        p.done()
                permit = local = None
                # Only this chat waits: other chats' sends keep flowing meanwhile.
                await self._sleep(exc.seconds + RETRY_AFTER_MARGIN)
            except TransientError as exc:
                attempts += 1
                lost = exc.maybe_sent
                if attempts >= lim.max_attempts:
                    raise _GaveUp(f"transient: {exc} (after {attempts} attempts)") from exc
                delay = min(lim.backoff_max, lim.backoff_base * 2 ** (attempts - 1))
                delay = min(lim.backoff_max, delay * (1 + 0.1 * random.random()))
                log.info("retry chat=%s method=%s attempt=%s delay=%.2f error=%s", chat_id, method, attempts,
                         delay, exc, extra={"chat_id": chat_id, "method": method, "attempt": attempts})
                metrics.RETRIES.labels("answer_lost" if exc.maybe_sent else "transient").inc()
                for p in (permit, local):
                    if p is not None:
                        p.done()
                permit = local = None
                await self._sleep(delay)
            finally:
                for p in (permit, local):
                    if p is not None:
                        p.done()  # logged at the answer's time: see limits.py

    async def _post(
        self,
        chat: _Chat,
        chat_id: int,
        method: str,
        route: _Route,
        fn: Callable[[int | None, int | None], Awaitable[Sent]],
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> int | None:
        """Send one message along `route`; drop a vanished reply target or topic once and retry."""
        pending = [before]

        async def once() -> None:
            hook, pending[0] = pending[0], None
            if hook is not None:
                await hook()

        while True:
            try:
                sent = await self._call(chat, method, lambda: fn(route.thread_id, route.reply_to), chat_id=chat_id,
                                        before=once)
                mid = sent.message_id
            except Accepted as exc:
                # Telegram said 200: the message is out. Never send it again, whatever the framework thought.
                log.warning("sent but the answer was unreadable chat=%s method=%s: %s", chat_id, method, exc,
                            extra={"chat_id": chat_id, "method": method})
                mid = exc.message_id
            except PermanentError as exc:
                reason = str(exc).lower()
                if route.reply_to is not None and any(s in reason for s in _REPLY_GONE):
                    log.info("reply target gone chat=%s reply_to=%s; sending without it", chat_id, route.reply_to)
                    route.reply_to = None
                    continue
                if route.thread_id is not None and _THREAD_GONE in reason:
                    log.info("topic gone chat=%s thread=%s; sending to the chat", chat_id, route.thread_id)
                    route.thread_id = None
                    continue
                raise
            route.sent.append(mid)
            route.reply_to = None  # only the first part replies
            return mid

    # ---- whole messages

    async def _run_send(self, msg: OutMessage, parts: PartLog) -> SendResult:
        chat = self._chats[msg.chat_id]
        async with chat.lock:
            return await self._deliver(chat, msg, parts)

    async def _run_edit(self, key: tuple[int, object], slot: _EditSlot) -> SendResult:
        chat = self._chats[slot.msg.chat_id]
        try:
            async with chat.lock:
                # From here on, new edits with this key queue behind this one instead of merging.
                self._forget(key, slot)
                if slot.merged:
                    log.debug("coalesced chat=%s key=%s merged=%s", key[0], key[1], slot.merged)
                return await self._deliver(chat, slot.msg, _NoLog())
        finally:
            self._forget(key, slot)  # cancelled while queued: later edits must not join a dead slot

    def _forget(self, key: tuple[int, object], slot: _EditSlot) -> None:
        if self._edits.get(key) is slot:
            del self._edits[key]

    async def _deliver(self, chat: _Chat, msg: OutMessage, parts: PartLog) -> SendResult:
        route = _Route(msg.thread_id, msg.reply_to_message_id)
        method = "editMessageText" if msg.edit_message_id is not None else "send"
        try:
            if msg.edit_message_id is not None:
                await self._edit(chat, msg)
                return SendResult(True, [msg.edit_message_id])
            await self._send_new(chat, msg, route, parts)
        except PermanentError as exc:
            log.warning("refused chat=%s method=%s error=%s", msg.chat_id, method, exc,
                        extra={"chat_id": msg.chat_id, "method": method, "error": str(exc)})
            return SendResult(False, route.sent, str(exc), permanent=True, kind=kind_of(exc),
                              migrate_to_chat_id=exc.migrate_to_chat_id)
        except (_GaveUp, BotApiError) as exc:
            log.warning("gave up chat=%s method=%s error=%s", msg.chat_id, method, exc,
                        extra={"chat_id": msg.chat_id, "method": method, "error": str(exc)})
            kind = ErrorKind.FLOOD if getattr(exc, "retry_after", None) is not None else ErrorKind.TRANSIENT
            return SendResult(False, route.sent, str(exc), retry_after=getattr(exc, "retry_after", None), kind=kind)
        except Exception as exc:  # an adapter bug (or the part log's database) must not kill the chat's queue
            log.exception("send crashed chat=%s", msg.chat_id)
            return SendResult(False, route.sent, repr(exc), kind=ErrorKind.TRANSIENT)
        pin_error = None
        # Pinned only right after the first part went out (a retry that found it done does not pin twice).
        if msg.pin and route.first_fresh and route.sent and route.sent[0] is not None:
            pin_error = await self._pin(chat, msg.chat_id, route.sent[0])
        return SendResult(True, route.sent, pin_error=pin_error)

    async def _edit(self, chat: _Chat, msg: OutMessage) -> None:
        assert msg.edit_message_id is not None
        mid = msg.edit_message_id
        text = msg.text
        if not text:  # only the keyboard changes (works on photo and document messages too)
            call: Callable[[], Awaitable[None]] = lambda: self.api.edit_message_keyboard(  # noqa: E731
                msg.chat_id, mid, msg.keyboard)
            method = "editMessageReplyMarkup"
        else:
            if visible_length(text) > TEXT_LIMIT or len(text) > RAW_LIMIT:
                log.warning("edit too long chat=%s message=%s; truncated", msg.chat_id, mid)
                text = truncate_html(text, TEXT_LIMIT)
            call = lambda: self.api.edit_message_text(msg.chat_id, mid, text, keyboard=msg.keyboard)  # noqa: E731
            method = "editMessageText"
        try:
            await self._call(chat, method, call, chat_id=msg.chat_id)
        except Accepted:
            return
        except PermanentError as exc:
            if _NOT_MODIFIED in str(exc).lower():
                return  # already shows this text: the goal is met
            raise

    async def _send_new(self, chat: _Chat, msg: OutMessage, route: _Route, parts: PartLog) -> None:
        api, cid = self.api, msg.chat_id
        text = msg.text or ""
        has_text = bool(text.strip())
        fits_caption = visible_length(text) <= CAPTION_LIMIT and len(text) <= RAW_LIMIT
        photo: str | bytes | None = msg.photo_bytes if msg.photo_bytes is not None else msg.photo
        rest = text
        keyboard: Keyboard | None = msg.keyboard
        # Each step is one message (one part); the same message always makes the same steps.
        steps: list[tuple[str, Callable[[int | None, int | None], Awaitable[Sent]]]] = []
        document = msg.document if msg.document is not None else msg.document_id
        if document is not None:
            doc = document
            # sendDocument takes no keyboard here: with one, the text goes after it, carrying it.
            caption = text if has_text and fits_caption and keyboard is None else None
            steps.append(("sendDocument", lambda t, r, cap=caption: api.send_document(
                cid, doc, caption=cap, thread_id=t, reply_to_message_id=r)))
            rest = "" if caption is not None else text
            if keyboard is not None and not rest.strip():
                log.warning("keyboard dropped chat=%s: a document without text cannot carry it", cid)
        elif photo is not None:
            pic = photo
            caption = text if has_text and fits_caption else None
            kb = keyboard if caption is not None or not has_text else None
            steps.append(("sendPhoto", lambda t, r, cap=caption, kb=kb: api.send_photo(
                cid, pic, caption=cap, thread_id=t, reply_to_message_id=r, keyboard=kb)))
            rest = "" if caption is not None else text
        elif not has_text:
            raise PermanentError(400, "Bad Request: message text is empty")
        if rest.strip():
            chunks = split_html(rest, TEXT_LIMIT)
            for n, part in enumerate(chunks):
                kb = keyboard if n == len(chunks) - 1 else None
                steps.append(("sendMessage", lambda t, r, part=part, kb=kb: api.send_message(
                    cid, part, thread_id=t, reply_to_message_id=r, keyboard=kb)))
        done = list(parts.done)
        for k, (method, fn) in enumerate(steps):
            if k < len(done):  # delivered before this attempt: never again
                route.sent.append(done[k])
                route.reply_to = None
                continue

            async def before(k: int = k) -> None:
                await parts.sending(k)

            # The at-least-once window: `before` marks the part in flight (committed) just before the
            # call, and `sent` marks it delivered as soon as the answer is in. Only a crash between
            # the two, after Telegram accepted the call, makes a restart send this part again.
            mid = await self._post(chat, cid, method, route, fn, before)
            route.first_fresh = route.first_fresh or k == 0
            await parts.sent(k, mid, last=k == len(steps) - 1)

    async def _pin(self, chat: _Chat, chat_id: int, message_id: int) -> str | None:
        try:
            await self._call(chat, "pinChatMessage", lambda: self.api.pin_message(chat_id, message_id), chat_id=chat_id)
            return None
        except Accepted:
            return None
        except Exception as exc:  # the message is out; a missing pin right is not a failed send
            log.warning("pin failed chat=%s message=%s error=%s", chat_id, message_id, exc,
                        extra={"chat_id": chat_id, "message_id": message_id, "error": str(exc)})
            return str(exc)
