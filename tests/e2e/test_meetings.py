"""Meetings played by a secretary and members through the fake Bot API, on aiogram and on PTB.

Settings make a minute of meeting timing last a second (MEETING_MINUTE_SECONDS=1), as the
demand timers' short SLA does: `remind=10m` fires ten seconds before the start, check-in opens
thirty seconds before it. Meeting times are given to the second (`2026-12-01 11:30:05+00:00`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import func, select

from bot.domain.meetings import next_monthly
from bot.services.meetings import JOB_REMIND
from bot.storage.models import Job, Meeting, MeetingAttendee
from tests.e2e.harness import BotUnderTest
from tests.e2e.test_demand_loop import community
from tests.fakeapi.methods import SentRecord
from tests.fakeapi.server import FakeTelegram

SH = ZoneInfo("Asia/Shanghai")
SECOND = {"meeting_minute_seconds": 1}


@pytest.fixture
async def mbot(tg: FakeTelegram, framework: str, tmp_path: Path) -> AsyncIterator[BotUnderTest]:
    under_test = BotUnderTest(tg, framework, tmp_path, **SECOND)
    await under_test.start()
    try:
        yield under_test
    finally:
        await under_test.stop()


def at(dt: datetime) -> str:
    """A meeting time to the second, as /meeting reads it."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def soon(seconds: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)


def mono(dt: datetime) -> float:
    """A wall-clock instant on the fake server's monotonic clock (SentRecord.time)."""
    return time.monotonic() + (dt - datetime.now(UTC)).total_seconds()


def texts(tg: FakeTelegram, chat_id: int, substring: str) -> list[SentRecord]:
    return [r for r in tg.sent if r.chat_id == chat_id and r.text and substring in r.text
            and r.method in ("sendMessage", "sendDocument", "editMessageText")]


