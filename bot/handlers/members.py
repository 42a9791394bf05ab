"""Members in the open: /pledge and its buttons, /showid, /post, /wall with ◀ ▶, /evaluation with
its private ballot and the 异议 form."""

from __future__ import annotations

import logging

from bot.handlers.args import community_id, number_and_rest, parse_number, split_first
from bot.handlers.base import Context, Router
from bot.services.errors import UserError
from bot.services.members import ballot_text
from bot.ui.dates import format_when
from bot.ui.html import Html
from bot.ui.members import pledge_state, public_name

log = logging.getLogger("linli.members")

router = Router()
router.help("resident", "help_members_resident")
router.help("member", "help_members_member")
router.help("secretary", "help_members_secretary")

RETURN_FORM = "pledge_return"
OBJECT_FORM = "evaluation_object"


def _bound(ctx: Context) -> str | None:
    """'resident' or 'member' in a bound group; None in private."""
    if not ctx.event.chat.is_group:
        return None
    if ctx.chat is None or ctx.chat.community_id is None:
        raise UserError("err_not_bound")
    return ctx.chat.kind


# ---------------------------------------------------------------------- pledges


@router.command("pledge")
async def pledge(ctx: Context) -> None:
    _bound(ctx)
    if not ctx.args.strip():
        raise UserError("err_usage_pledge")
    p = await ctx.services.members.propose(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                           args=ctx.args)
    ctx.reply(ctx.t("pledge_proposed", n=p.number, text=p.text), quote=ctx.event.chat.is_group)


@router.command("pledges")
async def pledges(ctx: Context) -> None:
    _bound(ctx)
    rows = await ctx.services.members.listing(actor_id=ctx.event.user.id, community_id=await community_id(ctx))
    if not rows:
        ctx.reply(ctx.t("pledges_empty"))
        return
    lines = [ctx.t("pledges_head", count=len(rows))]
    for p, name in rows[-50:]:
        lines.append(ctx.t("pledges_line", n=p.number, name=public_name(ctx.tr, name), text=p.text,
                           state=pledge_state(ctx.tr, p.state)))
    ctx.reply(Html("\n".join(lines)))


@router.command("pledgeupdate")
async def pledgeupdate(ctx: Context) -> None:
    n, note = number_and_rest(ctx, "err_usage_pledgeupdate")
    p = await ctx.services.members.add_update(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                              number=n, note=note, photo=ctx.event.photo_file_id)
    ctx.reply(ctx.t("pledge_updated", n=p.number, count=p.updates), quote=ctx.event.chat.is_group)


