"""Communities and their chats: /setup, /unbind, /secretary, and the bot's own membership."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.base import ServiceContext
from bot.services.errors import ChooseCommunity, Denied, NotFound, UserError
from bot.services.notify import alert_secretaries
from bot.services.roles import ADMIN, PRESENT
from bot.storage.models import (
    AuditEntry,
    Chat,
    ChatMember,
    ChatMove,
    Community,
    CommunityVisitor,
    Outbox,
    Secretary,
    User,
)
from bot.storage.upsert import upsert
from bot.transport.port import Keyboard
from bot.ui.i18n import Translator

log = logging.getLogger("linli.communities")

CHAT_KINDS = ("resident", "member")
MAX_NAME = 64
INACTIVE = ("left", "migrated")  # bot_status of a chat that is no target: the bot is out, or it moved
LINK_PREFIX = "d"  # /start d<token>


def new_link_token() -> str:
    """16 characters of Telegram's deep-link alphabet (A-Z a-z 0-9 _ -): 96 random bits, unguessable."""
    return secrets.token_urlsafe(12)


@dataclass
class SetupResult:
    community: Community
    kind: str
    created: bool
    topic_id: int | None


def clean_community_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name:
        raise UserError("err_setup_usage")
    if len(name) > MAX_NAME:
        raise UserError("err_name_too_long", limit=MAX_NAME)
    return name


