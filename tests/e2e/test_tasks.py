"""Volunteer tasks played through the fake Bot API server, on aiogram and on PTB: a secretary
announces, five members press 认领 at once on a 2-slot task, the waitlist keeps press order, an
unclaim promotes the first in line; report, confirm, points; and every bad input the issue lists."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import func, select

from bot.storage.models import Job, Outbox, Task, TaskClaim, TaskPost, VolunteerSkill
from tests.e2e.harness import BotUnderTest
from tests.e2e.test_demand_loop import community
from tests.fakeapi.server import FakeTelegram

WHEN = "2030-12-07 09:00"  # a Saturday
WEEKDAY = "星期六"


async def settle(bot: BotUnderTest) -> None:
    """Updates handled, replies and notifications sent, and every roster edit out."""
    assert bot.app is not None
    await bot.settle()
    await bot.app.services.tasks.roster.idle()
    await bot.settle(quiet=0.1)


async def answered(tg: FakeTelegram, queries: list[dict[str, Any]], timeout: float = 15.0) -> list[str]:  # noqa: ASYNC109
    """The answer text of each press, waiting until every one has its answer (exactly one each)."""
    deadline = time.monotonic() + timeout
    while any(tg.callbacks[q["id"]]["answered"] is None for q in queries):
        assert time.monotonic() < deadline, "presses left unanswered"
        await asyncio.sleep(0.02)
    out = []
    for q in queries:
        answers = [r for r in tg.sent_by("answerCallbackQuery") if r.params.get("callback_query_id") == q["id"]]
        assert len(answers) == 1, f"{q['id']} answered {len(answers)} times"
        out.append(answers[0].text or "")
    return out


async def counts(bot: BotUnderTest) -> tuple[int, ...]:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        rows = [await s.scalar(select(func.count()).select_from(m)) or 0
                for m in (Task, TaskClaim, TaskPost, Job, VolunteerSkill)]
        posts = await s.scalar(select(func.count()).select_from(Outbox).where(Outbox.ref.like("task:%"))) or 0
        state = (await s.execute(select(func.coalesce(func.sum(Task.claimed), 0),
                                        func.count().filter(Task.state != "open")))).one()
        awarded = await s.scalar(select(func.count()).select_from(TaskClaim).where(TaskClaim.awarded_at.is_not(None)))
    return (*rows, posts, *state, awarded)


async def claims(bot: BotUnderTest, number: int = 1) -> list[tuple[int | None, str]]:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        task_id = await s.scalar(select(Task.id).where(Task.number == number))
        rows = await s.execute(select(TaskClaim.user_id, TaskClaim.status).where(TaskClaim.task_id == task_id)
                               .order_by(TaskClaim.status, TaskClaim.seq, TaskClaim.id))
        return [(u, st) for u, st in rows.all()]


def members(tg: FakeTelegram, n: int, start: bool = True) -> list[dict[str, Any]]:
    people = [tg.user(2000 + i, f"队员{i}") for i in range(n)]
    if start:
        for u in people:
            tg.private_chat(u)
    return people


async def announce(tg: FakeTelegram, sec: dict[str, Any], mem: dict[str, Any], args: str) -> dict[str, Any]:
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), f"/task {args}")
    reply = await tg.wait_text(sec["id"], "已发布志愿任务", since=since)
    assert WEEKDAY in reply.text  # the date is echoed with its weekday
    post = await tg.wait_text(mem, "志愿任务 #", since=since)
    assert post.message is not None
    return post.message


async def test_five_press_claim_at_once_on_a_two_slot_task(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, mem = w["sec"], w["mem"]
    people = members(tg, 5)
    for u in people:  # they have started the bot, so they can be told privately
        tg.send(u, tg.private_chat(u), "/start")
    await bot.settle()
    post = await announce(tg, sec, mem, f"清理楼道杂物 | {WHEN} | 2 | 10 | 3号楼")
    assert "已认领 0/2" in tg.current(post)["text"]

    queries = [tg.click(u, post, "认领") for u in people]  # all five before the bot sees any
    texts = await answered(tg, queries)
    assert all("认领成功" in t for t in texts[:2]), texts
    assert [t for t in texts[2:]] and all("候补第" in t for t in texts[2:])
    assert ["已在候补第 1 位" in texts[2], "已在候补第 2 位" in texts[3], "已在候补第 3 位" in texts[4]] == [True] * 3
    await settle(bot)
    ids = [u["id"] for u in people]
    assert await claims(bot) == [(ids[0], "claimed"), (ids[1], "claimed"), (ids[2], "waiting"),
                                 (ids[3], "waiting"), (ids[4], "waiting")]
    shown = tg.current(post)["text"]
    assert "已认领 2/2: 队员0, 队员1" in shown and "候补: 队员2, 队员3, 队员4" in shown

    # A claimer's second press claims nothing twice.
    before = await counts(bot)
    [again] = await answered(tg, [tg.click(people[0], post, "认领")])
    assert "已经认领过了" in again
    await settle(bot)
    assert await claims(bot) == [(ids[0], "claimed"), (ids[1], "claimed"), (ids[2], "waiting"),
                                 (ids[3], "waiting"), (ids[4], "waiting")]
    assert (await counts(bot))[:3] == before[:3]

    # An unclaim promotes the first waiting, who is told privately; the roster shows it.
    since = tg.mark()
    [gone] = await answered(tg, [tg.click(people[0], tg.current(post), "取消认领")])
    assert "已取消认领" in gone
    told = await tg.wait_text(people[2]["id"], "候补递补", since=since)
    assert "清理楼道杂物" in told.text
    await settle(bot)
    shown = tg.current(post)["text"]
    assert "已认领 2/2: 队员1, 队员2" in shown and "候补: 队员3, 队员4" in shown
    assert not tg.rejections and tg.unanswered_callbacks() == []


async def test_commands_report_confirm_points_and_cancel(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, mem, mem_user = w["sec"], w["mem"], w["mem_user"]
    helper = tg.user(2100, "李志愿")
    tg.send(helper, mem, "/help")
    tg.send(helper, tg.private_chat(helper), "/start")
    await bot.settle()
    post = await announce(tg, sec, mem, f"社区义诊 | {WHEN} | 3 | 8 | 活动室")

    since = tg.mark()
    tg.send(mem_user, mem, "/claim 1")
    await tg.wait_text(mem, "认领成功", since=since)
    since = tg.mark()
    tg.send(helper, tg.private_chat(helper), "/claim_1")
    await tg.wait_text(helper["id"], "认领成功", since=since)
    since = tg.mark()
    tg.send(mem_user, tg.private_chat(mem_user), "/tasks")
    listing = await tg.wait_text(mem_user["id"], "还有名额", since=since)
    assert "#1 社区义诊" in listing.text and "2/3" in listing.text
    await settle(bot)
    assert "已认领 2/3: 张党员, 李志愿" in tg.current(post)["text"]

    since = tg.mark()
    tg.send(mem_user, tg.private_chat(mem_user), "/done 1 量了二十个人的血压")
    await tg.wait_text(mem_user["id"], "等待书记确认", since=since)
    alert = await tg.wait_text(sec["id"], "报告已完成", since=since)
    assert "量了二十个人的血压" in alert.text
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/confirm 1")
    done = await tg.wait_text(sec["id"], "已确认任务 #1", since=since)
    assert "张党员" in done.text and "8 积分" in done.text
    await tg.wait_text(mem_user["id"], "获得 8 积分、2 小时", since=since)
    since = tg.mark()
    tg.send(mem_user, tg.private_chat(mem_user), "/points")
    mine = await tg.wait_text(mem_user["id"], "我的先锋积分", since=since)
    assert "累计：8 积分 · 2 小时" in mine.text
    since = tg.mark()
    tg.send(helper, mem, "/leaderboard month")
    board = await tg.wait_text(mem, "先锋指数", since=since)
    assert "1. 张党员 — 8 积分" in board.text and "暂无积分" in board.text
    await settle(bot)
    assert "已完成" in tg.current(post)["text"]

    # A cancelled task tells its claimers privately; its buttons then answer "cancelled".
    post2 = await announce(tg, sec, mem, f"植树 | {WHEN} | 1 | 5")
    [ok] = await answered(tg, [tg.click(helper, post2, "认领")])
    assert "认领成功" in ok
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/canceltask 2 天气原因")
    await tg.wait_text(sec["id"], "已取消任务 #2", since=since)
    note = await tg.wait_text(helper["id"], "已取消", since=since)
    assert "天气原因" in note.text
    [late] = await answered(tg, [tg.click(mem_user, tg.current(post2), "认领")])
    assert "任务已取消" in late
    await settle(bot)
    assert "已取消" in tg.current(post2)["text"]
    assert tg.unanswered_callbacks() == []


async def test_skills_are_mentioned_when_a_task_is_posted(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, mem, mem_user = w["sec"], w["mem"], w["mem_user"]
    since = tg.mark()
    tg.send(mem_user, mem, "/skills 水电维修, 理发")
    await tg.wait_text(mem, "已保存", since=since)
    post = await announce(tg, sec, mem, f"修水管 | {WHEN} | 1 | 5 | 2号楼 | 水电维修")
    current = tg.current(post)
    assert "张党员" in current["text"]
    raw = tg.meta[(mem["id"], post["message_id"])]["raw"]
    assert f'<a href="tg://user?id={mem_user["id"]}">张党员</a>' in raw  # a mention that notifies them


async def test_totask_confirm_resolves_the_demand(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, mem, mem_user, res, res_user = w["sec"], w["mem"], w["mem_user"], w["res"], w["res_user"]
    tg.send(res_user, res, "/demand 小区东门的绿化带里垃圾很多")
    await tg.wait_text(res, "#1")
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), f"/totask 1 2 6 | {WHEN}")
    reply = await tg.wait_text(sec["id"], "已转为志愿任务 #1", since=since)
    assert WEEKDAY in reply.text
    post = await tg.wait_text(mem, "绿化带", since=since)
    assert post.message is not None
    [ok] = await answered(tg, [tg.click(mem_user, post.message, "认领")])
    assert "认领成功" in ok
    tg.send(mem_user, tg.private_chat(mem_user), "/done 1 清理了三袋垃圾")
    await tg.wait_text(mem_user["id"], "等待书记确认")
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/confirm 1")
    await tg.wait_text(sec["id"], "诉求 #1 已办结", since=since)
    rating = await tg.wait_text(res_user["id"], "已办结", since=since)
    assert "清理了三袋垃圾" in rating.text and len(rating.buttons) == 6


async def test_bad_task_input_gets_a_clear_reply_and_changes_nothing(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, mem, mem_user, res, res_user = w["sec"], w["mem"], w["mem_user"], w["res"], w["res_user"]
    await announce(tg, sec, mem, f"清理楼道杂物 | {WHEN} | 1 | 10")
    tg.send(mem_user, mem, "/claim 1")
    await tg.wait_text(mem, "认领成功")
    await settle(bot)
    sec_chat = tg.private_chat(sec)
    cases: list[tuple[dict[str, Any], dict[str, Any], str, tuple[str, ...]]] = [
        (sec, sec_chat, "/task 清理楼道 | 周六 9:00 | 5", ("用法", "<code>")),  # a missing field
        (sec, sec_chat, "/task 清理楼道 | 周六 9:00 |  | 10", ("缺少名额", "/task")),
        (sec, sec_chat, "/task 清理楼道 | 周六 9:00 | 0 | 10", ("名额", "1 到")),  # slots <= 0
        (sec, sec_chat, "/task 清理楼道 | 周六 9:00 | 五 | 10", ("名额", "1 到")),  # slots not a number
        (sec, sec_chat, "/task 清理楼道 | 周六 9:00 | 5 | -2", ("积分", "0 到")),  # points < 0
        (sec, sec_chat, "/task 清理楼道 | 下下下周八 | 5 | 10", ("看不懂时间", "明天 19:30")),  # unreadable
        (sec, sec_chat, "/task 清理楼道 | 2020-01-01 09:00 | 5 | 10", ("已经过去", "明天 19:30")),  # past
        (sec, sec_chat, "/claim 9", ("没有找到志愿任务 #9", "/tasks")),  # unknown task number
        (sec, sec_chat, "/confirm 9", ("没有找到志愿任务 #9",)),
        (res_user, tg.private_chat(res_user), "/done 1 好了", ("只有认领了任务 #1", "/claim 1")),  # non-claimer
        (res_user, res, "/confirm 1", ("只有本社区的书记",)),  # /confirm by a resident
        (sec, res, f"/task 清理楼道 | {WHEN} | 5 | 10", ("不在居民群",)),  # /task in a resident chat
    ]
    for user, chat, text, expected in cases:
        before = await counts(bot)
        since = tg.mark()
        tg.send(user, chat, text)
        rec = await tg.wait_text(chat["id"], expected[0], since=since)
        for piece in expected[1:]:
            assert piece in rec.raw_text or piece in rec.text, f"{text!r}: {piece!r} not in {rec.raw_text!r}"
        await settle(bot)
        assert await counts(bot) == before, f"{text!r} changed something"

    # Claiming a cancelled, a confirmed and a past task.
    await announce(tg, sec, mem, f"植树 | {WHEN} | 1 | 5")  # #2, to be cancelled
    tg.send(mem_user, tg.private_chat(mem_user), "/done 1 完成")
    await tg.wait_text(mem_user["id"], "等待书记确认")
    tg.send(sec, sec_chat, "/confirm 1")
    await tg.wait_text(sec["id"], "已确认任务 #1")
    tg.send(sec, sec_chat, "/canceltask 2")
    await tg.wait_text(sec["id"], "已取消任务 #2")
    assert bot.app is not None
    async with bot.app.services.ctx.tx() as s:  # #3 began a minute ago (a task cannot be announced so)
        await s.execute(Task.__table__.insert().values(
            community_id=1, number=3, title="昨天的任务", starts_at=bot.app.services.ctx.clock().replace(microsecond=0)
            - __import__("datetime").timedelta(minutes=1), minutes=60, slots=2, points=1, state="open", claimed=0,
            queue_seq=0, roster_version=0, created_at=bot.app.services.ctx.clock()))
    await settle(bot)
    for n, expect in ((1, "已确认完成"), (2, "已取消"), (3, "已经开始或结束")):
        before = await counts(bot)
        since = tg.mark()
        tg.send(res_user, mem, f"/claim {n}")
        await tg.wait_text(mem, expect, since=since)
        await settle(bot)
        # The presser became a member by speaking there; nothing about the tasks changed.
        assert await counts(bot) == before
    assert tg.unanswered_callbacks() == []


async def test_forget_takes_the_name_off_the_roster_and_mydata_has_the_claims(tg: FakeTelegram,
                                                                              bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, mem = w["sec"], w["mem"]
    people = members(tg, 3)
    for u in people:
        tg.send(u, tg.private_chat(u), "/start")
    await bot.settle()
    post = await announce(tg, sec, mem, f"清理楼道杂物 | {WHEN} | 2 | 10")
    await answered(tg, [tg.click(u, post, "认领") for u in people])
    await settle(bot)
    assert "已认领 2/2: 队员0, 队员1" in tg.current(post)["text"]

    since = tg.mark()
    tg.send(people[0], tg.private_chat(people[0]), "/mydata")
    doc = await tg.wait_for(lambda r: r.method == "sendDocument" and r.chat_id == people[0]["id"], since=since)
    assert b'"task_title": "\xe6\xb8\x85\xe7\x90\x86\xe6\xa5\xbc\xe9\x81\x93\xe6\x9d\x82\xe7\x89\xa9"' in (doc.document_bytes or b"")

    since = tg.mark()
    tg.send(people[0], tg.private_chat(people[0]), "/forget")
    confirm = await tg.wait_text(people[0]["id"], "确定要删除", since=since)
    tg.click(people[0], confirm.message, "确认删除")
    await tg.wait_text(people[2]["id"], "候补递补", since=since)  # their place went to the first in line
    await settle(bot)
    shown = tg.current(post)["text"]
    assert "队员0" not in shown and "已认领 2/2: 队员1, 队员2" in shown
