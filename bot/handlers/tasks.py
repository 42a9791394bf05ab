"""Volunteer-task commands and the 认领 / 取消认领 buttons: parse the Event, call the service, reply."""

from __future__ import annotations

from bot.domain.tasks import MAX_SKILL, MAX_SKILLS
from bot.handlers.args import community_id, number_and_rest, parse_number, split_first
from bot.handlers.base import Context, Router
from bot.services.errors import UserError
from bot.services.tasks import ClaimResult, UnclaimResult
from bot.ui.html import Html
from bot.ui.tasks import hours, task_line, when_text

router = Router()
router.help("member", "help_tasks_member")
router.help("secretary", "help_tasks_secretary")


def _chat_kind(ctx: Context) -> str | None:
    """'resident' or 'member' in a bound group; None in private."""
    if not ctx.event.chat.is_group:
        return None
    if ctx.chat is None or ctx.chat.community_id is None:
        raise UserError("err_not_bound")
    return ctx.chat.kind


def _not_in_resident_chat(ctx: Context, key: str) -> None:
    if _chat_kind(ctx) == "resident":
        raise UserError(key)


# ---------------------------------------------------------------------- announcing


@router.command("task")
async def task(ctx: Context) -> None:
    kind = _chat_kind(ctx)
    if kind == "resident":
        raise UserError("err_task_where")
    done = await ctx.services.tasks.announce(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), args=ctx.args, chat_kind=kind
    )
    t, community = done.task, done.community
    lines = [ctx.t("task_announced", n=t.number, title=t.title, when=when_text(ctx.tr, t, community.timezone),
                   slots=t.slots, points=t.points, chats=done.chats)]
    if t.skill:
        lines.append(ctx.t("task_announced_skill", skill=t.skill, count=done.mentioned))
    ctx.reply(Html("\n".join(lines)), quote=ctx.event.chat.is_group)


@router.command("totask")
async def totask(ctx: Context) -> None:
    _not_in_resident_chat(ctx, "err_task_where")
    head, _, when = ctx.args.partition("|") if "|" in ctx.args else (ctx.args, "", "")
    if "｜" in head:
        head, _, when = head.partition("｜")
    parts = head.split()
    n = parse_number(parts[0]) if parts else None
    if n is None or len(parts) > 3:
        raise UserError("err_usage_totask")
    announced, demand = await ctx.services.tasks.from_demand(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n,
        slots=parts[1] if len(parts) > 1 else None, points=parts[2] if len(parts) > 2 else None,
        when=when.strip() or None,
    )
    t = announced.task
    ctx.reply(ctx.t("task_from_demand", d=demand.number, n=t.number, title=t.title,
                    when=when_text(ctx.tr, t, announced.community.timezone), slots=t.slots, points=t.points,
                    chats=announced.chats), quote=ctx.event.chat.is_group)


# ---------------------------------------------------------------------- claiming


def _claim_text(ctx: Context, r: ClaimResult) -> Html:
    if r.outcome == "claimed":
        return ctx.t("task_claimed", n=r.number, title=r.title)
    if r.outcome == "waiting":
        return ctx.t("task_waiting", n=r.number, position=r.position or 0)
    if r.outcome == "already_claimed":
        return ctx.t("task_already_claimed", n=r.number)
    return ctx.t("task_already_waiting", n=r.number, position=r.position or 0)


def _unclaim_text(ctx: Context, r: UnclaimResult) -> Html:
    if r.outcome == "left_waitlist":
        return ctx.t("task_left_waitlist", n=r.number)
    if r.promoted:
        return ctx.t("task_unclaimed_promoted", n=r.number, name=r.promoted)
    return ctx.t("task_unclaimed", n=r.number)


async def _claim_number(ctx: Context, n: int) -> None:
    _not_in_resident_chat(ctx, "err_task_claim_where")
    svc = ctx.services.tasks
    task_id = await svc.task_id_for(await community_id(ctx), n)
    result = await svc.claim(actor_id=ctx.event.user.id, task_id=task_id, order=ctx.event.update_id)
    ctx.reply(_claim_text(ctx, result), quote=ctx.event.chat.is_group)