async def answer(tg: FakeTelegram, query: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
    """The bot's answer to a button press (the toast or alert)."""
    deadline = time.monotonic() + timeout
    while (got := tg.callbacks[query["id"]]["answered"]) is None:
        assert time.monotonic() < deadline, "the press was not answered"
        await asyncio.sleep(0.02)
    return got


async def rows(bot: BotUnderTest, model: Any) -> int:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def meeting_jobs(bot: BotUnderTest) -> int:
    """Timers of meetings (other capabilities keep timers of their own, e.g. the retention sweep)."""
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        return int(await s.scalar(select(func.count()).select_from(Job).where(Job.kind.like("meeting%"))) or 0)


async def meeting_row(bot: BotUnderTest, number: int) -> Meeting:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        m = await s.scalar(select(Meeting).where(Meeting.number == number))
        assert m is not None
        return m


async def post_of(tg: FakeTelegram, chat: dict[str, Any], n: int, since: int = 0) -> SentRecord:
    return await tg.wait_for(lambda r: r.method == "sendMessage" and r.chat_id == chat["id"] and r.text is not None
                             and f"会议 #{n}" in r.text and "参加 0 · 请假 0" in r.text, 10, since=since)


async def world(tg: FakeTelegram, bot: BotUnderTest) -> dict[str, Any]:
    """The demand loop's community, plus a member who has not started the bot."""
    w = await community(tg, bot)
    w["quiet"] = tg.user(1005, "钱党员")
    tg.send(w["quiet"], w["mem"], "/help")
    await bot.settle()
    return w


# ------------------------------------------------------------------------------------------ the whole flow


async def test_schedule_rsvp_leave_reason_attendance_ics_and_lists(tg: FakeTelegram, mbot: BotUnderTest) -> None:
    w = await world(tg, mbot)
    sec, mem_user, quiet, res, mem = w["sec"], w["mem_user"], w["quiet"], w["res"], w["mem"]
    day = (datetime.now(SH) + timedelta(days=10)).date()
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), f"/meeting {day:%Y-%m-%d} 19:30 | 学习<b>党章</b> | 社区活动室 | 支部党员大会")
    reply = await tg.wait_text(sec["id"], "已安排会议", since=since)
    weekday = "一二三四五六日"[day.weekday()]
    assert f"{day.year}年{day.month}月{day.day}日 星期{weekday} 19:30" in reply.text
    assert reply.text.count("（提前") == 2 and "幸福里党支部" in reply.text  # both reminders echoed
    post = await post_of(tg, mem, 1, since)
    assert "学习<b>党章</b>" in post.text and "社区活动室" in post.text  # shown as typed
    labels = [b for b, _ in post.buttons]
    assert any("参加" in b for b in labels) and any("请假" in b for b in labels) and any("签到" in b for b in labels)

    # 参加: the live line is an edit of the post.
    q = tg.click(mem_user, post.message, "参加")
    assert "已报名参加" in (await answer(tg, q))["text"]
    await tg.wait_for(lambda r: r.method == "editMessageText" and r.text is not None and "参加 1 · 请假 0" in r.text)
    # 请假 by someone the bot cannot write to privately: recorded, told how to give a reason.
    q = tg.click(quiet, post.message, "请假")
    got = await answer(tg, q)
    assert got.get("show_alert") and "/start" in got["text"]
    await tg.wait_for(lambda r: r.method == "editMessageText" and r.text is not None and "参加 1 · 请假 1" in r.text)
    # 请假 by the secretary: the reason is asked privately and kept.
    since = tg.mark()
    tg.click(sec, post.message, "请假")
    await tg.wait_text(sec["id"], "请回复请假原因", since=since)
    tg.send(sec, tg.private_chat(sec), "区里开会<出差>")
    await tg.wait_text(sec["id"], "已记录会议 #1 的请假原因", since=since)
    assert "参加 1 · 请假 2" in tg.current(post.message)["text"]

    # 签到 ten days early: answered, not recorded.
    q = tg.click(mem_user, post.message, "签到")
    got = await answer(tg, q)
    assert got.get("show_alert") and "还没开始" in got["text"]

    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/attendance 1")
    att = await tg.wait_text(sec["id"], "出勤情况", since=since)
    assert "区里开会<出差>" in att.text and "钱党员" in att.text and "未签到" in att.text

    # /ics: parses, and its start in UTC is the meeting's time.
    since = tg.mark()
    tg.send(mem_user, tg.private_chat(mem_user), "/ics 1")
    doc = await tg.wait_for(lambda r: r.method == "sendDocument" and r.chat_id == mem_user["id"], since=since)
    assert doc.document_name == "meeting-1.ics" and doc.document_bytes
    (ev,) = Calendar.from_ical(doc.document_bytes).walk("VEVENT")
    assert ev.decoded("dtstart").astimezone(UTC) == (await meeting_row(mbot, 1)).starts_at
    assert len(ev.walk("VALARM")) == 2

    # /meetings: a member chat lists it with /ics_1; a resident chat shows no party meeting.
    since = tg.mark()
    tg.send(mem_user, mem, "/meetings")
    listing = await tg.wait_text(mem, "近期会议", since=since)
    assert "/ics_1" in listing.text and "参加 1" in listing.text
    tg.send(w["res_user"], res, "/meetings")
    assert "近期没有会议" in (await tg.wait_text(res, "会议", since=since)).text
    tg.send(mem_user, tg.private_chat(mem_user), "/ics_1")
    await tg.wait_for(lambda r: r.method == "sendDocument" and r.chat_id == mem_user["id"], since=since + 1)

    # /mydata includes the RSVP.
    since = tg.mark()
    tg.send(mem_user, tg.private_chat(mem_user), "/mydata")
    data = await tg.wait_for(lambda r: r.method == "sendDocument" and r.document_name == "linli-mydata.json",
                             since=since)
    mine = json.loads(data.document_bytes or b"{}")["meetings"]
    assert [(r["meeting_number"], r["response"]) for r in mine["rsvps"]] == [(1, "attend")]
    await mbot.settle()
    assert tg.unanswered_callbacks() == []


