"""Bot API objects -> neutral Events, for both adapters.

aiogram's and python-telegram-bot's types both carry the Bot API's own field names
(`from_user`, `reply_to_message`, `is_topic_message`, ...), so one reading of them serves both
frameworks and they cannot drift apart. Nothing here imports a framework.
"""

from __future__ import annotations

from typing import Any

from bot.transport.base import split_command
from bot.transport.port import Chat, Event, EventKind, MemberChange, RepliedMessage, User


def value(x: Any) -> str:
    """An enum's value (aiogram and PTB wrap chat types and member statuses in enums) or the string."""
    return str(getattr(x, "value", x))


def to_user(u: Any) -> User:
    return User(
        id=u.id,
        first_name=u.first_name or "",
        last_name=u.last_name,
        username=u.username,
        language_code=u.language_code,
        is_bot=u.is_bot,
    )


def to_chat(c: Any) -> Chat:
    return Chat(id=c.id, type=value(c.type), title=c.title, is_forum=bool(c.is_forum))


def thread_of(message: Any) -> int | None:
    # Only forum topics are threads we answer in; reply threads of ordinary groups are not.
    if message.chat.is_forum and getattr(message, "is_topic_message", False):
        return message.message_thread_id
    return None


def _text(message: Any) -> str | None:
    return message.text if message.text is not None else message.caption


def _photo(message: Any) -> str | None:
    return message.photo[-1].file_id if message.photo else None  # the largest size


def message_events(message: Any, update_id: int, bot_username: str | None) -> list[Event]:
    """A message as Events: one per join/leave of a service message, else at most one MESSAGE."""
    chat = to_chat(message.chat)
    if message.new_chat_members or message.left_chat_member:
        # Service messages, for groups where the bot gets no chat_member updates.
        actor = to_user(message.from_user) if message.from_user else None
        changes = [(to_user(u), "left", "member") for u in message.new_chat_members or ()]
        if message.left_chat_member:
            changes.append((to_user(message.left_chat_member), "member", "left"))
        return [
            Event(EventKind.MEMBER, chat, actor or member, update_id=update_id,
                  member_change=MemberChange(member, old, new, via_service_message=True))
            for member, old, new in changes
        ]
    if message.from_user is None:  # channel posts and anonymous admins: nobody to answer
        return []
    text = _text(message)
    parsed = split_command(text, bot_username)
    if text and text.startswith("/") and parsed is None and split_command(text, None) is not None:
        return []  # a command for another bot
    reply = message.reply_to_message
    replied = None
    # In a forum, a message that replies to nothing "replies" to its topic's creation message.
    if reply is not None and not (reply.forum_topic_created and thread_of(message) == reply.message_id):
        replied = RepliedMessage(
            message_id=reply.message_id,
            user=to_user(reply.from_user) if reply.from_user else None,
            text=_text(reply),
            photo_file_id=_photo(reply),
        )
    return [
        Event(
            EventKind.MESSAGE,
            chat,
            to_user(message.from_user),
            update_id=update_id,
            message_id=message.message_id,
            thread_id=thread_of(message),
            text=text,
            command=parsed[0] if parsed else None,
            args=parsed[1] if parsed else "",
            photo_file_id=_photo(message),
            reply_to=replied,
            document_file_id=message.document.file_id if message.document else None,
            migrate_to_chat_id=message.migrate_to_chat_id,
            migrate_from_chat_id=message.migrate_from_chat_id,
        )
    ]


def callback_event(query: Any, update_id: int) -> Event | None:
    """A button press; None for one on an inline-mode message (not ours)."""
    msg = query.message
    if msg is None:
        return None
    return Event(
        EventKind.CALLBACK,
        to_chat(msg.chat),
        to_user(query.from_user),
        update_id=update_id,
        message_id=msg.message_id,
        thread_id=thread_of(msg),
        callback_id=query.id,
        callback_data=query.data,
        callback_message_id=msg.message_id,
    )


def member_event(update: Any, update_id: int) -> Event:
    """A my_chat_member / chat_member update."""
    new = update.new_chat_member
    return Event(
        EventKind.MEMBER,
        to_chat(update.chat),
        to_user(update.from_user),
        update_id=update_id,
        member_change=MemberChange(to_user(new.user), value(update.old_chat_member.status), value(new.status)),
    )
