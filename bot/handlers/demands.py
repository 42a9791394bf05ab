"""Demand commands, buttons and triggers: parse the Event, call the service, render the reply."""

from __future__ import annotations

import re
from datetime import timedelta

from bot.domain.categories import URGENCIES, parse_category
from bot.domain.demands import MAX_TEXT, State, excerpt, parse_stars
from bot.handlers.args import community_id, number_and_rest, parse_number, split_first
from bot.handlers.base import Context, Router
from bot.services.errors import Denied, UserError
from bot.transport.port import Button, Fold, Keyboard
from bot.ui.demands import Shown, category_name, demand_card, demand_line, stars
from bot.ui.html import Html, mention
from bot.ui.i18n import LOCALES, t
from config.categories import CATEGORIES

router = Router()
router.help("resident", "help_resident")
router.help("member", "help_member")
router.help("secretary", "help_secretary")

TRIGGERS = ("#诉求", "#报事", "＃诉求", "＃报事")


# ---------------------------------------------------------------------- filing


@router.command("demand")
async def demand(ctx: Context) -> None:
    ev = ctx.event
    replied = ev.reply_to
    if replied is not None and replied.user is not None and replied.user.id != ev.user.id and not replied.user.is_bot:
        # The secretary files someone's message for them (the service checks the role).
        await ctx.services.people.ensure_user(replied.user.id, replied.user.first_name, replied.user.username)
        text = ctx.args or replied.text
        try:
            filed = await ctx.services.demands.file(
                actor_id=ev.user.id, community_id=await community_id(ctx), text=text, photo=replied.photo_file_id,
                origin_chat_id=ev.chat.id, origin_thread_id=ev.thread_id, origin_message_id=replied.message_id,
                on_behalf_of=replied.user.id, via="reply",
            )
        except Denied as exc:
            if exc.key != "err_not_secretary":
                raise
            # Say what a resident can do instead: file their own, not as a reply.
            raise UserError("err_demand_for_other") from None
        d = filed.demand
        ctx.reply(ctx.t("filed_for", n=d.number, name=replied.user.full_name, category=category_name(ctx.tr, d.category),
                        text=excerpt(d.text)), quote=True)
        return
    if replied is not None and replied.user is not None and replied.user.id == ev.user.id and not ctx.args:
        # /demand as a reply to one's own message files that message.
        await file_here(ctx, replied.text or "", via="reply", photo=ev.photo_file_id or replied.photo_file_id,
                        message_id=replied.message_id)
        return
    if ev.chat.is_private and not ctx.args and not ev.photo_file_id:
        await start_form(ctx, await community_id(ctx))
        return
    await file_here(ctx, ctx.args, via="command")


async def file_here(ctx: Context, text: str, *, via: str, photo: str | None = None,
                    message_id: int | None = None) -> None:
    ev = ctx.event
    if ev.chat.is_group and (ctx.chat is None or ctx.chat.community_id is None):
        raise UserError("err_not_bound")
    if ev.chat.is_group and ctx.chat is not None and ctx.chat.kind != "resident":
        raise UserError("err_demand_where")
    if not text.strip():
        raise UserError("err_demand_text_missing")
    filed = await ctx.services.demands.file(
        actor_id=ev.user.id, community_id=await community_id(ctx), text=text, photo=photo or ev.photo_file_id,
        origin_chat_id=ev.chat.id, origin_thread_id=ev.thread_id, origin_message_id=message_id or ev.message_id,
        via=via,
    )
    d = filed.demand
    key = "filed_group" if ev.chat.is_group else "filed_private"
    params = {"n": d.number, "category": category_name(ctx.tr, d.category), "text": excerpt(d.text),
              "urgency": ctx.t(f"urg_{d.urgency}")}
    reply = ctx.reply(ctx.t(key, **params), quote=ev.chat.is_group)
    if ev.chat.is_group:
        # A busy group (many filing at once) is not flooded: the answer goes privately to whoever
        # started the bot, the rest fold into one message per interval (bot/transport/outbox.py).
        started = ctx.user is not None and ctx.user.started
        reply.fold = Fold(
            key="filed", head=ctx.t("fold_filed_head", n=Html("{n}")),
            line=ctx.t("fold_filed_line", name=mention(ev.user.id, ev.user.full_name), number=d.number,
                       category=params["category"], text=excerpt(d.text, 40)),
            private_chat_id=ev.user.id if started else None, user_id=ev.user.id,
            private_text=ctx.t("filed_private", **params) if started else None,
        )


