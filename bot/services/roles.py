"""Who is what in which community. Every service asks here before it changes anything."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.errors import Denied
from bot.storage.models import Chat, ChatMember, Community, Secretary

log = logging.getLogger("linli.roles")

ADMIN = frozenset({"creator", "administrator"})
PRESENT = frozenset({"creator", "administrator", "member", "restricted"})

# While an update is handled: when its lookups were read ahead (AdminCache.prefetch). What was read
# then counts as fresh for the rest of the update, whatever the TTL: the update's transaction reads
# Telegram's answers from here instead of asking while it holds the database.
_SNAPSHOT_SINCE: ContextVar[float | None] = ContextVar("linli_admin_snapshot", default=None)


def begin_snapshot() -> object:
    """Mark the start of an update's lookups; returns a token for end_snapshot."""
    return _SNAPSHOT_SINCE.set(time.monotonic())


def end_snapshot(token: object) -> None:
    _SNAPSHOT_SINCE.reset(token)  # type: ignore[arg-type]


StatusLookup = Callable[[int, int], Awaitable[str]]
AdminsLookup = Callable[[int], Awaitable[Iterable[int]]]


@dataclass
class CommunityRoles:
    community_id: int
    name: str
    secretary: bool = False
    member: bool = False
    resident: bool = False
    secretary_sources: set[str] = field(default_factory=set)

    @property
    def names(self) -> list[str]:
        out = []
        if self.secretary:
            out.append("secretary")
        if self.member:
            out.append("member")
        if self.resident:
            out.append("resident")
        return out


class AdminCache:
    """Telegram admin status, cached for minutes, not forever.

    Per chat, the list of administrators (one getChatAdministrators call answers for everyone);
    per (chat, user), what an update just reported or a live getChatMember said. Telegram is
    given LOOKUP_TIMEOUT to answer: a slow lookup must not hold up the caller's transaction.
    """

    LOOKUP_TIMEOUT = 5.0
    # A lookup that failed (timed out, refused) is not tried again for this long: each later check
    # would otherwise wait its full timeout again.
    FAILURE_TTL = 30.0

    def __init__(self, lookup: StatusLookup, ttl: float, admins: AdminsLookup | None = None) -> None:
        self._lookup = lookup
        self._admins_lookup = admins
        self._ttl = ttl
        self._cache: dict[tuple[int, int], tuple[float, str]] = {}
        self._chats: dict[int, tuple[float, frozenset[int]]] = {}
        self._pending: dict[int, asyncio.Future[frozenset[int] | None]] = {}
        self._failed: dict[object, float] = {}  # chat id or (chat, user) -> monotonic time to try again
        self.generation = 0  # bumped by forget() and note()

    def _fresh(self, stamp: float) -> bool:
        since = _SNAPSHOT_SINCE.get()
        return time.monotonic() - stamp < self._ttl or (since is not None and stamp >= since)

    def _failing(self, key: object) -> bool:
        until = self._failed.get(key)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._failed[key]
        return False

    def _fail(self, key: object) -> None:
        if len(self._failed) > 10_000:
            self._failed.clear()
        self._failed[key] = time.monotonic() + self.FAILURE_TTL

    async def prefetch(self, chat_ids: Iterable[int]) -> None:
        """Read the admin lists of these chats now (side by side), before a transaction needs them."""
        if self._admins_lookup is None:
            return
        # Lists still fresh need nothing (no task each: a burst of presses prefetches at every one).
        wanted = [c for c in dict.fromkeys(chat_ids) if (hit := self._chats.get(c)) is None or not self._fresh(hit[0])]
        if len(wanted) == 1:
            await self.admin_ids(wanted[0])
        elif wanted:
            await asyncio.gather(*(self.admin_ids(c) for c in wanted))

    async def status(self, chat_id: int, user_id: int) -> str:
        key = (chat_id, user_id)
        hit = self._cache.get(key)
        if hit and self._fresh(hit[0]):
            return hit[1]
        if self._failing(key):
            return hit[1] if hit else "unknown"
        try:
            status = await asyncio.wait_for(self._lookup(chat_id, user_id), self.LOOKUP_TIMEOUT)
        except Exception as exc:  # Telegram unreachable or slow, or the bot not in the chat: not an admin
            log.warning("getChatMember %s/%s failed: %r", chat_id, user_id, exc)
            self._fail(key)
            return hit[1] if hit else "unknown"
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic(), status)
        return status

    async def admin_ids(self, chat_id: int) -> frozenset[int]:
        """Everyone who administers the chat (creator included)."""
        hit = self._chats.get(chat_id)
        if hit and self._fresh(hit[0]):
            return hit[1]
        if self._admins_lookup is None or self._failing(chat_id):
            return hit[1] if hit else frozenset()
        # Callers asking at once share one Telegram call.
        pending = self._pending.get(chat_id)
        if pending is None:
            pending = self._pending[chat_id] = asyncio.ensure_future(self._fetch_admins(chat_id))
            pending.add_done_callback(lambda _f: self._pending.pop(chat_id, None))
        ids = await asyncio.shield(pending)
        if ids is None:
            return hit[1] if hit else frozenset()
        return ids

    async def _fetch_admins(self, chat_id: int) -> frozenset[int] | None:
        assert self._admins_lookup is not None
        try:
            ids = frozenset(await asyncio.wait_for(self._admins_lookup(chat_id), self.LOOKUP_TIMEOUT))
        except Exception as exc:
            log.warning("getChatAdministrators %s failed: %r", chat_id, exc)
            self._fail(chat_id)
            return None
        if len(self._chats) > 10_000:
            self._chats.clear()
        self._chats[chat_id] = (time.monotonic(), ids)
        return ids

    async def is_admin(self, chat_id: int, user_id: int) -> bool:
        hit = self._cache.get((chat_id, user_id))
        if (hit and self._fresh(hit[0])) or self._admins_lookup is None:
            return await self.status(chat_id, user_id) in ADMIN
        return user_id in await self.admin_ids(chat_id)

    def forget(self, chat_id: int, user_id: int | None = None) -> None:
        self.generation += 1  # a binding or a membership changed: read-ahead scopes are recomputed
        self._chats.pop(chat_id, None)
        self._failed.pop(chat_id, None)
        if user_id is not None:
            self._cache.pop((chat_id, user_id), None)
        else:
            for key in [k for k in self._cache if k[0] == chat_id]:
                del self._cache[key]

    def note(self, chat_id: int, user_id: int, status: str) -> None:
        """A status Telegram just reported in an update is fresher than the cache."""
        self.generation += 1
        self._cache[(chat_id, user_id)] = (time.monotonic(), status)
        hit = self._chats.get(chat_id)
        if hit:
            ids = hit[1] | {user_id} if status in ADMIN else hit[1] - {user_id}
            self._chats[chat_id] = (hit[0], frozenset(ids))


