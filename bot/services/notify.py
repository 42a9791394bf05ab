"""Notifications are outbox rows written in the same transaction as the change they report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import Chat, ChatMove, Community, Outbox, User
from bot.transport.port import Fold, Keyboard, OutMessage
from bot.ui.html import Html, mention
from bot.ui.i18n import Translator

Render = Callable[[Translator], tuple[str, Keyboard | None]]


def locale_of(user: User | None, community: Community | None, default: str) -> str:
    if user is not None and user.language:
        return user.language
    if community is not None and community.locale:
        return community.locale
    return default


async def current_chat_id(session: AsyncSession, chat_id: int) -> int:
    """A group that became a supergroup is reached at its new id (followed through every upgrade)."""
    for _ in range(3):
        if chat_id > 0:
            break
        moved = await session.scalar(select(ChatMove.new_chat_id).where(ChatMove.old_chat_id == chat_id))
        if moved is None:
            break
        chat_id = moved
    return chat_id


def _columns(*, chat_id: int, user_id: int | None, keyboard: Keyboard | None, fold: Fold | None,
             **rest: Any) -> dict[str, Any]:
    """What an outbox row stores (the chat id already followed through upgrades): a message for a
    person privately is theirs unless said otherwise."""
    return {**rest, "chat_id": chat_id, "user_id": user_id if user_id is not None else (chat_id if chat_id > 0 else None),
            "keyboard": {"rows": keyboard.to_json()} if keyboard else None, "fold": fold.to_json() if fold else None}


async def enqueue(
    session: AsyncSession,
    *,
    chat_id: int,
    text: str,
    community_id: int | None = None,
    user_id: int | None = None,
    thread_id: int | None = None,
    reply_to_message_id: int | None = None,
    keyboard: Keyboard | None = None,
    photo: str | None = None,
    ref: str | None = None,
    dedup_key: str | None = None,
    pin: bool = False,
    document_id: str | None = None,
    fold: Fold | None = None,
    fallback: dict[str, object] | None = None,
    edit_of: int | None = None,
    coalesce_key: str | None = None,
) -> Outbox | None:
    """Store one message to send. With a dedup_key, a second enqueue of the same key is a no-op.

    `user_id` is the person the message is for (privately or by a mention): /forget cancels by it.
    `fallback` ({"chat_id", "thread_id", "reply_to", "text"}) is where a private message goes
    instead if its person has blocked the bot; `edit_of` makes the row an edit of the message
    another row sent (resolved when it is delivered)."""
    if dedup_key is not None:
        existing = await session.scalar(select(Outbox.id).where(Outbox.dedup_key == dedup_key))
        if existing is not None:
            return None
    if chat_id < 0:
        chat_id = await current_chat_id(session, chat_id)
    row = Outbox(**_columns(
        chat_id=chat_id, text=text, community_id=community_id, user_id=user_id, thread_id=thread_id,
        reply_to_message_id=reply_to_message_id, keyboard=keyboard, photo=photo, document_id=document_id,
        ref=ref, dedup_key=dedup_key, pin=pin, fold=fold, fallback=fallback, edit_of=edit_of,
        coalesce_key=coalesce_key,
    ))
    session.add(row)
    await session.flush()
    return row


def _message_fields(msg: OutMessage) -> dict[str, Any]:
    """What `enqueue` takes of an OutMessage (beside its chat, community, ref and dedup key)."""
    return {"text": msg.text, "thread_id": msg.thread_id, "user_id": msg.fold.user_id if msg.fold is not None else None,
            "reply_to_message_id": msg.reply_to_message_id, "keyboard": msg.keyboard, "photo": msg.photo,
            "pin": msg.pin, "document_id": msg.document_id, "fold": msg.fold, "coalesce_key": msg.coalesce_key}


async def enqueue_message(
    session: AsyncSession, msg: OutMessage, *, community_id: int | None = None, ref: str | None = None,
    dedup_key: str | None = None,
) -> Outbox | None:
    """An OutMessage (a handler's reply) as an outbox row; `outbox.to_out_message` is the reverse.

    Bytes (a generated photo or document) are stored in the row too."""
    row = await enqueue(session, chat_id=msg.chat_id, community_id=community_id, ref=ref, dedup_key=dedup_key,
                        **_message_fields(msg))
    if row is not None and (msg.edit_message_id is not None or msg.document is not None):
        # (Only when there is something to add: a plain reply costs no second statement.)
        row.edit_message_id = msg.edit_message_id
        if msg.document is not None:
            row.document_name, row.document = msg.document.filename, msg.document.data
        await session.flush()
    return row


async def enqueue_replies(session: AsyncSession, msgs: Sequence[OutMessage], *, ref: str) -> None:
    """A handled update's replies as outbox rows: `enqueue_message` for each, as one statement
    (every update writes its replies: the ORM's unit of work per row cost more than the insert)."""
    rows = []
    for msg in msgs:
        chat_id = await current_chat_id(session, msg.chat_id) if msg.chat_id < 0 else msg.chat_id
        doc = msg.document
        # Every row names every column: one executemany takes rows of one shape.
        rows.append(_columns(
            chat_id=chat_id, community_id=None, ref=ref, dedup_key=None, fallback=None, edit_of=None,
            edit_message_id=msg.edit_message_id, document_name=doc.filename if doc else None,
            document=doc.data if doc else None, **_message_fields(msg),
        ))
    if rows:
        await session.execute(insert(Outbox.__table__), rows)
        session.info["outbox"] = True  # not through the unit of work: wake the outbox all the same


async def notify_user(
    session: AsyncSession,
    user: User,
    render: Render,
    *,
    community: Community | None,
    default_locale: str,
    fallback_chat_id: int | None,
    fallback_thread_id: int | None = None,
    fallback_reply_to: int | None = None,
    ref: str | None = None,
    dedup_key: str | None = None,
) -> Outbox | None:
    """Privately when they have started the bot, else a reply that mentions them where it belongs."""
    tr = Translator(locale_of(user, community, default_locale))
    text, keyboard = render(tr)
    in_group = Html(f"{mention(user.id, user.display_name)} {text}")
    if user.started:
        # Should they have blocked the bot meanwhile, the outbox sends it to the group instead.
        fallback = None if fallback_chat_id is None else {
            "chat_id": fallback_chat_id, "thread_id": fallback_thread_id, "reply_to": fallback_reply_to,
            "text": str(in_group),
        }
        return await enqueue(
            session, chat_id=user.id, user_id=user.id, text=text, keyboard=keyboard,
            community_id=community.id if community else None, ref=ref, dedup_key=dedup_key, fallback=fallback,
        )
    if fallback_chat_id is None:
        return None
    return await enqueue(
        session,
        chat_id=fallback_chat_id,
        user_id=user.id,
        thread_id=fallback_thread_id,
        reply_to_message_id=fallback_reply_to,
        text=in_group,
        keyboard=keyboard,
        community_id=community.id if community else None,
        ref=ref,
        dedup_key=dedup_key,
    )


async def alert_secretaries(
    session: AsyncSession,
    community: Community,
    secretaries: Sequence[User],
    render: Render,
    *,
    default_locale: str,
    dedup_key: str | None = None,
    group_render: Render | None = None,
    fold: Callable[[Translator], Fold] | None = None,
) -> int:
    """Privately to each secretary who started the bot; if none has, to the member chat(s).

    Returns how many were told. A secretary whose copy was queued already (the same dedup_key)
    counts as told: falling back to the member chat then would post there what was meant for the
    secretaries alone. The member chat gets `group_render` (what a group may see) when given.
    With `fold`, alerts that queue behind one secretary's limit go out folded into one message."""
    told = 0
    for user in secretaries:
        if user.started:
            tr = Translator(locale_of(user, community, default_locale))
            text, keyboard = render(tr)
            key = f"{dedup_key}:u{user.id}" if dedup_key else None
            await enqueue(session, chat_id=user.id, user_id=user.id, text=text, keyboard=keyboard,
                          community_id=community.id, dedup_key=key, fold=fold(tr) if fold else None)
            told += 1  # queued now, or already by the earlier call with this key
    if told:
        return told
    chats = await session.scalars(
        select(Chat).where(Chat.community_id == community.id, Chat.kind == "member", Chat.bot_status != "left")
    )
    tr = Translator(community.locale or default_locale)
    text, keyboard = (group_render or render)(tr)
    for chat in chats:
        key = f"{dedup_key}:c{chat.id}" if dedup_key else None
        await enqueue(
            session, chat_id=chat.id, thread_id=chat.topic_id, text=text, keyboard=keyboard, community_id=community.id,
            dedup_key=key,
        )
        told += 1
    return told
