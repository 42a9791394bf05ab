"""Meeting commands and buttons: /meeting, /meetings, RSVP, 签到, /attendance, /minutes, /ics,
/movemeeting, /cancelmeeting, and the private leave-reason form."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from bot.domain.meetings import MAX_REASON
from bot.handlers.args import community_id, number_and_rest
from bot.handlers.base import Context, Router
from bot.services.errors import UserError
from bot.services.meetings import ATTEND, LEAVE, Attendance, Card, CheckIn, Scheduled
from bot.transport.port import Document
from bot.ui.dates import format_when
from bot.ui.html import Html, esc
from bot.ui.i18n import Translator
from bot.ui.meetings import join, kind_name, meeting_line, names, offset_name, post_keyboard, post_text, when

router = Router()
router.help("resident", "help_meetings_resident")
router.help("member", "help_meetings_member")
router.help("secretary", "help_meetings_secretary")

LEAVE_FORM = "meeting_leave"
LEAVE_GONE = {"err_meeting_not_on_leave", "err_meeting_cancelled", "err_meeting_gone"}


def _chat_kind(ctx: Context) -> str | None:
    return ctx.chat.kind if ctx.event.chat.is_group and ctx.chat is not None else None


def _refresh_posts(ctx: Context, card: Card, *, moved: bool = False) -> None:
    """The live line (参加 5 · 请假 1) is an edit of each posted message; edits of one post coalesce."""
    tr = card.translator(ctx.services.settings.default_locale)
    m = card.meeting
    text, keyboard = post_text(tr, m, card.tz, card.counts, moved=moved), post_keyboard(tr, m)
    for post in card.posts:
        ctx.send_to(post.chat_id, text, keyboard, edit_message_id=post.message_id,
                    coalesce_key=f"meeting:{m.id}:{post.chat_id}")


# ---------------------------------------------------------------------- scheduling


@router.command("meeting")
async def meeting(ctx: Context) -> None:
    if not ctx.args.strip():
        raise UserError("err_meeting_usage")
    done = await ctx.services.meetings.schedule(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                                args=ctx.args)
    ctx.reply(_scheduled_text(ctx.tr, done))


def _scheduled_text(tr: Translator, done: Scheduled) -> Html:
    """The reply echoes the date with its weekday and every reminder time, so a typo shows at once."""
    m, tz = done.meeting, done.tz
    lines = [tr("mtg_scheduled", n=m.number, kind=kind_name(tr, m.kind), title=m.title, when=when(tr, m.starts_at, tz))]
    if m.place:
        lines.append(tr("mtg_post_place", place=m.place))
    if done.reminders:
        items = [tr("mtg_reminder_item", when=when(tr, due, tz), offset=offset_name(tr, o)) for o, due in done.reminders]
        lines.append(tr("mtg_scheduled_reminders", list=join(tr, items)))
    else:
        lines.append(tr("mtg_scheduled_no_reminders"))
    if done.skipped:
        lines.append(tr("mtg_scheduled_skipped", list=join(tr, [offset_name(tr, o) for o in done.skipped])))
    if m.repeat == "month" and m.repeat_day:
        clock = m.starts_at.astimezone(ZoneInfo(tz)).strftime("%H:%M")
        lines.append(tr("mtg_scheduled_monthly", day=m.repeat_day, time=clock))
    chats = [esc(c.title or str(c.id)) for c in done.chats]
    lines.append(tr("mtg_scheduled_posted", chats=join(tr, chats)))
    return Html("\n".join(lines))


@router.command("movemeeting")
async def move_meeting(ctx: Context) -> None:
    n, when_text = number_and_rest(ctx, "err_usage_movemeeting")
    if not when_text:
        raise UserError("err_usage_movemeeting")
    card = await ctx.services.meetings.move(actor_id=ctx.event.user.id, community_id=await community_id(ctx), number=n,
                                           when_text=when_text)
    _refresh_posts(ctx, card, moved=True)
    ctx.reply(ctx.t("mtg_moved_done", n=n, when=when(ctx.tr, card.meeting.starts_at, card.tz)))


@router.command("cancelmeeting")
async def cancel_meeting(ctx: Context) -> None:
    n, reason = number_and_rest(ctx, "err_usage_cancelmeeting")
    card = await ctx.services.meetings.cancel(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                             number=n, reason=reason or None)
    _refresh_posts(ctx, card)
    text = ctx.t("mtg_cancelled_done", n=n)
    if card.meeting.repeat:
        text = Html(text + ctx.t("mtg_cancelled_done_monthly"))
    ctx.reply(text)


# ---------------------------------------------------------------------- answering (参加 / 请假 / 签到)


@router.callback("mtg")
async def meeting_button(ctx: Context) -> None:
    parts = (ctx.event.callback_data or "").split(":")
    if len(parts) != 3 or parts[1] not in ("a", "l", "c") or not parts[2].isdigit():
        ctx.answer()
        return
    action, meeting_id = parts[1], int(parts[2])
    svc = ctx.services.meetings
    if action == "c":
        checked = await svc.check_in(actor_id=ctx.event.user.id, meeting_id=meeting_id)
        ctx.answer(str(_checkin_text(ctx, checked)), alert=checked.state != "open")
        if checked.state == "open" and not checked.already:
            _refresh_posts(ctx, checked)
        return
    response = ATTEND if action == "a" else LEAVE
    done = await svc.respond(actor_id=ctx.event.user.id, meeting_id=meeting_id, response=response)
    m = done.meeting
    if done.changed:
        _refresh_posts(ctx, done)
    if response == ATTEND:
        ctx.answer(str(ctx.t("mtg_rsvp_attend" if done.changed else "mtg_rsvp_same_attend", n=m.number)))
        return
    # 请假: the reason is asked privately, in a short form kept in the database.
    if not done.started:
        ctx.answer(str(ctx.t("mtg_leave_start_first", n=m.number)), alert=True)
        return
    user_id = ctx.event.user.id
    await ctx.services.conversations.put(user_id, user_id, LEAVE_FORM, "reason", {"meeting_id": m.id})
    tr = ctx.tr  # the prompt goes to the person, in their language
    ctx.send_to(user_id, tr("mtg_leave_prompt", n=m.number, kind=kind_name(tr, m.kind), title=m.title,
                            when=when(tr, m.starts_at, done.tz), limit=MAX_REASON))
    ctx.answer(str(ctx.t("mtg_leave_ask_private", n=m.number)))


@router.form(LEAVE_FORM)
async def leave_reason(ctx: Context) -> None:
    ev = ctx.event
    convs = ctx.services.conversations
    conv = await convs.get(ev.user.id, ev.chat.id)
    if conv is None:
        return
    try:
        m = await ctx.services.meetings.set_reason(actor_id=ev.user.id, meeting_id=int(conv.data["meeting_id"]),
                                                   reason=ev.text or "")
    except UserError as exc:
        if exc.key in LEAVE_GONE:  # nothing left to explain: the form ends
            await convs.clear(ev.user.id, ev.chat.id, LEAVE_FORM)
        raise
    await convs.clear(ev.user.id, ev.chat.id, LEAVE_FORM)
    ctx.reply(ctx.t("mtg_leave_saved", n=m.number, reason=(ev.text or "").strip()))


def _checkin_text(ctx: Context, c: CheckIn) -> Html:
    m, tz = c.meeting, c.tz
    if c.state == "early":
        assert c.opens is not None
        return ctx.t("err_meeting_checkin_early", n=m.number, opens=when(ctx.tr, c.opens, tz))
    if c.state == "closed":
        assert c.closes is not None
        return ctx.t("err_meeting_checkin_closed", n=m.number, closes=when(ctx.tr, c.closes, tz))
    assert c.at is not None
    at = Html(format_when(c.at, ctx.locale, tz))
    return ctx.t("mtg_checkin_already" if c.already else "mtg_checkin_done", n=m.number, time=at)


@router.command("checkin")
async def checkin(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_checkin")
    checked = await ctx.services.meetings.check_in(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                                   number=n)
    if checked.state != "open":
        # Answered, not recorded: the window is the server's to judge.
        ctx.reply(_checkin_text(ctx, checked), quote=ctx.event.chat.is_group)
        return
    if not checked.already:
        _refresh_posts(ctx, checked)
    ctx.reply(_checkin_text(ctx, checked), quote=ctx.event.chat.is_group)


# ---------------------------------------------------------------------- the secretary's views


@router.command("attendance")
async def attendance(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_attendance")
    att = await ctx.services.meetings.attendance(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                                 number=n)
    ctx.reply(_attendance_text(ctx, att))


def _attendance_text(ctx: Context, a: Attendance) -> Html:
    tr, m, tz = ctx.tr, a.meeting, a.tz
    private = ctx.event.chat.is_private  # leave reasons are personal: shown privately only
    missing_label = tr("mtg_att_absent" if a.window == "closed" else "mtg_att_not_yet")
    none = tr("mtg_att_none")
    lines = [
        tr("mtg_att_head", n=m.number, kind=kind_name(tr, m.kind), title=m.title, when=when(tr, m.starts_at, tz)),
        tr("mtg_att_summary", expected=a.expected, attended=len(a.attended), leave=len(a.on_leave),
           absent_label=missing_label, absent=len(a.absent)),
    ]
    if a.expected:
        lines.append(tr("mtg_att_rate", rate=round(100 * len(a.attended) / a.expected)))
    attended = [Html(tr("mtg_att_attended_item", name=u.display_name, time=format_when(at, ctx.locale, tz)[-5:]))
                for u, at in a.attended]
    lines.append(tr("mtg_att_attended", names=join(tr, attended) if attended else none))
    if private:
        leave = [Html(tr("mtg_att_leave_item", name=u.display_name, reason=reason or "-")) for u, reason in a.on_leave]
        lines.append(tr("mtg_att_leave", names=join(tr, leave) if leave else none))
    else:
        lines.append(tr("mtg_att_leave", names=names(tr, [u for u, _ in a.on_leave]) if a.on_leave else none))
        if a.on_leave:
            lines.append(tr("mtg_att_reasons_private"))
    lines.append(tr("mtg_att_missing", label=missing_label, names=names(tr, a.absent) if a.absent else none))
    return Html("\n".join(lines))


@router.command("minutes")
async def minutes(ctx: Context) -> None:
    n, text = number_and_rest(ctx, "err_usage_minutes")
    if not text:
        raise UserError("err_usage_minutes")
    await ctx.services.meetings.record_minutes(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                               number=n, text=text)
    ctx.reply(ctx.t("mtg_minutes_saved", n=n))


# ---------------------------------------------------------------------- reading


@router.command("meetings")
async def meetings(ctx: Context) -> None:
    cid = await community_id(ctx) if ctx.event.chat.is_group else ctx.chosen_community
    found = await ctx.services.meetings.upcoming(actor_id=ctx.event.user.id, community_id=cid,
                                                 chat_kind=_chat_kind(ctx))
    blocks = []
    for up in found:
        tz = up.community.timezone
        if not up.meetings:
            blocks.append(ctx.t("mtg_list_empty", community=up.community.name))
            continue
        lines = [ctx.t("mtg_list_head", community=up.community.name)]
        lines += [meeting_line(ctx.tr, m, tz, counts) for m, counts in up.meetings]
        blocks.append(Html("\n".join(lines)))
    ctx.reply(Html("\n\n".join(blocks)))


async def _ics(ctx: Context, n: int) -> None:
    m, data = await ctx.services.meetings.ics(actor_id=ctx.event.user.id, community_id=await community_id(ctx),
                                              number=n, chat_kind=_chat_kind(ctx))
    ctx.reply(ctx.t("mtg_ics_caption", n=m.number, title=m.title), document=Document(f"meeting-{m.number}.ics", data))


@router.command("ics")
async def ics(ctx: Context) -> None:
    n, _ = number_and_rest(ctx, "err_usage_ics")
    await _ics(ctx, n)


@router.pattern(r"ics_(\d{1,9})")
async def ics_link(ctx: Context) -> None:
    assert ctx.match is not None
    await _ics(ctx, int(ctx.match.group(1)))

