"""Communities and their chats: /setup, /unbind, /secretary, and the bot's own membership."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from bot.services.base import ServiceContext
from bot.services.errors import ChooseCommunity, Denied, NotFound, UserError
from bot.services.roles import PRESENT
from bot.storage.models import AuditEntry, Chat, Community, CommunityVisitor, Secretary, User
from bot.storage.upsert import upsert

CHAT_KINDS = ("resident", "member")
MAX_NAME = 64
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
        """The bot was added to or removed from a group."""
        async with self.ctx.tx() as s:
            chat = await s.get(Chat, chat_id)
            if chat is None:
                return None
            chat.bot_status = new_status if new_status in PRESENT else "left"
            s.add(
                AuditEntry(
                    community_id=chat.community_id, actor_id=actor_id, action="bot_status", subject=f"chat:{chat_id}",
                    details={"status": new_status},
                )
            )
        self.ctx.roles.admins.forget(chat_id)
        return chat

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
