"""Self-tests of the fake Bot API server: raw HTTP, aiogram and python-telegram-bot against it."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests import netguard
from tests.fakeapi import BOT_ID, FakeTelegram, find_button
from tests.fakeapi.html_check import HtmlError, html_to_text

TOKEN = "123:ABC"


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http: aiohttp.ClientSession, tg: FakeTelegram, method: str, **params: Any) -> tuple[int, dict]:
    async with http.post(f"{tg.base_url}/bot{TOKEN}/{method}", json=params) as resp:
        return resp.status, await resp.json()


def kb(*buttons: dict[str, Any]) -> dict[str, Any]:
    return {"inline_keyboard": [list(buttons)]}


# ---------------------------------------------------------------------------- raw HTTP


async def test_get_me_unknown_method_and_token(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, tg, "getme")  # method names are case-insensitive
    assert status == 200 and body["result"]["id"] == BOT_ID and body["result"]["is_bot"] is True
    status, body = await call(http, tg, "sendMesage", chat_id=1, text="x")
    assert (status, body) == (404, {"ok": False, "error_code": 404, "description": "Not Found"})
    async with http.post(f"{tg.base_url}/bot999:XYZ/getMe") as resp:
        assert resp.status == 401
    assert [r.status for r in tg.rejections] == [404, 401]


async def test_validator_rejections(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user(1, "Alice")
    tg.private_chat(alice)
    bad_calls: list[tuple[str, dict[str, Any], str]] = [
        ("sendMessage", {"chat_id": 1, "text": "<b>open", "parse_mode": "HTML"}, "can't parse entities"),
        ("sendMessage", {"chat_id": 1, "text": "<b>x</i>", "parse_mode": "HTML"}, "can't parse entities"),
        ("sendMessage", {"chat_id": 1, "text": "<div>x</div>", "parse_mode": "HTML"}, "can't parse entities"),
        ("sendMessage", {"chat_id": 1, "text": "A & B", "parse_mode": "HTML"}, "can't parse entities"),
        ("sendMessage", {"chat_id": 1, "text": "1 < 2", "parse_mode": "HTML"}, "can't parse entities"),
        ("sendMessage", {"chat_id": 1, "text": "x", "reply_markup": kb({"text": "b", "callback_data": "é" * 33})},
         "BUTTON_DATA_INVALID"),
        ("sendMessage", {"chat_id": 1, "text": "x",
                         "reply_markup": kb({"text": "b", "callback_data": "a", "url": "https://x.org"})},
         "exactly one action"),
        ("sendMessage", {"chat_id": 1, "text": "x", "reply_markup": kb({"text": "b", "callback_date": "a"})},
         "unknown field"),
        ("sendMessage", {"text": "no chat"}, "chat_id"),
        ("sendMessage", {"chat_id": 1, "txt": "typo"}, "unknown parameter"),
        ("sendMessage", {"chat_id": 1, "text": "  "}, "message text is empty"),
        ("sendMessage", {"chat_id": 1, "text": "a" * 4097}, "message is too long"),
        ("sendPhoto", {"chat_id": 1, "photo": "https://x.org/p.jpg", "caption": "c" * 1025}, "caption is too long"),
        ("answerCallbackQuery", {"callback_query_id": "1", "text": "t" * 201}, "MESSAGE_TOO_LONG"),
        ("setMyCommands", {"commands": [{"command": "Start", "description": "x"}]}, "BOT_COMMAND_INVALID"),
    ]
    for method, params, needle in bad_calls:
        status, body = await call(http, tg, method, **params)
        assert status == 400 and body["error_code"] == 400, (params, body)
        assert needle in body["description"], (needle, body["description"])
    assert len(tg.rejections) == len(bad_calls)
    assert tg.sent == []
    # Limits count text after entity parsing: 4096 visible characters inside tags pass.
    status, body = await call(http, tg, "sendMessage", chat_id=1, text=f"<b>{'a' * 4096}</b>", parse_mode="HTML")
    assert status == 200 and body["result"]["text"] == "a" * 4096
    assert len("é" * 32) == 32 and len(("é" * 32).encode()) == 64
    status, _ = await call(http, tg, "sendMessage", chat_id=1, text="x",
                           reply_markup=kb({"text": "b", "callback_data": "é" * 32}))
    assert status == 200


def test_html_checker() -> None:
    assert html_to_text('<b>a</b> &lt;&gt;&amp;&quot;&#39;&#x27; <a href="https://x.org?a=1&amp;b=2">l</a>') == (
        "a <>&\"'' l"
    )
    assert html_to_text('<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler><pre><code class="language-py">'
                        "x</code></pre><blockquote expandable>q</blockquote><B>up</B>") == "stxqup"
    for bad in ("<br/>", "<span>x</span>", "<a>x</a>", "&nbsp;", "a > b", "<b><i>x</b></i>", "</b>", "<", "&"):
        with pytest.raises(HtmlError):
            html_to_text(bad)


async def test_form_encodings_and_files(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    tg.private_chat(tg.user(1, "Alice"))
    # url-encoded, nested objects as JSON strings (PTB's way)
    form = {"chat_id": "1", "text": "pick", "reply_markup": json.dumps(kb({"text": "A", "callback_data": "a"}))}
    async with http.post(f"{tg.base_url}/bot{TOKEN}/sendMessage", data=form) as resp:
        assert resp.status == 200
    # multipart, file under its field name (PTB) and through attach:// (aiogram)
    data = aiohttp.FormData()
    data.add_field("chat_id", "1")
    data.add_field("document", b"a,b\n1,2\n", filename="report.csv", content_type="text/csv")
    async with http.post(f"{tg.base_url}/bot{TOKEN}/sendDocument", data=data) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        assert body["result"]["document"]["file_name"] == "report.csv"
    data = aiohttp.FormData()
    data.add_field("chat_id", "1")
    data.add_field("document", "attach://f1")
    data.add_field("caption", "<i>weekly</i>")
    data.add_field("parse_mode", "HTML")
    data.add_field("f1", b"xlsx-bytes", filename="week.xlsx")
    async with http.post(f"{tg.base_url}/bot{TOKEN}/sendDocument", data=data) as resp:
        assert resp.status == 200
    docs = tg.sent_by("sendDocument")
    assert [(d.document_name, d.document_bytes) for d in docs] == [
        ("report.csv", b"a,b\n1,2\n"), ("week.xlsx", b"xlsx-bytes")
    ]
    assert docs[1].text == "weekly"
    assert tg.sent[0].reply_markup == kb({"text": "A", "callback_data": "a"})
    assert tg.rejections == []


async def test_long_poll_offset_limit_and_allowed_updates(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user(1, "Alice", "alice")
    chat = tg.private_chat(alice)
    t0 = time.monotonic()
    poll = asyncio.create_task(call(http, tg, "getUpdates", timeout=5))
    await asyncio.sleep(0.2)
    sent = tg.send(alice, chat, "/start@linli_test_bot hi")
    status, body = await poll
    assert status == 200 and time.monotonic() - t0 < 2
    [upd] = body["result"]
    assert upd["message"] == sent
    assert upd["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 21}]
    # Unconfirmed updates come again; offset confirms them.
    assert (await call(http, tg, "getUpdates"))[1]["result"] == [upd]
    for i in range(3):
        tg.send(alice, chat, f"m{i}")
    status, body = await call(http, tg, "getUpdates", offset=upd["update_id"] + 1, limit=2)
    assert [u["message"]["text"] for u in body["result"]] == ["m0", "m1"]
    # Empty long poll times out.
    status, body = await call(http, tg, "getUpdates", offset=body["result"][-1]["update_id"] + 2, timeout=1)
    assert body["result"] == []

    group = tg.group("楼栋群", with_bot=False)
    tg.add_bot(group, by=alice, status="administrator")
    tg.join(group, tg.user(2, "Bob"))
    status, body = await call(http, tg, "getUpdates")
    assert [next(k for k in u if k != "update_id") for u in body["result"]] == ["my_chat_member"]
    assert len(tg.dropped_updates) == 1  # chat_member is opt-in
    tg.join(group, tg.user(3, "Carol"))
    status, body = await call(http, tg, "getUpdates", allowed_updates=["message", "chat_member"],
                              offset=body["result"][-1]["update_id"] + 1)
    [upd] = body["result"]
    assert upd["chat_member"]["new_chat_member"]["status"] == "member"
    assert upd["chat_member"]["old_chat_member"]["status"] == "left"
    assert tg.get_status(group, 3) == "member"


async def test_second_poller_gets_conflict(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    first = asyncio.create_task(call(http, tg, "getUpdates", timeout=3))
    await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as other:
        status, body = await call(other, tg, "getUpdates", timeout=0)
    assert status == 200
    status, body = await first
    assert status == 409 and body["description"].startswith("Conflict")


async def test_edits_buttons_and_not_modified(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user(1, "Alice")
    tg.private_chat(alice)
    _, body = await call(http, tg, "sendMessage", chat_id=1, text="<b>Task</b>", parse_mode="HTML",
                         reply_markup=kb({"text": "✅ 认领", "callback_data": "claim:7"}))
    msg = body["result"]
    assert find_button(msg, "认领") == "claim:7"
    q = tg.press(alice, msg, "claim:7")
    assert q["message"]["message_id"] == msg["message_id"] and q["data"] == "claim:7"
    status, _ = await call(http, tg, "answerCallbackQuery", callback_query_id=q["id"], text="ok")
    assert status == 200 and tg.unanswered_callbacks() == []
    status, body = await call(http, tg, "editMessageText", chat_id=1, message_id=msg["message_id"],
                              text="<b>Task</b>", parse_mode="HTML", reply_markup=msg["reply_markup"])
    assert status == 400 and "message is not modified" in body["description"]
    # An edit without reply_markup removes the keyboard, as on Telegram.
    status, _ = await call(http, tg, "editMessageText", chat_id=1, message_id=msg["message_id"],
                           text="<b>Task</b>", parse_mode="HTML")
    assert status == 200
    assert "reply_markup" not in tg.last_to(1)
    with pytest.raises(AssertionError):
        tg.press(alice, msg, "claim:7")  # the button is gone
    status, body = await call(http, tg, "editMessageText", chat_id=1, message_id=99, text="x")
    assert status == 400 and body["description"] == "Bad Request: message to edit not found"
    assert [r.reason.split(":")[1].strip() for r in tg.rejections] == ["message is not modified",
                                                                       "message to edit not found"]


async def test_world_shapes_members_and_refusals(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice, bob = tg.user(1, "Alice", "alice"), tg.user(2, "Bob")
    forum = tg.group("幸福里", forum=True)
    tg.set_status(forum, alice, "creator")
    tg.set_status(forum, BOT_ID, "administrator")
    thread = tg.topic(forum, "通知")
    m = tg.send(bob, forum, "#诉求 楼道灯坏了 @alice", thread_id=thread)
    assert m["message_thread_id"] == thread and m["is_topic_message"] is True
    assert "forum_topic_created" in m["reply_to_message"]  # Telegram's topic quirk
    assert [e["type"] for e in m["entities"]] == ["hashtag", "mention"]
    p = tg.send(bob, forum, photo=True, caption="/report", reply_to=m)
    assert len(p["photo"]) == 3 and p["caption_entities"][0]["type"] == "bot_command"
    assert p["reply_to_message"]["message_id"] == m["message_id"] and p["message_thread_id"] == thread

    _, body = await call(http, tg, "sendMessage", chat_id=forum["id"], message_thread_id=thread, text="收到",
                         reply_parameters={"message_id": m["message_id"]})
    assert body["result"]["message_thread_id"] == thread and body["result"]["is_topic_message"] is True
    assert tg.messages_to(forum["id"], thread_id=thread)[-1]["text"] == "收到"
    assert tg.sent[-1].reply_to == m["message_id"]
    _, body = await call(http, tg, "sendPhoto", chat_id=forum["id"], photo=p["photo"][-1]["file_id"], caption="pic")
    assert body["result"]["photo"] and body["result"]["caption"] == "pic"

    _, body = await call(http, tg, "getChatAdministrators", chat_id=forum["id"])
    assert sorted(a["status"] for a in body["result"]) == ["administrator", "creator"]
    _, body = await call(http, tg, "getChatMember", chat_id=forum["id"], user_id=2)
    assert body["result"]["status"] == "member"
    _, body = await call(http, tg, "getChat", chat_id=forum["id"])
    assert body["result"]["is_forum"] is True and "accent_color_id" in body["result"]

    # The world says no: these are refusals, not rejections.
    status, body = await call(http, tg, "sendMessage", chat_id=2, text="hi")  # Bob never started the bot
    assert status == 403 and "can't initiate" in body["description"]
    tg.private_chat(alice)
    tg.block(alice)
    status, body = await call(http, tg, "sendMessage", chat_id=1, text="hi")
    assert status == 403 and body["description"] == "Forbidden: bot was blocked by the user"
    group = tg.group("邻居群")
    status, body = await call(http, tg, "pinChatMessage", chat_id=group["id"], message_id=1)
    assert status == 400 and "not enough rights" in body["description"]
    assert len(tg.refusals) == 3 and tg.rejections == []


async def test_injected_faults(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    tg.private_chat(tg.user(1, "Alice"))
    tg.fail_next("sendMessage", status=429, retry_after=3)
    tg.fail_next("sendMessage", status=502)
    tg.fail_next("sendMessage", status=403, description="Forbidden: bot was blocked by the user")
    tg.fail_next("sendMessage", drop=True)
    assert await call(http, tg, "sendMessage", chat_id=1, text="a") == (429, {
        "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3}})
    assert (await call(http, tg, "sendMessage", chat_id=1, text="a"))[0] == 502
    assert (await call(http, tg, "sendMessage", chat_id=1, text="a"))[0] == 403
    with pytest.raises(aiohttp.ClientConnectionError):
        await asyncio.wait_for(call(http, tg, "sendMessage", chat_id=1, text="a"), 5)
    assert (await call(http, tg, "sendMessage", chat_id=1, text="a"))[0] == 200
    assert [f.status for f in tg.failed_calls] == [429, 502, 403, None]
    assert len(tg.sent) == 1 and tg.rejections == []
    # chat-specific faults only hit that chat
    tg.private_chat(tg.user(2, "Bob"))
    tg.fail_next("sendMessage", status=400, description="Bad Request: chat not found", chat_id=2)
    assert (await call(http, tg, "sendMessage", chat_id=1, text="b"))[0] == 200
    assert (await call(http, tg, "sendMessage", chat_id=2, text="b"))[1]["description"] == "Bad Request: chat not found"


async def test_rate_limits_when_enforced(http: aiohttp.ClientSession) -> None:
    async with FakeTelegram(token=TOKEN, enforce_limits=True) as tg:
        group = tg.group("g")
        codes = [(await call(http, tg, "sendMessage", chat_id=group["id"], text="x"))[0] for _ in range(7)]
        # Sliding windows: five to one chat in any 5 s, then 429 (with the seconds to wait).
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        assert tg.throttled and tg.throttled[0].description.startswith("Too Many Requests: retry after")
        body = (await call(http, tg, "sendMessage", chat_id=group["id"], text="x"))[1]
        assert 1 <= body["parameters"]["retry_after"] <= 5
    async with FakeTelegram(token=TOKEN, enforce_limits=True) as tg:
        # The global window counts every chat: 30 in any second.
        for i in range(31):
            tg.private_chat(tg.user(100 + i, f"u{i}"))
        codes = await asyncio.gather(*(call(http, tg, "sendMessage", chat_id=100 + i, text="y") for i in range(31)))
        assert sorted(c for c, _ in codes) == [200] * 30 + [429]


async def test_migrated_group_answers_400_with_the_new_id(http: aiohttp.ClientSession) -> None:
    async with FakeTelegram(token=TOKEN) as tg:
        basic = tg.group("basic", basic=True)
        admin = tg.user(7, "Admin")
        new = tg.migrate(basic, admin)
        status, body = await call(http, tg, "sendMessage", chat_id=basic["id"], text="x")
        assert status == 400 and body["parameters"] == {"migrate_to_chat_id": new["id"]}
        assert "upgraded to a supergroup" in body["description"]
        assert (await call(http, tg, "sendMessage", chat_id=new["id"], text="x"))[0] == 200
        kinds = [next(k for k in u["message"] if k.startswith("migrate_")) for u in tg.updates]
        assert kinds == ["migrate_to_chat_id", "migrate_from_chat_id"]


async def test_garbled_answers_still_carry_the_call_out(http: aiohttp.ClientSession) -> None:
    async with FakeTelegram(token=TOKEN) as tg:
        tg.private_chat(tg.user(1, "Alice"))
        tg.fail_next("sendMessage", garble="fields")
        tg.fail_next("sendMessage", garble="text")
        status, body = await call(http, tg, "sendMessage", chat_id=1, text="a")
        assert status == 200 and body == {"ok": True, "result": {"message_id": 1}}
        async with http.post(f"{tg.base_url}/bot{TOKEN}/sendMessage", json={"chat_id": 1, "text": "b"}) as resp:
            assert resp.status == 200 and await resp.text() == "OK"
        assert [r.text for r in tg.sent] == ["a", "b"]  # both were delivered


async def test_wait_helpers_and_idle(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    tg.private_chat(tg.user(1, "Alice"))

    async def later() -> None:
        await asyncio.sleep(0.2)
        await call(http, tg, "sendMessage", chat_id=1, text="欢迎 &amp; hello", parse_mode="HTML")

    task = asyncio.create_task(later())
    rec = await tg.wait_text(1, "欢迎 & hello", timeout=3)
    assert rec.raw_text == "欢迎 &amp; hello" and rec.message_id == 1
    await task
    with pytest.raises(AssertionError):
        await tg.wait_text(1, "never", timeout=0.2)
    await tg.idle(quiet=0.1, timeout=2)
    tg.send(1, 1, "queued")
    with pytest.raises(AssertionError, match="not fetched"):
        await tg.idle(quiet=0.05, timeout=0.3)  # nobody polls


# ---------------------------------------------------------------------------- aiogram


async def test_aiogram_bot_against_fake(tg: FakeTelegram) -> None:
    from aiogram import Bot
    from aiogram.client.default import DefaultBotProperties
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.exceptions import (
        TelegramBadRequest,
        TelegramForbiddenError,
        TelegramNetworkError,
        TelegramRetryAfter,
        TelegramServerError,
    )
    from aiogram.types import BotCommand, BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

    alice = tg.user(1, "Alice", "alice")
    chat = tg.private_chat(alice)
    group = tg.group("幸福里", forum=True)
    tg.set_status(group, alice, "creator")
    tg.set_status(group, BOT_ID, "administrator")
    session = AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url))
    bot = Bot(TOKEN, session=session, default=DefaultBotProperties(parse_mode="HTML"))
    try:
        me = await bot.get_me()
        assert me.username == "linli_test_bot"
        markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="认领", callback_data="claim:1")]])
        msg = await bot.send_message(chat.get("id"), "<b>新诉求</b> A &amp; B", reply_markup=markup)
        assert msg.text == "新诉求 A & B" and msg.from_user.id == BOT_ID
        assert msg.reply_markup.inline_keyboard[0][0].callback_data == "claim:1"
        assert tg.sent[-1].reply_markup == {"inline_keyboard": [[{"text": "认领", "callback_data": "claim:1"}]]}

        tg.send(alice, chat, "/start")
        tg.press(alice, tg.last_to(1), "claim:1")
        tg.join(group, tg.user(2, "Bob"))
        updates = await bot.get_updates(timeout=1, allowed_updates=["message", "callback_query", "chat_member"])
        assert [u.event_type for u in updates] == ["message", "callback_query", "chat_member"]
        assert updates[0].message.text == "/start" and updates[1].callback_query.data == "claim:1"
        assert await bot.answer_callback_query(updates[1].callback_query.id, text="好")
        edited = await bot.edit_message_text("已认领", chat_id=1, message_id=msg.message_id)
        assert edited.text == "已认领" and edited.reply_markup is None

        doc = await bot.send_document(1, BufferedInputFile(b"col\n1\n", filename="r.csv"), caption="报表")
        assert doc.document.file_name == "r.csv" and tg.sent[-1].document_bytes == b"col\n1\n"
        photo = await bot.send_photo(1, BufferedInputFile(b"jpeg", filename="p.jpg"))
        assert photo.photo[-1].file_id
        topic_msg = await bot.send_message(group["id"], "通知", message_thread_id=tg.topic(group, "通知"))
        assert topic_msg.message_thread_id and topic_msg.is_topic_message
        admins = await bot.get_chat_administrators(group["id"])
        assert {a.status for a in admins} == {"creator", "administrator"}
        assert (await bot.get_chat_member(group["id"], 2)).status == "member"
        assert (await bot.get_chat(group["id"])).is_forum
        assert await bot.set_my_commands([BotCommand(command="start", description="开始")])
        assert [c.command for c in await bot.get_my_commands()] == ["start"]
        assert await bot.send_chat_action(1, "typing")
        assert await bot.delete_webhook(drop_pending_updates=False)
        assert tg.rejections == []

        tg.fail_next("sendMessage", status=429, retry_after=2)
        with pytest.raises(TelegramRetryAfter) as retry:
            await bot.send_message(1, "x")
        assert retry.value.retry_after == 2
        tg.fail_next("sendMessage", status=502)
        with pytest.raises(TelegramServerError):
            await bot.send_message(1, "x")
        tg.fail_next("sendMessage", drop=True)
        with pytest.raises(TelegramNetworkError):
            await bot.send_message(1, "x")
        tg.fail_next("sendMessage", status=403, description="Forbidden: bot was blocked by the user")
        with pytest.raises(TelegramForbiddenError):
            await bot.send_message(1, "x")
        with pytest.raises(TelegramBadRequest, match="can't parse entities"):
            await bot.send_message(1, "<b>unclosed")
        assert len(tg.rejections) == 1
    finally:
        await bot.session.close()


async def test_aiogram_dispatcher_polls_fake(tg: FakeTelegram) -> None:
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.filters import CommandStart
    from aiogram.types import Message

    dp = Dispatcher()

    @dp.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer(f"你好 {message.from_user.first_name}")

    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    try:
        alice = tg.user(1, "Alice")
        tg.send(alice, tg.private_chat(alice), "/start")
        await tg.wait_text(1, "你好 Alice")
        await tg.idle(quiet=0.2)
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 10)
    assert tg.rejections == []


# ---------------------------------------------------------------------------- python-telegram-bot


async def test_ptb_bot_against_fake(tg: FakeTelegram) -> None:
    from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
    from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

    alice = tg.user(1, "Alice", "alice")
    chat = tg.private_chat(alice)
    group = tg.group("幸福里")
    tg.set_status(group, alice, "creator")
    bot = Bot(TOKEN, base_url=tg.api_url)
    await bot.initialize()
    try:
        assert bot.username == "linli_test_bot"
        markup = InlineKeyboardMarkup([[InlineKeyboardButton("认领", callback_data="claim:1")]])
        msg = await bot.send_message(chat["id"], "<i>hi</i>", parse_mode="HTML", reply_markup=markup,
                                     reply_to_message_id=None)
        assert msg.text == "hi" and msg.reply_markup == markup
        user_msg = tg.send(alice, chat, "/help")
        reply = await bot.send_message(1, "reply", reply_to_message_id=user_msg["message_id"])
        assert reply.reply_to_message.message_id == user_msg["message_id"]

        tg.press(alice, tg.messages_to(1)[0], "claim:1")
        updates = await bot.get_updates(timeout=1)
        assert updates[0].message.text == "/help" and updates[1].callback_query.data == "claim:1"
        await bot.answer_callback_query(updates[1].callback_query.id)
        edited = await bot.edit_message_reply_markup(1, msg.message_id, reply_markup=None)
        assert edited.reply_markup is None
        doc = await bot.send_document(1, b"a,b\n", filename="x.csv")
        assert doc.document.file_name == "x.csv" and tg.sent[-1].document_bytes == b"a,b\n"
        member = await bot.get_chat_member(group["id"], 1)
        assert member.status == "creator"
        assert (await bot.get_chat(group["id"])).title == "幸福里"
        assert tg.rejections == []

        tg.fail_next("sendMessage", status=429, retry_after=1)
        with pytest.raises(RetryAfter):
            await bot.send_message(1, "x")
        tg.fail_next("sendMessage", status=502)
        with pytest.raises(NetworkError):
            await bot.send_message(1, "x")
        tg.fail_next("sendMessage", drop=True)
        with pytest.raises(NetworkError):
            await bot.send_message(1, "x")
        tg.fail_next("sendMessage", status=403, description="Forbidden: bot was blocked by the user")
        with pytest.raises(Forbidden):
            await bot.send_message(1, "x")
        with pytest.raises(BadRequest, match="(?i)can't parse entities"):
            await bot.send_message(1, "a & b", parse_mode="HTML")
        assert len(tg.failed_calls) == 4 and len(tg.rejections) == 1
    finally:
        await bot.shutdown()


async def test_ptb_application_polls_fake(tg: FakeTelegram) -> None:
    from telegram import Update
    from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_text(f"你好 {update.effective_user.first_name}")

    app = ApplicationBuilder().token(TOKEN).base_url(tg.api_url).build()
    app.add_handler(CommandHandler("start", start))
    await app.initialize()
    await app.updater.start_polling(poll_interval=0, timeout=1)
    await app.start()
    try:
        alice = tg.user(1, "Alice")
        tg.send(alice, tg.private_chat(alice), "/start")
        await tg.wait_text(1, "你好 Alice")
        await tg.idle(quiet=0.2)
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    assert tg.rejections == []


# ---------------------------------------------------------------------------- network guard


@pytest.fixture
def guard() -> Any:
    was = netguard.installed()
    netguard.install()
    yield netguard
    if not was:
        netguard.uninstall()


async def test_netguard_blocks_outside_allows_loopback(guard: Any, tg: FakeTelegram) -> None:
    t0 = time.monotonic()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with s, pytest.raises(RuntimeError, match="network access blocked in tests: 10.255.255.1"):
        s.connect(("10.255.255.1", 80))
    with pytest.raises(RuntimeError, match="blocked"):
        socket.create_connection(("10.255.255.1", 80), timeout=1)
    with pytest.raises(RuntimeError, match="blocked"):
        await asyncio.open_connection("10.255.255.1", 80)
    with pytest.raises(RuntimeError, match="blocked"):
        socket.getaddrinfo("api.telegram.org", 443)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(RuntimeError, match="blocked"):
            await http.get("http://10.255.255.1/")
        status, _ = await call(http, tg, "getMe")  # loopback still works
    assert status == 200
    assert time.monotonic() - t0 < 2
    assert guard.is_local("::1") and guard.is_local("localhost") and guard.is_local("127.8.0.1")
    assert not guard.is_local("0.0.0.0") and not guard.is_local("db.example")


async def test_bot_membership_and_privacy_mode(http: aiohttp.ClientSession) -> None:
    async with FakeTelegram(token=TOKEN, privacy_mode=True) as tg:
        alice, bob = tg.user(1, "Alice"), tg.user(2, "Bob")
        group = tg.group("g")  # the bot is already in it
        upd = tg.add_bot(group, by=alice)
        assert (upd["old_chat_member"]["status"], upd["new_chat_member"]["status"]) == ("left", "member")
        tg.send(bob, group, "just chatting")  # privacy mode: not for the bot
        tg.send(bob, group, "/help@other_bot")
        tg.send(bob, group, "/help")
        tg.send(bob, group, "hey @linli_test_bot")
        _, body = await call(http, tg, "getUpdates")
        texts = [u["message"]["text"] for u in body["result"] if "message" in u]
        assert texts == ["/help", "hey @linli_test_bot"] and len(tg.undelivered) == 2
        tg.remove_bot(group, by=alice, status="kicked")
        status, body = await call(http, tg, "sendMessage", chat_id=group["id"], text="x")
        assert status == 403 and body["description"] == "Forbidden: bot was kicked from the supergroup chat"


async def test_parallel_webhook_pushes_keep_each_chat_in_order(http: aiohttp.ClientSession) -> None:
    """push_connections > 1: pushes to different chats overlap (up to the webhook's max_connections),
    a chat's next update waits for the 200 of the one before, and a refused push comes again."""
    from aiohttp import web

    arrivals: list[tuple[int, int, str]] = []  # (update_id, chat, "in"/"out")
    refused_once: set[int] = set()

    async def hook(request: web.Request) -> web.Response:
        update = await request.json()
        chat = update["message"]["chat"]["id"]
        arrivals.append((update["update_id"], chat, "in"))
        await asyncio.sleep(0.1)  # slow enough that parallel pushes overlap
        arrivals.append((update["update_id"], chat, "out"))
        if update["update_id"] == 3 and 3 not in refused_once:
            refused_once.add(3)
            return web.Response(status=503)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    port = sock.getsockname()[1]
    try:
        async with FakeTelegram(token=TOKEN, push_connections=8) as tg:
            users = [tg.user(300 + i, f"u{i}") for i in range(4)]
            tg.push_paused = True
            for round_ in range(3):  # three updates in each of four chats
                for u in users:
                    tg.send(u, tg.private_chat(u), f"m{round_}")
            assert (await call(http, tg, "setWebhook", url=f"http://127.0.0.1:{port}/hook",
                               max_connections=3))[0] == 200
            tg.push_paused = False
            await tg.idle(quiet=0.3, timeout=15)
            assert not tg.updates
        delivered = [uid for uid, status in tg.pushes if status == 200]
        assert sorted(delivered) == list(range(1, 13))
        assert (3, 503) in tg.pushes  # refused once, then pushed again
        # At most max_connections (3) in flight at once, and more than one at some point.
        depth, most = 0, 0
        for _, _, edge in arrivals:
            depth += 1 if edge == "in" else -1
            most = max(most, depth)
        assert 1 < most <= 3
        # Each chat: one at a time, in update order (the refused one again before the next).
        for u in users:
            seq = [(uid, edge) for uid, chat, edge in arrivals if chat == u["id"]]
            assert all(seq[i][1] == ("in" if i % 2 == 0 else "out") for i in range(len(seq))), seq
            ins = [uid for uid, edge in seq if edge == "in"]
            assert ins == sorted(ins)
    finally:
        await runner.cleanup()
