"""Notices, played through the fake server on both frameworks: a broadcast to 40 chats within
Telegram's limits (enforced by the server as sliding windows), 收到 with a live count, faults,
chats that removed the bot or became supergroups, pins, photos, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from bot.storage.models import Chat, Demand
from tests.e2e.communities import TELEGRAM_LIMITS, copies, notice_rows, town
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram
from tests.fakeapi.world import BOT_ID

pytestmark = pytest.mark.slow  # broadcasts and bursts at Telegram's limits take their time


@pytest.fixture
async def limited(tg: FakeTelegram, framework: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The bot at Telegram's own limits, against a server that enforces them."""
    tg.enforce_limits = True
    under_test = BotUnderTest(tg, framework, tmp_path, **TELEGRAM_LIMITS)
    await under_test.start()
    try:
        yield under_test
    finally:
        await under_test.stop()


async def test_notice_to_40_chats_within_telegrams_limits(tg: FakeTelegram, limited: BotUnderTest) -> None:
    t = await town(tg, limited, 40)
    since = tg.mark()
    tg.send(t.sec, tg.private_chat(t.sec), "/notice all 明天上午9点至12点停水，请提前储水。<b>不是粗体</b>")
    summary = await tg.wait_text(t.sec_chat, "已送达 40/40", timeout=60, since=since)
    await limited.settle(timeout=30)
    for g in t.groups:
        assert copies(tg, g["id"], "通知 #1") == 1, g["title"]
    assert tg.throttled == [], f"{len(tg.throttled)} answers of 429"
    # One progress message, edited into the summary (not a second message).
    progress = [r for r in tg.sent if r.chat_id == t.sec_chat and r.method == "sendMessage" and "通知 #1" in r.text]
    assert len(progress) == 1 and summary.method == "editMessageText"
    assert summary.message_id == progress[0].message_id
    notice = tg.last_to(t.groups[0])
    assert notice is not None and "<b>不是粗体</b>" in notice["text"]  # the secretary's text is escaped

    # 收到: one per person, the live count on the button, a second press says so.
    resident = tg.user(3001, "李阿姨")
    neighbour = tg.user(3002, "赵大爷")
    tg.click(resident, notice, "收到")
    await limited.settle()
    assert "收到 (1)" in tg.current(notice)["reply_markup"]["inline_keyboard"][0][0]["text"]
    tg.click(neighbour, notice, "收到")
    await limited.settle()
    assert "收到 (2)" in tg.current(notice)["reply_markup"]["inline_keyboard"][0][0]["text"]
    query = tg.click(resident, notice, "收到")
    await limited.settle()
    assert "已经确认过" in (tg.callbacks[query["id"]]["answered"] or {}).get("text", "")
    assert tg.unanswered_callbacks() == []

    since = tg.mark()
    tg.send(t.sec, tg.private_chat(t.sec), "/notices")
    rec = await tg.wait_text(t.sec_chat, "最近的通知", since=since)
    assert "送达 40/40" in rec.text and "收到 2" in rec.text
    tg.send(t.sec, tg.private_chat(t.sec), "/acks 1")
    rec = await tg.wait_text(t.sec_chat, "共 2 人", since=since)
    assert "李阿姨" in rec.text and "赵大爷" in rec.text and t.groups[0]["title"] in rec.text
    assert tg.throttled == []


async def test_faults_still_deliver_one_copy_each(tg: FakeTelegram, bot: BotUnderTest) -> None:
    t = await town(tg, bot, 8)
    g = t.groups
    tg.fail_next("sendMessage", status=429, retry_after=1, chat_id=g[1]["id"])
    tg.fail_next("sendMessage", status=502, chat_id=g[2]["id"])
    tg.fail_next("sendMessage", status=502, chat_id=g[2]["id"])
    tg.fail_next("sendMessage", drop=True, chat_id=g[3]["id"])
    tg.fail_next("sendMessage", status=500, chat_id=g[4]["id"])
    tg.fail_next("sendMessage", drop=True, chat_id=g[5]["id"])
    since = tg.mark()
    tg.send(t.sec, tg.private_chat(t.sec), "/notice 今晚小区消防演练")
    await tg.wait_text(t.sec_chat, "已送达 8/8", timeout=60, since=since)
    await bot.settle()
    assert [copies(tg, c["id"], "消防演练") for c in g] == [1] * 8
    assert sorted(str(f.status) for f in tg.failed_calls) == ["429", "500", "502", "502", "None", "None"]


