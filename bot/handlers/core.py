"""Everyone's commands: /start, /help, /lang, /whoami, /mydata, /forget, and the community picker."""

from __future__ import annotations

import dataclasses

from bot.handlers.args import community_id
from bot.handlers.base import HELP_ROLES, Context, Router
from bot.services.communities import LINK_PREFIX
from bot.services.errors import UserError
from bot.services.roles import CommunityRoles
from bot.transport.port import Button, Document, EventKind, Keyboard
from bot.ui.html import Html

router = Router()

ROLE_KEYS = {"secretary": "role_secretary", "member": "role_member", "resident": "role_resident"}


async def _roles_here(ctx: Context) -> list[CommunityRoles]:
    """Roles in this chat's community (in a group), or in all the user's communities (private)."""
    roles = await ctx.services.people.roles(ctx.event.user.id)
    if ctx.event.chat.is_group:
        cid = ctx.chat.community_id if ctx.chat else None
        return [r for r in roles if r.community_id == cid]
    return roles


def help_text(ctx: Context, roles: list[CommunityRoles]) -> Html:
    """Everyone's commands, then each role's that this user has here, then how to bind a group."""
    parts = [ctx.t("help_everyone")]
    names = {n for r in roles for n in r.names}
    bound = ctx.chat is not None and ctx.chat.community_id is not None
    shown = {
        "resident": "resident" in names or ctx.event.chat.is_private or (bound and ctx.chat and ctx.chat.kind == "resident"),
        "member": "member" in names or "secretary" in names,
        "secretary": "secretary" in names,
    }
    assert ctx.router is not None
    for role in HELP_ROLES:
        if shown[role]:
            parts.append(Html("\n".join(ctx.t(key) for key in ctx.router.help_keys(role))))
    if ctx.event.chat.is_group and not bound:
        parts.append(ctx.t("help_setup"))
    return Html("\n\n".join(p for p in parts if p))


@router.command("start")
async def start(ctx: Context) -> None:
    payload = ctx.args.split(maxsplit=1)[0] if ctx.args else ""
    if payload:
        assert ctx.router is not None
        for regex, fn in ctx.router.start_payloads:
            m = regex.match(payload)
            if m:
                ctx.match = m
                await fn(ctx)
                return
    roles = await _roles_here(ctx)
    name = ctx.event.user.full_name
    ctx.reply(Html(ctx.t("welcome", name=name) + "\n\n" + help_text(ctx, roles)))


@router.command("link")
async def link(ctx: Context) -> None:
    """secretary: the community's filing link for posters and QR codes; `/link new` replaces it."""
    arg = ctx.args.strip().lower()
    if arg not in ("", "new"):
        raise UserError("err_link_usage")
    community, token = await ctx.services.communities.filing_link(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), renew=arg == "new"
    )
    bot_user = ctx.services.transport.bot_user
    username = bot_user.username if bot_user is not None else None
    if not username:
        raise UserError("err_link_no_username")
    url = f"https://t.me/{username}?start={LINK_PREFIX}{token}"
    ctx.reply(ctx.t("link_renewed" if arg == "new" else "link_show", community=community.name, url=url))


@router.command("help")
async def help_(ctx: Context) -> None:
    ctx.reply(help_text(ctx, await _roles_here(ctx)))


@router.command("lang")
async def lang(ctx: Context) -> None:
    new = await ctx.services.people.set_language(ctx.event.user.id, ctx.args)
    ctx.tr = type(ctx.tr)(new)
    ctx.reply(ctx.t("lang_set"))


@router.command("whoami")
async def whoami(ctx: Context) -> None:
    roles = await ctx.services.people.roles(ctx.event.user.id)
    lines = [ctx.t("whoami_head", name=ctx.event.user.full_name, id=ctx.event.user.id)]
    if not roles:
        lines.append(ctx.t("whoami_none"))
    for r in roles:
        role_names = ", ".join(str(ctx.t(ROLE_KEYS[n])) for n in r.names)
        lines.append(ctx.t("whoami_line", community=r.name, roles=Html(role_names)))
    ctx.reply(Html("\n".join(lines)))


@router.command("mydata")
async def mydata(ctx: Context) -> None:
    data = await ctx.services.people.export(ctx.event.user.id)
    doc = Document("linli-mydata.json", data)
    if ctx.event.chat.is_private:
        ctx.reply(ctx.t("mydata_caption"), document=doc)
        return
    # Personal data never goes to a group: privately if we can, else ask them to open a chat.
    if ctx.user is not None and ctx.user.started:
        ctx.send_to(ctx.event.user.id, ctx.t("mydata_caption"), document=doc)
        ctx.reply(ctx.t("sent_privately"), quote=True)
    else:
        ctx.reply(ctx.t("start_me_first"), quote=True)


@router.command("forget")
async def forget(ctx: Context) -> None:
    kb = Keyboard.of([Button(str(ctx.t("btn_forget_confirm")), f"forget:{ctx.event.user.id}")])
    ctx.reply(ctx.t("forget_confirm"), kb)


@router.callback("forget")
async def forget_confirmed(ctx: Context) -> None:
    _, owner = (ctx.event.callback_data or "forget:0").split(":", 1)
    if owner != str(ctx.event.user.id):
        ctx.answer(str(ctx.t("err_not_your_button")), alert=True)
        return
    await ctx.services.people.forget(ctx.event.user.id)
    # A pop-up, not a message: a message would be stored (the outbox) right after the erasure,
    # addressed to the person who just asked to leave nothing behind.
    ctx.answer(str(ctx.t("forgotten")), alert=True)


@router.callback("pick")
async def pick_community(ctx: Context) -> None:
    """The user chose a community for a command given in private: run the command for it."""
    _, cid, cmd = (ctx.event.callback_data or "pick:0:").split(":", 2)
    photo = None
    if cmd == "@":  # kept in the database: too long for the button, or it came with a photo
        convs = ctx.services.conversations
        conv = await convs.get(ctx.event.user.id, ctx.event.chat.id)
        if conv is None or conv.kind != "pick":
            ctx.answer(str(ctx.t("err_pick_expired")), alert=True)
            return
        cmd, photo = str(conv.data.get("cmd", "")), conv.data.get("photo")
        await convs.clear(ctx.event.user.id, ctx.event.chat.id, "pick")
    command, _, args = cmd.partition(" ")
    assert ctx.router is not None
    fn, match = ctx.router.find_command(command)
    ctx.answer()
    if fn is None or not cid.isdigit():
        return
    ctx.event = dataclasses.replace(
        ctx.event, kind=EventKind.MESSAGE, command=command, args=args, text=f"/{cmd}", photo_file_id=photo
    )
    ctx.match = match
    ctx.chosen_community = int(cid)
    await fn(ctx)
