"""People: who they are, what language they speak, what we keep about them, and forgetting it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.base import ServiceContext
from bot.services.erasure import communities_of_person, erase_shared, export_shared, identity
from bot.services.errors import UserError
from bot.services.people_cache import PeopleCache
from bot.services.people_writes import GroupWrites
from bot.services.personal import row_dict
from bot.services.roles import PRESENT, CommunityRoles
from bot.services.unit import current_unit
from bot.storage.models import (
    AuditEntry,
    Chat,
    ChatMember,
    Community,
    Conversation,
    Secretary,
    User,
)
from bot.storage.upsert import upsert
from bot.transport.port import Event, EventKind
from bot.ui.i18n import LOCALES, t

_USERS = User.__table__
# Built once (/lang is a hot path): the row comes back (RETURNING) so the next update of this
# person finds it remembered.
SET_LANGUAGE = (update(_USERS).where(_USERS.c.id == bindparam("uid")).values(language=bindparam("lang"))
                .returning(*_USERS.c))


class _TtlSet:
    """Remembers keys for a while, to skip writes the database already has."""

    def __init__(self, ttl: float, cap: int = 100_000) -> None:
        self.ttl, self.cap = ttl, cap
        self._items: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        hit = self._items.get(key)
        if hit and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return None

    def put(self, key: Any, value: Any = True) -> None:
        if len(self._items) >= self.cap:
            self._items.clear()
        self._items[key] = (time.monotonic(), value)

    def drop(self, key: Any) -> None:
        self._items.pop(key, None)

    def drop_where(self, pred: Any) -> None:
        for k in [k for k in self._items if pred(k)]:
            del self._items[k]


@dataclass
class Observed:
    user: User | None
    chat: Chat | None
    community: Community | None


class PeopleService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._users = _TtlSet(600)
        self._seen = _TtlSet(600)
        self._chats = _TtlSet(600)
        self.cache = PeopleCache()
        self._writes = GroupWrites(ctx)
        bind = ctx.sessions.kw.get("bind")
        if bind is not None:
            self.cache.watch(bind)

    def forget_remembered(self, *, user_id: int | None = None, chat_id: int | None = None,
                          everything: bool = False) -> None:
        """Another instance changed this person or chat (bot/services/people_sync.py): the writes
        skipped because this process remembers them as done are done again."""
        if everything:
            for remembered in (self._users, self._seen, self._chats):
                remembered.drop_where(lambda _k: True)
            return
        if user_id is not None:
            self._users.drop(user_id)
            self._seen.drop_where(lambda k: k[1] == user_id)
        if chat_id is not None:
            self._chats.drop(chat_id)
            self._seen.drop_where(lambda k: k[0] == chat_id)

    async def observe(self, event: Event) -> Observed:
        """Record the user (and chat, and membership of a bound chat) behind an update.

        Writes happen only when something is new or changed (remembered for a while), and the rows
        are remembered too (dropped at any committed change), so the common update costs no query.
        """
        u, c = event.user, event.chat
        private = c.is_private
        snapshot = (u.first_name, u.last_name, u.username, u.language_code)
        cached = None if u.is_bot else self._users.get(u.id)
        write_user = not u.is_bot and (cached is None or cached[0] != snapshot or (private and not cached[1]))
        chat_snapshot = (c.title, c.is_forum)
        write_chat = c.is_group and self._chats.get(c.id) != chat_snapshot
        # The rows themselves, remembered between updates (bot/services/people_cache.py).
        cache = self.cache
        user = None if u.is_bot or write_user else cache.user(u.id)
        chat = community = None
        if c.is_group and not write_chat:
            hit = cache.chat(c.id)
            if hit is not None:
                chat, community = hit
        # A message or a button press in a bound chat shows the user is in it.
        pressing = event.kind in (EventKind.MESSAGE, EventKind.CALLBACK) and not u.is_bot
        member_now = (
            pressing and chat is not None and bool(chat.kind) and (write_user or user is not None)
            and not self._seen.get((c.id, u.id))
        )
        if write_user or write_chat or member_now:
            user_values: dict[str, Any] | None = None
            update_cols = ["first_name", "last_name", "username", "telegram_language"]
            if write_user:
                user_values = {
                    "id": u.id,
                    "first_name": u.first_name[:128],
                    "last_name": (u.last_name or None) and u.last_name[:128],
                    "username": u.username,
                    "telegram_language": u.language_code,
                }
                if private:
                    user_values["started"] = True
                    update_cols.append("started")

            written: dict[str, Any] = {}

            async def write(s: AsyncSession) -> None:
                if user_values is not None:
                    # The row as it now stands comes back (RETURNING): no read after the write.
                    table = User.__table__
                    dialect = s.bind.dialect.name if s.bind else "sqlite"
                    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(**user_values)
                    stmt = ins.on_conflict_do_update(index_elements=["id"], set_={k: ins.excluded[k] for k in update_cols})
                    row = (await s.execute(stmt.returning(*table.c))).one()
                    written.clear()
                    written.update(row._mapping)
                if write_chat:
                    await upsert(
                        s, Chat, {"id": c.id, "type": c.type, "title": c.title, "is_forum": c.is_forum}, ["id"],
                        ["type", "title", "is_forum"],
                    )
                if member_now:
                    await upsert(s, ChatMember, {"chat_id": c.id, "user_id": u.id, "status": "member"},
                                 ["chat_id", "user_id"])

            # Shared with the other updates arriving meanwhile (one transaction for a burst).
            await self._writes.run(u.id, write)
            if member_now:
                self._seen.put((c.id, u.id))
            if written:
                user = cache.user_from(written)
                cache.put_values(cache.generation, written)
        generation = cache.generation
        need_user = user is None and not u.is_bot
        need_chat = c.is_group and chat is None
        if need_user or need_chat:
            async with self.ctx.read() as s:
                if need_user:
                    user = await s.get(User, u.id)
                if need_chat:
                    row = (
                        await s.execute(
                            select(Chat, Community).outerjoin(Community, Community.id == Chat.community_id)
                            .where(Chat.id == c.id)
                        )
                    ).first()
                    if row is not None:
                        chat, community = row
            if need_user and user is not None:
                cache.put_user(generation, user)
            if need_chat and chat is not None:
                cache.put_chat(generation, chat, community)
        if user is not None:
            self._users.put(u.id, (snapshot, user.started))
        if write_chat:
            self._chats.put(c.id, chat_snapshot)
        if (
            pressing
            and chat is not None
            and chat.kind
            and user is not None
            and not self._seen.get((c.id, u.id))
        ):
            async with self.ctx.tx() as s:
                await upsert(s, ChatMember, {"chat_id": c.id, "user_id": u.id, "status": "member"}, ["chat_id", "user_id"])
            self._seen.put((c.id, u.id))
        return Observed(user, chat, community)

    async def record_presence(self, chat_id: int, user_id: int, status: str) -> None:
        """Telegram reported a join, leave or promotion in a chat."""
        async with self.ctx.tx() as s:
            if status in PRESENT:
                await upsert(
                    s, ChatMember, {"chat_id": chat_id, "user_id": user_id, "status": status}, ["chat_id", "user_id"],
                    ["status"],
                )
                self._seen.put((chat_id, user_id))
            else:
                await s.execute(delete(ChatMember).where(ChatMember.chat_id == chat_id, ChatMember.user_id == user_id))
                self._seen.drop((chat_id, user_id))
        self.ctx.roles.admins.note(chat_id, user_id, status)

    async def ensure_user(self, user_id: int, first_name: str, username: str | None = None) -> None:
        async with self.ctx.tx() as s:
            await upsert(s, User, {"id": user_id, "first_name": first_name[:128], "username": username}, ["id"])

    async def set_language(self, user_id: int, arg: str) -> str:
        lang = arg.strip().lower()
        if lang not in LOCALES:
            raise UserError("err_lang_usage")
        async with self.ctx.tx() as s:
            row = (await s.execute(SET_LANGUAGE, {"uid": user_id, "lang": lang})).first()
            if row is not None:
                info = s.info
                self.cache.written(s, dict(row._mapping))
        if row is not None and current_unit() is None:  # committed and checked in already
            self.cache.settle(info)
        return lang

    async def roles(self, user_id: int) -> list[CommunityRoles]:
        async with self.ctx.read() as s:
            return await self.ctx.roles.communities_of(s, user_id)

    async def find_by_username(self, username: str) -> User | None:
        name = username.lstrip("@").lower()
        async with self.ctx.read() as s:
            return await s.scalar(select(User).where(func.lower(User.username) == name).limit(1))

    async def export(self, user_id: int) -> bytes:
        """/mydata: every row that is about this user, as one JSON document."""
        async with self.ctx.read() as s:
            user = await s.get(User, user_id)
            doc: dict[str, Any] = {
                "user": row_dict(user) if user else None,
                "chats": [row_dict(r) for r in await s.scalars(select(ChatMember).where(ChatMember.user_id == user_id))],
                "secretary_of": [
                    row_dict(r) for r in await s.scalars(select(Secretary).where(Secretary.user_id == user_id))
                ],
                "conversations": [
                    row_dict(r) for r in await s.scalars(select(Conversation).where(Conversation.user_id == user_id))
                ],
                **await export_shared(s, user_id),
            }
            for name, exporter in self.ctx.personal.exporters:
                doc[name] = await exporter(s, user_id)
        return json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")

    async def forget(self, user_id: int) -> None:
        """/forget: erase the person. What they filed or did stays, anonymised, so the rates hold;
        nothing addressed to them is delivered any more; their names leave the texts that stay."""
        async with self.ctx.tx() as s:
            who = await identity(s, user_id)
            communities = await communities_of_person(s, user_id)
            for _name, eraser in self.ctx.personal.erasers:
                await eraser(s, user_id)
            await erase_shared(s, who, str(t(self.ctx.settings.default_locale, "someone_anonymous")), communities)
            await s.execute(update(Community).where(Community.created_by == user_id).values(created_by=None))
            await s.execute(update(Chat).where(Chat.bound_by == user_id).values(bound_by=None))
            for model in (ChatMember, Secretary, Conversation):
                await s.execute(delete(model).where(model.user_id == user_id))  # type: ignore[attr-defined]
            await s.execute(delete(User).where(User.id == user_id))
            s.add(AuditEntry(action="forget", details={}))
        self._users.drop(user_id)
        self._seen.drop_where(lambda k: k[1] == user_id)
