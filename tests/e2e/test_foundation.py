"""Binding chats, roles, language and forgetting, played by several users through the fake server."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.storage.models import User
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram


def people(tg: FakeTelegram) -> tuple[dict, dict, dict]:
    admin = tg.user(101, "王书记", username="wang")
    resident = tg.user(102, "李阿姨", username="li")
    member = tg.user(103, "张党员", username="zhang")
    return admin, resident, member


async def test_bind_roles_lang_forget(tg: FakeTelegram, bot: BotUnderTest) -> None:
    admin, resident, member = people(tg)
    res = tg.group("幸福里居民群", with_bot=False)
    mem = tg.group("幸福里党支部", with_bot=False)
    tg.set_status(res, admin, "creator")
    tg.set_status(mem, admin, "creator")

    # The admin adds the bot to both groups; the bot introduces itself and explains /setup.
    tg.add_bot(res, by=admin, status="administrator")
    tg.add_bot(mem, by=admin, status="administrator")
    await tg.wait_text(res, "/setup")
    await tg.wait_text(mem, "/setup")

    # A non-admin's /setup is refused and changes nothing.
    tg.send(resident, res, "/setup resident 幸福里")
    await tg.wait_text(res, "只有本群的管理员")
    tg.send(admin, res, "/setup resident 幸福里")
    await tg.wait_text(res, "已创建社区“幸福里”")
    tg.send(admin, mem, "/setup member 幸福里")
    await tg.wait_text(mem, "党员群")

    # Users show up in the groups and start the bot privately.
    tg.send(resident, res, "/help")
    tg.send(member, mem, "/help")
    await bot.settle()
    for user in (admin, resident, member):
        tg.send(user, tg.private_chat(user), "/start")
        await tg.wait_text(user["id"], "邻里")

    since = tg.mark()
    tg.send(admin, tg.private_chat(admin), "/whoami")
    tg.send(resident, tg.private_chat(resident), "/whoami")
    tg.send(member, tg.private_chat(member), "/whoami")
    rec = await tg.wait_text(admin["id"], "幸福里", since=since)
    assert "书记" in rec.text
    rec = await tg.wait_text(resident["id"], "幸福里", since=since)
    assert "居民" in rec.text and "书记" not in rec.text
    rec = await tg.wait_text(member["id"], "幸福里", since=since)
    assert "党员" in rec.text and "书记" not in rec.text

    # /lang en switches the replies; bad input gets an example.
    tg.send(resident, tg.private_chat(resident), "/lang fr")
    await tg.wait_text(resident["id"], "/lang zh")
    tg.send(resident, tg.private_chat(resident), "/lang en")
    await tg.wait_text(resident["id"], "Language set to English")
    since = tg.mark()
    tg.send(resident, tg.private_chat(resident), "/whoami")
    rec = await tg.wait_text(resident["id"], "幸福里", since=since)
    assert "resident" in rec.text

    # /mydata sends a JSON document with what is stored.
    tg.send(resident, tg.private_chat(resident), "/mydata")
    doc = await tg.wait_for(lambda r: r.method == "sendDocument" and r.chat_id == resident["id"])
    data = json.loads(doc.document_bytes or b"{}")
    assert data["user"]["first_name"] == "李阿姨" and data["user"]["language"] == "en"

    # /forget asks, then erases the user.
    tg.send(resident, tg.private_chat(resident), "/forget")
    rec = await tg.wait_text(resident["id"], "Erase your personal data")
    query = tg.click(resident, rec.message, "erase")
    await bot.settle()
    # Said in a pop-up: a message would be stored for the person just erased.
    (answer,) = [r for r in tg.sent_by("answerCallbackQuery") if r.params.get("callback_query_id") == query["id"]]
    assert "has been erased" in str(answer.params.get("text"))
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        assert await s.get(User, resident["id"]) is None
        assert (await s.scalars(select(User.id))).all()  # the others are still there
    assert tg.unanswered_callbacks() == []


async def test_forum_topic_replies_in_topic(tg: FakeTelegram, bot: BotUnderTest) -> None:
    admin = tg.user(201, "Admin")
    forum = tg.group("论坛社区", forum=True)
    tg.set_status(forum, admin, "creator")
    topic = tg.topic(forum, "通知")
    tg.send(admin, forum, "/setup member 论坛社区", thread_id=topic)
    rec = await tg.wait_text(forum, "已创建社区")
    assert rec.message_thread_id == topic
    tg.send(admin, forum, "/whoami", thread_id=topic)
    rec = await tg.wait_text(forum, "书记")
    assert rec.message_thread_id == topic


async def test_member_leaving_is_forgotten_as_member(tg: FakeTelegram, bot: BotUnderTest) -> None:
    admin, _, member = people(tg)
    mem = tg.group("支部")
    tg.set_status(mem, admin, "creator")
    tg.set_status(mem, tg.bot, "administrator")
    tg.send(admin, mem, "/setup member 支部社区")
    await tg.wait_text(mem, "已创建社区")
    tg.join(mem, member)
    await bot.settle()
    tg.send(member, tg.private_chat(member), "/whoami")
    rec = await tg.wait_text(member["id"], "支部社区")
    assert "党员" in rec.text
    tg.leave(mem, member)
    await bot.settle()
    since = tg.mark()
    tg.send(member, tg.private_chat(member), "/whoami")
    rec = await tg.wait_text(member["id"], "还不属于任何社区", since=since)


async def test_html_in_names_is_escaped(tg: FakeTelegram, bot: BotUnderTest) -> None:
    admin = tg.user(301, "<b>Boss</b> & <a href='x'>co</a>")
    grp = tg.group("g")
    tg.set_status(grp, admin, "creator")
    tg.send(admin, grp, "/setup resident <i>Lane</i> & Co")
    rec = await tg.wait_text(grp, "Lane")
    assert "<i>Lane</i> & Co" in rec.text  # shown as typed
    tg.send(admin, tg.private_chat(admin), "/whoami")
    rec = await tg.wait_text(admin["id"], "Boss")
    assert "<b>Boss</b> & <a href='x'>co</a>" in rec.text
