"""The aiogram 3 adapter: long polling through aiogram's Dispatcher, Bot API calls through its Bot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
)
from aiogram.types import Chat as TgChat
from aiogram.types import User as TgUser

from bot.transport.base import EventSink, Transport, split_command
from bot.transport.port import (
    CallbackAnswer,
    Chat,
    Document,
    Event,
    EventKind,
    Keyboard,
    MemberChange,
    PermanentError,
    RepliedMessage,
    RetryAfter,
    Sent,
    TransientError,
    User,
)

log = logging.getLogger("linli.aiogram")
T = TypeVar("T")

ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member", "chat_member"]

_PERMANENT: tuple[tuple[type[TelegramAPIError], int], ...] = (
    (TelegramEntityTooLarge, 413),  # a TelegramNetworkError, but retrying will not shrink the file
    (TelegramBadRequest, 400),
    (TelegramUnauthorizedError, 401),
    (TelegramForbiddenError, 403),
    (TelegramNotFound, 404),
    (TelegramConflictError, 409),
    (TelegramMigrateToChat, 400),
)


@asynccontextmanager
async def _mapped_errors() -> AsyncIterator[None]:
    """aiogram's exceptions -> the port's, so the sender decides retries the same way for both."""
    try:
        yield
    except TelegramRetryAfter as exc:
        raise RetryAfter(exc.retry_after, exc.message) from exc
    except (TelegramServerError, ClientDecodeError) as exc:
        raise TransientError(str(exc)) from exc
    except TelegramAPIError as exc:
        for cls, code in _PERMANENT:
            if isinstance(exc, cls):
                raise PermanentError(code, exc.message) from exc
        if isinstance(exc, TelegramNetworkError):
            raise TransientError(str(exc)) from exc
        raise PermanentError(400, exc.message) from exc
    except (TimeoutError, OSError) as exc:
        raise TransientError(repr(exc)) from exc


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


def _user(u: TgUser) -> User:
    return User(
        id=u.id,
        first_name=u.first_name or "",
        last_name=u.last_name,
        username=u.username,
        language_code=u.language_code,
        is_bot=u.is_bot,
    )


def _chat(c: TgChat) -> Chat:
    return Chat(id=c.id, type=str(getattr(c.type, "value", c.type)), title=c.title, is_forum=bool(c.is_forum))


def _status(s: Any) -> str:
    return str(getattr(s, "value", s))


def _thread(message: Message) -> int | None:
    # Only forum topics are threads we answer in; reply threads of ordinary groups are not.
    if message.chat.is_forum and message.is_topic_message:
        return message.message_thread_id
    return None


class AiogramApi:
    """The port's BotApi over an aiogram Bot."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def _do(self, call: Callable[[], Awaitable[T]]) -> T:
        async with _mapped_errors():
            return await call()

    async def get_me(self) -> User:
        return _user(await self._do(self.bot.get_me))

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
        document: Document,
        *,
        caption: str | None = None,
        thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> Sent:
        m = await self._do(
            lambda: self.bot.send_document(
                chat_id, BufferedInputFile(document.data, document.filename), caption=caption,
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

    async def pin_message(self, chat_id: int, message_id: int) -> None:
        await self._do(lambda: self.bot.pin_chat_message(chat_id, message_id, disable_notification=True))

    async def answer_callback(self, answer: CallbackAnswer) -> None:
        await self._do(
            lambda: self.bot.answer_callback_query(answer.callback_id, text=answer.text, show_alert=answer.show_alert)
        )

    async def get_chat_member_status(self, chat_id: int, user_id: int) -> str:
        member = await self._do(lambda: self.bot.get_chat_member(chat_id, user_id))
        return _status(member.status)

    async def get_chat_admin_ids(self, chat_id: int) -> list[int]:
        admins = await self._do(lambda: self.bot.get_chat_administrators(chat_id))
        return [m.user.id for m in admins]


class AiogramTransport(Transport):
    def __init__(self, token: str, api_base: str | None, *, poll_timeout: int = 25) -> None:
        session = AiohttpSession(api=TelegramAPIServer.from_base(api_base)) if api_base else AiohttpSession()
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
        update_id = event_update.update_id if event_update is not None else 0
        chat = _chat(message.chat)
        if message.new_chat_members or message.left_chat_member:
            # Service messages, for groups where the bot gets no chat_member updates.
            actor = _user(message.from_user) if message.from_user else None
            for tg_user in message.new_chat_members or []:
                member = _user(tg_user)
                await self._emit(
                    Event(EventKind.MEMBER, chat, actor or member, update_id=update_id,
                          member_change=MemberChange(member, "left", "member"))
                )
            if message.left_chat_member:
                member = _user(message.left_chat_member)
                await self._emit(
                    Event(EventKind.MEMBER, chat, actor or member, update_id=update_id,
                          member_change=MemberChange(member, "member", "left"))
                )
            return
        if message.from_user is None:  # channel posts and anonymous admins: nobody to answer
            return
        text = message.text if message.text is not None else message.caption
        me = self.bot_user.username if self.bot_user else None
        parsed = split_command(text, me)
        if text and text.startswith("/") and parsed is None and split_command(text, None) is not None:
            return  # a command for another bot
        reply = message.reply_to_message
        replied = None
        if reply is not None and not (reply.forum_topic_created and _thread(message) == reply.message_id):
            replied = RepliedMessage(
                message_id=reply.message_id,
                user=_user(reply.from_user) if reply.from_user else None,
                text=reply.text if reply.text is not None else reply.caption,
                photo_file_id=reply.photo[-1].file_id if reply.photo else None,
            )
        await self._emit(
            Event(
                EventKind.MESSAGE,
                chat,
                _user(message.from_user),
                update_id=update_id,
                message_id=message.message_id,
                thread_id=_thread(message),
                text=text,
                command=parsed[0] if parsed else None,
                args=parsed[1] if parsed else "",
                photo_file_id=message.photo[-1].file_id if message.photo else None,
                reply_to=replied,
            )
        )

    async def _on_callback(self, query: CallbackQuery, event_update: Any = None) -> None:
        msg = query.message
        if msg is None:  # an inline-mode message: not ours
            await self.api.answer_callback(CallbackAnswer(query.id))
            return
        thread = _thread(msg) if isinstance(msg, Message) else None
        await self._emit(
            Event(
                EventKind.CALLBACK,
                _chat(msg.chat),
                _user(query.from_user),
                update_id=event_update.update_id if event_update is not None else 0,
                message_id=msg.message_id,
                thread_id=thread,
                callback_id=query.id,
                callback_data=query.data,
                callback_message_id=msg.message_id,
            )
        )

    async def _on_member(self, update: ChatMemberUpdated, event_update: Any = None) -> None:
        new = update.new_chat_member
        await self._emit(
            Event(
                EventKind.MEMBER,
                _chat(update.chat),
                _user(update.from_user),
                update_id=event_update.update_id if event_update is not None else 0,
                member_change=MemberChange(_user(new.user), _status(update.old_chat_member.status), _status(new.status)),
            )
        )