class Roles:
    SCOPE_TTL = 60.0

    def __init__(self, superadmins: Iterable[int], admins: AdminCache) -> None:
        self.superadmins = frozenset(superadmins)
        self.admins = admins
        self._scopes: dict[tuple[int, int | None], tuple[float, int, tuple[int, ...]]] = {}

    async def prefetch_known(self, user_id: int, community_id: int | None) -> bool:
        """`prefetch_for` without the database, when which chats to read ahead is remembered (or
        nothing looks admin lists up): True if done. Which chats is remembered for a minute (until a
        binding changes): a stale answer costs only a lookup inside the transaction, never a wrong decision."""
        if self.admins._admins_lookup is None:
            return True
        hit = self._scopes.get((user_id, community_id))
        if hit is not None and hit[1] == self.admins.generation and time.monotonic() - hit[0] < self.SCOPE_TTL:
            await self.admins.prefetch(hit[2])
            return True
        return False

    async def prefetch_for(self, session: AsyncSession, user_id: int, community_id: int | None) -> None:
        """Before an update's transaction opens, for a scope `prefetch_known` did not know: the admin
        lists its checks and alerts may need, those of the member chats of the chat's community and
        of the user's communities."""
        key = (user_id, community_id)
        mine = (
            select(Chat.community_id).join(ChatMember, ChatMember.chat_id == Chat.id)
            .where(ChatMember.user_id == user_id, Chat.community_id.is_not(None))
            .union(select(Secretary.community_id).where(Secretary.user_id == user_id))
        )
        scope = Chat.community_id.in_(mine)
        if community_id is not None:
            scope = scope | (Chat.community_id == community_id)
        generation = self.admins.generation
        chats = tuple(await session.scalars(
            select(Chat.id).where(Chat.kind == "member", Chat.bot_status != "left", scope)))
        if len(self._scopes) > 50_000:
            self._scopes.clear()
        self._scopes[key] = (time.monotonic(), generation, chats)
        await self.admins.prefetch(chats)

    async def member_chats(self, session: AsyncSession, community_id: int) -> list[Chat]:
        rows = await session.scalars(
            select(Chat).where(Chat.community_id == community_id, Chat.kind == "member", Chat.bot_status != "left")
        )
        return list(rows)

    async def is_secretary(self, session: AsyncSession, community_id: int, user_id: int) -> bool:
        return bool(await self.secretary_sources(session, community_id, user_id))

    async def secretary_sources(self, session: AsyncSession, community_id: int, user_id: int) -> set[str]:
        sources: set[str] = set()
        if user_id in self.superadmins:
            sources.add("config")
        row = await session.get(Secretary, (community_id, user_id))
        if row is not None:
            sources.add(row.source)
        if not sources:
            # Only admins of member chats are secretaries by that alone (not 楼长 of resident chats).
            for chat in await self.member_chats(session, community_id):
                if await self.admins.is_admin(chat.id, user_id):
                    sources.add("admin")
                    break
        return sources

    async def is_member(self, session: AsyncSession, community_id: int, user_id: int) -> bool:
        found = await session.scalar(
            select(ChatMember.user_id)
            .join(Chat, Chat.id == ChatMember.chat_id)
            .where(
                Chat.community_id == community_id,
                Chat.kind == "member",
                ChatMember.user_id == user_id,
                ChatMember.status.in_(PRESENT),
            )
            .limit(1)
        )
        return found is not None

    async def is_resident(self, session: AsyncSession, community_id: int, user_id: int) -> bool:
        found = await session.scalar(
            select(ChatMember.user_id)
            .join(Chat, Chat.id == ChatMember.chat_id)
            .where(
                Chat.community_id == community_id,
                Chat.kind == "resident",
                ChatMember.user_id == user_id,
                ChatMember.status.in_(PRESENT),
            )
            .limit(1)
        )
        return found is not None

    async def require_secretary(self, session: AsyncSession, community_id: int, user_id: int) -> None:
        if not await self.is_secretary(session, community_id, user_id):
            raise Denied("err_not_secretary")

    async def roles_in(self, session: AsyncSession, community: Community, user_id: int) -> CommunityRoles:
        sources = await self.secretary_sources(session, community.id, user_id)
        return CommunityRoles(
            community_id=community.id,
            name=community.name,
            secretary=bool(sources),
            member=await self.is_member(session, community.id, user_id),
            resident=await self.is_resident(session, community.id, user_id),
            secretary_sources=sources,
        )

    async def communities_of(self, session: AsyncSession, user_id: int) -> list[CommunityRoles]:
        """Every community where the user has a role, in id order."""
        ids: set[int] = set()
        ids.update(
            await session.scalars(
                select(Chat.community_id)
                .join(ChatMember, ChatMember.chat_id == Chat.id)
                .where(ChatMember.user_id == user_id, Chat.community_id.is_not(None), ChatMember.status.in_(PRESENT))
            )
        )
        ids.update(await session.scalars(select(Secretary.community_id).where(Secretary.user_id == user_id)))
        if user_id in self.superadmins:
            ids.update(await session.scalars(select(Community.id)))
        else:
            # Telegram admins of member chats the bot has not seen them speak in yet.
            chats = await session.scalars(
                select(Chat).where(Chat.kind == "member", Chat.community_id.is_not(None), Chat.bot_status != "left")
            )
            for chat in chats:
                if chat.community_id not in ids and await self.admins.is_admin(chat.id, user_id):
                    ids.add(chat.community_id)  # type: ignore[arg-type]
        out = []
        for cid in sorted(i for i in ids if i is not None):
            community = await session.get(Community, cid)
            if community is not None:
                roles = await self.roles_in(session, community, user_id)
                if roles.names:
                    out.append(roles)
        return out


async def secretary_users(session: AsyncSession, roles: Roles, community_id: int) -> list:  # list[User]
    """The people alerts go to: named secretaries, superadmins, and admins of member chats."""
    from bot.storage.models import User

    ids: set[int] = set(await session.scalars(select(Secretary.user_id).where(Secretary.community_id == community_id)))
    ids.update(roles.superadmins)
    for chat in await roles.member_chats(session, community_id):
        ids.update(await session.scalars(
            select(ChatMember.user_id).where(ChatMember.chat_id == chat.id, ChatMember.status.in_(ADMIN))
        ))
        ids.update(await roles.admins.admin_ids(chat.id))  # one call per chat, cached
    if not ids:
        return []
    return list(await session.scalars(select(User).where(User.id.in_(ids)).order_by(User.id)))
