"""Adding the bot to a group brings one welcome, though Telegram reports the arrival twice
(a my_chat_member update and a new_chat_members service message), in either order."""

from __future__ import annotations

from typing import Any

import pytest

from bot.storage.models import Chat
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram

WELCOME = "请群管理员发送"


def service_join(tg: FakeTelegram, chat: dict[str, Any], by: dict[str, Any]) -> None:
    # The fake server has no public call for the bot's own join message; this is the message
    # Telegram posts in the group when someone adds the bot.
    tg._service(chat, by, {"new_chat_members": [tg.bot]})


def welcomes(tg: FakeTelegram, chat: dict[str, Any]) -> int:
    return sum(1 for m in tg.messages_to(chat) if WELCOME in (m.get("text") or ""))


async def bot_status(bot: BotUnderTest, chat_id: int) -> str:
    assert bot.app is not None
    async with bot.app.services.ctx.read() as s:
        row = await s.get(Chat, chat_id)
        assert row is not None
        return row.bot_status


@pytest.mark.parametrize("service_first", [False, True], ids=["update-first", "message-first"])
async def test_adding_the_bot_brings_one_welcome(tg: FakeTelegram, bot: BotUnderTest, service_first: bool) -> None:
    admin = tg.user(501, "王书记")
    group = tg.group("新群", with_bot=False)
    tg.set_status(group, admin, "creator")
    if service_first:
        service_join(tg, group, admin)
        tg.add_bot(group, by=admin, status="administrator")
    else:
        tg.add_bot(group, by=admin, status="administrator")
        service_join(tg, group, admin)
    await tg.wait_text(group, WELCOME)
    await bot.settle()
    assert welcomes(tg, group) == 1
    # The service message's guess ("member") does not overwrite what Telegram said.
    assert await bot_status(bot, group["id"]) == "administrator"


async def test_removed_and_added_again_is_welcomed_again_once(tg: FakeTelegram, bot: BotUnderTest) -> None:
    admin = tg.user(502, "李书记")
    group = tg.group("楼栋群", with_bot=False)
    tg.set_status(group, admin, "creator")
    tg.add_bot(group, by=admin)
    service_join(tg, group, admin)
    await tg.wait_text(group, WELCOME)
    await bot.settle()
    # Promoted to administrator: no new welcome.
    tg.add_bot(group, by=admin, status="administrator")
    await bot.settle()
    assert welcomes(tg, group) == 1
    # Removed, then added back: welcomed once more.
    tg.remove_bot(group, by=admin)
    tg._service(group, admin, {"left_chat_member": tg.bot})
    await bot.settle()
    assert await bot_status(bot, group["id"]) == "left"
    tg.add_bot(group, by=admin)
    service_join(tg, group, admin)
    await bot.settle()
    assert welcomes(tg, group) == 2
    assert await bot_status(bot, group["id"]) == "member"