def _is_trigger(ctx: Context) -> bool:
    text = (ctx.event.text or "").lstrip()
    return any(text.startswith(tag) for tag in TRIGGERS)


@router.text(_is_trigger)
async def trigger(ctx: Context) -> None:
    """`#诉求 …` / `#报事 …` in a resident chat (or privately) files a demand."""
    if ctx.event.chat.is_group and (ctx.chat is None or ctx.chat.kind != "resident"):
        return  # a hashtag in some other group is just talk
    text = (ctx.event.text or "").lstrip()
    for tag in TRIGGERS:
        if text.startswith(tag):
            text = text[len(tag):].lstrip(" :：，,")
            break
    await file_here(ctx, text, via="tag")


# ---------------------------------------------------------------------- the private form

FORM = "demand_form"


def _form_keyboard(ctx: Context, *buttons: tuple[str, str]) -> Keyboard:
    return Keyboard.of([Button(str(ctx.t(label)), f"dform:{data}") for label, data in buttons])


async def start_form(ctx: Context, cid: int) -> None:
    community = await ctx.services.communities.get(cid)
    if community is None:
        raise UserError("err_no_community")
    # No point filling in a form the limit would refuse at the end.
    await ctx.services.demands.check_quota(actor_id=ctx.event.user.id)
    await ctx.services.conversations.put(ctx.event.user.id, ctx.event.chat.id, FORM, "what", {"community_id": cid})
    ctx.reply(ctx.t("form_what", community=community.name, limit=MAX_TEXT))


@router.start_payload(r"d([A-Za-z0-9_-]{0,63})")
async def start_with_form(ctx: Context) -> None:
    """The community's filing link (a QR code on the notice board) opens the form for it; a wrong
    or replaced token is refused without naming any community."""
    assert ctx.match is not None
    if not ctx.event.chat.is_private:
        raise UserError("err_private_only")
    community = await ctx.services.communities.follow_link(user_id=ctx.event.user.id, token=ctx.match.group(1))
    await start_form(ctx, community.id)


@router.command("cancel")
async def cancel(ctx: Context) -> None:
    cleared = await ctx.services.conversations.clear(ctx.event.user.id, ctx.event.chat.id)
    ctx.reply(ctx.t("form_cancelled" if cleared else "nothing_to_cancel"))


@router.form(FORM)
async def form_step(ctx: Context) -> None:
    ev = ctx.event
    convs = ctx.services.conversations
    conv = await convs.get(ev.user.id, ev.chat.id)
    if conv is None:
        return
    data = dict(conv.data)
    text = (ev.text or "").strip()
    if conv.step == "what":
        if not text:
            ctx.reply(ctx.t("form_what_again", limit=MAX_TEXT))
            return
        if len(text) > MAX_TEXT:
            raise UserError("err_demand_too_long", limit=MAX_TEXT, length=len(text))
        data["text"] = text
        if ev.photo_file_id:
            data["photo"] = ev.photo_file_id
        await convs.put(ev.user.id, ev.chat.id, FORM, "where", data)
        ctx.reply(ctx.t("form_where"), _form_keyboard(ctx, ("btn_skip", "skip")))
    elif conv.step == "where":
        if not text:
            ctx.reply(ctx.t("form_where"), _form_keyboard(ctx, ("btn_skip", "skip")))
            return
        if len(text) > 200:
            raise UserError("err_location_too_long", limit=200, length=len(text))
        data["location"] = text
        await _after_where(ctx, data)
    elif conv.step == "photo":
        if not ev.photo_file_id:
            ctx.reply(ctx.t("form_photo"), _form_keyboard(ctx, ("btn_skip", "skip")))
            return
        data["photo"] = ev.photo_file_id
        await _ask_public(ctx, data)
    else:  # a button step: typing does not answer it
        await _prompt_step(ctx, conv.step, data)


async def _after_where(ctx: Context, data: dict) -> None:
    if data.get("photo"):
        await _ask_public(ctx, data)
        return
    await ctx.services.conversations.put(ctx.event.user.id, ctx.event.chat.id, FORM, "photo", data)
    ctx.reply(ctx.t("form_photo"), _form_keyboard(ctx, ("btn_skip", "skip")))


async def _ask_public(ctx: Context, data: dict) -> None:
    await ctx.services.conversations.put(ctx.event.user.id, ctx.event.chat.id, FORM, "public", data)
    await _prompt_step(ctx, "public", data)


