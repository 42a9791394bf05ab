"""Consultation commands and buttons: /propose and 附议, /consult with 同意 / 反对 / 弃权 and the private
意见 form, /consults, /closeconsult, /decide, /progress, /finish, /comments, /proposals."""

from __future__ import annotations

import re

from bot.domain.consultations import CHOICE_CODES, MAX_COMMENT
from bot.handlers.args import community_id, number_and_rest, parse_number, split_first
from bot.handlers.base import Context, Router
from bot.services.consultations import SecondResult, VoteResult
from bot.services.errors import UserError
from bot.ui.consultations import consult_line, until_text
from bot.ui.html import Html

router = Router()
router.help("resident", "help_consult_resident")
router.help("secretary", "help_consult_secretary")

COMMENT_FORM = "consult_comment"
COMMENT_GONE = {"err_consult_closed", "err_consult_gone", "err_consult_not_resident"}


# ---------------------------------------------------------------------- proposals


@router.command("propose")
async def propose(ctx: Context) -> None:
    chat = ctx.chat
    if not ctx.event.chat.is_group or chat is None or chat.community_id is None or chat.kind != "resident":
        raise UserError("err_propose_where")
    if not ctx.args.strip():
        raise UserError("err_usage_propose")
    # The post with its 附议 button is the answer (sent through the outbox, so it can be edited).
    await ctx.services.consultations.propose(
        actor_id=ctx.event.user.id, community_id=chat.community_id, chat_id=ctx.event.chat.id,
        thread_id=ctx.event.thread_id, message_id=ctx.event.message_id, text=ctx.args)


def _second_text(ctx: Context, r: SecondResult) -> Html:
    key = "prp_seconded" if r.outcome == "seconded" else "prp_already"
    return ctx.t(key, n=r.number, count=r.seconds)


@router.callback("prp", parallel=True)
async def proposal_button(ctx: Context) -> None:
    """`prp:s:<id>` seconds proposal <id>."""
    parts = (ctx.event.callback_data or "").split(":")
    if len(parts) != 3 or parts[1] != "s" or not parts[2].isdigit():
        ctx.answer()
        return
    result = await ctx.services.consultations.second(actor_id=ctx.event.user.id, proposal_id=int(parts[2]))
    ctx.answer(str(_second_text(ctx, result)))


@router.command("proposals")
async def proposals(ctx: Context) -> None:
    svc = ctx.services.consultations
    cid = await community_id(ctx)
    head, rest = split_first(ctx.args)
    if head:
        value = parse_number(rest) if head.lower() in ("threshold", "门槛") else None
        if value is None:
            raise UserError("err_usage_proposals")
        await svc.set_threshold(actor_id=ctx.event.user.id, community_id=cid, value=value)
        ctx.reply(ctx.t("prp_threshold_set", count=value))
        return
    rows, threshold = await svc.proposals(actor_id=ctx.event.user.id, community_id=cid)
    if not rows:
        ctx.reply(ctx.t("prp_list_empty", threshold=threshold))
        return
    lines = [ctx.t("prp_list_head", threshold=threshold)]
    lines += [ctx.t("prp_list_line", n=p.number, text=p.text[:60], count=p.seconds) for p in rows]
    ctx.reply(Html("\n".join(lines)))


# ---------------------------------------------------------------------- consultations


@router.command("consult")
async def consult(ctx: Context) -> None:
    if not ctx.args.strip():
        raise UserError("err_consult_usage")
    done = await ctx.services.consultations.open(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                                 args=ctx.args)
    c = done.consultation
    lines = [ctx.t("cst_opened", n=c.number, title=c.title, when=until_text(ctx.tr, c, done.community.timezone),
                   chats=done.chats)]
    if done.proposal_number is not None:
        lines.append(ctx.t("cst_opened_from", p=done.proposal_number))
    ctx.reply(Html("\n".join(lines)), quote=ctx.event.chat.is_group)


def _vote_text(ctx: Context, r: VoteResult) -> Html:
    choice = ctx.t("cst_choice_" + r.choice)
    key = {"new": "cst_voted", "changed": "cst_vote_changed", "same": "cst_vote_same"}[r.outcome]
    return ctx.t(key, n=r.number, choice=choice)


# Presses of one consultation are handled side by side (not queued in the chat) so the service can
# take a burst of them in a few transactions; every press still gets exactly one answer.
@router.callback("cst", parallel=True)
async def consult_button(ctx: Context) -> None:
    """`cst:a|d|x:<id>` votes 同意 / 反对 / 弃权; `cst:c:<id>` opens the private 意见 form."""
    parts = (ctx.event.callback_data or "").split(":")
    if len(parts) != 3 or parts[1] not in (*CHOICE_CODES, "c") or not parts[2].isdigit():
        ctx.answer()
        return
    svc = ctx.services.consultations
    user_id, consultation_id = ctx.event.user.id, int(parts[2])
    if parts[1] != "c":
        result = await svc.vote(actor_id=user_id, consultation_id=consultation_id, choice=CHOICE_CODES[parts[1]],
                                order=ctx.event.update_id)
        ctx.answer(str(_vote_text(ctx, result)))
        return
    c, started = await svc.comment_target(actor_id=user_id, consultation_id=consultation_id)
    if not started:
        ctx.answer(str(ctx.t("cst_comment_start_first", n=c.number)), alert=True)
        return
    await ctx.services.conversations.put(user_id, user_id, COMMENT_FORM, "text", {"consultation_id": c.id})
    ctx.send_to(user_id, ctx.t("cst_comment_prompt", n=c.number, title=c.title, limit=MAX_COMMENT))
    ctx.answer(str(ctx.t("cst_comment_ask_private", n=c.number)))


