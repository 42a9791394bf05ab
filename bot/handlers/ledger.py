"""Ledger commands: /stats (figures and a chart), /export (an .xlsx workbook), /digest on|off."""

from __future__ import annotations

from bot.handlers.args import community_id, split_first
from bot.handlers.base import Context, Router
from bot.services.errors import UserError
from bot.transport.port import Document, OutMessage
from bot.ui.ledger import stats_text

router = Router()
router.help("secretary", "help_ledger_secretary")

_ON = {"on", "开", "开启", "打开"}
_OFF = {"off", "关", "关闭"}


@router.command("stats")
async def stats(ctx: Context) -> None:
    st, png = await ctx.services.ledger.stats_with_chart(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), period=ctx.args, locale=ctx.locale)
    # The figures as the photo's caption when they fit; else the photo, then the text.
    ctx.messages.append(OutMessage(chat_id=ctx.event.chat.id, text=stats_text(ctx.tr, st),
                                   thread_id=ctx.event.thread_id, photo_bytes=png))


@router.command("export")
async def export(ctx: Context) -> None:
    if ctx.event.chat.is_group:
        # The workbook holds every demand in full (private ones too): it is sent privately only.
        raise UserError("err_ledger_export_private")
    period, data, count = await ctx.services.ledger.export(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), month=ctx.args, locale=ctx.locale)
    key = "ledger_export_done" if count else "ledger_export_done_empty"
    ctx.reply(ctx.t(key, month=period.label, n=count), document=Document(f"linli-{period.label}.xlsx", data))


@router.command("digest")
async def digest(ctx: Context) -> None:
    word, rest = split_first(ctx.args.lower())
    if rest or (word and word not in _ON | _OFF):
        raise UserError("err_ledger_usage_digest")
    on = True if word in _ON else False if word in _OFF else None
    state = await ctx.services.ledger.set_digest(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                                 on=on)
    ctx.reply(ctx.t("ledger_digest_on" if state else "ledger_digest_off"))