async def _prompt_step(ctx: Context, step: str, data: dict) -> None:
    if step == "public":
        ctx.reply(ctx.t("form_public"), _form_keyboard(ctx, ("btn_public_yes", "pub:1"), ("btn_public_no", "pub:0")))
    elif step == "confirm":
        summary = ctx.t(
            "form_summary", text=data.get("text", ""), location=data.get("location") or "-",
            photo=ctx.t("yes" if data.get("photo") else "no"),
            public=ctx.t("btn_public_yes" if data.get("public") else "btn_public_no"),
        )
        ctx.reply(summary, _form_keyboard(ctx, ("btn_submit", "ok"), ("btn_cancel", "no")))


@router.callback("dform")
async def form_button(ctx: Context) -> None:
    ev = ctx.event
    convs = ctx.services.conversations
    conv = await convs.get(ev.user.id, ev.chat.id)
    action = (ev.callback_data or "").split(":", 1)[1] if ":" in (ev.callback_data or "") else ""
    if conv is None or conv.kind != FORM:
        ctx.answer(str(ctx.t("form_gone")), alert=True)
        return
    data = dict(conv.data)
    ctx.answer()
    if action == "skip" and conv.step == "where":
        await _after_where(ctx, data)
    elif action == "skip" and conv.step == "photo":
        await _ask_public(ctx, data)
    elif action.startswith("pub:") and conv.step == "public":
        data["public"] = action == "pub:1"
        await convs.put(ev.user.id, ev.chat.id, FORM, "confirm", data)
        await _prompt_step(ctx, "confirm", data)
    elif action == "no":
        await convs.clear(ev.user.id, ev.chat.id, FORM)
        ctx.reply(ctx.t("form_cancelled"))
    elif action == "ok" and conv.step == "confirm":
        filed = await ctx.services.demands.file(
            actor_id=ev.user.id, community_id=int(data["community_id"]), text=data.get("text"),
            location=data.get("location"), photo=data.get("photo"), public=bool(data.get("public")),
            origin_chat_id=ev.chat.id, via="form",
        )
        await convs.clear(ev.user.id, ev.chat.id, FORM)
        d = filed.demand
        ctx.reply(ctx.t("filed_private", n=d.number, category=category_name(ctx.tr, d.category),
                        text=excerpt(d.text), urgency=ctx.t(f"urg_{d.urgency}")))
    else:  # a button of an earlier step, pressed again
        ctx.answer(str(ctx.t("form_stale")))


# ---------------------------------------------------------------------- reading


@router.command("demands")
async def demands(ctx: Context) -> None:
    listing = await ctx.services.demands.listing(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), scope=ctx.args or None,
        chat_id=ctx.event.chat.id,
    )
    now = ctx.services.ctx.clock()
    if not listing.demands:
        ctx.reply(ctx.t("demands_empty", scope=ctx.t(f"scope_{listing.scope}")))
        return
    lines = [ctx.t("demands_head", scope=ctx.t(f"scope_{listing.scope}"), count=listing.total)]
    lines += [demand_line(ctx.tr, d, now, shown=listing.shown.get(d.id, Shown.HIDDEN)) for d in listing.demands]
    if listing.total > len(listing.demands):
        lines.append(ctx.t("demands_more", more=listing.total - len(listing.demands)))
    ctx.reply(Html("\n".join(lines)))


async def _view(ctx: Context, n: int) -> None:
    """In a group, only what that group may see and never the submitter's name; all of it privately."""
    view = await ctx.services.demands.view(actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n,
                                          chat_id=ctx.event.chat.id)
    ctx.reply(demand_card(ctx.tr, view, ctx.services.ctx.clock()))


