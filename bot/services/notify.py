"""Notifications are outbox rows written in the same transaction as the change they report."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import Chat, Community, Outbox, User
from bot.transport.port import Keyboard
from bot.ui.html import Html, mention
from bot.ui.i18n import Translator

Render = Callable[[Translator], tuple[str, Keyboard | None]]


def locale_of(user: User | None, community: Community | None, default: str) -> str:
    if user is not None and user.language:
        return user.language
    if community is not None and community.locale:
        return community.locale
    return default


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
) -> Outbox | None:
    """Store one message to send. With a dedup_key, a second enqueue of the same key is a no-op.

    `user_id` is the person the message is for (privately or by a mention): /forget cancels by it."""
    if dedup_key is not None:
        existing = await session.scalar(select(Outbox.id).where(Outbox.dedup_key == dedup_key))
        if existing is not None:
            return None
    row = Outbox(
        community_id=community_id,
        chat_id=chat_id,
        user_id=user_id if user_id is not None else (chat_id if chat_id > 0 else None),
        thread_id=thread_id,
        reply_to_message_id=reply_to_message_id,
        text=text,
        keyboard={"rows": keyboard.to_json()} if keyboard else None,
        photo=photo,
        ref=ref,
        dedup_key=dedup_key,
        pin=pin,
    )
    session.add(row)
    await session.flush()
    return row


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
    if user.started:
        return await enqueue(
            session, chat_id=user.id, user_id=user.id, text=text, keyboard=keyboard,
            community_id=community.id if community else None, ref=ref, dedup_key=dedup_key,
        )
    if fallback_chat_id is None:
        return None
    return await enqueue(
        session,
        chat_id=fallback_chat_id,
        user_id=user.id,
        thread_id=fallback_thread_id,
        reply_to_message_id=fallback_reply_to,
        text=Html(f"{mention(user.id, user.display_name)} {text}"),
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
) -> int:
    """Privately to each secretary who started the bot; if none has, to the member chat(s).

    Returns how many were told. A secretary whose copy was queued already (the same dedup_key)
    counts as told: falling back to the member chat then would post there what was meant for the
    secretaries alone. The member chat gets `group_render` (what a group may see) when given."""
    told = 0
    for user in secretaries:
        if user.started:
            tr = Translator(locale_of(user, community, default_locale))
            text, keyboard = render(tr)
            key = f"{dedup_key}:u{user.id}" if dedup_key else None
            await enqueue(session, chat_id=user.id, user_id=user.id, text=text, keyboard=keyboard,
                          community_id=community.id, dedup_key=key)
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
