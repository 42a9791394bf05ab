"""Grids and the street: /grid, /mybuilding, /escalate, /return, /street (the services check every role)."""

from __future__ import annotations

import asyncio
import re
import unicodedata

from bot.handlers.args import community_id, parse_number, split_first
from bot.handlers.base import Context, Router
from bot.services.errors import UserError
from bot.services.grid_ledger import chart_png, pct
from bot.ui.demands import category_name, demand_card, state_name
from bot.ui.html import Html

router = Router()
router.help("resident", "help_grid_resident")
router.help("member", "help_grid_member")
router.help("secretary", "help_grid_secretary")

_REF = re.compile(r"(\d{1,9})\s*[-_/]\s*[#＃]?(\d{1,9})")


def _grids(ctx: Context):  # type: ignore[no-untyped-def]
    return ctx.services.grids  # type: ignore[attr-defined]


async def _target_user(ctx: Context, rest: str, usage: str) -> int:
    """@username of a known person, or the author of the replied-to message."""
    people = ctx.services.people
    word = rest.split()[0] if rest.split() else ""
    if word.startswith("@"):
        found = await people.find_by_username(word)
        if found is None:
            raise UserError("err_assign_unknown_username", username=word)
        return found.id
    replied = ctx.event.reply_to.user if ctx.event.reply_to else None
    if replied is not None and not replied.is_bot:
        await people.ensure_user(replied.id, replied.first_name, replied.username)
        return replied.id
    raise UserError(usage)


async def _ref(ctx: Context, raw: str, usage: str) -> tuple[int, int]:
    """`12` / `#12` (the community of this chat or the user's) or `3-12` (community 3, as /street queue shows)."""
    m = _REF.fullmatch(unicodedata.normalize("NFKC", raw.strip()))
    if m:
        return int(m.group(1)), int(m.group(2))
    n = parse_number(raw) if raw else None
    if n is None:
        raise UserError(usage)
    return await community_id(ctx), n


# ---------------------------------------------------------------------- grids


@router.command("grid")
async def grid(ctx: Context) -> None:
    sub, rest = split_first(ctx.args)
    sub = sub.lower()
    if sub == "add":
        name, buildings = split_first(rest)
        if not name or not buildings:
            raise UserError("err_grid_add_usage")
        g = await _grids(ctx).add_grid(actor_id=ctx.event.user.id, community_id=await community_id(ctx), name=name,
                                       buildings=buildings)
        ctx.reply(ctx.t("done_grid_added", name=g.name, buildings="、".join(g.buildings)))
        return
    if sub == "lead":
        name, who = split_first(rest)
        if not name:
            raise UserError("err_grid_lead_usage")
        target = await _target_user(ctx, who, "err_grid_lead_usage")
        g, user = await _grids(ctx).lead(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                         name=name, leader_id=target)
        ctx.reply(ctx.t("done_grid_lead", name=user.display_name, grid=g.name))
        return
    if sub:
        raise UserError("err_grid_usage")
    rows = await _grids(ctx).grids(actor_id=ctx.event.user.id, community_id=await community_id(ctx))
    if not rows:
        ctx.reply(ctx.t("grids_empty"))
        return
    lines = [ctx.t("grids_head")]
    for g, leader in rows:
        lines.append(ctx.t("grids_line", name=g.name, buildings="、".join(g.buildings),
                           leader=leader.display_name if leader else ctx.t("no_leader")))
    ctx.reply(Html("\n".join(lines)))


@router.command("mybuilding")
async def mybuilding(ctx: Context) -> None:
    if not ctx.args.strip():
        raise UserError("err_building_usage")
    building, g = await _grids(ctx).set_building(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                                 raw=ctx.args)
    ctx.reply(ctx.t("done_mybuilding", building=building, grid=g.name))


# ---------------------------------------------------------------------- escalate / return


@router.command("escalate")
async def escalate(ctx: Context) -> None:
    head, reason = split_first(ctx.args)
    cid, n = await _ref(ctx, head, "err_escalate_usage")
    d = await _grids(ctx).escalate(actor_id=ctx.event.user.id, community_id=cid, number=n, reason=reason)
    ctx.reply(ctx.t("done_escalated", n=d.number, level=ctx.t(f"level_{d.level}")))


@router.command("return")
async def return_(ctx: Context) -> None:
    head, reason = split_first(ctx.args)
    cid, n = await _ref(ctx, head, "err_return_usage")
    d = await _grids(ctx).return_(actor_id=ctx.event.user.id, community_id=cid, number=n, reason=reason)
    ctx.reply(ctx.t("done_returned", n=d.number, level=ctx.t(f"level_{d.level}")))


# ---------------------------------------------------------------------- the street