@router.command("view")
async def view(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_view")
    await _view(ctx, n)


@router.pattern(r"view_(\d{1,9})")
async def view_link(ctx: Context) -> None:
    assert ctx.match is not None
    await _view(ctx, int(ctx.match.group(1)))


# ---------------------------------------------------------------------- the secretary's steps


@router.command("accept")
async def accept(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_accept")
    d = await ctx.services.demands.accept(actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n)
    ctx.reply(ctx.t("done_accepted", n=d.number))


@router.callback("dacc")
async def accept_button(ctx: Context) -> None:
    raw = (ctx.event.callback_data or "").partition(":")[2]
    d = await ctx.services.demands.by_id(int(raw)) if raw.isdigit() else None
    if d is None:
        ctx.answer(str(ctx.t("err_demand_gone")), alert=True)
        return
    done = await ctx.services.demands.accept(actor_id=ctx.event.user.id, community_id=d.community_id, number=d.number)
    ctx.answer(str(ctx.t("done_accepted", n=done.number)))
    if ctx.event.callback_message_id is None:
        ctx.reply(ctx.t("done_accepted", n=done.number))
        return
    # The alert keeps its text, loses its button, and says who accepted it.
    category = category_name(ctx.tr, done.category)
    if ctx.event.chat.is_private:
        alert = ctx.t("alert_new_demand", n=done.number, category=category, urgency=ctx.t(f"urg_{done.urgency}"),
                      text=done.text, location=done.location or "-")
    else:
        short = excerpt(done.text) if done.public else str(ctx.t("not_public"))
        alert = ctx.t("alert_new_demand_short", n=done.number, category=category, text=short)
    marked = Html(alert + "\n" + ctx.t("accepted_by", name=ctx.event.user.full_name))
    ctx.send_to(ctx.event.chat.id, marked, edit_message_id=ctx.event.callback_message_id)


@router.command("assign")
async def assign(ctx: Context) -> None:
    n, rest = number_and_rest(ctx, "err_usage_assign")
    people = ctx.services.people
    replied = ctx.event.reply_to.user if ctx.event.reply_to else None
    target_id: int | None = None
    if rest.startswith("@"):
        found = await people.find_by_username(rest.split()[0])
        if found is None:
            raise UserError("err_assign_unknown_username", username=rest.split()[0])
        target_id = found.id
    elif replied is not None and not replied.is_bot:
        await people.ensure_user(replied.id, replied.first_name, replied.username)
        target_id = replied.id
    if target_id is None:
        raise UserError("err_usage_assign")
    d, member = await ctx.services.demands.assign(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n, assignee_id=target_id
    )
    ctx.reply(ctx.t("done_assigned", n=d.number, name=member.display_name))


@router.command("resolve")
async def resolve(ctx: Context) -> None:
    n, note = number_and_rest(ctx, "err_usage_resolve")
    d = await ctx.services.demands.resolve(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n, note=note,
        photo=ctx.event.photo_file_id,
    )
    ctx.reply(ctx.t("done_resolved", n=d.number))


@router.command("reject")
async def reject(ctx: Context) -> None:
    n, reason = number_and_rest(ctx, "err_usage_reject")
    d = await ctx.services.demands.reject(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n, reason=reason
    )
    ctx.reply(ctx.t("done_rejected", n=d.number))


@router.command("duplicate")
async def duplicate(ctx: Context) -> None:
    n, rest = number_and_rest(ctx, "err_usage_duplicate")
    m = parse_number(rest.split()[0]) if rest else None
    if m is None:
        raise UserError("err_usage_duplicate")
    d, target = await ctx.services.demands.duplicate(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n, of=m
    )
    ctx.reply(ctx.t("done_duplicate", n=d.number, m=target.number))


@router.command("reopen")
async def reopen(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_reopen")
    d = await ctx.services.demands.reopen(actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n)
    ctx.reply(ctx.t("done_reopened", n=d.number))


def _category_names() -> dict[str, list[str]]:
    return {key: [str(t(loc, f"cat_{key}")) for loc in LOCALES] for key in CATEGORIES}


@router.command("category")
async def category(ctx: Context) -> None:
    n, rest = number_and_rest(ctx, "err_usage_category")
    key = parse_category(rest, _category_names()) if rest else None
    if key is None:
        choices = "、".join(f"{category_name(ctx.tr, k)} ({k})" for k in CATEGORIES)
        raise UserError("err_usage_category_choices", choices=choices)
    d = await ctx.services.demands.set_category(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n, category=key
    )
    ctx.reply(ctx.t("done_category", n=d.number, category=category_name(ctx.tr, d.category)))


@router.command("urgency")
async def urgency(ctx: Context) -> None:
    n, rest = number_and_rest(ctx, "err_usage_urgency")
    word = rest.strip().lower()
    names = {str(t(loc, f"urg_{u}")).lower(): u for u in URGENCIES for loc in LOCALES}
    key = word if word in URGENCIES else names.get(word)
    if key is None:
        raise UserError("err_usage_urgency")
    d = await ctx.services.demands.set_urgency(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n, urgency=key
    )
    ctx.reply(ctx.t("done_urgency", n=d.number, urgency=ctx.t(f"urg_{d.urgency}")))


# ---------------------------------------------------------------------- rating


@router.command("rate")
async def rate(ctx: Context) -> None:
    n, rest = number_and_rest(ctx, "err_usage_rate")
    score_raw, comment = split_first(rest)
    score = parse_stars(score_raw) if score_raw else None
    if score is None:
        raise UserError("err_usage_rate")
    d = await ctx.services.demands.rate(
        actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n, stars_given=score,
        comment=comment or None,
    )
    ctx.reply(ctx.t("done_rated", n=d.number, stars=stars(score)))


@router.callback("rate")
async def rate_button(ctx: Context) -> None:
    """One tap on the rating message: k stars, or 0 for Not fixed."""
    ev = ctx.event
    parts = (ev.callback_data or "").split(":")
    if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in {"0", "1", "2", "3", "4", "5"}:
        ctx.answer()
        return
    demand_id, score = int(parts[1]), int(parts[2])
    d = await ctx.services.demands.rate(actor_id=ev.user.id, community_id=None, demand_id=demand_id,
                                        stars_given=score)
    mid = ev.callback_message_id
    if score == 0:
        text = ctx.t("rated_not_fixed", n=d.number)
        ctx.answer(str(ctx.t("thanks")))
    else:
        text = ctx.t("rated_thanks", n=d.number, stars=stars(score))
        ctx.answer(str(ctx.t("thanks")))
    if mid is not None:  # the buttons go: one rating per demand
        ctx.send_to(ev.chat.id, text, edit_message_id=mid)
    if score and ev.chat.is_private:
        await ctx.services.conversations.put(ev.user.id, ev.chat.id, COMMENT, "comment", {"demand_id": d.id})
        ctx.reply(ctx.t("rate_comment_prompt", n=d.number))


COMMENT = "rate_comment"
COMMENT_WINDOW = timedelta(hours=1)  # how long after a rating a plain message counts as its comment


@router.form(COMMENT)
async def rating_comment(ctx: Context) -> None:
    ev = ctx.event
    convs = ctx.services.conversations
    conv = await convs.get(ev.user.id, ev.chat.id)
    if conv is None:
        return
    text = (ev.text or "").strip()
    stale = ctx.services.ctx.clock() - conv.updated_at > COMMENT_WINDOW
    if stale or not text or text.startswith(TRIGGERS):
        # Long after the rating, a message is about something else, not a comment.
        await convs.clear(ev.user.id, ev.chat.id, COMMENT)
        if text:
            await trigger(ctx)
        else:
            ctx.reply(ctx.t("hint_private_text"))
        return
    d = await ctx.services.demands.comment(actor_id=ev.user.id, demand_id=int(conv.data["demand_id"]), text=text)
    await convs.clear(ev.user.id, ev.chat.id, COMMENT)
    ctx.reply(ctx.t("comment_saved", n=d.number))


@router.command("skip")
async def skip(ctx: Context) -> None:
    cleared = await ctx.services.conversations.clear(ctx.event.user.id, ctx.event.chat.id, COMMENT)
    ctx.reply(ctx.t("comment_skipped" if cleared else "nothing_to_cancel"))


# ---------------------------------------------------------------------- reports (举报 / 求助)


async def _report(ctx: Context) -> None:
    ev = ctx.event
    if not ev.chat.is_group:
        raise UserError("err_report_where")  # names the place and shows how, unlike a bare "groups only"
    if ev.reply_to is None:
        raise UserError("err_usage_report")
    author = ev.reply_to.user.full_name if ev.reply_to.user else None
    await ctx.services.demands.report(
        actor_id=ev.user.id, chat_id=ev.chat.id, reported_text=ev.reply_to.text, author_name=author,
        reporter_name=ev.user.full_name,
    )
    ctx.reply(ctx.t("report_sent"), quote=True)


@router.command("report")
async def report(ctx: Context) -> None:
    await _report(ctx)


def _is_admin_call(ctx: Context) -> bool:
    text = (ctx.event.text or "").lower()
    return ctx.event.reply_to is not None and ctx.event.chat.is_group and re.search(r"@admin\b", text) is not None


@router.text(_is_admin_call)
async def admin_call(ctx: Context) -> None:
    if ctx.chat is None or ctx.chat.kind != "resident":
        return
    await _report(ctx)


__all__ = ["State", "router"]