@router.command("claim")
async def claim(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_claim")
    await _claim_number(ctx, n)


@router.pattern(r"claim_(\d{1,9})")
async def claim_link(ctx: Context) -> None:
    assert ctx.match is not None
    await _claim_number(ctx, int(ctx.match.group(1)))


@router.command("unclaim")
async def unclaim(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_unclaim")
    _not_in_resident_chat(ctx, "err_task_claim_where")
    svc = ctx.services.tasks
    task_id = await svc.task_id_for(await community_id(ctx), n)
    result = await svc.unclaim(actor_id=ctx.event.user.id, task_id=task_id)
    ctx.reply(_unclaim_text(ctx, result), quote=ctx.event.chat.is_group)


# Presses of one task's buttons are handled side by side, not queued behind each other in the
# chat, so the service can take a burst of them in a few transactions (press order is kept by
# update_id); every press still gets exactly one answer.
@router.callback("task", parallel=True)
async def task_button(ctx: Context) -> None:
    """`task:c:<id>` claims, `task:u:<id>` unclaims; the answer says what happened."""
    parts = (ctx.event.callback_data or "").split(":")
    if len(parts) != 3 or parts[1] not in ("c", "u") or not parts[2].isdigit():
        ctx.answer()
        return
    svc = ctx.services.tasks
    task_id = int(parts[2])
    if parts[1] == "c":
        text = _claim_text(ctx, await svc.claim(actor_id=ctx.event.user.id, task_id=task_id,
                                                order=ctx.event.update_id))
    else:
        text = _unclaim_text(ctx, await svc.unclaim(actor_id=ctx.event.user.id, task_id=task_id))
    ctx.answer(str(text))


@router.command("tasks")
async def tasks(ctx: Context) -> None:
    rows, tz = await ctx.services.tasks.listing(actor_id=ctx.event.user.id, community_id=await community_id(ctx))
    if not rows:
        ctx.reply(ctx.t("tasks_empty"))
        return
    lines = [ctx.t("tasks_head", count=len(rows))] + [task_line(ctx.tr, t, tz) for t in rows]
    ctx.reply(Html("\n".join(lines)))


# ---------------------------------------------------------------------- reporting and confirming


@router.command("done")
async def done(ctx: Context) -> None:
    n, note = number_and_rest(ctx, "err_usage_done")
    t, first = await ctx.services.tasks.report_done(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n, note=note or None,
        photo=ctx.event.photo_file_id,
    )
    ctx.reply(ctx.t("task_reported" if first else "task_reported_again", n=t.number), quote=ctx.event.chat.is_group)


@router.command("confirm")
async def confirm(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_confirm")
    c = await ctx.services.tasks.confirm(actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n)
    sep = str(ctx.t("roster_sep"))
    lines = [ctx.t("task_confirmed", n=c.task.number, count=len(c.awarded), names=sep.join(c.awarded) or "-",
                   points=c.task.points, hours=hours(c.task.minutes))]
    if c.unreported:
        lines.append(ctx.t("task_confirmed_unreported", count=c.unreported))
    if c.demand_number is not None:
        lines.append(ctx.t("task_confirmed_demand", d=c.demand_number))
    ctx.reply(Html("\n".join(lines)))


# ---------------------------------------------------------------------- changing and cancelling


@router.command("canceltask")
async def canceltask(ctx: Context) -> None:
    n, reason = number_and_rest(ctx, "err_usage_canceltask")
    t, told = await ctx.services.tasks.cancel(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n, reason=reason or None
    )
    ctx.reply(ctx.t("task_cancelled", n=t.number, title=t.title, count=told))


@router.command("movetask")
async def movetask(ctx: Context) -> None:
    n, when = number_and_rest(ctx, "err_usage_movetask")
    if not when:
        raise UserError("err_usage_movetask")
    t, tz, told = await ctx.services.tasks.move(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n, when=when
    )
    ctx.reply(ctx.t("task_moved", n=t.number, title=t.title, when=when_text(ctx.tr, t, tz), count=told))


# ---------------------------------------------------------------------- skills and points


@router.command("skills")
async def skills(ctx: Context) -> None:
    _not_in_resident_chat(ctx, "err_task_claim_where")
    svc = ctx.services.tasks
    cid = await community_id(ctx)
    if not ctx.args.strip():
        names = await svc.skills_of(actor_id=ctx.event.user.id, community_id=cid)
        key = "skills_now" if names else "skills_none"
        ctx.reply(ctx.t(key, skills="、".join(names), limit=MAX_SKILLS, length=MAX_SKILL))
        return
    names = await svc.set_skills(actor_id=ctx.event.user.id, community_id=cid, text=ctx.args)
    ctx.reply(ctx.t("skills_saved" if names else "skills_cleared", skills="、".join(names)))


@router.command("points")
async def points(ctx: Context) -> None:
    p = await ctx.services.tasks.points(actor_id=ctx.event.user.id, community_id=await community_id(ctx))
    ctx.reply(ctx.t("points_mine", month_points=p.month_points, month_hours=hours(p.month_minutes),
                    all_points=p.all_points, all_hours=hours(p.all_minutes), tasks=p.tasks))


@router.command("leaderboard")
async def leaderboard(ctx: Context) -> None:
    period, _ = split_first(ctx.args)
    board = await ctx.services.tasks.leaderboard(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), period=period or None
    )
    title = ctx.t(f"leaderboard_{board.period}")
    if not board.top:
        ctx.reply(ctx.t("leaderboard_empty", period=title))
        return
    lines = [ctx.t("leaderboard_head", period=title)]
    lines += [ctx.t("leaderboard_line", rank=st.rank, name=st.name or "-", points=st.points,
                    hours=hours(st.minutes)) for st in board.top]
    if board.mine is not None:
        lines.append(ctx.t("leaderboard_mine", rank=board.mine.rank, points=board.mine.points,
                           hours=hours(board.mine.minutes)))
    else:
        lines.append(ctx.t("leaderboard_mine_none"))
    ctx.reply(Html("\n".join(lines)))
