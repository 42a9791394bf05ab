"""The aiogram 3 adapter: long polling through aiogram's Dispatcher, Bot API calls through its Bot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods.base import TelegramMethod
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)

from bot.transport.base import EventSink, Transport
from bot.transport.convert import callback_event, member_event, message_events, to_user, value
from bot.transport.errors import (
    CONNECT_TIMEOUT,
    CONNECTIONS,
    POLL_READ_MARGIN,
    POOL_TIMEOUT,
    READ_TIMEOUT,
    WRITE_TIMEOUT,
    Network,
    classify,
    log_failed_poll,
    note_network,
    note_response,
    recording,
)
from bot.transport.port import CallbackAnswer, Document, Event, Keyboard, Sent, User

log = logging.getLogger("linli.aiogram")


class _NoOwnPollLines(logging.Filter):
    """aiogram logs a failed getUpdates itself (an error, then a warning about its backoff); the
    adapter logs it through the shared table instead (bot/transport/errors.py: log_failed_poll)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Failed to fetch updates", "Sleep for"))


logging.getLogger("aiogram.dispatcher").addFilter(_NoOwnPollLines())
T = TypeVar("T")

ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member", "chat_member"]


class _Session(AiohttpSession):
    """aiogram's aiohttp session with the shared timeouts, recording what each call got back
    (bot/transport/errors.py), so failures are classified exactly as on python-telegram-bot."""

    async def make_request(self, bot: Bot, method: TelegramMethod[T], timeout: int | None = None) -> T:
        if method.__api_method__ != "getUpdates":
            return await self._make_request(bot, method, timeout)
        with recording() as answer:  # a failed poll is logged by the shared table, as on PTB
            try:
                return await self._make_request(bot, method, timeout)
            except Exception as exc:
                log_failed_poll(answer, exc)
                raise

    async def _make_request(self, bot: Bot, method: TelegramMethod[T], timeout: int | None = None) -> T:
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        form = self.build_form_data(bot=bot, method=method)
        # getUpdates passes its own (the long-poll timeout plus POLL_READ_MARGIN); every other call
        # reads within READ_TIMEOUT. aiohttp has no write timeout: `total` bounds an upload instead.
        read = float(timeout) if timeout is not None else READ_TIMEOUT
        limits = aiohttp.ClientTimeout(
            total=POOL_TIMEOUT + CONNECT_TIMEOUT + WRITE_TIMEOUT + read,
            connect=POOL_TIMEOUT + CONNECT_TIMEOUT,
            sock_connect=CONNECT_TIMEOUT,
            sock_read=read,
        )
        try:
            async with session.post(url, data=form, timeout=limits) as resp:
                raw = await resp.text()
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as e:
            note_network(Network.NOT_SENT, f"{type(e).__name__}: {e}")
            raise TelegramNetworkError(method=method, message=f"{type(e).__name__}: {e}") from e
        except (TimeoutError, aiohttp.ClientError) as e:
            note_network(Network.ANSWER_LOST, f"{type(e).__name__}: {e}")
            raise TelegramNetworkError(method=method, message=f"{type(e).__name__}: {e}") from e
        response = self.check_response(bot=bot, method=method, status_code=resp.status, content=raw)
        return response.result  # type: ignore[return-value]

    def check_response(self, bot: Bot, method: TelegramMethod[Any], status_code: int, content: str) -> Any:
        note_response(status_code, content)
        return super().check_response(bot=bot, method=method, status_code=status_code, content=content)


def _markup(keyboard: Keyboard | None) -> InlineKeyboardMarkup | None:
    if keyboard is None:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=b.text, callback_data=b.data, url=b.url) for b in row] for row in keyboard.rows
        ]
    )


def _reply(message_id: int | None) -> ReplyParameters | None:
    if message_id is None:
        return None
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)


