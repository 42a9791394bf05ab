"""Notices: /notice (and /notice! to pin), the 收到 button, /notices and /acks."""

from __future__ import annotations

from bot.domain.demands import excerpt
from bot.handlers.args import community_id, parse_number
from bot.handlers.base import Context, Router
from bot.services.errors import UserError
from bot.services.notices import ACK_PREFIX, ack_keyboard, parse_scope
from bot.ui.dates import format_when
from bot.ui.html import Html
from bot.ui.i18n import Translator

router = Router()
router.help("secretary", "help_notices_secretary")
router.help("resident", "help_notices_resident")


@router.command("notice", "notice!")
async def notice(ctx: Context) -> None:
    ev = ctx.event
    if ev.chat.is_group and (ctx.chat is None or ctx.chat.community_id is None):
        raise UserError("err_not_bound")
    scope, text = parse_scope(ctx.args)
    if not text.strip():
        raise UserError("err_notice_usage")
    cid = await community_id(ctx)
    # No reply here: the progress message (then the summary) is written with the notice, so it can
    # be edited as the broadcast goes.
    await ctx.services.notices.broadcast(
        actor_id=ev.user.id, community_id=cid, scope=scope, text=text, photo=ev.photo_file_id,
        document_id=ev.document_file_id, pin=ev.command == "notice!", reply_chat_id=ev.chat.id,
        reply_thread_id=ev.thread_id, reply_locale=ctx.locale,
    )


@router.callback(ACK_PREFIX)
async def acknowledge(ctx: Context) -> None:
    ev = ctx.event
    parts = (ev.callback_data or "").split(":")
    if len(parts) != 2 or not parts[1].isdigit():
        ctx.answer()
        return
    result = await ctx.services.notices.ack(user_id=ev.user.id, notice_id=int(parts[1]), chat_id=ev.chat.id)
    ctx.answer(str(ctx.t("notice_ack_done" if result.new else "notice_ack_again")))
    if result.new and ev.callback_message_id is not None:
        # Only the button changes (a photo notice has no text to edit); edits of it coalesce.
        tr = Translator(result.notice.locale)
        ctx.send_to(ev.chat.id, "", ack_keyboard(tr, result.notice.id, result.count),
                    edit_message_id=ev.callback_message_id, coalesce_key=f"{ACK_PREFIX}:{result.notice.id}")


@router.command("notices")
async def notices(ctx: Context) -> None:
    cid = await community_id(ctx)
    lines = await ctx.services.notices.recent(actor_id=ctx.event.user.id, community_id=cid)
    if not lines:
        ctx.reply(ctx.t("notices_empty"))
        return
    community = await ctx.services.communities.get(cid)
    tz = community.timezone if community else ctx.services.settings.timezone
    out = [str(ctx.t("notices_head"))]
    for line in lines:
        n = line.notice
        out.append(str(ctx.t(
            "notices_line", n=n.number, when=format_when(n.created_at, ctx.locale, tz),
            scope=ctx.t(f"notice_scope_{n.scope}"), sent=n.delivered, total=n.targets, acks=line.acks,
            text=excerpt(n.text),
        )))
    ctx.reply(Html("\n\n".join(out)))


@router.command("acks")
async def acks(ctx: Context) -> None:
    n = parse_number(ctx.args.split()[0]) if ctx.args.split() else None
    if n is None:
        raise UserError("err_acks_usage")
    cid = await community_id(ctx)
    listing = await ctx.services.notices.acks(actor_id=ctx.event.user.id, community_id=cid, number=n)
    count = sum(len(names) for _, names in listing.by_chat)
    out = [str(ctx.t("acks_head", n=listing.notice.number, count=count))]
    if not listing.by_chat:
        out.append(str(ctx.t("acks_none")))
    for title, names in listing.by_chat:
        out.append(str(ctx.t("acks_chat", chat=title, count=len(names), names="、".join(names)
                             if ctx.locale == "zh" else ", ".join(names))))
    ctx.reply(Html("\n".join(out)))
