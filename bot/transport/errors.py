"""One table of Bot API failures and one set of timeouts, for both adapters.

aiogram and python-telegram-bot raise different exceptions for the same failure (and used to
disagree: an unknown error was permanent on one and transient on the other). Both adapters now
record what actually came back — the HTTP status and body, or how the connection failed — in an
`Answer`, and `classify` turns that into the port's error, so one failure is one kind on both.
The framework's own exception is only a fallback for failures no answer was recorded for.

| what came back                                   | port error                        |
|--------------------------------------------------|-----------------------------------|
| 2xx and ok, but the framework could not read it  | Accepted (a delivery: never again)|
| 429                                              | RetryAfter(parameters.retry_after)|
| any error with parameters.migrate_to_chat_id     | PermanentError, migrate_to_chat_id|
| 400-499 (400, 401, 403, 404, 409, 413, ...)      | PermanentError(status)            |
| 5xx, other statuses, a body that is not JSON     | TransientError                    |
| no connection (refused, connect/pool timeout)    | TransientError (not sent)         |
| no answer after sending (read timeout, dropped)  | TransientError(maybe_sent=True)   |
| anything else                                    | TransientError                    |
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.transport.port import Accepted, BotApiError, PermanentError, RetryAfter, TransientError

# Seconds, the same on both frameworks. Telegram answers a send in well under a second; a read
# timeout is reached only when an answer was lost, and then the message may have gone out: that
# is the at-least-once window, so it is short, but long enough not to be hit by a slow answer.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
WRITE_TIMEOUT = 20.0  # uploads (documents, photos)
POOL_TIMEOUT = 5.0
# getUpdates: the long-poll timeout plus this.
POLL_READ_MARGIN = 10.0
# Bot API calls in flight at once (connections kept to Telegram), the same on both frameworks;
# more calls wait their turn in the adapter, not in the HTTP library's pool (whose pool timeout
# would fail them, and whose queue costs grow with its length). Sends are held to about 30 a
# second anyway; the rest is for bursts of button answers. Both adapters speak aiohttp (PTB through
# bot/transport/ptb_aiohttp.py: httpx's pool costs CPU per call that grows with its size).
CONNECTIONS = 16


class Network(StrEnum):
    """How a call failed when no HTTP answer came."""

    NOT_SENT = "not_sent"  # refused, connect or pool timeout: Telegram never saw the request
    ANSWER_LOST = "answer_lost"  # read timeout, connection dropped after sending: it may have gone out


class ErrorKind(StrEnum):
    """What a failure means for the chat it was sent to."""

    FLOOD = "flood"
    TRANSIENT = "transient"
    ACCEPTED = "accepted"
    MIGRATED = "migrated"  # the group became a supergroup: send to the new id
    CHAT_GONE = "chat_gone"  # the bot was removed from (or never was in) the group
    USER_GONE = "user_gone"  # the person blocked the bot, or never started it, or was deleted
    REFUSED = "refused"  # any other refusal (bad request, not found, ...)


_CHAT_GONE = ("bot was kicked", "bot is not a member", "group chat was deleted", "group chat was deactivated",
              "chat was deleted")
_USER_GONE = ("bot was blocked by the user", "user is deactivated", "bot can't initiate conversation",
              "bot can't send messages to bots")


def kind_of(error: BaseException) -> ErrorKind:
    if isinstance(error, RetryAfter):
        return ErrorKind.FLOOD
    if isinstance(error, Accepted):
        return ErrorKind.ACCEPTED
    if isinstance(error, PermanentError):
        if error.migrate_to_chat_id is not None:
            return ErrorKind.MIGRATED
        text = error.description.lower()
        if error.code == 403 or error.code == 400:
            if any(s in text for s in _CHAT_GONE):
                return ErrorKind.CHAT_GONE
            if any(s in text for s in _USER_GONE):
                return ErrorKind.USER_GONE
        return ErrorKind.REFUSED
    return ErrorKind.TRANSIENT


def kind_of_text(error: str | None) -> ErrorKind:
    """The kind of a refusal stored as text ("403: Forbidden: bot was kicked ..."), e.g. in the outbox."""
    text = (error or "").lower()
    if "upgraded to a supergroup" in text:
        return ErrorKind.MIGRATED
    if any(s in text for s in _CHAT_GONE):
        return ErrorKind.CHAT_GONE
    if any(s in text for s in _USER_GONE):
        return ErrorKind.USER_GONE
    if text.startswith("429"):
        return ErrorKind.FLOOD
    if text[:1] == "4":
        return ErrorKind.REFUSED
    return ErrorKind.TRANSIENT


@dataclass
class Answer:
    """What one call got back, filled in by the adapter's HTTP layer."""

    status: int | None = None
    body: Any = None  # the parsed JSON, or the raw text when it was not JSON
    network: Network | None = None
    detail: str = ""
    at: float | None = None  # time.monotonic() when the answer (or the failure) came, before any parsing


