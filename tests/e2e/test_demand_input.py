"""Bad input and the less common ways in, for demands (诉求), through the fake Bot API server.

Every refusal must say what was wrong (with a correct example where one helps), change nothing in
the database, and cost Telegram no rejected call (the `tg` fixture checks `tg.rejections == []`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update

from bot.domain.demands import excerpt
from bot.storage.models import Conversation, Counter, Demand, DemandEvent, Outbox
from tests.e2e.harness import BotUnderTest
from tests.e2e.test_demand_loop import community, demand_row
from tests.fakeapi.methods import SentRecord
from tests.fakeapi.server import FakeTelegram

# The brief's metacharacter sample: HTML tags, an ampersand, a fake link and Markdown marks.
MARKUP = '<b>粗体</b> & <a href="http://x">link</a> *star* _u_ `code`'


@dataclass(frozen=True)
class Snapshot:
    """Everything a refused command must leave as it was."""

    demands: tuple[tuple[Any, ...], ...]
    events: int
    outbox: int
    counters: tuple[tuple[Any, ...], ...]
    conversations: int


async def snapshot(bot: BotUnderTest) -> Snapshot:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        rows = (await s.scalars(select(Demand).order_by(Demand.id))).all()
        demands = tuple(
            (d.number, d.state, d.version, d.assignee_id, d.rating, d.submitter_id, d.text, d.photo_file_id)
            for d in rows
        )
        events = await s.scalar(select(func.count()).select_from(DemandEvent)) or 0
        # Notifications, not the answers to the commands themselves (outbox rows "reply:<update>").
        outbox = await s.scalar(select(func.count()).select_from(Outbox).where(
            or_(Outbox.ref.is_(None), Outbox.ref.not_like("reply:%")))) or 0
        counters = tuple(
            tuple(r) for r in await s.execute(select(Counter.community_id, Counter.kind, Counter.value))
        )
        convs = await s.scalar(select(func.count()).select_from(Conversation)) or 0
    return Snapshot(demands, int(events), int(outbox), counters, int(convs))


async def refused(
    tg: FakeTelegram,
    bot: BotUnderTest,
    user: dict[str, Any],
    chat: dict[str, Any],
    text: str,
    *expected: str,
    reply_to: dict[str, Any] | None = None,
) -> SentRecord:
    """Send `text`; the reply in the same chat contains every `expected` piece; nothing changed."""
    before = await snapshot(bot)
    since = tg.mark()
    tg.send(user, chat, text, reply_to=reply_to)
    rec = await tg.wait_text(chat, expected[0], since=since)
    for piece in expected[1:]:
        assert piece in (rec.text or ""), f"{text!r}: {piece!r} not in reply {rec.text!r}"
    await bot.settle(quiet=0.1)
    assert await snapshot(bot) == before, f"{text!r} changed something"
    return rec


def private(tg: FakeTelegram, user: dict[str, Any]) -> dict[str, Any]:
    return tg.private_chat(user)


def callback_answer(tg: FakeTelegram, query: dict[str, Any]) -> SentRecord:
    answers = [r for r in tg.sent_by("answerCallbackQuery") if r.params.get("callback_query_id") == query["id"]]
    assert len(answers) == 1, f"callback {query['id']} answered {len(answers)} times"
    return answers[0]


async def pressed(tg: FakeTelegram, bot: BotUnderTest, query: dict[str, Any]) -> SentRecord:
    await bot.settle(quiet=0.1)
    return callback_answer(tg, query)


async def file_in_group(tg: FakeTelegram, user: dict[str, Any], chat: dict[str, Any], text: str, n: int) -> None:
    since = tg.mark()
    tg.send(user, chat, text)
    await tg.wait_text(chat, f"#{n}", since=since)


async def step(tg: FakeTelegram, user: dict[str, Any], command: str, expect: str) -> SentRecord:
    """A secretary's (or anyone's) successful command in private."""
    since = tg.mark()
    tg.send(user, private(tg, user), command)
    return await tg.wait_text(user["id"], expect, since=since)


# ---------------------------------------------------------------------- numbers


async def test_unknown_and_non_numeric_numbers(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    await file_in_group(tg, res_user, res, "/demand 3号楼电梯坏了", 1)
    sp = private(tg, sec)

    for cmd in ("/accept 99", "/accept #99", "/view 99", "/view_99", "/resolve 99 已修好", "/reject 99 不归社区管",
                "/reopen 99", "/duplicate 99 1", "/duplicate 1 99", "/assign 99 @zhang", "/category 99 电梯",
                "/urgency 99 紧急"):
        await refused(tg, bot, sec, sp, cmd, "#99", "/demands")
    # The same in the group, where the refusal quotes the command.
    rec = await refused(tg, bot, sec, res, "/accept 99", "#99")
    assert rec.reply_to is not None
    await refused(tg, bot, res_user, private(tg, res_user), "/rate 99 5", "#99", "/demands")

    usage = {
        "/accept abc": "/accept 12",
        "/view abc": "/view 12",
        "/resolve abc 已修好": "/resolve 12",
        "/reject abc 不归社区管": "/reject 12",
        "/reopen abc": "/reopen 12",
        "/duplicate abc 1": "/duplicate 12 8",
        "/duplicate 1 abc": "/duplicate 12 8",
        "/assign abc @zhang": "/assign 12",
        "/category abc 电梯": "/category 12",
        "/urgency abc 紧急": "/urgency 12",
        "/accept 1.5": "/accept 12",
        "/accept -1": "/accept 12",
        "/accept 99999999999999": "/accept 12",
    }
    for cmd, example in usage.items():
        await refused(tg, bot, sec, sp, cmd, example)
    await refused(tg, bot, res_user, private(tg, res_user), "/rate abc 5", "/rate 12 5")
    assert (await demand_row(bot, 1)).state == "new"
    assert tg.unanswered_callbacks() == []


# ---------------------------------------------------------------------- missing arguments


async def test_missing_arguments(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    await file_in_group(tg, res_user, res, "/demand 楼道灯不亮", 1)
    await file_in_group(tg, res_user, res, "/demand 垃圾桶满了", 2)
    sp, rp = private(tg, sec), private(tg, res_user)
    await step(tg, sec, "/resolve 2 已清运", "已办结")
    await bot.settle()

    cases = [
        (sec, "/accept", ("/accept 12",)),
        (sec, "/view", ("/view 12",)),
        (sec, "/reopen", ("/reopen 12",)),
        (sec, "/resolve", ("/resolve 12",)),
        (sec, "/resolve 1", ("办理说明", "/resolve 12")),
        (sec, "/resolve 1   ", ("办理说明", "/resolve 12")),
        (sec, "/reject", ("/reject 12",)),
        (sec, "/reject 1", ("原因", "/reject 12")),
        (sec, "/duplicate", ("/duplicate 12 8",)),
        (sec, "/duplicate 1", ("/duplicate 12 8",)),
        (sec, "/duplicate 1 1", ("自己", "/duplicate 12 8")),
        (sec, "/assign", ("/assign 12 @",)),
        (sec, "/assign 1", ("/assign 12 @",)),
        (sec, "/assign 1 @nobody", ("@nobody", "/assign 12")),
        (sec, "/assign 1 @li", ("李阿姨", "党员")),  # a known user, but not a member
        (sec, "/category 1", ("/category 12", "电梯")),
        (sec, "/category 1 火星", ("/category 12", "电梯")),
        (sec, "/urgency 1", ("/urgency 12",)),
        (sec, "/urgency 1 超级急", ("/urgency 12", "紧急")),
        (sec, "/demands bogus", ("/demands open",)),
        (res_user, "/rate", ("/rate 12 5",)),
        (res_user, "/rate 2", ("/rate 12 5", "1 到 5")),
        (res_user, "/rate 2 9", ("/rate 12 5",)),
        (res_user, "/rate 2 0", ("/rate 12 5",)),
        (res_user, "/rate 2 五星", ("/rate 12 5",)),
        (res_user, "/cancel", ("没有需要取消",)),
        (res_user, "/skip", ("没有需要取消",)),
    ]
    for user, cmd, expected in cases:
        await refused(tg, bot, user, sp if user is sec else rp, cmd, *expected)
    # In the resident group: /demand with nothing after it, and a bare #诉求.
    await refused(tg, bot, res_user, res, "/demand", "/demand 3号楼电梯坏了")
    await refused(tg, bot, res_user, res, "#诉求", "/demand 3号楼电梯坏了")
    await refused(tg, bot, res_user, res, "#报事：  ", "/demand 3号楼电梯坏了")
    assert (await demand_row(bot, 2)).state == "resolved"


# ---------------------------------------------------------------------- wrong state


async def test_wrong_state(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    for n, text in enumerate(("/demand 楼道灯不亮", "/demand 井盖松动", "/demand 广场舞太吵"), start=1):
        await file_in_group(tg, res_user, res, text, n)
    sp, rp = private(tg, sec), private(tg, res_user)
    await step(tg, sec, "/resolve 2 已加固井盖", "已办结")
    await step(tg, sec, "/reject 3 请联系物业", "不予受理")
    await bot.settle()

    await refused(tg, bot, res_user, rp, "/rate 1 5", "#1", "待受理", "办结后")
    await refused(tg, bot, sec, sp, "/accept 2", "#2", "已办结", "不能受理")
    await refused(tg, bot, sec, sp, "/resolve 3 已处理", "#3", "不予受理", "不能办结")
    await refused(tg, bot, sec, sp, "/assign 3 @zhang", "#3", "不予受理", "不能派单")
    await refused(tg, bot, sec, sp, "/reject 2 重复", "#2", "已办结")
    await refused(tg, bot, sec, sp, "/duplicate 3 1", "#3", "不予受理", "不能合并")
    await refused(tg, bot, sec, sp, "/reopen 1", "#1", "待受理", "不需要重新打开")
    await refused(tg, bot, sec, sp, "/category 2 电梯", "#2", "已办结")
    await refused(tg, bot, sec, sp, "/urgency 3 紧急", "#3", "不予受理")
    await step(tg, sec, "/accept 1", "已受理")
    await refused(tg, bot, sec, sp, "/accept 1", "#1", "已受理", "不能受理")  # accepted twice
    await refused(tg, bot, res_user, rp, "/reopen 1", "#1", "不需要重新打开")  # the submitter, open demand
    # Rated once, then never again.
    await step(tg, res_user, "/rate 2 4 很好", "谢谢")
    await refused(tg, bot, res_user, rp, "/rate 2 5", "#2", "只能评价一次")
    d = await demand_row(bot, 2)
    assert (d.state, d.rating, d.rating_comment) == ("rated", 4, "很好")


# ---------------------------------------------------------------------- wrong role


async def test_wrong_role(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, mem_user, neighbour, res, mem = (
        w["sec"], w["res_user"], w["mem_user"], w["neighbour"], w["res"], w["mem"]
    )
    await file_in_group(tg, neighbour, res, "/demand 隔壁装修太吵", 1)
    await file_in_group(tg, res_user, res, "/demand 楼道灯不亮", 2)
    await bot.settle()
    rp, mp = private(tg, res_user), private(tg, mem_user)

    not_secretary = "只有本社区的书记"
    for cmd in ("/accept 1", "/assign 1 @zhang", "/reject 1 不归你管", "/resolve 1 修好了", "/duplicate 1 2",
                "/category 1 电梯", "/urgency 1 紧急", "/accept 2", "/reject 2 撤回"):
        await refused(tg, bot, res_user, rp, cmd, not_secretary)
    # The same refusals in the resident group, quoting the command.
    rec = await refused(tg, bot, res_user, res, "/accept 1", not_secretary)
    assert rec.reply_to is not None
    await refused(tg, bot, res_user, res, "/assign 1 @zhang", not_secretary)
    # Another's demand: not to be seen, reopened or rated by a neighbour.
    await refused(tg, bot, res_user, rp, "/view 1", "#1", "提交人、承办人和书记")
    await refused(tg, bot, res_user, rp, "/view_1", "#1", "提交人、承办人和书记")
    await refused(tg, bot, res_user, res, "/view 1", "#1", "提交人、承办人和书记")
    await refused(tg, bot, res_user, rp, "/reopen 1", "#1")
    await refused(tg, bot, res_user, rp, "/rate 1 1", "#1", "只有", "提交人")
    # A member it was not dispatched to may not resolve it, in the member chat or privately.
    await refused(tg, bot, mem_user, mp, "/resolve 1 我去看过了", not_secretary)
    await refused(tg, bot, mem_user, mem, "/resolve 1 我去看过了", not_secretary)
    await refused(tg, bot, mem_user, mp, "/view 1", "#1", "提交人、承办人和书记")
    # Dispatched to the member, the other member-less resident still cannot resolve; the member can view.
    since = tg.mark()
    tg.send(sec, private(tg, sec), "/assign 1 @zhang")
    await tg.wait_text(sec["id"], "已派给", since=since)
    await bot.settle()
    await refused(tg, bot, res_user, rp, "/resolve 1 修好了", not_secretary)
    await step(tg, mem_user, "/view 1", "办理记录")
    assert (await demand_row(bot, 1)).state == "assigned"


# ---------------------------------------------------------------------- length and markup


async def test_too_long_and_exact_limit(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    rec = await refused(tg, bot, res_user, res, "/demand " + "漏" * 5000, "太长", "5000", "2000")
    assert rec.reply_to is not None
    # The private form holds the same limit, and keeps waiting for the text.
    rp = private(tg, res_user)
    since = tg.mark()
    tg.send(res_user, rp, "/demand")
    await tg.wait_text(res_user["id"], "2000", since=since)
    await refused(tg, bot, res_user, rp, "水" * 2001, "太长", "2001", "2000")
    since = tg.mark()
    tg.send(res_user, rp, "/cancel")
    await tg.wait_text(res_user["id"], "已取消", since=since)

    exact = "电梯" + "坏" * 1998
    assert len(exact) == 2000
    since = tg.mark()
    tg.send(res_user, res, "/demand " + exact)
    await tg.wait_text(res, "#1", since=since)
    alert = await tg.wait_text(sec["id"], "新诉求", since=since)
    assert exact in (alert.text or "")
    await bot.settle()
    d = await demand_row(bot, 1)
    assert d.text == exact
    card = await step(tg, sec, "/view 1", "办理记录")
    assert exact in (card.text or "")


async def test_markup_shown_as_typed(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, mem_user, res = w["sec"], w["res_user"], w["mem_user"], w["res"]
    since = tg.mark()
    tg.send(res_user, res, "/demand " + MARKUP)
    rec = await tg.wait_text(res, "#1", since=since)
    assert excerpt(MARKUP) in (rec.text or ""), rec.text
    alert = await tg.wait_text(sec["id"], "新诉求", since=since)
    assert MARKUP in (alert.text or ""), alert.text
    short = "<i>斜</i> & *s* _u_ `c` &amp;"
    since = tg.mark()
    tg.send(res_user, res, "#诉求 " + short)
    rec = await tg.wait_text(res, "#2", since=since)
    assert short in (rec.text or ""), rec.text
    await bot.settle()
    assert (await demand_row(bot, 1)).text == MARKUP
    assert (await demand_row(bot, 2)).text == short

    card = await step(tg, sec, "/view 1", "办理记录")
    assert MARKUP in (card.text or "")
    own = await step(tg, res_user, "/view 1", "办理记录")
    assert MARKUP in (own.text or "")
    listing = await step(tg, sec, "/demands", "/view_1")
    assert excerpt(MARKUP) in (listing.text or "")

    # Notes typed by the secretary and the member reach the resident as typed too.
    reason = "<b>不归</b>社区 & <a href='x'>12345</a>"
    since = tg.mark()
    tg.send(sec, private(tg, sec), f"/reject 2 {reason}")
    note = await tg.wait_text(res_user["id"], "不予受理", since=since)
    assert reason in (note.text or "")
    member_msg = tg.send(mem_user, w["mem"], "我去")
    since = tg.mark()
    tg.send(sec, w["mem"], "/assign 1", reply_to=member_msg)
    dispatched = await tg.wait_text(mem_user["id"], "派给您的诉求", since=since)
    assert MARKUP in (dispatched.text or "")
    fix = "换了 <u>新</u> 灯 & 开关"
    since = tg.mark()
    tg.send(mem_user, private(tg, mem_user), f"/resolve 1 {fix}")
    rating = await tg.wait_text(res_user["id"], "已办结", since=since)
    assert fix in (rating.text or "")
    for r in tg.sent:
        assert r.parse_mode in (None, "HTML"), r


# ---------------------------------------------------------------------- where a command makes no sense


async def test_commands_out_of_place(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, mem_user, neighbour, res, mem = (
        w["sec"], w["res_user"], w["mem_user"], w["neighbour"], w["res"], w["mem"]
    )
    await refused(tg, bot, mem_user, mem, "/demand 党员活动室漏水", "居民群", "/demand 3号楼电梯坏了")
    await refused(tg, bot, sec, mem, "/demand 党员活动室漏水", "居民群")
    stray = tg.group("无关的群")
    await refused(tg, bot, res_user, stray, "/demand 路灯坏了", "还没有绑定", "/setup resident")
    await refused(tg, bot, res_user, stray, "/demands", "还没有绑定")
    await refused(tg, bot, res_user, stray, "/accept 1", "还没有绑定")
    talk = tg.send(neighbour, stray, "有人吗")
    await refused(tg, bot, sec, stray, "/demand", "还没有绑定", reply_to=talk)
    await refused(tg, bot, res_user, stray, "/report", "还没有绑定", reply_to=talk)

    # /report privately, or in the group without a reply, or in the member chat.
    await refused(tg, bot, res_user, private(tg, res_user), "/report", "居民群", "回复", "/report")
    await refused(tg, bot, res_user, res, "/report", "回复", "/report")
    await refused(tg, bot, res_user, res, "/report 这人骗钱", "回复", "/report")
    mem_talk = tg.send(mem_user, mem, "今晚开会")
    await refused(tg, bot, sec, mem, "/report", "居民群", reply_to=mem_talk)

    # A hashtag or @admin outside a resident chat is just talk: no reply, nothing filed.
    before = await snapshot(bot)
    since = tg.mark()
    tg.send(mem_user, mem, "#诉求 活动室空调坏了")
    tg.send(mem_user, mem, "#报事 活动室空调坏了")
    tg.send(sec, mem, "@admin 看看", reply_to=mem_talk)
    tg.send(res_user, stray, "#诉求 路灯坏了")
    await bot.settle()
    assert [r for r in tg.sent[since:] if r.chat_id in (mem["id"], stray["id"], sec["id"])] == []
    assert await snapshot(bot) == before
    # A /start deep link for the form, opened in a group.
    await refused(tg, bot, res_user, res, "/start d1", "私聊")


# ---------------------------------------------------------------------- other ways in


async def test_photo_caption_and_hashtags(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, neighbour, res = w["sec"], w["res_user"], w["neighbour"], w["res"]
    since = tg.mark()
    msg = tg.send(res_user, res, photo=True, caption="/demand 楼道里堆满了杂物，消防通道堵了")
    rec = await tg.wait_text(res, "#1", since=since)
    assert "杂物" in (rec.text or "") and rec.reply_to == msg["message_id"]
    await tg.wait_text(sec["id"], "杂物", since=since)
    tg.send(res_user, res, "#诉求 小区东门路灯不亮")
    await tg.wait_text(res, "#2", since=since)
    tg.send(neighbour, res, "＃报事：健身器材松了")
    await tg.wait_text(res, "#3", since=since)
    photo_tag = tg.send(neighbour, res, photo=True, caption="#报事 井盖丢了")
    await tg.wait_text(res, "#4", since=since)
    await bot.settle()

    largest = msg["photo"][-1]["file_id"]
    d1 = await demand_row(bot, 1)
    assert d1.photo_file_id == largest and d1.text == "楼道里堆满了杂物，消防通道堵了"
    assert (await demand_row(bot, 2)).text == "小区东门路灯不亮"
    d3 = await demand_row(bot, 3)
    assert d3.text == "健身器材松了" and d3.submitter_id == neighbour["id"]
    d4 = await demand_row(bot, 4)
    assert d4.photo_file_id == photo_tag["photo"][-1]["file_id"] and d4.text == "井盖丢了"
    card = await step(tg, sec, "/view 1", "办理记录")
    assert "照片" in (card.text or "")

    # A photo with /demand and no words: asked for the words, nothing filed.
    before = await snapshot(bot)
    since = tg.mark()
    tg.send(res_user, res, photo=True, caption="/demand")
    await tg.wait_text(res, "/demand 3号楼电梯坏了", since=since)
    await bot.settle()
    assert await snapshot(bot) == before
    # Privately, a tag files too.
    since = tg.mark()
    tg.send(res_user, private(tg, res_user), "#报事 快递柜屏幕坏了")
    await tg.wait_text(res_user["id"], "#5", since=since)
    await bot.settle()
    assert (await demand_row(bot, 5)).text == "快递柜屏幕坏了"
    before = await snapshot(bot)
    # Words without a tag are plain chat.
    tg.send(res_user, res, "今天天气不错 #诉求")
    await bot.settle()
    assert await snapshot(bot) == before


async def test_secretary_files_a_reply(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, neighbour, res = w["sec"], w["res_user"], w["neighbour"], w["res"]
    complaint = tg.send(res_user, res, "地下车库的灯坏了一半，晚上很黑")

    # A neighbour may not file someone else's message; told how to file their own.
    await refused(tg, bot, neighbour, res, "/demand", "只有书记", "/demand 3号楼电梯坏了", reply_to=complaint)
    await refused(tg, bot, neighbour, res, "/demand 车库灯", "只有书记", "不要回复", reply_to=complaint)

    since = tg.mark()
    tg.send(sec, res, "/demand", reply_to=complaint)
    rec = await tg.wait_text(res, "#1", since=since)
    assert "李阿姨" in (rec.text or "") and "车库" in (rec.text or "")
    await bot.settle()
    d = await demand_row(bot, 1)
    assert (d.submitter_id, d.filed_by_id, d.text) == (res_user["id"], sec["id"], complaint["text"])
    assert d.origin_message_id == complaint["message_id"]
    # The author is told of changes (privately: she has started the bot).
    since = tg.mark()
    tg.send(sec, private(tg, sec), "/accept 1")
    await tg.wait_text(res_user["id"], "已受理", since=since)
    own = await step(tg, res_user, "/view 1", "办理记录")
    assert "车库" in (own.text or "")

    # Filed for someone who never started the bot: told by a reply in the group.
    words = tg.send(neighbour, res, "3号楼门禁坏了")
    since = tg.mark()
    tg.send(sec, res, "/demand", reply_to=words)
    await tg.wait_text(res, "赵大爷", since=since)
    since = tg.mark()
    tg.send(sec, private(tg, sec), "/accept 2")
    told = await tg.wait_text(res, "已受理", since=since)
    assert told.reply_to == words["message_id"]
    assert (await demand_row(bot, 2)).submitter_id == neighbour["id"]

    # /demand as a reply to one's own message files that message.
    own = tg.send(neighbour, res, "垃圾房的门坏了")
    since = tg.mark()
    tg.send(neighbour, res, "/demand", reply_to=own)
    await tg.wait_text(res, "#3", since=since)
    await bot.settle()
    d3 = await demand_row(bot, 3)
    assert (d3.submitter_id, d3.filed_by_id, d3.text) == (neighbour["id"], neighbour["id"], own["text"])

    # Replying to the bot's own message files the secretary's own text, not the bot's.
    since = tg.mark()
    tg.send(sec, res, "/demand 二号门岗亭漏雨", reply_to=rec.message)
    await tg.wait_text(res, "#4", since=since)
    await bot.settle()
    d4 = await demand_row(bot, 4)
    assert (d4.submitter_id, d4.text) == (sec["id"], "二号门岗亭漏雨")


async def test_report_and_admin_call(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, neighbour, res = w["sec"], w["res_user"], w["neighbour"], w["res"]
    spam = tg.send(neighbour, res, "低价卖 <b>保健品</b> & 加V <a href='x'>点我</a>")
    before = await snapshot(bot)

    since = tg.mark()
    tg.send(res_user, res, "@admin 这是骗子", reply_to=spam)
    ack = await tg.wait_text(res, "已私下转给", since=since)
    assert ack.reply_to is not None
    alert = await tg.wait_text(sec["id"], "举报", since=since)
    assert spam["text"] in (alert.text or "")
    assert "李阿姨" in (alert.text or "") and "赵大爷" in (alert.text or "")

    since = tg.mark()
    tg.send(res_user, res, "/report", reply_to=spam)
    await tg.wait_text(res, "已私下转给", since=since)
    alert = await tg.wait_text(sec["id"], "举报", since=since)
    assert spam["text"] in (alert.text or "")
    # A photo reported: the alert says there is no text.
    pic = tg.send(neighbour, res, photo=True)
    since = tg.mark()
    tg.send(res_user, res, "@ADMIN", reply_to=pic)
    alert = await tg.wait_text(sec["id"], "举报", since=since)
    assert "非文字" in (alert.text or "")
    await bot.settle()
    # Reports file no demand; nobody but the secretaries heard of them privately.
    after = await snapshot(bot)
    assert (after.demands, after.events, after.counters) == (before.demands, before.events, before.counters)
    assert not any("保健品" in (r.text or "") for r in tg.sent if r.chat_id in (res_user["id"], w["mem_user"]["id"]))


# ---------------------------------------------------------------------- buttons


async def test_rating_buttons_stale_and_foreign(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, neighbour, res = w["sec"], w["res_user"], w["neighbour"], w["res"]
    # The neighbour never started the bot: the rating message comes to the group, where anyone can press.
    await file_in_group(tg, neighbour, res, "/demand 单元门关不上", 1)
    since = tg.mark()
    tg.send(sec, private(tg, sec), "/resolve 1 已换闭门器")
    rating = await tg.wait_text(res, "已办结", since=since)
    assert rating.message is not None and rating.buttons
    await bot.settle()
    before = await snapshot(bot)

    q = tg.click(res_user, rating.message, "⭐⭐⭐⭐⭐")
    ans = await pressed(tg, bot, q)
    assert ans.params.get("show_alert") is True and "只有" in (ans.text or "") and "提交人" in (ans.text or "")
    q = tg.click(res_user, rating.message, "未解决")
    ans = await pressed(tg, bot, q)
    assert "提交人" in (ans.text or "")
    assert await snapshot(bot) == before
    assert tg.current(rating.message).get("reply_markup")  # still there for the submitter

    q = tg.click(neighbour, rating.message, "⭐⭐⭐")
    await pressed(tg, bot, q)
    d = await demand_row(bot, 1)
    assert (d.state, d.rating) == ("rated", 3)
    assert tg.current(rating.message).get("reply_markup") is None
    before = await snapshot(bot)
    # The same message pressed again (a client that had not refreshed): refused with the reason.
    stale = rating.message
    for data in (f"rate:{d.id}:5", f"rate:{d.id}:0"):
        q = tg.press(neighbour, stale, data, force=True)
        ans = await pressed(tg, bot, q)
        assert ans.params.get("show_alert") is True and "只能评价一次" in (ans.text or ""), ans.text
    # Forged data is answered quietly.
    for data in ("rate:abc:5", f"rate:{d.id}:9", "rate", "rate:999999:4", "nosuch:1"):
        q = tg.press(neighbour, stale, data, force=True)
        await pressed(tg, bot, q)
    assert await snapshot(bot) == before
    assert tg.unanswered_callbacks() == []


async def test_rating_button_twice_in_private(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    await file_in_group(tg, res_user, res, "/demand 楼顶漏水", 1)
    since = tg.mark()
    tg.send(sec, private(tg, sec), "/resolve 1 已做防水")
    rating = await tg.wait_text(res_user["id"], "已办结", since=since)
    assert rating.message is not None
    q1 = tg.click(res_user, rating.message, "⭐⭐")
    # A second tap before the edit removed the buttons (two quick taps, or two devices).
    five = next(data for label, data in rating.buttons if label == "⭐⭐⭐⭐⭐")
    assert five is not None
    q2 = tg.press(res_user, rating.message, five, force=True)
    await bot.settle()
    a1, a2 = callback_answer(tg, q1), callback_answer(tg, q2)
    assert "谢谢" in (a1.text or "")
    assert a2.params.get("show_alert") is True and "只能评价一次" in (a2.text or "")
    d = await demand_row(bot, 1)
    assert (d.state, d.rating) == ("rated", 2)
    assert tg.unanswered_callbacks() == []


async def test_form_and_accept_buttons_stale(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    rp = private(tg, res_user)
    tg.send(res_user, rp, "/demand")
    await tg.wait_text(res_user["id"], "描述")
    tg.send(res_user, rp, "单元门禁失灵")
    where = await tg.wait_text(res_user["id"], "在哪里")
    since = tg.mark()
    tg.send(res_user, rp, "/cancel")
    await tg.wait_text(res_user["id"], "已取消", since=since)
    await bot.settle(quiet=0.1)
    before = await snapshot(bot)
    assert before.conversations == 0
    q = tg.click(res_user, where.message, "跳过")
    ans = await pressed(tg, bot, q)
    assert ans.params.get("show_alert") is True and "/demand" in (ans.text or "")
    for data in ("dform:ok", "dform:pub:1", "dform:no", "dform"):
        q = tg.press(res_user, where.message, data, force=True)
        ans = await pressed(tg, bot, q)
        assert "/demand" in (ans.text or ""), (data, ans.text)
    assert await snapshot(bot) == before

    # The accept button: pressed once, then again; a forged one; one pressed by a resident.
    since = tg.mark()
    await file_in_group(tg, res_user, res, "/demand 消防通道被占", 1)
    alert = await tg.wait_text(sec["id"], "新诉求", since=since)
    q = tg.click(sec, alert.message, "受理")
    await pressed(tg, bot, q)
    assert (await demand_row(bot, 1)).state == "accepted"
    before = await snapshot(bot)
    data = next(d for label, d in alert.buttons if "受理" in label)  # the button stays after use
    assert data is not None
    q = tg.press(sec, alert.message, data, force=True)
    ans = await pressed(tg, bot, q)
    assert ans.params.get("show_alert") is True and "已受理" in (ans.text or "") and "不能受理" in (ans.text or "")
    q = tg.press(sec, alert.message, "dacc:999999", force=True)
    ans = await pressed(tg, bot, q)
    assert "不存在" in (ans.text or "")
    q = tg.press(sec, alert.message, "dacc:x", force=True)
    await pressed(tg, bot, q)
    # A resident with a forged accept button, in their own chat.
    mine = tg.last_to(rp)
    assert mine is not None
    q = tg.press(res_user, mine, data, force=True)
    ans = await pressed(tg, bot, q)
    assert "只有本社区的书记" in (ans.text or "")
    assert await snapshot(bot) == before
    assert tg.unanswered_callbacks() == []


# ---------------------------------------------------------------------- lists, links, language


async def test_demands_scopes_and_view_links(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, neighbour, res = w["sec"], w["res_user"], w["neighbour"], w["res"]
    await file_in_group(tg, res_user, res, "/demand 一号楼路灯坏了", 1)
    await file_in_group(tg, neighbour, res, "/demand 二号楼电梯异响", 2)
    await file_in_group(tg, res_user, res, "/demand 三号楼垃圾没清", 3)
    await step(tg, sec, "/resolve 3 已清运", "已办结")
    await bot.settle()
    assert bot.app is not None
    async with bot.app.services.ctx.tx() as s:  # #1 past its resolve deadline
        d1 = await s.scalar(select(Demand).where(Demand.number == 1))
        assert d1 is not None
        await s.execute(update(Demand).where(Demand.id == d1.id).values(resolve_by=d1.filed_at - timedelta(days=1)))

    def lines(rec: SentRecord) -> str:
        return rec.text or ""

    default = await step(tg, sec, "/demands", "/view_")
    assert "/view_1" in lines(default) and "/view_2" in lines(default) and "/view_3" not in lines(default)
    assert lines(default).index("/view_2") < lines(default).index("/view_1")  # newest first
    opened = await step(tg, sec, "/demands open", "/view_")
    assert "办理中" in lines(opened) and "/view_3" not in lines(opened)
    overdue = await step(tg, sec, "/demands overdue", "/view_1")
    assert "/view_2" not in lines(overdue) and "超时" in lines(overdue)
    await step(tg, sec, "/demands mine", "没有诉求")
    everything = await step(tg, sec, "/demands ALL", "/view_3")
    assert all(f"/view_{n}" in lines(everything) for n in (1, 2, 3))
    await refused(tg, bot, sec, private(tg, sec), "/demands bogus", "/demands open", "overdue")
    await refused(tg, bot, sec, private(tg, sec), "/demands open extra", "/demands open")

    # A resident sees only their own, whatever the scope.
    for cmd in ("/demands", "/demands mine", "/demands all"):
        own = await step(tg, res_user, cmd, "/view_")
        assert "/view_1" in lines(own) and "/view_2" not in lines(own), (cmd, own.text)
    await step(tg, res_user, "/demands overdue", "/view_1")

    # The clickable /view_<n>: plain, with the bot's name, and in a group.
    card = await step(tg, res_user, "/view_1", "办理记录")
    assert "一号楼路灯" in lines(card)
    card = await step(tg, res_user, "/view_3@linli_test_bot", "办理记录")
    assert "三号楼" in lines(card)
    since = tg.mark()
    tg.send(sec, res, "/view_2")
    await tg.wait_text(res, "办理记录", since=since)
    await refused(tg, bot, res_user, private(tg, res_user), "/view_2", "#2")
    await refused(tg, bot, res_user, private(tg, res_user), "/view_99", "#99")


async def test_english_errors(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    res_user, res = w["res_user"], w["res"]
    rp = private(tg, res_user)
    await step(tg, res_user, "/lang en", "English")
    await file_in_group(tg, res_user, res, "/demand broken lamp in building 3", 1)
    await refused(tg, bot, res_user, rp, "/accept abc", "e.g.", "/accept 12")
    await refused(tg, bot, res_user, rp, "/rate 99 5", "#99", "/demands")
    await refused(tg, bot, res_user, rp, "/accept 1", "Only a secretary")
    await refused(tg, bot, res_user, rp, "/rate 1 5", "#1")
    rec = await refused(tg, bot, res_user, res, "/demand " + "x" * 2500, "2500", "2000")
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in rec.text or ""), rec.text
    await refused(tg, bot, res_user, rp, "/demands bogus", "/demands open")


# ---------------------------------------------------------------------- more ways in, and privacy


async def test_addressed_commands_and_forum_topics(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user = w["sec"], w["res_user"]
    res = w["res"]
    before = await snapshot(bot)
    since = tg.mark()
    tg.send(res_user, res, "/demand@other_bot 路灯坏了")  # meant for another bot
    await bot.settle()
    assert [r for r in tg.sent[since:] if r.chat_id == res["id"]] == []
    assert await snapshot(bot) == before
    tg.send(res_user, res, "/demand@linli_test_bot 路灯坏了")
    await tg.wait_text(res, "#1", since=since)

    # A forum resident chat: filed inside a topic, answered in that topic, for its author.
    forum = tg.group("幸福里二期", forum=True)
    tg.set_status(forum, sec, "creator")
    tg.send(sec, forum, "/setup resident 幸福里")
    await tg.wait_text(forum, "幸福里", since=since)
    topic = tg.topic(forum, "报事", by=sec)
    since = tg.mark()
    tg.send(res_user, forum, "/demand 二期东门闸机坏了", thread_id=topic)
    rec = await tg.wait_text(forum, "#2", since=since)
    assert rec.message_thread_id == topic
    since = tg.mark()
    tg.send(res_user, forum, "/accept 2", thread_id=topic)
    rec = await tg.wait_text(forum, "只有本社区的书记", since=since)
    assert rec.message_thread_id == topic
    await bot.settle()
    d = await demand_row(bot, 2)
    assert (d.submitter_id, d.origin_thread_id, d.state) == (res_user["id"], topic, "new")


async def test_long_notes_and_comments(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    await file_in_group(tg, res_user, res, "/demand 楼道灯不亮", 1)
    sp, rp = private(tg, sec), private(tg, res_user)
    long_note = "修" * 1001
    await refused(tg, bot, sec, sp, f"/resolve 1 {long_note}", "1001", "1000")
    await refused(tg, bot, sec, sp, f"/reject 1 {long_note}", "1001", "1000")
    since = tg.mark()
    tg.send(sec, sp, "/resolve 1 已换灯泡")
    rating = await tg.wait_text(res_user["id"], "已办结", since=since)
    await bot.settle()
    await refused(tg, bot, res_user, rp, f"/rate 1 5 {long_note}", "1001", "1000")
    # After a tap, the comment prompt holds the same limit; /skip ends it, a second /skip has nothing to end.
    since = tg.mark()
    tg.click(res_user, rating.message, "⭐⭐⭐⭐⭐")
    await tg.wait_text(res_user["id"], "/skip", since=since)
    await bot.settle()
    await refused(tg, bot, res_user, rp, long_note, "1001", "1000")
    since = tg.mark()
    tg.send(res_user, rp, "/skip")
    await tg.wait_text(res_user["id"], "好的", since=since)
    await refused(tg, bot, res_user, rp, "/skip", "没有需要取消")
    d = await demand_row(bot, 1)
    assert (d.state, d.rating, d.rating_comment) == ("rated", 5, None)
    assert tg.unanswered_callbacks() == []


async def private_form(tg: FakeTelegram, user: dict[str, Any], text: str, *, public: bool) -> None:
    chat = tg.private_chat(user)
    tg.send(user, chat, "/demand")
    await tg.wait_text(user["id"], "描述")
    since = tg.mark()
    tg.send(user, chat, text)
    await tg.wait_text(user["id"], "在哪里", since=since)
    since = tg.mark()
    tg.send(user, chat, "5号楼302")
    rec = await tg.wait_text(user["id"], "照片", since=since)
    since = tg.mark()
    tg.click(user, rec.message, "跳过")
    rec = await tg.wait_text(user["id"], "公开", since=since)
    since = tg.mark()
    tg.click(user, rec.message, "不公开" if not public else "公开")
    rec = await tg.wait_text(user["id"], "请确认", since=since)
    since = tg.mark()
    tg.click(user, rec.message, "提交")
    await tg.wait_text(user["id"], "已提交", since=since)


async def test_view_in_resident_chat_keeps_form_privacy(tg: FakeTelegram, bot: BotUnderTest) -> None:
    """The form promises: not public -> nothing in resident chats; public -> no name there."""
    w = await community(tg, bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    await private_form(tg, res_user, "邻居家漏水渗到我家天花板", public=False)
    await private_form(tg, res_user, "五号楼门口的井盖松了", public=True)
    await bot.settle()
    cards = {}
    for n, shows in ((1, "不在本群公开"), (2, "办理记录")):
        since = tg.mark()
        tg.send(sec, res, f"/view_{n}")
        cards[n] = (await tg.wait_text(res, shows, since=since)).text or ""
        assert "李阿姨" not in cards[n], cards[n]
    # Not public: its number and state only, not even the timeline.
    assert "天花板" not in cards[1] and "办理记录" not in cards[1] and "漏水" not in cards[1]
    assert "井盖" in cards[2]
    # The submitter's own /view there is anonymous too; the secretary's steps keep their name.
    since = tg.mark()
    tg.send(sec, private(tg, sec), "/accept 2")
    await tg.wait_text(sec["id"], "已受理", since=since)
    since = tg.mark()
    tg.send(res_user, res, "/view 2")
    card = (await tg.wait_text(res, "办理记录", since=since)).text or ""
    assert "李阿姨" not in card and "王书记" in card
    # The secretary still sees everything privately.
    card = await step(tg, sec, "/view 1", "办理记录")
    assert "李阿姨" in (card.text or "") and "天花板" in (card.text or "")


async def test_timeline_shows_no_internal_notes(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    await file_in_group(tg, res_user, res, "/demand 楼道灯不亮", 1)
    words = tg.send(res_user, res, "车库积水")
    since = tg.mark()
    tg.send(sec, res, "/demand", reply_to=words)
    await tg.wait_text(res, "#2", since=since)
    for n in (1, 2):
        card = (await step(tg, sec, f"/view {n}", "办理记录")).text or ""
        for internal in ("command", "reply", f"by {sec['id']}", str(sec["id"])):
            assert internal not in card, card


async def test_chinese_spacing_and_full_width_numbers(tg: FakeTelegram, bot: BotUnderTest) -> None:
    """A Chinese IME types `＃１` and the full-width space U+3000; phones put a newline after the number."""
    w = await community(tg, bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    await file_in_group(tg, res_user, res, "/demand 楼道灯不亮", 1)
    await file_in_group(tg, res_user, res, "/demand 电梯按钮失灵", 2)
    await step(tg, sec, "/accept ＃１", "已受理诉求 #1")
    await step(tg, sec, "/resolve 1\u3000已更换灯泡", "已办结")
    await step(tg, sec, "/reject 2\n属于物业职责", "不予受理")
    since = tg.mark()
    tg.send(res_user, private(tg, res_user), "/rate 1\n5\u3000师傅很耐心")
    await tg.wait_text(res_user["id"], "⭐⭐⭐⭐⭐", since=since)
    await bot.settle()
    d1, d2 = await demand_row(bot, 1), await demand_row(bot, 2)
    assert (d1.resolution_note, d1.rating, d1.rating_comment) == ("已更换灯泡", 5, "师傅很耐心")
    assert (d2.state, d2.rejection_reason) == ("rejected", "属于物业职责")


async def test_command_glued_to_chinese_text(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    since = tg.mark()
    tg.send(w["res_user"], w["res"], "/demand路灯坏了")
    await tg.wait_text(w["res"], "#1", since=since, timeout=2.0)


async def test_strangers_and_other_communities(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res_user, res = w["sec"], w["res_user"], w["res"]
    await file_in_group(tg, res_user, res, "/demand 楼道灯不亮", 1)
    # Someone in no community at all, privately.
    stranger = tg.user(1010, "路人甲", username="passerby")
    sp = tg.private_chat(stranger)
    tg.send(stranger, sp, "/start")
    await tg.wait_text(stranger["id"], "邻里")
    for cmd in ("/demand 路灯坏了", "/demands", "/view 1", "/accept 1", "#诉求 路灯坏了"):
        await refused(tg, bot, stranger, sp, cmd, "还不属于任何社区")
    await refused(tg, bot, stranger, sp, "/start d999", "社区")

    # A second community with its own secretary: the first one's secretary can do nothing there.
    sec2 = tg.user(1020, "刘书记", username="liu_sec")
    res2 = tg.group("和平里居民群")
    tg.set_status(res2, sec2, "creator")
    since = tg.mark()
    tg.send(sec2, res2, "/setup resident 和平里")
    await tg.wait_text(res2, "已创建社区", since=since)
    neighbour2 = tg.user(1021, "孙阿姨", username="sun_ayi")
    await file_in_group(tg, neighbour2, res2, "/demand 和平里的路灯坏了", 1)
    await bot.settle()
    for cmd in ("/accept 1", "/resolve 1 修好了", "/reject 1 不管", "/assign 1 @zhang"):
        await refused(tg, bot, sec, res2, cmd, "只有本社区的书记")
    await refused(tg, bot, sec, res2, "/view 1", "#1", "提交人、承办人和书记")
    # A forged accept button for the other community's demand.
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        other = await s.scalar(select(Demand).where(Demand.text == "和平里的路灯坏了"))
    assert other is not None
    before = await snapshot(bot)
    carrier = tg.last_to(sec["id"])
    assert carrier is not None
    q = tg.press(sec, carrier, f"dacc:{other.id}", force=True)
    ans = await pressed(tg, bot, q)
    assert "只有本社区的书记" in (ans.text or "")
    assert await snapshot(bot) == before
    # Having spoken in 和平里's group he is a resident there too: privately he is asked which community,
    # and in 幸福里 his #1 is his own community's.
    pick = await step(tg, sec, "/view 1", "请选择")
    since = tg.mark()
    tg.click(sec, pick.message, "幸福里")
    card = await tg.wait_text(sec["id"], "办理记录", since=since)
    assert "楼道灯" in (card.text or "") and "和平里" not in (card.text or "")
    pick = await step(tg, sec, "/accept 1", "请选择")
    await refused(tg, bot, sec, private(tg, sec), "/accept 1", "请选择")  # asking changes nothing
    since = tg.mark()
    q = tg.click(sec, pick.message, "和平里")
    await pressed(tg, bot, q)
    said = [r.text or "" for r in tg.sent[since:]]
    assert any("只有本社区的书记" in t for t in said), said
    assert (await snapshot(bot)).demands == before.demands
    assert tg.unanswered_callbacks() == []
