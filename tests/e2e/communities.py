"""A community with many bound chats, played through the fake server (shared by e2e tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from bot.storage.models import Notice, NoticeDelivery, Outbox
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram

# Telegram's own limits, for tests that check the bot keeps them (the harness raises them).
TELEGRAM_LIMITS = {
    "send_rate_global": 30.0,
    "send_rate_per_chat": 1.0,
    "send_burst_per_chat": 5,
    "send_rate_per_group": 20,
}


@dataclass
class Town:
    sec: dict[str, Any]
    groups: list[dict[str, Any]]  # resident chats
    member_chat: dict[str, Any] | None
    residents: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sec_chat(self) -> int:
        return int(self.sec["id"])


async def town(tg: FakeTelegram, bot: BotUnderTest, n: int, *, member_chat: bool = False,
               basic: int = 0, name: str = "幸福里") -> Town:
    """`n` resident groups (the first `basic` of them basic groups) bound to one community, and a
    secretary who created it with /setup and has started the bot."""
    sec = tg.user(2001, "王书记", username="wang")
    tg.send(sec, tg.private_chat(sec), "/start")
    groups = [tg.group(f"{name}{i + 1}号楼群", basic=i < basic) for i in range(n)]
    for g in groups:
        tg.set_status(g, sec, "creator")
    tg.send(sec, groups[0], f"/setup resident {name}")
    await tg.wait_text(groups[0], "已创建社区", timeout=30)
    for g in groups[1:]:
        tg.send(sec, g, f"/setup resident {name}")
    mem = None
    if member_chat:
        mem = tg.group(f"{name}党支部")
        tg.set_status(mem, sec, "creator")
        tg.send(sec, mem, f"/setup member {name}")
    await bot.settle(timeout=60)
    return Town(sec, groups, mem)


def copies(tg: FakeTelegram, chat_id: int, marker: str) -> int:
    """How many messages containing `marker` the bot sent to a chat."""
    return sum(1 for r in tg.sent if r.chat_id == chat_id and r.method.startswith("send") and r.text
               and marker in r.text)


async def notice_rows(bot: BotUnderTest) -> tuple[list[Notice], list[NoticeDelivery], int]:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        notices = list(await s.scalars(select(Notice).order_by(Notice.id)))
        deliveries = list(await s.scalars(select(NoticeDelivery).order_by(NoticeDelivery.id)))
        outbox = int(await s.scalar(select(func.count()).select_from(Outbox).where(Outbox.ref.like("notice:%"))) or 0)
    return notices, deliveries, outbox