class CommunityService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def setup(
        self, *, actor_id: int, chat_id: int, chat_is_group: bool, thread_id: int | None, kind: str, name: str
    ) -> SetupResult:
        if not chat_is_group:
            raise UserError("err_group_only")
        if kind not in CHAT_KINDS:
            raise UserError("err_setup_usage")
        name = clean_community_name(name)
        roles = self.ctx.roles
        # Live check: being a group admin is what lets you bind it at all.
        roles.admins.forget(chat_id, actor_id)
        if not await roles.admins.is_admin(chat_id, actor_id) and actor_id not in roles.superadmins:
            raise Denied("err_setup_not_admin")
        async with self.ctx.tx() as s:
            community = await s.scalar(select(Community).where(func.lower(Community.name) == name.lower()))
            created = community is None
            if community is None:
                community = Community(
                    name=name,
                    timezone=self.ctx.settings.timezone,
                    locale=self.ctx.settings.default_locale,
                    created_by=actor_id,
                )
                s.add(community)
                await s.flush()
                await upsert(
                    s, Secretary, {"community_id": community.id, "user_id": actor_id, "source": "setup", "added_by": actor_id},
                    ["community_id", "user_id"],
                )
            elif not await roles.is_secretary(s, community.id, actor_id):
                raise Denied("err_setup_not_secretary", community=community.name)
            chat = await s.get(Chat, chat_id)
            assert chat is not None  # observed before any handler runs
            if chat.community_id is not None and chat.community_id != community.id:
                other = await s.get(Community, chat.community_id)
                raise UserError("err_already_bound", community=other.name if other else "?")
            chat.community_id = community.id
            chat.kind = kind
            chat.topic_id = thread_id
            chat.bound_by = actor_id
            chat.bound_at = self.ctx.clock()
            chat.bot_status = "member" if chat.bot_status == "left" else chat.bot_status
            s.add(
                AuditEntry(
                    community_id=community.id, actor_id=actor_id, action="setup", subject=f"chat:{chat_id}",
                    details={"kind": kind, "created": created, "topic": thread_id},
                )
            )
        return SetupResult(community, kind, created, thread_id)

    async def unbind(self, *, actor_id: int, chat_id: int) -> Community:
        async with self.ctx.tx() as s:
            chat = await s.get(Chat, chat_id)
            if chat is None or chat.community_id is None:
                raise UserError("err_not_bound")
            community = await s.get(Community, chat.community_id)
            assert community is not None
            await self.ctx.roles.require_secretary(s, community.id, actor_id)
            chat.community_id = None
            chat.kind = None
            chat.topic_id = None
            s.add(AuditEntry(community_id=community.id, actor_id=actor_id, action="unbind", subject=f"chat:{chat_id}"))
        return community

    async def set_secretary(self, *, actor_id: int, chat_id: int, target: User | None, add: bool) -> tuple[Community, User]:
        if target is None:
            raise UserError("err_secretary_usage")
        async with self.ctx.tx() as s:
            community = await self._community_of_chat(s, chat_id)
            await self.ctx.roles.require_secretary(s, community.id, actor_id)
            user = await s.get(User, target.id)
            if user is None:
                raise NotFound("err_unknown_user")
            if add:
                await upsert(
                    s, Secretary, {"community_id": community.id, "user_id": user.id, "source": "command", "added_by": actor_id},
                    ["community_id", "user_id"],
                )
            else:
                res = await s.execute(
                    delete(Secretary).where(Secretary.community_id == community.id, Secretary.user_id == user.id)
                )
                if res.rowcount == 0:  # type: ignore[attr-defined]
                    raise UserError("err_not_a_named_secretary", name=user.display_name)
            s.add(
                AuditEntry(
                    community_id=community.id, actor_id=actor_id, action="secretary_add" if add else "secretary_remove",
                    subject=f"user:{user.id}",
                )
            )
        return community, user

    async def bot_membership(self, *, chat_id: int, new_status: str, actor_id: int | None) -> Chat | None:
        """The bot was added to or removed from a group (removed: its secretaries are told, once)."""
        async with self.ctx.tx() as s:
            chat = await s.get(Chat, chat_id)
            if chat is None:
                return None
            if new_status in PRESENT:
                chat.bot_status = new_status
            else:
                await self.chat_gone(s, chat_id, "")
            s.add(
                AuditEntry(
                    community_id=chat.community_id, actor_id=actor_id, action="bot_status", subject=f"chat:{chat_id}",
                    details={"status": new_status},
                )
            )
        self.ctx.roles.admins.forget(chat_id)
        return chat

    # ---- what Telegram tells us about chats (the outbox calls these on its refusals, see ChatEvents)

    async def chat_gone(self, s: AsyncSession, chat_id: int, error: str) -> None:
        """The bot is out of the group (removed, or found so by a 403): no target until it is added
        again. Told to the community's secretaries once, when it changes."""
        res = await s.execute(
            update(Chat).where(Chat.id == chat_id, Chat.bot_status.not_in(INACTIVE)).values(bot_status="left")
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return
        chat = await s.get(Chat, chat_id)
        if chat is None or chat.community_id is None:
            return
        await s.refresh(chat)
        community = await s.get(Community, chat.community_id)
        assert community is not None
        log.info("bot is out of chat %s (%s)", chat_id, error or "reported by Telegram")
        title = chat.title or str(chat_id)

        def render(tr: Translator) -> tuple[str, Keyboard | None]:
            return tr("alert_bot_removed", chat=title, community=community.name), None

        await alert_secretaries(s, community, await self._secretaries(s, community.id), render,
                                default_locale=self.ctx.settings.default_locale)

    async def user_gone(self, s: AsyncSession, user_id: int) -> None:
        """They blocked the bot (or never started it): reach them in their groups from now on."""
        await s.execute(update(User).where(User.id == user_id).values(started=False)
                        .execution_options(synchronize_session=False))

    async def chat_migrated(self, s: AsyncSession, old: int, new: int) -> None:
        """A basic group became a supergroup: its binding, topic, members and queued messages move to
        the new id, and anything later addressed to the old id goes there (chat_moves)."""
        if old == new:
            return
        await upsert(s, ChatMove, {"old_chat_id": old, "new_chat_id": new, "moved_at": self.ctx.clock()},
                     ["old_chat_id"])
        before = await s.get(Chat, old)
        await upsert(s, Chat, {"id": new, "type": "supergroup", "title": before.title if before else None}, ["id"])
        after = await s.get(Chat, new)
        assert after is not None
        if before is not None:
            if before.community_id is not None and after.community_id is None:
                after.community_id, after.kind, after.topic_id = before.community_id, before.kind, before.topic_id
                after.bound_by, after.bound_at = before.bound_by, before.bound_at
                after.bot_status = before.bot_status if before.bot_status not in INACTIVE else "member"
                s.add(AuditEntry(community_id=before.community_id, action="chat_migrated", subject=f"chat:{old}",
                                 details={"to": new}))
            before.community_id, before.kind, before.topic_id = None, None, None
            before.bot_status = "migrated"
            members = list(await s.scalars(select(ChatMember).where(ChatMember.chat_id == old)))
            for m in members:
                await upsert(s, ChatMember, {"chat_id": new, "user_id": m.user_id, "status": m.status,
                                             "seen_at": m.seen_at}, ["chat_id", "user_id"])
            await s.execute(delete(ChatMember).where(ChatMember.chat_id == old))
        await s.execute(
            update(Outbox).where(Outbox.chat_id == old, Outbox.status == "pending")
            .values(chat_id=new, moved_from=func.coalesce(Outbox.moved_from, old))
            .execution_options(synchronize_session=False)
        )
        await s.flush()
        self.ctx.roles.admins.forget(old)

    async def migrate(self, *, old: int, new: int) -> Chat | None:
        """The service message of an upgrade (in the old group, or the first in the new one)."""
        async with self.ctx.tx() as s:
            await self.chat_migrated(s, old, new)
            chat = await s.get(Chat, new)
        return chat

    async def _secretaries(self, s: AsyncSession, community_id: int) -> list[User]:
        """Who is told about a chat: named secretaries, superadmins and known admins of member chats
        (no Telegram lookup: this runs inside the outbox's transaction)."""
        ids: set[int] = set(await s.scalars(select(Secretary.user_id).where(Secretary.community_id == community_id)))
        ids.update(self.ctx.roles.superadmins)
        ids.update(await s.scalars(
            select(ChatMember.user_id).join(Chat, Chat.id == ChatMember.chat_id)
            .where(Chat.community_id == community_id, Chat.kind == "member", ChatMember.status.in_(ADMIN))
        ))
        if not ids:
            return []
        return list(await s.scalars(select(User).where(User.id.in_(ids)).order_by(User.id)))

    async def _community_of_chat(self, s, chat_id: int) -> Community:  # type: ignore[no-untyped-def]
        chat = await s.get(Chat, chat_id)
        if chat is None or chat.community_id is None:
            raise UserError("err_not_bound")
        community = await s.get(Community, chat.community_id)
        assert community is not None
        return community

    async def community_for(self, *, user_id: int, chat_id: int, chat_is_group: bool, chosen: int | None = None) -> Community:
        """The community a command is about: the chat's, or in private the user's only one (else ask)."""
        async with self.ctx.read() as s:
            if chat_is_group:
                return await self._community_of_chat(s, chat_id)
            mine = await self.ctx.roles.communities_of(s, user_id)
            options = [(r.community_id, r.name) for r in mine]
            known = {cid for cid, _ in options}
            # Who came by a community's filing link may file (and follow their demands) there too.
            visited = await s.execute(
                select(Community.id, Community.name)
                .join(CommunityVisitor, CommunityVisitor.community_id == Community.id)
                .where(CommunityVisitor.user_id == user_id)
                .order_by(Community.id)
            )
            options += [(cid, name) for cid, name in visited.all() if cid not in known]
            if chosen is not None:
                if chosen not in {cid for cid, _ in options}:
                    raise Denied("err_not_in_community")
                community = await s.get(Community, chosen)
                assert community is not None
                return community
            if not options:
                raise UserError("err_no_community")
            if len(options) > 1:
                raise ChooseCommunity(options)
            community = await s.get(Community, options[0][0])
            assert community is not None
            return community

    async def get(self, community_id: int) -> Community | None:
        async with self.ctx.read() as s:
            return await s.get(Community, community_id)

    # ------------------------------------------------------------------ the filing link

    async def filing_link(self, *, actor_id: int, community_id: int, renew: bool = False) -> tuple[Community, str]:
        """/link [new]: the community's link token (made on first use); `renew` replaces it, and
        the old link stops working at once."""
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            community = await s.get(Community, community_id)
            if community is None:
                raise NotFound("err_no_community")
            if renew or not community.link_token:
                community.link_token = new_link_token()
                s.add(AuditEntry(community_id=community_id, actor_id=actor_id,
                                 action="link_renew" if renew else "link_new"))
            return community, community.link_token

    async def follow_link(self, *, user_id: int, token: str) -> Community:
        """/start d<token>: the community whose link this is, remembering that this person came by
        it (so they may file privately there). A wrong or replaced token names no community."""
        async with self.ctx.tx() as s:
            community = await s.scalar(select(Community).where(Community.link_token == token)) if token else None
            if community is None:
                raise UserError("err_bad_link")
            if await s.get(User, user_id) is not None:
                await upsert(s, CommunityVisitor, {"community_id": community.id, "user_id": user_id,
                                                   "first_at": self.ctx.clock()}, ["community_id", "user_id"])
            return community
