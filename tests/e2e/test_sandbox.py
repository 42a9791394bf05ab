"""The sandbox without a browser: its Bot API stand-in under the real bot on both frameworks, the
page's actions over HTTP, the clock, reset, a restart, and `python main.py` with no token."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.sandbox.community import MEMBER_CHAT, RESIDENT_CHAT
from bot.sandbox.run import Sandbox
from bot.storage.models import Chat, Community, Demand
from bot.transport.port import Document
from config.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SECRETARY, RESIDENT, MEMBER = 1001, 2001, 3001
WAIT = 30.0  # seconds; every wait ends as soon as its condition holds

# A tiny valid PNG (1x1).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


class Driver:
    """The page's side of the sandbox, over HTTP, as the browser would use it."""

    def __init__(self, sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
        self.sandbox = sandbox
        self.world = sandbox.world
        self.http = http
        self.base = sandbox.address

    async def post(self, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        async with self.http.post(self.base + path, json=body) as resp:
            data = await resp.json()
            assert resp.status == status, data
            return data

    async def say(self, user: int, chat: int, text: str, **extra: Any) -> int:
        return int((await self.post("/sandbox/send", {"user_id": user, "chat_id": chat, "text": text, **extra}))[
            "message_id"])

    async def bot_says(self, chat: int, *texts: str, after: int = 0) -> dict[str, Any]:
        return await self.world.wait_for_bot(
            lambda m: m["chat"]["id"] == chat and m["message_id"] > after
            and all(t in (m.get("text") or m.get("caption") or "") for t in texts),
            WAIT,
        )

    async def press(self, user: int, msg: dict[str, Any], label: str) -> str:
        rows = msg["reply_markup"]["inline_keyboard"]
        data = next(b["callback_data"] for row in rows for b in row if label in b["text"])
        body = {"user_id": user, "chat_id": msg["chat"]["id"], "message_id": msg["message_id"], "data": data}
        return str((await self.post("/sandbox/press", body))["qid"])

    async def scalar(self, query: Any) -> Any:
        app = self.sandbox.app
        assert app is not None
        async with app.services.ctx.read() as s:
            return await s.scalar(query)


def sandbox_settings(framework: str) -> Any:
    return load_settings(
        bot_framework=framework, sandbox_port=0, scheduler_sweep_seconds=1.0, admin_cache_seconds=0,
        log_level="WARNING",
    )


@pytest.fixture
async def driver(framework: str, tmp_path: Path) -> AsyncIterator[Driver]:
    sandbox = Sandbox(sandbox_settings(framework), data_dir=tmp_path / "data")
    await sandbox.open()
    try:
        await asyncio.wait_for(sandbox.start(), 120)
        async with aiohttp.ClientSession() as http:
            yield Driver(sandbox, http)
    finally:
        await sandbox.close()


async def test_the_ready_community(driver: Driver) -> None:
    world = driver.world
    assert world.ready and world.phase == "ready"
    # Set up through the bot: both groups bound to 幸福里, and one welcome in each.
    assert await driver.scalar(select(Community.name)) == "幸福里"
    kinds = {cid: await driver.scalar(select(Chat.kind).where(Chat.id == cid)) for cid in (RESIDENT_CHAT, MEMBER_CHAT)}
    assert kinds == {RESIDENT_CHAT: "resident", MEMBER_CHAT: "member"}
    for cid in (RESIDENT_CHAT, MEMBER_CHAT):
        welcomes = [m for m in world.messages[cid].values() if "请群管理员发送" in (m.get("text") or "")]
        assert len(welcomes) == 1
    # Seven people, each with a private chat the bot has answered in.
    assert len(world.people) == 7
    for p in world.people:
        assert any(m["from"]["id"] != p.id for m in world.messages[p.id].values())
    async with driver.http.get(driver.base + "/sandbox/state") as resp:
        state = await resp.json()
    assert state["ready"] and {p["role"] for p in state["people"]} == {"secretary", "resident", "member"}


async def test_demand_loop_and_the_clock(driver: Driver) -> None:
    world = driver.world
    events = world.subscribe()
    mid = await driver.say(RESIDENT, RESIDENT_CHAT, "/demand 3号楼电梯坏了")
    await driver.bot_says(RESIDENT_CHAT, "#1", after=mid)
    alert = await driver.bot_says(SECRETARY, "新诉求", "#1")
    qid = await driver.press(SECRETARY, alert, "受理")
    await driver.bot_says(SECRETARY, "王书记 已受理")  # the alert, edited
    assert "reply_markup" not in world.messages[SECRETARY][alert["message_id"]]
    # The answer to the press reaches the page, for the one who pressed.
    while (ev := await asyncio.wait_for(events.get(), WAIT))["t"] != "answer":
        pass
    assert ev["qid"] == qid and ev["user_id"] == SECRETARY and "#1" in ev["text"]
    await driver.say(SECRETARY, SECRETARY, "/assign 1 @liu_jianguo")
    await driver.bot_says(MEMBER, "派给您的诉求")
    await driver.say(MEMBER, MEMBER, "/resolve 1 修好了")
    rating = await driver.bot_says(RESIDENT, "已办结", "#1")
    await driver.press(RESIDENT, rating, "⭐⭐⭐⭐⭐")
    await driver.bot_says(RESIDENT, "谢谢")
    assert await driver.scalar(select(Demand.rating).where(Demand.number == 1)) == 5

    # A demand nobody accepts: a day on, the secretary is reminded (and only then).
    await driver.say(RESIDENT, RESIDENT_CHAT, "/demand 东门路灯不亮")
    await driver.bot_says(SECRETARY, "新诉求", "#2")
    before = world.now()
    assert not any("超过受理时限" in (m.get("text") or "") for m in world.messages[SECRETARY].values())
    done = await driver.post("/sandbox/clock", {"seconds": 86400})
    assert done["offset_ms"] == 86_400_000
    reminder = await driver.bot_says(SECRETARY, "超过受理时限", "#2")
    assert reminder["date"] >= before + 86400  # messages carry the sandbox's time
    # The clock only moves forward, by at most 30 days at a time.
    await driver.post("/sandbox/clock", {"seconds": -60}, status=400)
    await driver.post("/sandbox/clock", {"seconds": 31 * 86400}, status=400)


async def test_photos_and_documents(driver: Driver) -> None:
    form = aiohttp.FormData()
    form.add_field("user_id", str(RESIDENT))
    form.add_field("chat_id", str(RESIDENT_CHAT))
    form.add_field("caption", "/demand 楼道灯坏了")
    form.add_field("file", PNG, filename="light.png", content_type="image/png")
    async with driver.http.post(driver.base + "/sandbox/upload", data=form) as resp:
        assert resp.status == 200, await resp.text()
    await driver.bot_says(RESIDENT_CHAT, "#1")
    photo_id = await driver.scalar(select(Demand.photo_file_id).where(Demand.number == 1))
    async with driver.http.get(f"{driver.base}/sandbox/file/{photo_id}") as resp:
        assert resp.status == 200 and await resp.read() == PNG
    # The bot's own uploads (a chart, an .xlsx, an .ics) through the framework's multipart upload.
    app = driver.sandbox.app
    assert app is not None
    sent = await app.services.api.send_photo(SECRETARY, PNG, caption="<b>本月统计</b>")
    shown = driver.world.messages[SECRETARY][sent.message_id]
    assert shown["caption"] == "本月统计" and shown["caption_entities"][0]["type"] == "bold"
    async with driver.http.get(f"{driver.base}/sandbox/file/{shown['photo'][-1]['file_id']}") as resp:
        assert await resp.read() == PNG
    again = await app.services.api.send_photo(RESIDENT, shown["photo"][-1]["file_id"])  # by file_id
    assert driver.world.messages[RESIDENT][again.message_id]["photo"][-1]["file_id"] == shown["photo"][-1]["file_id"]
    ics = b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
    sent = await app.services.api.send_document(MEMBER_CHAT, Document("会议.ics", ics), caption="日历")
    doc = driver.world.messages[MEMBER_CHAT][sent.message_id]["document"]
    assert doc["file_name"] == "会议.ics" and doc["file_size"] == len(ics)
    # A document from the bot: /mydata, downloadable from the page.
    await driver.say(RESIDENT, RESIDENT, "/mydata")
    doc = await driver.world.wait_for_bot(lambda m: m["chat"]["id"] == RESIDENT and "document" in m, WAIT)
    assert doc["document"]["file_name"].endswith(".json")
    url = f"{driver.base}/sandbox/file/{doc['document']['file_id']}?download=1"
    async with driver.http.get(url) as resp:
        assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
        assert "张阿姨" in json.dumps(json.loads(await resp.read()), ensure_ascii=False)


async def test_reset_and_restart(driver: Driver, framework: str, tmp_path: Path) -> None:
    await driver.say(RESIDENT, RESIDENT_CHAT, "/demand 3号楼电梯坏了")
    await driver.bot_says(RESIDENT_CHAT, "#1")
    await driver.post("/sandbox/clock", {"seconds": 3600})

    # A restart continues where it was: same chats, same database, same clock.
    sandbox = driver.sandbox
    await sandbox.close()
    again = Sandbox(sandbox_settings(framework), data_dir=tmp_path / "data")
    await again.open()
    try:
        await asyncio.wait_for(again.start(), 120)
        world = again.world
        assert any("#1" in (m.get("text") or "") for m in world.messages[RESIDENT_CHAT].values())
        assert again.clock.offset.total_seconds() == 3600
        mid = world.user_message(RESIDENT, RESIDENT_CHAT, text="/demand 东门路灯不亮")["message_id"]
        await world.wait_for_bot(lambda m: m["chat"]["id"] == RESIDENT_CHAT and m["message_id"] > mid
                                 and "#2" in (m.get("text") or ""), WAIT)

        # Reset: a fresh community, no demands, the clock back to now.
        await again.reset()
        assert world.ready
        assert not any("#1" in (m.get("text") or "") for m in world.messages[RESIDENT_CHAT].values())
        assert again.clock.offset.total_seconds() == 0
        assert again.app is not None
        async with again.app.services.ctx.read() as s:
            assert await s.scalar(select(func.count()).select_from(Demand)) == 0
            assert await s.scalar(select(func.count()).select_from(Community)) == 1
    finally:
        await again.close()


@pytest.mark.parametrize("framework", ["aiogram"])  # the stand-in itself: one framework is enough
async def test_the_stand_in_answers_as_telegram(driver: Driver) -> None:
    """Calls the bot could get wrong are refused as Telegram refuses them, with HTTP status == error_code."""
    api = f"{driver.base}/bot{driver.sandbox.token}"

    async def call(method: str, **params: Any) -> tuple[int, dict[str, Any]]:
        async with driver.http.post(f"{api}/{method}", json=params) as resp:
            return resp.status, await resp.json()

    status, body = await call("sendMessage", chat_id=RESIDENT_CHAT, text="<b>未闭合", parse_mode="HTML")
    assert status == 400 == body["error_code"] and "can't parse entities" in body["description"]
    status, body = await call("sendMessage", chat_id=-100999, text="x")
    assert (status, body["description"]) == (400, "Bad Request: chat not found")
    status, body = await call(
        "sendMessage", chat_id=RESIDENT_CHAT, text="<b>通知</b> &amp; <a href='https://example.org'>链接</a>",
        parse_mode="HTML", reply_markup={"inline_keyboard": [[{"text": "收到", "callback_data": "x" * 65}]]},
    )
    assert (status, body["description"]) == (400, "Bad Request: BUTTON_DATA_INVALID")
    status, body = await call(
        "sendMessage", chat_id=RESIDENT_CHAT, text="<b>通知</b> &amp; <a href='https://example.org'>链接</a>",
        parse_mode="HTML",
    )
    assert status == 200
    msg = body["result"]
    assert msg["text"] == "通知 & 链接"
    assert msg["entities"] == [{"type": "bold", "offset": 0, "length": 2},
                               {"type": "text_link", "url": "https://example.org", "offset": 5, "length": 2}]
    status, body = await call("editMessageText", chat_id=RESIDENT_CHAT, message_id=msg["message_id"],
                              text="<b>通知</b> &amp; <a href='https://example.org'>链接</a>", parse_mode="HTML")
    assert status == 400 and "message is not modified" in body["description"]
    status, body = await call("pinChatMessage", chat_id=RESIDENT_CHAT, message_id=msg["message_id"])
    assert status == 200 and driver.world.pins[RESIDENT_CHAT] == [msg["message_id"]]
    status, body = await call("answerCallbackQuery", callback_query_id="nope")
    assert status == 400 and "query is too old" in body["description"]
    async with driver.http.post(f"{driver.base}/botwrong:token/getMe") as resp:
        assert resp.status == 401
    async with driver.http.post(f"{api}/sendPoll") as resp:
        assert resp.status == 404


@pytest.mark.parametrize("framework", ["aiogram"])
async def test_the_page_is_served_without_outside_resources(driver: Driver) -> None:
    async with driver.http.get(driver.base + "/") as resp:
        html = await resp.text()
    assert resp.status == 200 and "邻里" in html
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref.startswith(("/", "data:")), ref
    for name in ("app.js", "app.css"):
        async with driver.http.get(f"{driver.base}/static/{name}") as resp:
            body = await resp.text()
            assert resp.status == 200
            assert not re.search(r"(?:src|href|url)\s*[=(]\s*[\"']?https?://", body), name
    # Acting needs a person who is in the chat.
    await driver.post("/sandbox/send", {"user_id": RESIDENT, "chat_id": MEMBER_CHAT, "text": "hi"}, status=403)
    await driver.post("/sandbox/send", {"user_id": RESIDENT, "chat_id": RESIDENT_CHAT, "text": "  "}, status=400)
    # Another website cannot act through the visitor's browser, nor reach the page by another name.
    async with driver.http.post(driver.base + "/sandbox/reset", json={},
                                headers={"Origin": "https://evil.example"}) as resp:
        assert resp.status == 403
    async with driver.http.get(driver.base + "/sandbox/state", headers={"Host": "evil.example"}) as resp:
        assert resp.status == 403
    assert driver.world.phase == "ready"


async def test_main_without_a_token_prints_the_address_first(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BOT_TOKEN", "LINLI_CONFIG", "SANDBOX_HOST")}
    env.update(SANDBOX_PORT="0", LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "main.py"), cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", first), first
        async with aiohttp.ClientSession() as http:
            async with http.get(first + "/") as resp:
                assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
