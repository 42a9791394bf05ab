"""The neutral language between the core and a chat framework.

Only `bot/transport/` knows aiogram or python-telegram-bot; everything else speaks these types.
Modelled on errbot's backend boundary: adapters turn native updates into `Event`s and carry
out `OutMessage`s through a `BotApi`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class EventKind(StrEnum):
    MESSAGE = "message"  # text, command, photo (with caption), reply
    CALLBACK = "callback"  # an inline button press
    MEMBER = "member"  # someone (or the bot itself) joined or left a chat


class ChatType(StrEnum):
    PRIVATE = "private"
    GROUP = "group"
    SUPERGROUP = "supergroup"
    CHANNEL = "channel"


# Telegram chat member statuses, as strings on both frameworks.
ADMIN_STATUSES = frozenset({"creator", "administrator"})
PRESENT_STATUSES = frozenset({"creator", "administrator", "member", "restricted"})


@dataclass(frozen=True, slots=True)
class User:
    id: int
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    is_bot: bool = False

    @property
    def full_name(self) -> str:
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or (f"@{self.username}" if self.username else str(self.id))


@dataclass(frozen=True, slots=True)
class Chat:
    id: int
    type: str
    title: str | None = None
    is_forum: bool = False

    @property
    def is_private(self) -> bool:
        return self.type == ChatType.PRIVATE

    @property
    def is_group(self) -> bool:
        return self.type in (ChatType.GROUP, ChatType.SUPERGROUP)


@dataclass(frozen=True, slots=True)
class RepliedMessage:
    """The message an incoming message replies to."""

    message_id: int
    user: User | None
    text: str | None = None  # text or caption
    photo_file_id: str | None = None


@dataclass(frozen=True, slots=True)
class MemberChange:
    """A chat_member / my_chat_member update, or a join/leave service message."""

    member: User
    old_status: str | None
    new_status: str  # "member", "administrator", "creator", "left", "kicked", "restricted"
    # From a new_chat_members / left_chat_member service message (statuses guessed), not from a
    # my_chat_member / chat_member update (statuses as Telegram has them).
    via_service_message: bool = False

    @property
    def joined(self) -> bool:
        return self.new_status in PRESENT_STATUSES and self.old_status not in PRESENT_STATUSES

    @property
    def left(self) -> bool:
        return self.new_status not in PRESENT_STATUSES


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    chat: Chat
    user: User
    update_id: int = 0
    message_id: int | None = None
    thread_id: int | None = None  # forum topic the message was in (only when the chat is a forum)
    text: str | None = None  # message text or photo caption, as typed
    command: str | None = None  # lower-case, without "/" and "@botname"
    args: str = ""  # the text after the command, stripped
    photo_file_id: str | None = None  # largest size
    reply_to: RepliedMessage | None = None
    callback_id: str | None = None
    callback_data: str | None = None
    callback_message_id: int | None = None  # the message that carries the pressed button
    member_change: MemberChange | None = None
    document_file_id: str | None = None  # a document sent with the message (its caption is `text`)
    # A basic group became a supergroup: the service message in the old group carries the new id
    # (and the first one in the new supergroup carries the old one as migrate_from_chat_id).
    migrate_to_chat_id: int | None = None
    migrate_from_chat_id: int | None = None


@dataclass(frozen=True, slots=True)
class Button:
    text: str
    data: str | None = None  # callback data, at most 64 bytes
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Keyboard:
    rows: tuple[tuple[Button, ...], ...]

    @classmethod
    def of(cls, *rows: list[Button] | tuple[Button, ...]) -> Keyboard:
        return cls(tuple(tuple(r) for r in rows))

    def to_json(self) -> list[list[dict[str, str]]]:
        out: list[list[dict[str, str]]] = []
        for row in self.rows:
            out.append(
                [
                    {"text": b.text, **({"callback_data": b.data} if b.data else {}), **({"url": b.url} if b.url else {})}
                    for b in row
                ]
            )
        return out

    @classmethod
    def from_json(cls, rows: list[list[dict[str, str]]] | None) -> Keyboard | None:
        if not rows:
            return None
        return cls(tuple(tuple(Button(b["text"], b.get("callback_data"), b.get("url")) for b in r) for r in rows))


@dataclass(frozen=True, slots=True)
class Document:
    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Fold:
    """How a message may be folded with others to the same chat when that chat is over its limit.

    Messages of one chat with the same `key` (and topic) that would queue behind the chat's limit
    go out as one: `head` (with `{n}` for how many) and then each one's `line`. A message that
    answers someone (`private_chat_id`, set only when they have started the bot) goes to them
    privately instead, as `private_text`. `tag` (e.g. "#12") labels the message's buttons in
    the folded one.
    """

    key: str
    line: str
    head: str
    private_chat_id: int | None = None
    private_text: str | None = None
    tag: str | None = None
    user_id: int | None = None  # the person it answers (their /forget cancels it while queued)

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k)
                for k in ("key", "line", "head", "private_chat_id", "private_text", "tag", "user_id")}

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> Fold | None:
        if not data:
            return None
        return cls(**data)  # type: ignore[arg-type]


@dataclass(slots=True)
class OutMessage:
    """One thing to send. `text` is HTML; all user text in it must already be escaped."""

    chat_id: int
    text: str = ""
    thread_id: int | None = None
    reply_to_message_id: int | None = None
    keyboard: Keyboard | None = None
    photo: str | None = None  # a file_id or a PNG as bytes via `photo_bytes`
    photo_bytes: bytes | None = None
    document: Document | None = None
    document_id: str | None = None  # a document Telegram already has (file_id), sent again
    pin: bool = False
    # Set to edit an existing message (text and keyboard) instead of sending a new one; with an
    # empty text only the keyboard is replaced (works on photo and document messages too).
    edit_message_id: int | None = None
    # Edits with the same key that queue up behind one another collapse into the last.
    coalesce_key: str | None = None
    fold: Fold | None = None


@dataclass(slots=True)
class CallbackAnswer:
    callback_id: str
    text: str | None = None  # at most 200 characters
    show_alert: bool = False


@dataclass(slots=True)
class Sent:
    message_id: int | None  # None only when Telegram accepted it but its answer could not be read
    chat_id: int


@dataclass(slots=True)
class Response:
    """What a handler returns: messages to send and, for a button press, the answer."""

    messages: list[OutMessage] = field(default_factory=list)
    callback_answer: CallbackAnswer | None = None


# ---- errors the adapters raise, so the sender decides retries the same way on both frameworks


class BotApiError(Exception):
    """Base of every error a BotApi call may raise."""


class RetryAfter(BotApiError):
    def __init__(self, seconds: float, description: str = "") -> None:
        super().__init__(description or f"retry after {seconds}")
        self.seconds = float(seconds)


class TransientError(BotApiError):
    """Network failure, timeout or a 5xx: worth retrying with backoff.

    maybe_sent: the request went out and its answer was lost (a read timeout, a dropped
    connection), so Telegram may have carried it out: a retry may deliver it twice."""

    def __init__(self, message: str = "", *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class Accepted(BotApiError):
    """Telegram answered 200 (the call was carried out) but the framework could not read the
    answer: a delivery all the same, never to be repeated; the message id is known only when
    the raw answer had one."""

    def __init__(self, message_id: int | None, detail: str = "") -> None:
        super().__init__(detail or "accepted, answer unreadable")
        self.message_id = message_id


class PermanentError(BotApiError):
    """400, 403, 404 ...: retrying will not help (except at `migrate_to_chat_id`, when given:
    the group became a supergroup with that id)."""

    def __init__(self, code: int, description: str, *, migrate_to_chat_id: int | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.migrate_to_chat_id = migrate_to_chat_id


class BotApi(Protocol):
    """The few Bot API calls the core needs; each adapter implements it over its framework."""

    async def get_me(self) -> User: ...

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        keyboard: Keyboard | None = None,
    ) -> Sent: ...

    async def send_photo(
        self,
        chat_id: int,
        photo: str | bytes,
        *,
        caption: str | None = None,
        thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        keyboard: Keyboard | None = None,
    ) -> Sent: ...

    async def send_document(
        self,
        chat_id: int,
        document: Document | str,  # bytes to upload, or a file_id Telegram has
        *,
        caption: str | None = None,
        thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> Sent: ...

    async def edit_message_text(
        self, chat_id: int, message_id: int, text: str, *, keyboard: Keyboard | None = None
    ) -> None: ...

    async def edit_message_keyboard(self, chat_id: int, message_id: int, keyboard: Keyboard | None) -> None: ...

    async def pin_message(self, chat_id: int, message_id: int) -> None: ...

    async def answer_callback(self, answer: CallbackAnswer) -> None: ...

    async def get_chat_member_status(self, chat_id: int, user_id: int) -> str: ...

    async def get_chat_admin_ids(self, chat_id: int) -> list[int]: ...
