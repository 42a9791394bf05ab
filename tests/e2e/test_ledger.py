"""The ledger played through the fake Bot API server, on aiogram and on PTB: /stats answers with the
figures and a chart photo, /export with a workbook, /digest on|off; a resident is refused; bad
periods get a clear reply and change nothing."""

from __future__ import annotations

import asyncio
import io
import os
import signal

import pytest
from openpyxl import load_workbook
from PIL import Image

from tests.e2e.harness import BotUnderTest
from tests.e2e.test_demand_loop import community
from tests.fakeapi.server import FakeTelegram


@pytest.mark.both_databases
async def test_stats_export_and_digest(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res, res_user = w["sec"], w["res"], w["res_user"]
    tg.send(res_user, res, "/demand 3号楼电梯坏了")
    await tg.wait_text(res, "#1")
    await bot.settle()
    private = tg.private_chat(sec)

    since = tg.mark()
    tg.send(sec, private, "/stats")
    photo = await tg.wait_for(lambda r: r.method == "sendPhoto" and r.chat_id == sec["id"], 15, since=since)
    await bot.settle()
    shown = "\n".join(r.text or "" for r in tg.sent[since:] if r.chat_id == sec["id"])
    assert "诉求 1 件" in shown and "响应率 0.0% (0/1)" in shown and "解决率 0.0% (0/1)" in shown
    assert "满意率 — (0/0)" in shown
    upload = photo.photo
    data = getattr(upload, "data", None)
    assert isinstance(data, bytes) and data[:4] == b"\x89PNG"
    assert Image.open(io.BytesIO(data)).size[0] >= 1000

    since = tg.mark()
    tg.send(sec, private, "/export")
    doc = await tg.wait_for(lambda r: r.method == "sendDocument" and r.chat_id == sec["id"], 15, since=since)
    assert doc.document_name and doc.document_name.endswith(".xlsx")
    wb = load_workbook(io.BytesIO(doc.document_bytes or b""))
    assert wb.sheetnames == ["诉求", "任务", "会议", "三率", "议事"]  # 议事: consultations' sheet
    headers = [c.value for c in wb["诉求"][1]]
    assert headers[4:7] == ["状态", "层级", "内容"]  # 层级: grids' level column
    assert [r[6] for r in wb["诉求"].iter_rows(min_row=2, values_only=True)] == ["3号楼电梯坏了"]

    since = tg.mark()
    tg.send(sec, private, "/export 1999-01")
    empty = await tg.wait_for(lambda r: r.method == "sendDocument" and r.chat_id == sec["id"], 15, since=since)
    assert "没有诉求" in (empty.text or "")
    assert load_workbook(io.BytesIO(empty.document_bytes or b""))["诉求"].max_row == 2

    since = tg.mark()
    tg.send(sec, private, "/digest off")
    await tg.wait_text(sec["id"], "每周统计已关闭", since=since)
    tg.send(sec, private, "/digest on")
    await tg.wait_text(sec["id"], "每周统计已开启", since=since)


async def test_residents_are_refused_and_bad_input_is_explained(tg: FakeTelegram, bot: BotUnderTest) -> None:
    w = await community(tg, bot)
    sec, res, res_user = w["sec"], w["res"], w["res_user"]
    for command in ("/stats", "/export"):
        since = tg.mark()
        tg.send(res_user, tg.private_chat(res_user), command)
        refusal = await tg.wait_text(res_user["id"], "书记", since=since)
        assert refusal.method == "sendMessage"
    private = tg.private_chat(sec)
    for command, expected in (("/stats 2026-13", "月份只能是 1 到 12"), ("/stats abc", "/stats 2026-03"),
                              ("/export 2026-00", "月份只能是 1 到 12"), ("/digest maybe", "/digest off")):
        since = tg.mark()
        tg.send(sec, private, command)
        await tg.wait_text(sec["id"], expected, since=since)
    since = tg.mark()
    tg.send(sec, res, "/export")
    await tg.wait_text(res, "私聊", since=since)
    await bot.settle()
    assert not [r for r in tg.sent if r.method in ("sendPhoto", "sendDocument")]


@pytest.mark.both_databases
async def test_others_are_answered_while_an_export_is_being_written(
        tg: FakeTelegram, bot: BotUnderTest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workbook is written by a process of its own: held stopped (SIGSTOP) from its start, so the
    export cannot finish, the bot still answers another chat and files its demand; let go, the
    workbook arrives, whole."""
    from bot.services import ledger_export

    writers: list[int] = []
    held = asyncio.Event()
    start = ledger_export._Book.start

    async def start_held(book: ledger_export._Book) -> None:
        await start(book)
        assert book.proc is not None
        os.kill(book.proc.pid, signal.SIGSTOP)
        writers.append(book.proc.pid)
        held.set()

    monkeypatch.setattr(ledger_export._Book, "start", start_held)
    w = await community(tg, bot)
    sec, res, res_user = w["sec"], w["res"], w["res_user"]
    tg.send(res_user, res, "/demand 3号楼电梯坏了")
    await tg.wait_text(res, "#1")
    await bot.settle()
    try:
        since = tg.mark()
        tg.send(sec, tg.private_chat(sec), "/export")
        await asyncio.wait_for(held.wait(), 15)
        tg.send(res_user, res, "/demand 5号楼路灯不亮")
        await tg.wait_text(res, "#2", since=since)
        assert not [r for r in tg.sent[since:] if r.method == "sendDocument"]  # the export still waits
    finally:
        for pid in writers:
            os.kill(pid, signal.SIGCONT)
    doc = await tg.wait_for(lambda r: r.method == "sendDocument" and r.chat_id == sec["id"], 15, since=since)
    rows = list(load_workbook(io.BytesIO(doc.document_bytes or b""))["诉求"].iter_rows(min_row=2, values_only=True))
    assert [r[6] for r in rows][:1] == ["3号楼电梯坏了"]
