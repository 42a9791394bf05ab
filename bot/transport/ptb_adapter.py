"""The python-telegram-bot 22 adapter: long polling through PTB's Application, Bot API calls through its Bot.

Mirrors aiogram_adapter.py: the same updates become the same Events, the same failures the same
port errors, so handlers, services and the sender cannot tell the frameworks apart.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

# PTB 22 is moving time periods (RetryAfter.retry_after) from int to timedelta and warns on every
# RetryAfter it builds unless this opt-in is set. We read the timedelta either way; the opt-in only
# keeps deprecation warnings out of logs and test output. An explicit setting is respected.
os.environ.setdefault("PTB_TIMEDELTA", "true")

import aiohttp  # noqa: E402
from telegram import (  # noqa: E402 - after the opt-in above
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    LinkPreviewOptions,
    ReplyParameters,
    Update,
)
from telegram.constants import ParseMode  # noqa: E402
from telegram.error import NetworkError, TelegramError, TimedOut  # noqa: E402
from telegram.ext import Application, ApplicationBuilder, ContextTypes, Defaults, TypeHandler  # noqa: E402

from bot.transport.base import EventSink, Transport  # noqa: E402
from bot.transport.convert import callback_event, member_event, message_events, to_user, value  # noqa: E402
from bot.transport.errors import (  # noqa: E402
    CONNECT_TIMEOUT,
    CONNECTIONS,
    POLL_READ_MARGIN,
    POOL_TIMEOUT,
    READ_TIMEOUT,
    WRITE_TIMEOUT,
    Answer,
    Network,
    classify,
    log_failed_poll,
    note_network,
    note_response,
    recording,
)
from bot.transport.port import CallbackAnswer, Document, Event, Keyboard, Sent, User  # noqa: E402
from bot.transport.ptb_aiohttp import AiohttpRequest  # noqa: E402

log = logging.getLogger("linli.ptb")
T = TypeVar("T")

ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member", "chat_member"]

# aiohttp failures that mean the request never reached Telegram (as in the aiogram adapter); any
# other failure after the request was written may have been carried out (its answer was lost).
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


class _Request(AiohttpRequest):
    """PTB's request (over aiohttp, bot/transport/ptb_aiohttp.py), recording what each call got
    back (bot/transport/errors.py), so failures are classified exactly as on aiogram."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._slots = asyncio.Semaphore(kwargs.get("connection_pool_size", 1))

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        try:
            async with self._slots:  # more calls wait here, not in the pool (whose timeout would fail them)
                code, payload = await super().do_request(*args, **kwargs)
        except (TimedOut, NetworkError) as exc:
            cause = exc.__cause__
            kind = Network.NOT_SENT if isinstance(cause, _NOT_SENT) else Network.ANSWER_LOST
            note_network(kind, f"{type(cause or exc).__name__}: {cause or exc}")
            raise
        note_response(code, payload)
        return code, payload


class _PollRequest(_Request):
    """The request that carries getUpdates: a failed poll is logged by the shared table, as on aiogram
    (PTB itself reports only some failures, through the error callback, and a timeout not at all)."""

    logged = False  # the last failure was logged here already (not again by the error callback)

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        self.logged = False
        with recording() as answer:
            self.answer = answer
            try:
                code, payload = await super().do_request(*args, **kwargs)
            except Exception as exc:
                self.logged = True
                log_failed_poll(answer, exc)
                raise
            if not 200 <= code <= 299:
                self.logged = True
                log_failed_poll(answer, RuntimeError(f"HTTP {code}"))
            return code, payload


@asynccontextmanager
async def _mapped_errors() -> AsyncIterator[None]:
    """Any failure of the calls inside -> the port's error, by the shared table."""
    with recording() as answer:
        try:
            yield
        except Exception as exc:  # one table for both frameworks: bot/transport/errors.py
            raise classify(answer, exc) from exc


def _markup(keyboard: Keyboard | None) -> InlineKeyboardMarkup | None:
    if keyboard is None:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(b.text, callback_data=b.data, url=b.url) for b in row] for row in keyboard.rows]
    )


def _reply(message_id: int | None) -> ReplyParameters | None:
    if message_id is None:
        return None
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)