@router.command("street")
async def street(ctx: Context) -> None:
    sub, rest = split_first(ctx.args)
    sub = sub.lower()
    svc = _grids(ctx)
    uid = ctx.event.user.id
    if sub == "create":
        if not rest:
            raise UserError("err_street_create_usage")
        st = await svc.create_street(actor_id=uid, name=rest)
        ctx.reply(ctx.t("done_street_created", name=st.name, code=st.code))
    elif sub == "join":
        if not rest:
            raise UserError("err_street_join_usage")
        st = await svc.join(actor_id=uid, community_id=await community_id(ctx), code=rest.split()[0])
        ctx.reply(ctx.t("done_street_joined", name=st.name))
    elif sub == "officer":
        verb, tail = split_first(rest)
        if verb.lower() not in ("add", "remove"):
            raise UserError("err_street_officer_usage")
        code, who = split_first(tail)
        if code.startswith("@"):
            code, who = "", tail
        target = await _target_user(ctx, who, "err_street_officer_usage")
        st, user = await svc.officer(actor_id=uid, code=code or None, target_id=target, add=verb.lower() == "add")
        key = "done_officer_added" if verb.lower() == "add" else "done_officer_removed"
        ctx.reply(ctx.t(key, name=user.display_name, street=st.name))
    elif sub == "stats":
        await _stats(ctx, rest)
    elif sub == "queue":
        await _queue(ctx)
    elif sub in ("view", "accept", "assign", "resolve"):
        await _act(ctx, sub, rest)
    else:
        raise UserError("err_street_usage")


async def _stats(ctx: Context, period: str) -> None:
    results, label = await _grids(ctx).stats(actor_id=ctx.event.user.id, period=period or None)
    shown = ctx.t("period_all") if label == "all" else label
    for info, figures in results:
        if not figures:
            ctx.reply(ctx.t("street_stats_empty", street=info.street.name))
            continue
        lines = [ctx.t("street_stats_head", street=info.street.name, period=shown)]
        for f in figures:
            lines.append(ctx.t(
                "street_stats_row", community=f.name, filed=f.filed, response=pct(f.response_rate),
                resolution=pct(f.resolution_rate), satisfaction=pct(f.satisfaction_rate), overdue=f.overdue,
                grid=pct(f.level_share("grid")), community_share=pct(f.level_share("community")),
                street_share=pct(f.level_share("street")),
            ))
        ctx.reply(Html("\n".join(lines)))
        labels = {k: str(ctx.t(f"chart_{k}")) for k in ("response", "resolution", "satisfaction")}
        title = str(ctx.t("chart_street_title", street=f"{info.street.name} {shown}"))
        png = await asyncio.to_thread(chart_png, figures, title, labels)  # CPU: not on the event loop
        msg = ctx.reply(ctx.t("chart_street_title", street=info.street.name))
        msg.photo_bytes = png


async def _queue(ctx: Context) -> None:
    items = await _grids(ctx).queue(actor_id=ctx.event.user.id)
    if not items:
        ctx.reply(ctx.t("street_queue_empty"))
        return
    reasons = await _grids(ctx).reasons([it.demand.id for it in items])
    lines = [ctx.t("street_queue_head", count=len(items))]
    for it in items:
        d = it.demand
        lines.append(ctx.t(
            "street_queue_item", community=it.community.name, n=d.number, ref=f"{d.community_id}-{d.number}",
            state=state_name(ctx.tr, d.state), category=category_name(ctx.tr, d.category), text=d.text,
            location=d.location or "-", submitter=reasons.get(d.id, ("-", "-"))[0],
            reason=reasons.get(d.id, ("-", "-"))[1],
        ))
    ctx.reply(Html("\n".join(lines)))


async def _act(ctx: Context, verb: str, rest: str) -> None:
    """The officer acts on an escalated demand as a secretary would: /street accept|assign|resolve|view <c-n>."""
    head, tail = split_first(rest)
    m = _REF.fullmatch(unicodedata.normalize("NFKC", head))
    if not m:
        raise UserError("err_street_ref")
    cid, n = int(m.group(1)), int(m.group(2))
    demands = ctx.services.demands
    uid = ctx.event.user.id
    if verb == "view":
        view = await demands.view(actor_id=uid, community_id=cid, number=n, chat_id=ctx.event.chat.id)
        ctx.reply(demand_card(ctx.tr, view, ctx.services.ctx.clock()))
    elif verb == "accept":
        d = await demands.accept(actor_id=uid, community_id=cid, number=n)
        ctx.reply(ctx.t("done_accepted", n=d.number))
    elif verb == "assign":
        target = await _target_user(ctx, tail, "err_usage_assign")
        d, member = await demands.assign(actor_id=uid, community_id=cid, number=n, assignee_id=target)
        ctx.reply(ctx.t("done_assigned", n=d.number, name=member.display_name))
    else:
        d = await demands.resolve(actor_id=uid, community_id=cid, number=n, note=tail,
                                  photo=ctx.event.photo_file_id)
        ctx.reply(ctx.t("done_resolved", n=d.number))

