"""/metrics and /healthz: scraped over HTTP, parsed with prometheus-client's own parser; the counters
move as updates are handled and replies sent."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import BotUnderTest
from tests.e2e.test_webhook import free_port
from tests.fakeapi.server import FakeTelegram


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        body = await resp.text()
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def health(port: int) -> tuple[int, dict[str, bool]]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz") as resp:
        return resp.status, await resp.json()


async def test_metrics_move_as_updates_are_handled(tg: FakeTelegram, framework: str, tmp_path: Path) -> None:
    port = free_port()
    bot = BotUnderTest(tg, framework, tmp_path, metrics_listen=f"127.0.0.1:{port}")
    await bot.start()
    try:
        users = [tg.user(300 + i, f"用户{i}") for i in range(5)]
        tg.send(users[0], tg.private_chat(users[0]), "/start")
        await bot.settle()
        before = await scrape(port)
        for u in users:
            tg.send(u, tg.private_chat(u), "/whoami")
        tg.send(users[0], tg.private_chat(users[0]), "/lang xx")  # refused: a user error
        await bot.settle()
        after = await scrape(port)

        def moved(name: str, **labels: str) -> float:
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0.0) - before.get(key, 0.0)

        assert moved("linli_updates_received_total") == 6
        assert moved("linli_updates_handled_total", outcome="ok") == 5
        assert moved("linli_updates_handled_total", outcome="user_error") == 1
        assert moved("linli_update_handling_seconds_count") == 6
        assert moved("linli_messages_sent_total", method="sendMessage") >= 6
        assert after[("linli_inbox_backlog", ())] == 0
        assert after[("linli_outbox_backlog", ())] == 0
        assert ("linli_jobs_due", ()) in after and ("linli_jobs_late_seconds", ()) in after
        assert ("linli_telegram_429_total", ()) in after
        status, body = await health(port)
        assert (status, body) == (200, {"database": True, "telegram": True})
    finally:
        await bot.stop()