class PtbApi:
    """The port's BotApi over a PTB Bot (whose Defaults give HTML and no link previews)."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def _do(self, call: Callable[[], Awaitable[T]]) -> T:
        async with _mapped_errors():
            return await call()

    async def get_me(self) -> User:
        return to_user(await self._do(self.bot.get_me))

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        keyboard: Keyboard | None = None,
    ) -> Sent:
        m = await self._do(
            lambda: self.bot.send_message(
                chat_id, text, message_thread_id=thread_id, reply_parameters=_reply(reply_to_message_id),
                reply_markup=_markup(keyboard),
            )
        )
        return Sent(m.message_id, m.chat.id)

    async def send_photo(
        self,
        chat_id: int,
        photo: str | bytes,
        *,
        caption: str | None = None,
        thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        keyboard: Keyboard | None = None,
    ) -> Sent:
        file: str | InputFile = InputFile(photo, filename="photo.png") if isinstance(photo, bytes) else photo
        m = await self._do(
            lambda: self.bot.send_photo(
                chat_id, file, caption=caption, message_thread_id=thread_id,
                reply_parameters=_reply(reply_to_message_id), reply_markup=_markup(keyboard),
            )
        )
        return Sent(m.message_id, m.chat.id)

    async def send_document(
        self,
        chat_id: int,
        document: Document | str,
        *,
        caption: str | None = None,
        thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> Sent:
        file = InputFile(document.data, filename=document.filename) if isinstance(document, Document) else document
        m = await self._do(
            lambda: self.bot.send_document(
                chat_id, file, caption=caption,
                message_thread_id=thread_id, reply_parameters=_reply(reply_to_message_id),
            )
        )
        return Sent(m.message_id, m.chat.id)

    async def edit_message_text(
        self, chat_id: int, message_id: int, text: str, *, keyboard: Keyboard | None = None
    ) -> None:
        await self._do(
            lambda: self.bot.edit_message_text(
                text, chat_id=chat_id, message_id=message_id, reply_markup=_markup(keyboard)
            )
        )

    async def edit_message_keyboard(self, chat_id: int, message_id: int, keyboard: Keyboard | None) -> None:
        # PTB adds the default parse_mode to this call, a parameter editMessageReplyMarkup does not
        # have (Telegram ignores it; a strict server refuses it): None drops it again.
        await self._do(
            lambda: self.bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id,
                                                       reply_markup=_markup(keyboard), api_kwargs={"parse_mode": None})
        )

    async def pin_message(self, chat_id: int, message_id: int) -> None:
        await self._do(lambda: self.bot.pin_chat_message(chat_id, message_id, disable_notification=True))

    async def answer_callback(self, answer: CallbackAnswer) -> None:
        await self._do(
            lambda: self.bot.answer_callback_query(answer.callback_id, text=answer.text, show_alert=answer.show_alert)
        )

    async def get_chat_member_status(self, chat_id: int, user_id: int) -> str:
        member = await self._do(lambda: self.bot.get_chat_member(chat_id, user_id))
        return value(member.status)

    async def get_chat_admin_ids(self, chat_id: int) -> list[int]:
        admins = await self._do(lambda: self.bot.get_chat_administrators(chat_id))
        return [m.user.id for m in admins]


class PtbTransport(Transport):
    def __init__(self, token: str, api_base: str | None, *, poll_timeout: int = 25) -> None:
        self.poll_timeout = poll_timeout
        # httpx logs every request at INFO with its URL, and the URL holds the bot token.
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:
            httpx_log.setLevel(logging.WARNING)
        self._requests = (
            _Request(
                connection_pool_size=CONNECTIONS, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                write_timeout=WRITE_TIMEOUT, pool_timeout=POOL_TIMEOUT, media_write_timeout=WRITE_TIMEOUT,
            ),
            _PollRequest(
                connection_pool_size=1, connect_timeout=CONNECT_TIMEOUT, read_timeout=POLL_READ_MARGIN,
                write_timeout=WRITE_TIMEOUT, pool_timeout=POOL_TIMEOUT,
            ),
        )
        builder = (
            ApplicationBuilder()
            .token(token)
            .defaults(Defaults(parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True)))
            .request(self._requests[0])
            .get_updates_request(self._requests[1])
            .job_queue(None)
            .persistence(None)
            # One update at a time, in order: the sink only queues it per chat and returns at once.
            .concurrent_updates(False)
        )
        if api_base:
            builder = builder.base_url(api_base.rstrip("/") + "/bot")
        self.app: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self.app.add_handler(TypeHandler(Update, self._on_update))
        self.app.add_error_handler(self._on_handler_error)
        self.api = PtbApi(self.app.bot)
        self._sink: EventSink | None = None

    async def start(self, on_event: EventSink) -> None:
        self._sink = on_event
        async with _mapped_errors():
            await self.app.initialize()  # calls getMe
        self.bot_user = to_user(self.app.bot.bot)
        updater = self.app.updater
        assert updater is not None  # built by ApplicationBuilder
        async with _mapped_errors():
            await updater.start_polling(
                poll_interval=0,
                timeout=timedelta(seconds=self.poll_timeout),
                # PTB first calls deleteWebhook; a passing network hiccup should not fail the start.
                bootstrap_retries=3,
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=False,
                error_callback=self._on_poll_error,
            )
        await self.app.start()

    async def open(self) -> None:
        """Learn who the bot is; updates come through the inbox (bot/transport/inbox.py)."""
        async with _mapped_errors():
            await self.app.initialize()  # calls getMe
        self.bot_user = to_user(self.app.bot.bot)

    def events_of(self, payload: dict[str, Any]) -> list[Event]:
        """A stored update (Telegram's JSON) as Events, read by PTB's types."""
        upd = Update.de_json(payload, self.app.bot)
        uid = upd.update_id
        if upd.message is not None:
            me = self.bot_user.username if self.bot_user else None
            return message_events(upd.message, uid, me)
        if upd.callback_query is not None:
            event = callback_event(upd.callback_query, uid)
            if event is None:  # a button on an inline-mode message: not ours, but stop its spinner
                task = asyncio.ensure_future(self.api.answer_callback(CallbackAnswer(upd.callback_query.id)))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
                return []
            return [event]
        changed = upd.my_chat_member or upd.chat_member
        return [member_event(changed, uid)] if changed is not None else []

    async def stop(self) -> None:
        # Each step only if its start got that far, so a half-failed start still cleans up.
        updater = self.app.updater
        if updater is not None and updater.running:
            try:
                await updater.stop()  # also confirms the fetched updates to Telegram
            except Exception:
                log.exception("stopping PTB polling failed")
        if self.app.running:
            try:
                await self.app.stop()  # hands the updates already fetched to the sink first
            except Exception:
                log.exception("stopping the PTB application failed")
        try:
            await self.app.shutdown()
        except Exception:
            log.exception("PTB shutdown failed")
        # If initialize() failed half way, shutdown() skips the HTTP clients; close them anyway.
        for request in self._requests:
            try:
                await request.shutdown()
            except Exception:
                log.debug("closing a PTB HTTP client failed", exc_info=True)

    def _on_poll_error(self, exc: TelegramError) -> None:
        # PTB keeps polling with its own backoff; a failed getUpdates is worth a line, not a crash:
        # logged by the poll request already, unless the answer came but could not be read.
        poll = self._requests[1]
        if not poll.logged:
            log_failed_poll(getattr(poll, "answer", None) or Answer(), exc)
        poll.logged = False

    async def _on_handler_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("update %s could not be handed over", getattr(update, "update_id", "?"), exc_info=context.error)

    async def _emit(self, event: Event) -> None:
        if self._sink is not None:
            await self._sink(event)

    # ---- PTB types -> Event

    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        uid = update.update_id
        if update.message is not None:
            me = self.bot_user.username if self.bot_user else None
            for event in message_events(update.message, uid, me):
                await self._emit(event)
        elif update.callback_query is not None:
            event = callback_event(update.callback_query, uid)
            if event is None:  # a button on an inline-mode message: not ours, but stop its spinner
                await self.api.answer_callback(CallbackAnswer(update.callback_query.id))
            else:
                await self._emit(event)
        elif (changed := update.my_chat_member or update.chat_member) is not None:
            await self._emit(member_event(changed, uid))
