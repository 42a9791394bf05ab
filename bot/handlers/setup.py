"""Binding chats to communities, secretaries, and what Telegram tells us about membership."""

from __future__ import annotations

from bot.handlers.base import Context, Router
from bot.services.errors import UserError
from bot.storage.models import User as UserRow
from bot.transport.port import PRESENT_STATUSES

router = Router()


@router.command("setup")
async def setup(ctx: Context) -> None:
    kind, _, name = ctx.args.partition(" ")
    if kind.lower() not in ("resident", "member") or not name.strip():
        raise UserError("err_setup_usage")
    result = await ctx.services.communities.setup(
        actor_id=ctx.event.user.id,
        chat_id=ctx.event.chat.id,
        chat_is_group=ctx.event.chat.is_group,
        thread_id=ctx.event.thread_id,
        kind=kind.lower(),
        name=name,
    )
    key = "setup_done_new" if result.created else "setup_done"
    ctx.reply(ctx.t(key, community=result.community.name, kind=ctx.t(f"chat_kind_{result.kind}")))
    if result.topic_id is not None:
        ctx.reply(ctx.t("setup_topic"))


@router.command("unbind")
async def unbind(ctx: Context) -> None:
    if not ctx.event.chat.is_group:
        raise UserError("err_group_only")
    community = await ctx.services.communities.unbind(actor_id=ctx.event.user.id, chat_id=ctx.event.chat.id)
    ctx.reply(ctx.t("unbound", community=community.name))


@router.command("secretary")
async def secretary(ctx: Context) -> None:
    action = ctx.args.strip().lower()
    replied = ctx.event.reply_to.user if ctx.event.reply_to else None
    if action not in ("add", "remove") or replied is None or replied.is_bot:
        raise UserError("err_secretary_usage")
    if not ctx.event.chat.is_group:
        raise UserError("err_group_only")
    await ctx.services.people.ensure_user(replied.id, replied.first_name, replied.username)
    target = UserRow(id=replied.id, first_name=replied.first_name)
    community, user = await ctx.services.communities.set_secretary(
        actor_id=ctx.event.user.id, chat_id=ctx.event.chat.id, target=target, add=action == "add"
    )
    key = "secretary_added" if action == "add" else "secretary_removed"
    ctx.reply(ctx.t(key, name=user.display_name, community=community.name))


def _upgraded(ctx: Context) -> bool:
    ev = ctx.event
    return ev.migrate_to_chat_id is not None or ev.migrate_from_chat_id is not None


@router.text(_upgraded)
async def upgraded(ctx: Context) -> None:
    """A basic group became a supergroup (new id): follow it, binding and all, without a new /setup.
    Telegram sends this to the old group and to the new one; the second changes nothing."""
    ev = ctx.event
    if ev.migrate_to_chat_id is not None:
        old, new = ev.chat.id, ev.migrate_to_chat_id
    else:
        assert ev.migrate_from_chat_id is not None
        old, new = ev.migrate_from_chat_id, ev.chat.id
    await ctx.services.communities.migrate(old=old, new=new)


@router.member()
async def membership(ctx: Context) -> None:
    change = ctx.event.member_change
    if change is None or not ctx.event.chat.is_group:
        return
    svc = ctx.services
    me = svc.bot_user_id
    if change.member.id == me:
        # Telegram reports the bot's own arrival twice: a my_chat_member update and a
        # new_chat_members service message. my_chat_member is always sent to a bot about itself and
        # carries the real status (administrator, not the service message's guess), so it alone counts:
        # one welcome, and a promotion is not overwritten.
        if change.via_service_message:
            return
        chat = await svc.communities.bot_membership(
            chat_id=ctx.event.chat.id, new_status=change.new_status, actor_id=ctx.event.user.id
        )
        if change.joined and chat is not None and chat.community_id is None:
            ctx.reply(ctx.t("bot_added"))
        return
    if change.member.is_bot:
        return
    if change.new_status in PRESENT_STATUSES:
        await svc.people.ensure_user(change.member.id, change.member.first_name, change.member.username)
    await svc.people.record_presence(ctx.event.chat.id, change.member.id, change.new_status)
