"""Scale-out, with real parts: three instances of main.py in webhook mode behind HAProxy (Debian's
package, deploy/haproxy.cfg), on one PostgreSQL, the fake Telegram pushing updates to HAProxy over
up to 40 connections at once (one chat's updates one at a time, as Telegram's webhook does).
Two instances run on aiogram and one on python-telegram-bot: users see no difference.

Checked: the demand loop across instances and one chat's updates handled in the order typed;
200 presses at once on a 10-slot task; a 40-chat notice (one copy each, no 429 from a server that
enforces Telegram's limits per bot); a meeting reminder sent once; kill -9 of the instance
delivering a broadcast (nothing lost, nothing twice outside the in-flight window); a wrong secret
through the balancer (401 from each instance); an instance whose database is gone answers
/healthz 503 and HAProxy sends it nothing until it is back. And the deploy/ files themselves.

Needs haproxy and TEST_DATABASE_URL; without them the tests skip saying why, or fail where
LINLI_REQUIRE_FLEET=1 (.ci/run).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.storage.db import make_engine
from bot.storage.models import Demand, InboxUpdate, Outbox, Task, TaskClaim
from bot.transport import shared_limits
from config.settings import load_settings
from tests.conftest import PG_SKIP_REASON, PG_URL, reset_pg_schema
from tests.e2e.communities import copies, town
from tests.e2e.fleet import (
    DEPLOY,
    HAPROXY,
    LEASE_SECONDS,
    SECRET,
    Fleet,
    deploy_env,
    read_env,
    render_haproxy,
    unknown_settings,
)
from tests.e2e.test_demand_loop import community
from tests.e2e.test_meetings import at, soon, texts
from tests.e2e.test_tasks import answered, members
from tests.fakeapi.server import FakeTelegram

pytestmark = [pytest.mark.scale_out, pytest.mark.slow]

WHEN = "2030-12-07 09:00"  # a volunteer task's time, far ahead


def _need(reason: str | None) -> None:
    if reason is None:
        return
    if os.environ.get("LINLI_REQUIRE_FLEET") == "1":
        pytest.fail(f"the scale-out tests must run here (LINLI_REQUIRE_FLEET=1), but {reason}")
    pytest.skip(f"scale-out test skipped: {reason}")


def haproxy_missing() -> str | None:
    return None if HAPROXY else "haproxy is not installed (apt-get install haproxy)"


@pytest.fixture
async def pg_url() -> str:
    _need(haproxy_missing())
    _need(None if PG_URL else PG_SKIP_REASON)
    assert PG_URL
    await reset_pg_schema()
    return PG_URL


FleetFactory = Callable[..., Awaitable[Fleet]]


@pytest.fixture
async def make_fleet(tg: FakeTelegram, pg_url: str, tmp_path: Path) -> AsyncIterator[FleetFactory]:
    fleets: list[Fleet] = []

    async def start(**kwargs: Any) -> Fleet:
        tg.push_connections = 40  # Telegram's default max_connections; the instances set it too
        fleet = Fleet(tg, pg_url, tmp_path, **kwargs)
        fleets.append(fleet)
        await fleet.start()
        return fleet

    try:
        yield start
    finally:
        for fleet in fleets:
            await fleet.stop()


async def served(fleet: Fleet) -> dict[str, int]:
    """Requests HAProxy passed to each instance so far."""
    return {name: int(row["lbtot"] or 0) for name, row in (await fleet.haproxy.servers()).items()}


# ---------------------------------------------------------------------------------------- deploy/


def test_deploy_files_hold_together(tmp_path: Path) -> None:
    """The env files name only real settings and load; HAProxy accepts its config (as rendered for
    the tests, and as written but for the certificate); PostgreSQL has room for the fleet."""
    for n in (1, 2, 3):
        env = deploy_env(n)
        assert unknown_settings(env) == []
        settings = load_settings(**{k.lower(): v for k, v in env.items()})
        assert settings.webhook_url and settings.webhook_listen == f"127.0.0.1:810{n}"
        assert settings.database_url.startswith("postgresql+asyncpg://")
    _need(haproxy_missing())
    assert HAPROXY is not None
    template = (DEPLOY / "haproxy.cfg").read_text(encoding="utf-8")
    rendered = render_haproxy(template, front=18443, backends=[18101, 18102, 18103],
                              stats_socket=tmp_path / "s.sock")
    (tmp_path / "haproxy.cfg").write_text(rendered, encoding="utf-8")
    check = subprocess.run([HAPROXY, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # Each server line is an instance's WEBHOOK_LISTEN; the frontend lets WEBHOOK_URL's path through.
    servers = re.findall(r"^\s*server \S+ (\S+)", template, re.M)
    assert servers == [read_env(DEPLOY / "instances" / f"{n}.env")["WEBHOOK_LISTEN"] for n in (1, 2, 3)]
    path = "/" + deploy_env(1)["WEBHOOK_URL"].split("/", 3)[3]
    assert f"{{ path {path} }}" in template

    # max_connections: every instance's whole pool, plus PostgreSQL's reserved slots and a few.
    engine = make_engine("postgresql+asyncpg://linli@127.0.0.1/linli")
    pool = engine.pool.size() + engine.pool._max_overflow  # type: ignore[attr-defined]
    per_instance = pool + shared_limits.POOL_SIZE + shared_limits.POOL_OVERFLOW + 1  # + the LISTEN connection
    conf = (DEPLOY / "postgresql.conf").read_text(encoding="utf-8")
    max_conn = int(re.search(r"^max_connections\s*=\s*(\d+)", conf, re.M).group(1))  # type: ignore[union-attr]
    assert f"at most {per_instance}" in conf, "postgresql.conf states the pool per instance"
    assert max_conn >= 3 * per_instance + 3 + 5


# ---------------------------------------------------------------------------------------- the loop


async def test_demand_loop_across_instances(tg: FakeTelegram, make_fleet: FleetFactory) -> None:
    fleet = await make_fleet()
    w = await community(tg, fleet)  # type: ignore[arg-type]  # Fleet settles as BotUnderTest does
    sec, res_user, mem_user, res, mem = w["sec"], w["res_user"], w["mem_user"], w["res"], w["mem"]

    since = tg.mark()
    tg.send(res_user, res, "/demand 3号楼电梯坏了，老人下不了楼")
    await tg.wait_text(res, "#1", timeout=20, since=since)
    alert = await tg.wait_text(sec["id"], "新诉求", timeout=20, since=since)
    since = tg.mark()
    tg.click(sec, alert.message, "受理")
    await tg.wait_text(res_user["id"], "已受理", timeout=20, since=since)
    member_msg = tg.send(mem_user, mem, "我可以去看看")
    since = tg.mark()
    tg.send(sec, mem, "/assign 1", reply_to=member_msg)
    await tg.wait_text(mem_user["id"], "派给您的诉求", timeout=20, since=since)
    since = tg.mark()
    tg.send(mem_user, tg.private_chat(mem_user), "/resolve 1 已联系维保公司修好")
    rating = await tg.wait_text(res_user["id"], "已办结", timeout=20, since=since)
    tg.click(res_user, rating.message, "⭐⭐⭐⭐⭐")
    await fleet.settle()
    async with fleet.read() as s:
        d = await s.scalar(select(Demand).where(Demand.number == 1))
    assert d is not None and (d.state, d.rating) == ("rated", 5)
    # Round-robin: every instance took part.
    assert all(n > 0 for n in (await served(fleet)).values()), await served(fleet)
    assert all(status == 200 for _, status in tg.pushes)
    assert tg.unanswered_callbacks() == []


async def test_one_chats_updates_are_handled_in_the_order_typed(tg: FakeTelegram, make_fleet: FleetFactory) -> None:
    """Telegram pushes a chat's next update once the previous one is stored (200), so consecutive
    updates of one chat land on different instances while the first is still being handled."""
    fleet = await make_fleet()
    w = await community(tg, fleet)  # type: ignore[arg-type]
    res = w["res"]
    items = [f"第{i}件事：{i}号楼" for i in range(1, 9)]
    for i, text in enumerate(items):  # two neighbours, within the filing limit each
        tg.send(w["res_user"] if i % 2 else w["neighbour"], res, f"/demand {text}")
    await fleet.settle()
    async with fleet.read() as s:
        rows = list((await s.execute(select(Demand.number, Demand.text).order_by(Demand.number))).all())
    assert [t for _, t in rows] == items, "demands numbered out of the order they were typed"
    # The answers come in the same order, each once. Where they go depends on how busy the group
    # is at that moment: in the chat, as a line of one folded answer, or privately to a submitter
    # who started the bot (PRODUCT.md: a busy group is not flooded).
    def numbers(chat_id: int) -> list[int]:
        return [int(n) for r in tg.sent if r.chat_id == chat_id and r.method == "sendMessage"
                for n in re.findall(r"第(\d)件事", r.text or "")]

    in_group, in_private = numbers(res["id"]), numbers(w["res_user"]["id"])
    assert in_group == sorted(in_group) and in_private == sorted(in_private), (in_group, in_private)
    assert sorted(in_group + in_private) == list(range(1, len(items) + 1)), (in_group, in_private)


# ---------------------------------------------------------------------------------------- claims


async def test_200_claims_at_once_on_a_10_slot_task(tg: FakeTelegram, make_fleet: FleetFactory) -> None:
    fleet = await make_fleet()
    w = await community(tg, fleet)  # type: ignore[arg-type]
    sec, mem = w["sec"], w["mem"]
    people = members(tg, 200)
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), f"/task 清理楼道杂物 | {WHEN} | 10 | 10 | 3号楼")
    post = await tg.wait_text(mem, "志愿任务 #", timeout=20, since=since)
    assert post.message is not None
    before = await served(fleet)

    queries = [tg.click(u, post.message, "认领") for u in people]  # all 200 before any is handled
    got = await answered(tg, queries, timeout=120)
    ok = [i for i, t in enumerate(got) if "认领成功" in t]
    waiting = [i for i, t in enumerate(got) if "候补第" in t]
    assert len(ok) == 10 and len(waiting) == 190, Counter(got).most_common(5)
    await fleet.settle()
    async with fleet.read() as s:
        task = await s.scalar(select(Task).where(Task.number == 1))
        claims = Counter(await s.scalars(select(TaskClaim.status)))
        claimers = set(await s.scalars(select(TaskClaim.user_id).where(TaskClaim.status == "claimed")))
    assert task is not None and task.claimed == 10
    assert claims == {"claimed": 10, "waiting": 190}
    assert claimers == {people[i]["id"] for i in ok}  # those told 认领成功 are the ones holding a slot
    after = await served(fleet)
    assert all(after[n] - before[n] >= 20 for n in after), (before, after)  # spread over the fleet
    assert "已认领 10/10" in tg.current(post.message)["text"]


# ---------------------------------------------------------------------------------------- notices


async def test_notice_to_40_chats_one_copy_each_and_no_429(tg: FakeTelegram, make_fleet: FleetFactory) -> None:
    """Telegram's limits are per bot: three instances keep 30 a second between them (the fake server
    answers 429 past any of its sliding windows). While one instance's outbox sends the notice, 40
    residents start the bot, so the other instances have answers to send at the same moment."""
    tg.enforce_limits = True
    fleet = await make_fleet()
    t = await town(tg, fleet, 40)  # type: ignore[arg-type]
    residents = [tg.user(7000 + i, f"居民{i}") for i in range(40)]
    throttled_before = len(tg.throttled)
    since = tg.mark()
    tg.send(t.sec, tg.private_chat(t.sec), "/notice all 明天上午9点至12点停水，请提前储水。")
    for u in residents:
        tg.send(u, tg.private_chat(u), "/start")
    await tg.wait_text(t.sec_chat, "已送达 40/40", timeout=90, since=since)
    await fleet.settle()
    assert {g["title"]: copies(tg, g["id"], "通知 #1") for g in t.groups} == {g["title"]: 1 for g in t.groups}
    answers = Counter(r.chat_id for r in tg.sent[since:] if r.method == "sendMessage")
    assert {u["id"]: answers[u["id"]] for u in residents} == {u["id"]: 1 for u in residents}
    assert len(tg.throttled) == throttled_before, (
        f"{len(tg.throttled) - throttled_before} answers of 429 during the notice and the answers "
        f"({throttled_before} while the 40 groups were set up)")


# ---------------------------------------------------------------------------------------- meetings


async def test_meeting_reminder_is_sent_once(tg: FakeTelegram, make_fleet: FleetFactory) -> None:
    fleet = await make_fleet()
    w = await community(tg, fleet)  # type: ignore[arg-type]
    sec, mem_user, mem = w["sec"], w["mem_user"], w["mem"]
    start = soon(30)  # a "minute" lasts a second: remind=10m fires 10 s before the start
    due = start - timedelta(seconds=10)
    since = tg.mark()
    tg.send(sec, tg.private_chat(sec), f"/meeting {at(start)} | 党课 | 党员活动室 | 党课 | remind=10m")
    await tg.wait_text(sec["id"], "已安排会议", timeout=20, since=since)
    post = await tg.wait_text(mem, "会议 #1", timeout=20, since=since)
    assert post.message is not None
    tg.click(mem_user, post.message, "参加")
    await fleet.settle()
    assert datetime.now(UTC) < due, "the machine is too slow for this test's timing"
    await tg.wait_text(mem, "会议提醒", timeout=40, since=since)
    await tg.wait_text(mem_user["id"], "会议提醒", timeout=20, since=since)
    while datetime.now(UTC) < start + timedelta(seconds=2):  # three job runners had their chance
        await asyncio.sleep(0.2)
    await fleet.settle()
    assert len(texts(tg, mem["id"], "会议提醒")) == 1
    assert len(texts(tg, mem_user["id"], "会议提醒")) == 1


# ---------------------------------------------------------------------------------------- kill -9


async def test_kill_9_of_the_instance_delivering_a_broadcast(tg: FakeTelegram, make_fleet: FleetFactory) -> None:
    """The notice is handed to instance 2 directly, so its outbox takes the rows; instance 2 is
    killed in the middle. The others take the rows over after the lease: each chat ends with one
    copy, or two where a send was in flight at the kill (the Bot API has no idempotency key)."""
    fleet = await make_fleet(env={"SEND_RATE_GLOBAL": "8"})  # slow enough that the kill lands mid-way
    t = await town(tg, fleet, 40)  # type: ignore[arg-type]
    tg.answer_delay = 0.05  # each answer lags: a kill can fall between Telegram's "yes" and the mark
    tg.push_paused = True
    tg.send(t.sec, tg.private_chat(t.sec), "/notice all 今晚停电检修")
    update = tg.updates.pop()
    tg.push_paused = False
    victim = fleet.instance(2)
    assert await tg.post_webhook(update, SECRET, url=f"http://127.0.0.1:{victim.port}/telegram/webhook") == 200
    deadline = time.monotonic() + 60
    while sum(copies(tg, g["id"], "通知 #1") for g in t.groups) < 10:
        assert time.monotonic() < deadline, tg.describe()
        fleet.check_alive(2)
        await asyncio.sleep(0.01)
    await fleet.kill9(2)
    before = {g["id"]: copies(tg, g["id"], "通知 #1") for g in t.groups}
    assert sum(before.values()) < 40, "the kill came too late to test anything"
    async with fleet.read() as s:
        rows = list(await s.scalars(select(Outbox).where(Outbox.ref == "notice:1")))
    in_flight = {r.chat_id for r in rows if r.status == "sending" and r.inflight_at is not None}
    delivered = {r.chat_id for r in rows if r.status == "sent" or r.part_ids}
    assert {c for c, n in before.items() if n} <= delivered | in_flight

    await tg.wait_text(t.sec_chat, "已送达 40/40", timeout=90)
    await fleet.haproxy.wait_status("linli2", "DOWN")
    await asyncio.sleep(LEASE_SECONDS + 0.5)  # a lease's worth: anything sent twice would show by now
    await fleet.settle()
    after = {g["id"]: copies(tg, g["id"], "通知 #1") for g in t.groups}
    for chat, n in after.items():
        if chat in in_flight:
            assert 1 <= n <= 2, (chat, n)  # the contract's one at-least-once case
        else:
            assert n == 1, (chat, n, "not in flight at the kill, yet not exactly one copy")
    # The fleet goes on without it: a new update is pushed to the others and answered.
    since = tg.mark()
    tg.send(t.sec, tg.private_chat(t.sec), "/notices")
    await tg.wait_text(t.sec_chat, "最近的通知", timeout=20, since=since)


# ---------------------------------------------------------------------------------------- the edge


async def test_the_edge_wrong_secret_gets_401_and_an_instance_without_its_database_is_taken_out(
    tg: FakeTelegram, make_fleet: FleetFactory,
) -> None:
    fleet = await make_fleet(gated=[3])  # instance 3 reaches PostgreSQL through a cable we can cut
    w = await community(tg, fleet)  # type: ignore[arg-type]

    # A wrong secret through the balancer: 401 from whichever instance takes it, nothing stored.
    async with fleet.read() as s:
        stored = await s.scalar(select(func.count()).select_from(InboxUpdate))
    tg.push_paused = True
    tg.send(w["res_user"], w["res"], "/demand 伪造的诉求")
    forged = tg.updates.pop()
    tg.push_paused = False
    before = {n: int(r["hrsp_4xx"] or 0) for n, r in (await fleet.haproxy.servers()).items()}
    statuses = [await tg.post_webhook(forged, secret, url=fleet.webhook_url)
                for secret in (None, "x" * len(SECRET), SECRET[:-1], SECRET + "x", SECRET.upper(), "")]
    assert statuses == [401] * 6
    after = {n: int(r["hrsp_4xx"] or 0) for n, r in (await fleet.haproxy.servers()).items()}
    assert all(after[n] > before[n] for n in after), (before, after)  # each instance refused some
    await fleet.settle()
    async with fleet.read() as s:
        assert await s.scalar(select(func.count()).select_from(InboxUpdate)) == stored
        assert await s.scalar(select(func.count()).select_from(Demand)) == 0
    assert not any("伪造" in (r.text or "") for r in tg.sent)

    # Instance 3 loses its database: /healthz 503, HAProxy takes it out, the others serve everyone.
    gate = fleet.instance(3).gate
    assert gate is not None
    await gate.cut()
    status, body = await fleet.healthz(3)
    assert (status, body["database"]) == (503, False)
    assert (await fleet.healthz(1))[0] == 200
    await fleet.haproxy.wait_status("linli3", "DOWN", timeout=10)
    people = [tg.user(6000 + i, f"居民{i}") for i in range(15)]
    sent_before = tg.mark()
    served_before = await served(fleet)
    pushed = len(tg.pushes)
    for u in people:
        tg.send(u, tg.private_chat(u), "/start")
    await fleet.settle()
    answers = Counter(r.chat_id for r in tg.sent[sent_before:] if r.method == "sendMessage")
    assert {u["id"]: answers[u["id"]] for u in people} == {u["id"]: 1 for u in people}
    served_after = await served(fleet)
    assert served_after["linli3"] == served_before["linli3"], "HAProxy still sent updates to linli3"
    assert sum(served_after.values()) - sum(served_before.values()) == len(people)
    assert all(st == 200 for _, st in tg.pushes[pushed:])

    # The cable back: the instance is healthy again and HAProxy sends it its share.
    await gate.open()
    await fleet.wait_up([3], timeout=30)
    for i in range(6):
        u = tg.user(6100 + i, f"新居民{i}")
        tg.send(u, tg.private_chat(u), "/start")
    await fleet.settle()
    assert (await served(fleet))["linli3"] > served_after["linli3"]