_answer: ContextVar[Answer | None] = ContextVar("linli_bot_api_answer", default=None)


@contextmanager
def recording() -> Iterator[Answer]:
    """Around one Bot API call: the HTTP layer below fills the Answer it finds in the context
    (a mutable box, so a framework that runs the request in a task of its own still reaches it).
    Nested (the sender around the adapter), both see the same box, emptied for this call."""
    box = _answer.get()
    if box is not None:
        box.status, box.body, box.network, box.detail, box.at = None, None, None, "", None
        yield box
        return
    box = Answer()
    token = _answer.set(box)
    try:
        yield box
    finally:
        _answer.reset(token)


def note_response(status: int, payload: bytes | str) -> None:
    box = _answer.get()
    if box is None:
        return
    box.status = status
    box.network = None
    box.at = time.monotonic()
    try:
        box.body = json.loads(payload)
    except (ValueError, TypeError):
        box.body = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload


def note_network(kind: Network, detail: str) -> None:
    box = _answer.get()
    if box is None:
        return
    box.status = None
    box.body = None
    box.network = kind
    box.detail = detail
    box.at = time.monotonic()


def _description(body: Any, status: int) -> str:
    if isinstance(body, dict) and isinstance(body.get("description"), str):
        return body["description"]
    return f"HTTP {status}"


def classify(answer: Answer, fallback: BaseException) -> BotApiError:
    """The port error for a call that raised `fallback` after getting `answer`."""
    status, body = answer.status, answer.body
    if status is None:
        if answer.network is Network.NOT_SENT:
            return TransientError(answer.detail or repr(fallback))
        if answer.network is Network.ANSWER_LOST:
            return TransientError(answer.detail or repr(fallback), maybe_sent=True)
        # No answer recorded: the framework failed before or around the request.
        return TransientError(f"{type(fallback).__name__}: {fallback}", maybe_sent=True)
    ok = isinstance(body, dict) and body.get("ok") is True
    if 200 <= status <= 299:
        if ok or not isinstance(body, dict):
            # Telegram accepted the call; only reading its answer failed. A delivery.
            result = body.get("result") if isinstance(body, dict) else None
            mid = result.get("message_id") if isinstance(result, dict) else None
            return Accepted(mid if isinstance(mid, int) else None, f"{type(fallback).__name__}: {fallback}")
        return TransientError(f"HTTP {status} without ok: {str(body)[:200]}")
    desc = _description(body, status)
    params = body.get("parameters") if isinstance(body, dict) else None
    params = params if isinstance(params, dict) else {}
    if status == 429:
        retry = params.get("retry_after")
        return RetryAfter(float(retry) if isinstance(retry, int | float) else 1.0, desc)
    migrate = params.get("migrate_to_chat_id")
    if isinstance(migrate, int):
        return PermanentError(status, desc, migrate_to_chat_id=migrate)
    if 400 <= status <= 499:
        return PermanentError(status, desc)
    return TransientError(desc)


# ---------------------------------------------------------------- failed polls

poll_log = logging.getLogger("linli.poll")
# How loud a failed getUpdates is, by its kind in the table above: a passing failure (the network,
# a 5xx, a flood wait) is retried by the framework and worth a warning; a refusal (401 a revoked
# token, 409 a webhook set or another instance polling) does not pass by itself: an error.
POLL_LEVELS: dict[ErrorKind, int] = {ErrorKind.TRANSIENT: logging.WARNING, ErrorKind.FLOOD: logging.WARNING,
                                     ErrorKind.ACCEPTED: logging.WARNING}


def log_failed_poll(answer: Answer, exc: BaseException) -> ErrorKind:
    """Both adapters report a failed getUpdates here: the same failure gives the same line, at the
    same level, on the same logger ("linli.poll"). The line holds the error (status, Telegram's
    description, or how the connection failed), never an update's content."""
    error = classify(answer, exc)
    kind = kind_of(error)
    level = POLL_LEVELS.get(kind, logging.ERROR)
    poll_log.log(level, "getUpdates failed (%s): %s", kind.value, error, extra={"error_kind": kind.value})
    return kind