# ------------------------------------------------------------------------------------------ reminders


async def test_reminder_in_chat_and_privately_on_time_exactly_once_then_checkin_and_minutes(
    tg: FakeTelegram, mbot: BotUnderTest
) -> None:
    w = await world(tg, mbot)
    sec, mem_user, quiet, mem = w["sec"], w["mem_user"], w["quiet"], w["mem"]
    start = soon(22)
    due = start - timedelta(seconds=10)
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), f"/meeting {at(start)} | 党课 | 党员活动室 | 党课 | remind=10m")
    reply = await tg.wait_text(sec["id"], "已安排会议", since=since)
    assert "提前10分钟" in reply.text
    post = await post_of(tg, mem, 1, since)
    tg.click(mem_user, post.message, "参加")
    tg.click(quiet, post.message, "参加")
    await mbot.settle()
    assert datetime.now(UTC) < due, "the machine is too slow for this test's timing"

    in_chat = await tg.wait_text(mem, "会议提醒", timeout=30, since=since)
    private = await tg.wait_text(mem_user["id"], "会议提醒", timeout=10, since=since)
    for rec in (in_chat, private):
        assert -0.5 <= rec.time - mono(due) <= 5.0, rec.time - mono(due)
    assert "10分钟后开始" in in_chat.text and "钱党员" in in_chat.text  # named: not reachable privately

    # Check-in is open from 30 "minutes" (seconds here) before the start.
    q = tg.click(mem_user, private.message, "签到")
    assert "签到成功" in (await answer(tg, q))["text"]
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), "/minutes 1 学习了党章第一章")
    await tg.wait_text(mem, "会议记录", since=since)
    tg.send(quiet, mem, "/checkin 1")
    await tg.wait_text(mem, "签到成功", since=since)

    while datetime.now(UTC) < start + timedelta(seconds=1):  # past the start: nothing more may come
        await asyncio.sleep(0.2)
    await mbot.settle()
    assert len(texts(tg, mem["id"], "会议提醒")) == 1
    assert len(texts(tg, mem_user["id"], "会议提醒")) == 1
    assert texts(tg, quiet["id"], "会议提醒") == []
    tg.send(sec, tg.private_chat(sec), "/attendance 1")
    att = await tg.wait_text(sec["id"], "出勤情况", since=since)
    assert "已签到 2" in att.text


async def test_reminder_due_while_down_fires_once_after_start_and_not_after_another_restart(
    tg: FakeTelegram, mbot: BotUnderTest
) -> None:
    w = await world(tg, mbot)
    sec, mem_user, mem = w["sec"], w["mem_user"], w["mem"]
    start = soon(24)
    due = start - timedelta(seconds=12)
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), f"/meeting {at(start)} | 支部党员大会 | 支部党员大会 | remind=12m")
    post = await post_of(tg, mem, 1, since)
    tg.click(mem_user, post.message, "参加")
    await mbot.settle()
    assert datetime.now(UTC) < due, "the machine is too slow for this test's timing"
    await mbot.stop()  # down across the reminder's time
    while datetime.now(UTC) < due + timedelta(seconds=1):
        await asyncio.sleep(0.1)
    assert texts(tg, mem["id"], "会议提醒") == []
    await mbot.start()
    await tg.wait_text(mem, "会议提醒", timeout=15, since=since)
    await tg.wait_text(mem_user["id"], "会议提醒", timeout=10, since=since)
    await mbot.settle()
    await mbot.restart()  # a second start must not repeat it
    await asyncio.sleep(1.0)
    await mbot.settle()
    assert len(texts(tg, mem["id"], "会议提醒")) == 1
    assert len(texts(tg, mem_user["id"], "会议提醒")) == 1