@router.command("pledgedone")
async def pledgedone(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_pledgedone")
    p = await ctx.services.members.request_done(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                                number=n)
    ctx.reply(ctx.t("pledge_done_requested", n=p.number), quote=ctx.event.chat.is_group)


@router.callback("pl")
async def pledge_button(ctx: Context) -> None:
    """`pl:a|r|k|n:<id>`: approve, return (asks the reason privately), kept, not kept."""
    parts = (ctx.event.callback_data or "").split(":")
    if len(parts) != 3 or parts[1] not in ("a", "r", "k", "n") or not parts[2].isdigit():
        ctx.answer()
        return
    svc = ctx.services.members
    action, pledge_id = parts[1], int(parts[2])
    uid = ctx.event.user.id
    if action == "a":
        p = await svc.approve(actor_id=uid, pledge_id=pledge_id)
        ctx.answer(str(ctx.t("pledge_approved", n=p.number)))
        ctx.send_to(ctx.event.chat.id, ctx.t("pledge_approved", n=p.number), thread_id=ctx.event.thread_id)
    elif action == "r":
        p = await svc.check_returnable(actor_id=uid, pledge_id=pledge_id)
        if ctx.user is None or not ctx.user.started:  # the reason is asked privately
            ctx.answer(str(ctx.t("ev_start_first")), alert=True)
            return
        await ctx.services.conversations.put(uid, uid, RETURN_FORM, "reason", {"pledge_id": p.id})
        ctx.send_to(uid, ctx.t("pledge_return_prompt", n=p.number, text=p.text))
        ctx.answer(str(ctx.t("pledge_return_ask", n=p.number)))
    else:
        p = await svc.mark(actor_id=uid, pledge_id=pledge_id, kept=action == "k")
        text = ctx.t("pledge_marked", n=p.number, state=pledge_state(ctx.tr, p.state))
        ctx.answer(str(text))
        ctx.send_to(ctx.event.chat.id, text, thread_id=ctx.event.thread_id)


@router.form(RETURN_FORM)
async def return_reason(ctx: Context) -> None:
    ev = ctx.event
    convs = ctx.services.conversations
    conv = await convs.get(ev.user.id, ev.chat.id)
    if conv is None:
        return
    try:
        p = await ctx.services.members.return_(actor_id=ev.user.id, pledge_id=int(conv.data["pledge_id"]),
                                               reason=ev.text or "")
    except UserError as exc:
        if exc.key not in ("err_pledge_reason_empty", "err_pledge_reason_too_long"):
            await convs.clear(ev.user.id, ev.chat.id, RETURN_FORM)
        raise
    await convs.clear(ev.user.id, ev.chat.id, RETURN_FORM)
    ctx.reply(ctx.t("pledge_returned", n=p.number, reason=p.return_reason or ""))


# ---------------------------------------------------------------------- identity and posts


@router.command("showid")
async def showid(ctx: Context) -> None:
    _bound(ctx)
    arg = ctx.args.strip().lower()
    on = {"on": True, "开": True, "是": True, "off": False, "关": False, "否": False}.get(arg)
    if on is None:
        raise UserError("err_usage_showid")
    await ctx.services.members.set_showid(actor_id=ctx.event.user.id, community_id=await community_id(ctx), on=on)
    ctx.reply(ctx.t("showid_on" if on else "showid_off"), quote=ctx.event.chat.is_group)


@router.command("post")
async def post(ctx: Context) -> None:
    if _bound(ctx) == "resident":
        raise UserError("err_post_where")  # the answer names the member: never where residents look
    people = ctx.services.people
    head, rest = split_first(ctx.args)
    target_id: int | None = None
    post_text = ""
    if head.startswith("@"):
        found = await people.find_by_username(head)
        if found is None:
            raise UserError("err_post_unknown_username", username=head)
        target_id, post_text = found.id, rest
    elif ctx.event.reply_to is not None and ctx.event.reply_to.user is not None and not ctx.event.reply_to.user.is_bot:
        replied = ctx.event.reply_to.user
        await people.ensure_user(replied.id, replied.first_name, replied.username)
        target_id, post_text = replied.id, ctx.args
    if target_id is None or not post_text.strip():
        raise UserError("err_usage_post")
    name = await ctx.services.members.set_post(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                               member_id=target_id, post=post_text)
    ctx.reply(ctx.t("post_set", name=name, post=post_text.strip()), quote=ctx.event.chat.is_group)


# ---------------------------------------------------------------------- the wall


@router.command("wall")
async def wall(ctx: Context) -> None:
    _bound(ctx)
    arg = ctx.args.strip().lower()
    if arg not in ("", "new"):
        raise UserError("err_usage_wall")
    posted, refreshed = await ctx.services.members.post_wall(actor_id=ctx.event.user.id,
                                                             community_id=await community_id(ctx), anew=arg == "new")
    ctx.reply(ctx.t("wall_posted", posted=posted, refreshed=refreshed), quote=ctx.event.chat.is_group)


@router.callback("wall")
async def wall_button(ctx: Context) -> None:
    parts = (ctx.event.callback_data or "").split(":")
    if len(parts) != 4 or parts[1] != "p" or not parts[2].isdigit() or not parts[3].isdigit():
        ctx.answer()
        return
    await ctx.services.members.turn_page(post_id=int(parts[2]), chat_id=ctx.event.chat.id, page=int(parts[3]))
    ctx.answer(str(ctx.t("wall_turned", page=int(parts[3]) + 1)))


# ---------------------------------------------------------------------- evaluations


@router.command("evaluation")
async def evaluation(ctx: Context) -> None:
    _bound(ctx)
    svc = ctx.services.members
    sub, rest = split_first(ctx.args)
    sub = sub.lower()
    uid = ctx.event.user.id
    if sub == "open":
        if not rest:
            raise UserError("err_usage_evaluation_open")
        o = await svc.open_evaluation(actor_id=uid, community_id=await community_id(ctx), args=rest)
        ev = o.evaluation
        ctx.reply(ctx.t("ev_opened", n=ev.number, title=ev.title, kind=ctx.t(f"ev_kind_{ev.kind}"),
                        until=format_when(ev.until, ctx.locale, o.tz), subjects=o.subjects, chats=o.chats),
                  quote=ctx.event.chat.is_group)
    elif sub == "publish":
        n, _ = number_and_rest_of(rest, "err_usage_evaluation")
        ev, chats = await svc.publish(actor_id=uid, community_id=await community_id(ctx), number=n)
        ctx.reply(ctx.t("ev_published", n=ev.number, chats=chats), quote=ctx.event.chat.is_group)
    elif sub == "result":
        n, _ = number_and_rest_of(rest, "err_usage_evaluation")
        ev, lines = await svc.result(actor_id=uid, community_id=await community_id(ctx), number=n, tr=ctx.tr,
                                     public_only=_bound(ctx) == "resident")
        ctx.reply(Html("\n".join([str(ctx.t("ev_result_head", n=ev.number, title=ev.title)), *lines])))
    elif sub in ("", "list"):
        rows, tz = await svc.evaluations(actor_id=uid, community_id=await community_id(ctx))
        if not rows:
            ctx.reply(ctx.t("ev_list_empty"))
            return
        lines = [ctx.t("ev_list_head")] + [
            ctx.t("ev_list_line", n=e.number, title=e.title, state=ctx.t(f"ev_state_{e.state}"),
                  until=format_when(e.until, ctx.locale, tz)) for e in rows]
        ctx.reply(Html("\n".join(lines)))
    else:
        raise UserError("err_usage_evaluation")


def number_and_rest_of(text: str, usage: str) -> tuple[int, str]:
    head, rest = split_first(text)
    n = parse_number(head) if head else None
    if n is None:
        raise UserError(usage)
    return n, rest


async def _send_ballot(ctx: Context, evaluation_id: int) -> None:
    uid = ctx.event.user.id
    q = await ctx.services.members.ballot(user_id=uid, evaluation_id=evaluation_id, tr=ctx.tr)
    text, kb = ballot_text(ctx.tr, q)
    ctx.send_to(uid, text, kb)


@router.start_payload(r"ev(\d{1,9})")
async def ballot_link(ctx: Context) -> None:
    assert ctx.match is not None
    await _send_ballot(ctx, int(ctx.match.group(1)))


@router.callback("ev")
async def evaluation_button(ctx: Context) -> None:
    """`ev:go:<id>` opens the private ballot, `ev:v:<subject>:<k>` answers, `ev:o:<id>` objects."""
    parts = (ctx.event.callback_data or "").split(":")
    svc = ctx.services.members
    uid = ctx.event.user.id
    if len(parts) == 3 and parts[1] == "go" and parts[2].isdigit():
        if ctx.user is None or not ctx.user.started:
            ctx.answer(str(ctx.t("ev_start_first")), alert=True)
            return
        await _send_ballot(ctx, int(parts[2]))
        if not ctx.event.chat.is_private:
            ctx.answer(str(ctx.t("ev_ballot_sent")))
        else:
            ctx.answer()
        return
    if len(parts) == 4 and parts[1] == "v" and parts[2].isdigit() and parts[3].isdigit():
        try:
            q = await svc.vote(user_id=uid, subject_id=int(parts[2]), index=int(parts[3]), tr=ctx.tr)
        except UserError:
            raise
        except Exception:
            # No traceback and no event in the log: they would tie this rater to this answer.
            log.error("a ballot answer failed (details withheld: the ballot is secret)")
            raise UserError("err_internal") from None
        text, kb = ballot_text(ctx.tr, q)
        # The ballot message moves on to the next question; what was chosen is said nowhere.
        ctx.send_to(ctx.event.chat.id, text, kb, edit_message_id=ctx.event.callback_message_id)
        ctx.answer(str(ctx.t("ev_answer_saved")))
        return
    if len(parts) == 3 and parts[1] == "o" and parts[2].isdigit():
        ev = await svc.objectable(evaluation_id=int(parts[2]))
        if ctx.user is None or not ctx.user.started:
            ctx.answer(str(ctx.t("ev_start_first")), alert=True)
            return
        await ctx.services.conversations.put(uid, uid, OBJECT_FORM, "text", {"evaluation_id": ev.id})
        ctx.send_to(uid, ctx.t("ev_object_prompt", n=ev.number, title=ev.title))
        ctx.answer(str(ctx.t("ev_object_ask")))
        return
    ctx.answer()


@router.form(OBJECT_FORM)
async def objection(ctx: Context) -> None:
    ev_ = ctx.event
    convs = ctx.services.conversations
    conv = await convs.get(ev_.user.id, ev_.chat.id)
    if conv is None:
        return
    try:
        ev = await ctx.services.members.object_(actor_id=ev_.user.id, evaluation_id=int(conv.data["evaluation_id"]),
                                                text=ev_.text or "")
    except UserError as exc:
        if exc.key != "err_evaluation_objection_empty":
            await convs.clear(ev_.user.id, ev_.chat.id, OBJECT_FORM)
        raise
    await convs.clear(ev_.user.id, ev_.chat.id, OBJECT_FORM)
    ctx.reply(ctx.t("ev_object_sent", n=ev.number))