async def test_a_group_that_removed_the_bot(tg: FakeTelegram, bot: BotUnderTest) -> None:
    t = await town(tg, bot, 40)
    reported, silent = t.groups[0], t.groups[1]
    # Telegram reports one removal: the secretary is told once, and the chat is no target any more.
    since = tg.mark()
    tg.remove_bot(reported, t.sec, "kicked")
    await tg.wait_text(t.sec_chat, "机器人已被移出群", since=since)
    # The other removal's report was lost: the broadcast finds out from the 403.
    tg.set_status(silent, BOT_ID, "kicked")
    await bot.settle()
    since = tg.mark()
    tg.send(t.sec, tg.private_chat(t.sec), "/notice all 周六上午大扫除")
    summary = await tg.wait_text(t.sec_chat, "已送达 38/39", timeout=60, since=since)
    assert silent["title"] in summary.text and "机器人已被移出该群" in summary.text
    await bot.settle()
    assert copies(tg, reported["id"], "大扫除") == 0 and copies(tg, silent["id"], "大扫除") == 0
    assert all(copies(tg, g["id"], "大扫除") == 1 for g in t.groups[2:])
    alerts = [r for r in tg.sent if r.chat_id == t.sec_chat and r.text and "机器人已被移出群" in r.text]
    assert len(alerts) == 2  # each removal told once
    assert [r.reason for r in tg.refusals].count("Forbidden: bot was kicked from the supergroup chat") == 1

    # A second notice does not try the silent one again; adding the bot back makes it a target again.
    tg.add_bot(silent, t.sec)
    await bot.settle()
    since = tg.mark()
    tg.send(t.sec, tg.private_chat(t.sec), "/notice all 第二条")
    await tg.wait_text(t.sec_chat, "已送达 39/39", timeout=60, since=since)
    await bot.settle()
    assert copies(tg, silent["id"], "第二条") == 1 and copies(tg, reported["id"], "第二条") == 0


async def test_a_basic_group_upgraded_to_a_supergroup(tg: FakeTelegram, bot: BotUnderTest) -> None:
    t = await town(tg, bot, 3, basic=2)
    followed, lost = t.groups[0], t.groups[1]
    # One upgrade is announced (the service messages), one is not (the bot learns it from a 400).
    new_followed = tg.migrate(followed, t.sec)
    await bot.settle()
    new_lost = tg.migrate(lost, t.sec, notify=False)
    since = tg.mark()
    tg.send(t.sec, tg.private_chat(t.sec), "/notice all 电梯检修通知")
    summary = await tg.wait_text(t.sec_chat, "已送达 3/3", timeout=60, since=since)
    await bot.settle()
    assert copies(tg, new_followed["id"], "电梯检修") == 1 and copies(tg, new_lost["id"], "电梯检修") == 1
    assert copies(tg, followed["id"], "电梯检修") == 0 and copies(tg, lost["id"], "电梯检修") == 0
    assert "群已升级为超级群，已改发新群" in summary.text and lost["title"] in summary.text
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        for old, new in ((followed, new_followed), (lost, new_lost)):
            moved = await s.get(Chat, new["id"])
            assert moved is not None and moved.community_id is not None and moved.kind == "resident"
            gone = await s.get(Chat, old["id"])
            assert gone is not None and gone.community_id is None

    # A demand filed in the new supergroup is answered there, without a new /setup.
    resident = tg.user(3101, "孙阿姨")
    since = tg.mark()
    tg.send(resident, new_followed, "/demand 楼道灯不亮")
    rec = await tg.wait_text(new_followed, "#1", since=since)
    assert "楼道灯不亮" in rec.text
    async with bot.app.services.ctx.read() as s:
        d = await s.scalar(select(Demand))
        assert d is not None and d.origin_chat_id == new_followed["id"]