async def test_moved_meeting_fires_only_its_new_reminder_and_a_cancelled_one_none(
    tg: FakeTelegram, framework: str, tmp_path: Path
) -> None:
    # A sweep every 8 s arms 16 s ahead: both reminders are armed in memory before the change.
    bot = BotUnderTest(tg, framework, tmp_path, scheduler_sweep_seconds=8, **SECOND)
    await bot.start()
    try:
        w = await world(tg, bot)
        sec, mem_user, mem = w["sec"], w["mem_user"], w["mem"]
        start = soon(24)
        old_due = start - timedelta(seconds=12)
        since = tg.mark()
        for title in ("学习会", "党小组会"):
            tg.send(sec, tg.private_chat(sec), f"/meeting {at(start)} | {title} | remind=12m")
        one, two = await post_of(tg, mem, 1, since), await post_of(tg, mem, 2, since)
        tg.click(mem_user, one.message, "参加")
        tg.click(mem_user, two.message, "参加")
        await bot.settle()
        assert bot.app is not None
        async with bot.app.services.ctx.read() as s:
            ids = list(await s.scalars(select(Job.id).where(Job.kind == JOB_REMIND)))
        assert len(ids) == 2 and all(bot.app.services.jobs.is_armed(i) for i in ids)

        new_start = start + timedelta(seconds=6)
        new_due = new_start - timedelta(seconds=12)
        tg.send(sec, tg.private_chat(sec), f"/movemeeting 1 {at(new_start)}")
        tg.send(sec, tg.private_chat(sec), "/cancelmeeting 2 场地临时占用")
        await tg.wait_text(sec["id"], "已改到", since=since)
        await tg.wait_text(sec["id"], "已取消", since=since)
        assert datetime.now(UTC) < old_due, "the machine is too slow for this test's timing"
        # The chat and the attendee are told; the posts change in place.
        await tg.wait_text(mem, "会议改期", since=since)
        await tg.wait_text(mem_user["id"], "会议改期", since=since)
        await tg.wait_text(mem, "会议取消", since=since)
        await tg.wait_text(mem_user["id"], "会议取消", since=since)

        reminder = await tg.wait_text(mem, "会议提醒", timeout=30, since=since)
        assert "学习会" in reminder.text
        assert rec_after(reminder, old_due + timedelta(seconds=2)), "a reminder for the old time fired"
        assert -0.5 <= reminder.time - mono(new_due) <= 5.0
        while datetime.now(UTC) < new_start + timedelta(seconds=1):
            await asyncio.sleep(0.2)
        await bot.settle()
        assert len(texts(tg, mem["id"], "会议提醒")) == 1
        assert len(texts(tg, mem_user["id"], "会议提醒")) == 1
        assert not [r for r in tg.sent if r.text and "会议提醒" in r.text and "党小组会" in r.text]
        now_one, now_two = tg.current(one.message), tg.current(two.message)
        assert "已改期" in now_one["text"] and "已取消" in now_two["text"]
        assert now_two.get("reply_markup") is None  # no buttons on a cancelled meeting
    finally:
        await bot.stop()


def rec_after(rec: SentRecord, dt: datetime) -> bool:
    return rec.time >= mono(dt)


# ------------------------------------------------------------------------------------------ bad input