@router.form(COMMENT_FORM)
async def comment_text(ctx: Context) -> None:
    ev = ctx.event
    convs = ctx.services.conversations
    conv = await convs.get(ev.user.id, ev.chat.id)
    if conv is None:
        return
    try:
        c = await ctx.services.consultations.add_comment(
            actor_id=ev.user.id, consultation_id=int(conv.data["consultation_id"]), text=ev.text or "")
    except UserError as exc:
        if exc.key in COMMENT_GONE:  # nothing to comment on any more: the form ends
            await convs.clear(ev.user.id, ev.chat.id, COMMENT_FORM)
        raise
    await convs.clear(ev.user.id, ev.chat.id, COMMENT_FORM)
    ctx.reply(ctx.t("cst_comment_saved", n=c.number))


@router.command("consults")
async def consults(ctx: Context) -> None:
    rows, tz = await ctx.services.consultations.listing(actor_id=ctx.event.user.id,
                                                       community_id=await community_id(ctx))
    if not rows:
        ctx.reply(ctx.t("cst_list_empty"))
        return
    lines = [ctx.t("cst_list_head")] + [consult_line(ctx.tr, r.consultation, tz, r.turnout) for r in rows]
    ctx.reply(Html("\n".join(lines)))


@router.command("closeconsult")
async def closeconsult(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_closeconsult")
    c = await ctx.services.consultations.close_early(actor_id=ctx.event.user.id,
                                                     community_id=await community_id(ctx), number=n)
    ctx.reply(ctx.t("cst_closed_done", n=c.number, turnout=c.turnout))


@router.command("decide")
async def decide(ctx: Context) -> None:
    n, text = number_and_rest(ctx, "err_usage_decide")
    if not text:
        raise UserError("err_usage_decide")
    c = await ctx.services.consultations.decide(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                                number=n, text=text)
    ctx.reply(ctx.t("cst_decided", n=c.number))


@router.command("progress")
async def progress(ctx: Context) -> None:
    n, note = number_and_rest(ctx, "err_usage_progress")
    if not note:
        raise UserError("err_usage_progress")
    c, chats = await ctx.services.consultations.progress(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n, note=note,
        photo=ctx.event.photo_file_id)
    ctx.reply(ctx.t("cst_progress_done", n=c.number, chats=chats))


@router.command("finish")
async def finish(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_finish")
    c, chats = await ctx.services.consultations.finish(actor_id=ctx.event.user.id,
                                                       community_id=await community_id(ctx), number=n)
    ctx.reply(ctx.t("cst_finished_done", n=c.number, chats=chats))


_SEQS = re.compile(r"\d{1,6}")


@router.command("comments")
async def comments(ctx: Context) -> None:
    """`/comments <n>` lists them (privately); `/comments <n> publish 1,3` / `unpublish 2` chooses."""
    n, rest = number_and_rest(ctx, "err_usage_comments")
    svc = ctx.services.consultations
    cid = await community_id(ctx)
    if rest:
        verb, nums = split_first(rest)
        seqs = sorted({int(x) for x in _SEQS.findall(nums)})
        if verb.lower() not in ("publish", "unpublish", "公示", "撤回") or not seqs:
            raise UserError("err_usage_comments")
        on = verb.lower() in ("publish", "公示")
        c, done = await svc.publish(actor_id=ctx.event.user.id, community_id=cid, number=n, seqs=seqs, on=on)
        ctx.reply(ctx.t("cst_comments_published" if on else "cst_comments_unpublished", n=c.number,
                        list=", ".join(str(k) for k in done)))
        return
    if ctx.event.chat.is_group:
        raise UserError("err_comments_private")
    c, rows = await svc.comments(actor_id=ctx.event.user.id, community_id=cid, number=n)
    if not rows:
        ctx.reply(ctx.t("cst_comments_empty", n=c.number))
        return
    lines = [ctx.t("cst_comments_head", n=c.number, title=c.title)]
    lines += [ctx.t("cst_comments_line_pub" if cm.published else "cst_comments_line", k=cm.seq, name=name,
                    text=cm.text) for cm, name in rows]
    lines.append(ctx.t("cst_comments_hint", n=c.number))
    ctx.reply(Html("\n".join(lines)))