class AiogramApi:
    """The port's BotApi over an aiogram Bot."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def _do(self, call: Callable[[], Awaitable[T]]) -> T:
        with recording() as answer:
            try:
                return await call()
            except Exception as exc:  # one table for both frameworks: bot/transport/errors.py
                raise classify(answer, exc) from exc

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
        file = BufferedInputFile(photo, "photo.png") if isinstance(photo, bytes) else photo
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
        file = BufferedInputFile(document.data, document.filename) if isinstance(document, Document) else document
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
                text=text, chat_id=chat_id, message_id=message_id, reply_markup=_markup(keyboard)
            )
        )

    async def edit_message_keyboard(self, chat_id: int, message_id: int, keyboard: Keyboard | None) -> None:
        await self._do(
            lambda: self.bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id,
                                                       reply_markup=_markup(keyboard))
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


class AiogramTransport(Transport):
    def __init__(self, token: str, api_base: str | None, *, poll_timeout: int = 25) -> None:
        # The session's own timeout is only what aiogram's polling adds to the long-poll timeout.
        # As many connections as on PTB (bot/transport/errors.py: CONNECTIONS).
        session = (_Session(api=TelegramAPIServer.from_base(api_base), timeout=POLL_READ_MARGIN, limit=CONNECTIONS)
                   if api_base else _Session(timeout=POLL_READ_MARGIN, limit=CONNECTIONS))
        self.bot = Bot(
            token,
            session=session,
            default=DefaultBotProperties(
                parse_mode=ParseMode.HTML, link_preview=LinkPreviewOptions(is_disabled=True)
            ),
        )
        self.api = AiogramApi(self.bot)
        self.poll_timeout = poll_timeout
        self.dp = Dispatcher()
        self._sink: EventSink | None = None
        self._polling: asyncio.Task[None] | None = None
        self.dp.message.register(self._on_message)
        self.dp.callback_query.register(self._on_callback)
        self.dp.my_chat_member.register(self._on_member)
        self.dp.chat_member.register(self._on_member)

    async def start(self, on_event: EventSink) -> None:
        self._sink = on_event
        self.bot_user = await self.api.get_me()
        self._polling = asyncio.create_task(
            self.dp.start_polling(
                self.bot,
                polling_timeout=self.poll_timeout,
                # Updates are only queued per chat by the sink, which returns at once: handing them
                # over in order keeps one chat's updates in order without aiogram's task per update.
                handle_as_tasks=False,
                allowed_updates=ALLOWED_UPDATES,
                handle_signals=False,
                close_bot_session=False,
            ),
            name="aiogram-polling",
        )

    async def open(self) -> None:
        """Learn who the bot is; updates come through the inbox (bot/transport/inbox.py)."""
        self.bot_user = await self.api.get_me()

    def events_of(self, payload: dict[str, Any]) -> list[Event]:
        """A stored update (Telegram's JSON) as Events, read by aiogram's types."""
        upd = Update.model_validate(payload, context={"bot": self.bot})
        me = self.bot_user.username if self.bot_user else None
        if upd.message is not None:
            return message_events(upd.message, upd.update_id, me)
        if upd.callback_query is not None:
            event = callback_event(upd.callback_query, upd.update_id)
            if event is None:  # a button on an inline-mode message: not ours, but stop its spinner
                self._spin_down(upd.callback_query.id)
                return []
            return [event]
        changed = upd.my_chat_member or upd.chat_member
        return [member_event(changed, upd.update_id)] if changed is not None else []

    def _spin_down(self, callback_id: str) -> None:
        task = asyncio.ensure_future(self.api.answer_callback(CallbackAnswer(callback_id)))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def stop(self) -> None:
        if self._polling is not None:
            try:
                await self.dp.stop_polling()
            except RuntimeError:  # polling had not got going yet
                self._polling.cancel()
            await asyncio.gather(self._polling, return_exceptions=True)
            self._polling = None
        await self.bot.session.close()

    async def _emit(self, event: Event) -> None:
        if self._sink is not None:
            await self._sink(event)

    # ---- aiogram types -> Event

    async def _on_message(self, message: Message, event_update: Any = None) -> None:
        me = self.bot_user.username if self.bot_user else None
        for event in message_events(message, _update_id(event_update), me):
            await self._emit(event)

    async def _on_callback(self, query: CallbackQuery, event_update: Any = None) -> None:
        event = callback_event(query, _update_id(event_update))
        if event is None:  # a button on an inline-mode message: not ours, but stop its spinner
            await self.api.answer_callback(CallbackAnswer(query.id))
        else:
            await self._emit(event)

    async def _on_member(self, update: ChatMemberUpdated, event_update: Any = None) -> None:
        await self._emit(member_event(update, _update_id(event_update)))


def _update_id(event_update: Any) -> int:
    # aiogram hands a handler the Update it came in as `event_update`.
    return event_update.update_id if event_update is not None else 0