async def test_bad_input_gets_a_clear_reply_and_changes_nothing(tg: FakeTelegram, mbot: BotUnderTest) -> None:
    w = await world(tg, mbot)
    sec, mem_user, mem = w["sec"], w["mem_user"], w["mem"]
    pm = tg.private_chat(sec)
    day = (datetime.now(SH) + timedelta(days=3)).date()
    cases = [
        ("/meeting 随便哪天 19:30 | 学习", "看不懂时间"),
        ("/meeting 2020-01-01 19:30 | 学习", "已经过去"),
        (f"/meeting {day} 19:30 | 学习 | 活动室 | 茶话会", "没有“茶话会”这种会议类型"),
        (f"/meeting {day} 19:30 | 学习 | remind=abc", "提醒时间“abc”写得不对"),
        (f"/meeting {day} 19:30 | 学习 | remind=0h", "提醒时间“0h”写得不对"),
        (f"/meeting {day} 19:30 | 学习 | remind=1d,12h,6h,1h,30m,10m", "提醒最多 5 个"),
    ]
    for command, expected in cases:
        since = tg.mark()
        tg.send(sec, pm, command)
        rec = await tg.wait_text(sec["id"], expected, since=since)
        assert "<code>" in (rec.raw_text or "")  # each shows a correct example
    since = tg.mark()
    tg.send(mem_user, mem, f"/meeting {day} 19:30 | 学习")  # a member
    await tg.wait_text(mem, "只有本社区的书记", since=since)
    lonely = tg.group("无人绑定的群")
    tg.set_status(lonely, sec, "creator")
    tg.send(sec, lonely, f"/meeting {day} 19:30 | 学习")  # a chat not bound
    await tg.wait_text(lonely, "还没有绑定社区", since=since)
    await mbot.settle()
    assert await rows(mbot, Meeting) == 0 and await meeting_jobs(mbot) == 0

    # A cancelled meeting and one that has begun take no answers; /minutes is the secretary's.
    start = soon(6)
    tg.send(sec, pm, f"/meeting {at(start)} | 早会 | remind=1m")
    tg.send(sec, pm, f"/meeting {day} 19:30 | 晚会")
    first, second = await post_of(tg, mem, 1, since), await post_of(tg, mem, 2, since)
    tg.send(sec, pm, "/cancelmeeting 2")
    await tg.wait_text(sec["id"], "已取消", since=since)
    await mbot.settle()
    q = tg.press(mem_user, second.message, second.buttons[0][1] or "", force=True)  # a stale copy of the buttons
    got = await answer(tg, q)
    assert got.get("show_alert") and "已取消" in got["text"]
    while datetime.now(UTC) <= start:
        await asyncio.sleep(0.1)
    q = tg.click(mem_user, first.message, "参加")
    got = await answer(tg, q)
    assert got.get("show_alert") and "已经开始" in got["text"]
    since = tg.mark()
    tg.send(mem_user, mem, "/minutes 1 我来记")
    await tg.wait_text(mem, "只有本社区的书记", since=since)
    await mbot.settle()
    assert await rows(mbot, MeetingAttendee) == 0
    assert (await meeting_row(mbot, 1)).minutes is None
    assert texts(tg, mem["id"], "会议记录") == []
    assert tg.unanswered_callbacks() == []


# ------------------------------------------------------------------------------------------ 议事协商会, monthly


async def test_consultation_in_resident_chat_repeats_monthly_when_it_ends(
    tg: FakeTelegram, framework: str, tmp_path: Path
) -> None:
    # A minute lasts 0.05 s: the two-hour meeting is over in six seconds.
    bot = BotUnderTest(tg, framework, tmp_path, meeting_minute_seconds=0.05)
    await bot.start()
    try:
        w = await world(tg, bot)
        sec, res_user, res = w["sec"], w["res_user"], w["res"]
        start = soon(5)
        since = tg.mark()
        tg.send(sec, tg.private_chat(sec), f"/meeting {at(start)} | 加装电梯协商 | 3号楼下 | 议事协商会 | every=month")
        reply = await tg.wait_text(sec["id"], "已安排会议", since=since)
        assert "每月重复" in reply.text and "幸福里居民群" in reply.text
        post = await post_of(tg, res, 1, since)
        assert "议事协商会" in post.text
        tg.click(res_user, post.message, "参加")  # residents take part in 议事协商会
        nxt = await tg.wait_for(
            lambda r: r.method == "sendMessage" and r.chat_id == res["id"] and r.text is not None
            and "会议 #2" in r.text, 30, since=since)
        expected = next_monthly(start, start.astimezone(SH).day, SH, after=start)
        local = expected.astimezone(SH)
        assert f"{local.year}年{local.month}月{local.day}日" in nxt.text and "每月" in nxt.text
        assert (await meeting_row(bot, 2)).starts_at == expected
        await bot.settle()
        assert len(texts(tg, res["id"], "会议 #2")) == 1  # posted once
    finally:
        await bot.stop()
