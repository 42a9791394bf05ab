"""The ready community the sandbox starts with: 幸福里, its two groups and seven people.

It is set up the way a secretary would do it in Telegram, through the bot itself: 王书记 adds
the bot to both groups and binds them with /setup, the others join, and everyone opens a private
chat with the bot (/start). The page shows that history, so a visitor sees how set-up looks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.sandbox.world import BOT_ID, Person, World

COMMUNITY = "幸福里"
RESIDENT_CHAT = -1001000000001
MEMBER_CHAT = -1001000000002
GROUPS = ((RESIDENT_CHAT, "幸福里居民群"), (MEMBER_CHAT, "幸福里党支部"))

SECRETARY = Person(1001, "王书记", "wang_shuji", "secretary")
RESIDENTS = (
    Person(2001, "张阿姨", "zhang_ayi", "resident"),
    Person(2002, "李大爷", "li_daye", "resident"),
    Person(2003, "陈女士", "chen_nvshi", "resident"),
)
MEMBERS = (
    Person(3001, "刘建国", "liu_jianguo", "member"),
    Person(3002, "赵敏", "zhao_min", "member"),
    Person(3003, "孙志强", "sun_zhiqiang", "member"),
)
CAST = (SECRETARY, *RESIDENTS, *MEMBERS)

BOT_TIMEOUT = 60.0  # seconds to wait for each answer while setting up (a cold first start is slow)


def add_cast(world: World) -> None:
    world.people = []
    for person in CAST:
        world.add_person(person)


def add_groups(world: World) -> None:
    """The two groups as 王书记 created them: he is their owner, nobody else is in yet."""
    for chat_id, title in GROUPS:
        world.add_group(chat_id, title)
        world.set_status(chat_id, SECRETARY.id, "creator")


async def seed(world: World, settle: Callable[[], Awaitable[None]]) -> None:
    """Play the set-up through the bot; `settle` waits until the bot has handled everything."""

    async def say(user: Person, chat_id: int, text: str) -> dict[str, Any]:
        sent = world.user_message(user.id, chat_id, text=text)
        return await world.wait_for_bot(
            lambda m: m["chat"]["id"] == chat_id and m["message_id"] > sent["message_id"], BOT_TIMEOUT
        )

    for chat_id, _title in GROUPS:
        # The bot joins as an administrator: it then sees every message and may pin notices.
        world.member_change(chat_id, BOT_ID, "administrator", by=SECRETARY.id)
        await world.wait_for_bot(lambda m, c=chat_id: m["chat"]["id"] == c, BOT_TIMEOUT)  # its welcome
        kind = "resident" if chat_id == RESIDENT_CHAT else "member"
        await say(SECRETARY, chat_id, f"/setup {kind} {COMMUNITY}")
    for person in RESIDENTS:
        world.member_change(RESIDENT_CHAT, person.id, "member", by=person.id)
    for person in MEMBERS:
        world.member_change(MEMBER_CHAT, person.id, "member", by=person.id)
    await settle()
    for person in CAST:
        await say(person, person.id, "/start")
    await settle()