async def test_pin_photo_and_document_notices(tg: FakeTelegram, bot: BotUnderTest) -> None:
    t = await town(tg, bot, 2)
    admin_group, plain_group = t.groups
    tg.set_status(admin_group, BOT_ID, "administrator")
    since = tg.mark()
    tg.send(t.sec, tg.private_chat(t.sec), "/notice! 重要：下周一起垃圾分类")
    summary = await tg.wait_text(t.sec_chat, "已送达 2/2", timeout=30, since=since)
    assert "没有置顶权限" in summary.text and plain_group["title"] in summary.text  # reported, not fatal
    mid = tg.last_to(admin_group)["message_id"]  # type: ignore[index]
    assert tg.pinned.get(admin_group["id"]) == [mid] and not tg.pinned.get(plain_group["id"])

    since = tg.mark()
    tg.send(t.sec, tg.private_chat(t.sec), photo=True, caption="/notice all 停车位划线示意图")
    await tg.wait_text(t.sec_chat, "已送达 2/2", timeout=30, since=since)
    photos = [r for r in tg.sent[since:] if r.method == "sendPhoto"]
    assert len(photos) == 2 and all("停车位划线" in (r.text or "") for r in photos)
    assert all(any("收到" in b for b, _ in r.buttons) for r in photos)
    # 收到 on a photo notice changes only the button.
    tg.click(tg.user(3201, "周大姐"), photos[0].message, "收到")
    await bot.settle()
    assert "收到 (1)" in tg.current(photos[0].message)["reply_markup"]["inline_keyboard"][0][0]["text"]

    # Too long a caption is refused before anything is stored, with the limit named.
    since = tg.mark()
    tg.send(t.sec, tg.private_chat(t.sec), photo=True, caption="/notice all " + "长" * 1100)
    rec = await tg.wait_text(t.sec_chat, "最多", since=since)
    assert "字" in rec.text
    notices, _, _ = await notice_rows(bot)
    assert len(notices) == 2


async def test_bad_input_changes_nothing(tg: FakeTelegram, bot: BotUnderTest) -> None:
    t = await town(tg, bot, 2)
    private = tg.private_chat(t.sec)
    cases = [
        ("/notice", "请写上通知内容"),
        ("/notice all   ", "请写上通知内容"),
        ("/notice " + "字" * 3001, "最多 3000 字"),
        ("/notice residnts 明天停水", "不认识的范围"),
        ("/notice members 明天开会", "还没有可以发送的党员群"),
    ]
    for text, expected in cases:
        since = tg.mark()
        tg.send(t.sec, private, text)
        rec = await tg.wait_text(t.sec_chat, expected, since=since)
        assert "/notice" in rec.raw_text or "3000" in rec.text or "党员群" in rec.text  # says how to do it
    # A resident may not; an unbound group gets told to bind it.
    resident = tg.user(3301, "钱阿姨")
    since = tg.mark()
    tg.send(resident, t.groups[0], "/notice all 我也想发")
    await tg.wait_text(t.groups[0], "只有本社区的书记", since=since)
    stray = tg.group("没绑定的群")
    tg.send(t.sec, stray, "/notice all 测试")
    await tg.wait_text(stray, "还没有绑定社区", since=since)
    await bot.settle()
    notices, deliveries, outbox = await notice_rows(bot)
    assert notices == [] and deliveries == [] and outbox == 0
    assert all(copies(tg, g["id"], "通知 #") == 0 for g in t.groups)
