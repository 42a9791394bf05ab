from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.services.errors import Denied, UserError
from bot.storage.models import Chat, ChatMember, Demand, Secretary, User
from bot.transport.port import Chat as TChat
from tests.integration.conftest import ALICE, BOB, CAROL, MEM, RES, World


async def bind_both(world: World) -> int:
    world.book.statuses[(RES.id, ALICE.id)] = "creator"
    world.book.statuses[(MEM.id, ALICE.id)] = "administrator"
    await world.see(ALICE, RES)
    await world.see(ALICE, MEM)
    r = await world.communities.setup(
        actor_id=ALICE.id, chat_id=RES.id, chat_is_group=True, thread_id=None, kind="resident", name="幸福里"
    )
    assert r.created
    r2 = await world.communities.setup(
        actor_id=ALICE.id, chat_id=MEM.id, chat_is_group=True, thread_id=7, kind="member", name="幸福里"
    )
    assert not r2.created and r2.community.id == r.community.id
    return r.community.id


async def test_setup_binds_and_roles(world: World) -> None:
    cid = await bind_both(world)
    await world.see(BOB, RES)
    await world.see(CAROL, MEM)
    roles = {r.community_id: r for r in await world.people.roles(ALICE.id)}
    assert roles[cid].secretary and "setup" in roles[cid].secretary_sources
    bob = await world.people.roles(BOB.id)
    assert [r.names for r in bob] == [["resident"]]
    carol = await world.people.roles(CAROL.id)
    assert [r.names for r in carol] == [["member"]]
    async with world.ctx.read() as s:
        chat = await s.get(Chat, MEM.id)
        assert chat and chat.topic_id == 7 and chat.kind == "member"


async def test_non_admin_setup_refused_and_nothing_changes(world: World) -> None:
    await world.see(BOB, RES)
    with pytest.raises(Denied):
        await world.communities.setup(
            actor_id=BOB.id, chat_id=RES.id, chat_is_group=True, thread_id=None, kind="resident", name="X"
        )
    async with world.ctx.read() as s:
        chat = await s.get(Chat, RES.id)
        assert chat and chat.community_id is None


async def test_existing_community_needs_its_secretary(world: World) -> None:
    await bind_both(world)
    other = TChat(-300, "supergroup", "another")
    world.book.statuses[(other.id, BOB.id)] = "creator"
    await world.see(BOB, other)
    with pytest.raises(Denied):
        await world.communities.setup(
            actor_id=BOB.id, chat_id=other.id, chat_is_group=True, thread_id=None, kind="resident", name="幸福里"
        )


async def test_resident_chat_admin_is_not_secretary_but_member_chat_admin_is(world: World) -> None:
    cid = await bind_both(world)
    world.book.statuses[(RES.id, BOB.id)] = "administrator"  # a 楼长
    world.book.statuses[(MEM.id, CAROL.id)] = "administrator"
    async with world.ctx.read() as s:
        assert not await world.ctx.roles.is_secretary(s, cid, BOB.id)
        assert await world.ctx.roles.is_secretary(s, cid, CAROL.id)
        assert await world.ctx.roles.is_secretary(s, cid, 999)  # configured superadmin


async def test_secretary_add_remove_and_permissions(world: World) -> None:
    cid = await bind_both(world)
    await world.see(BOB, RES)
    target = User(id=BOB.id, first_name="Bob")
    with pytest.raises(Denied):
        await world.communities.set_secretary(actor_id=CAROL.id, chat_id=RES.id, target=target, add=True)
    await world.communities.set_secretary(actor_id=ALICE.id, chat_id=RES.id, target=target, add=True)
    async with world.ctx.read() as s:
        assert await world.ctx.roles.is_secretary(s, cid, BOB.id)
    await world.communities.set_secretary(actor_id=ALICE.id, chat_id=RES.id, target=target, add=False)
    async with world.ctx.read() as s:
        assert not await world.ctx.roles.is_secretary(s, cid, BOB.id)
    with pytest.raises(UserError):
        await world.communities.set_secretary(actor_id=ALICE.id, chat_id=RES.id, target=target, add=False)


async def test_leaving_member_chat_ends_membership(world: World) -> None:
    cid = await bind_both(world)
    await world.see(CAROL, MEM)
    await world.people.record_presence(MEM.id, CAROL.id, "left")
    async with world.ctx.read() as s:
        assert not await world.ctx.roles.is_member(s, cid, CAROL.id)


async def test_unbind_needs_secretary(world: World) -> None:
    await bind_both(world)
    await world.see(BOB, RES)
    with pytest.raises(Denied):
        await world.communities.unbind(actor_id=BOB.id, chat_id=RES.id)
    await world.communities.unbind(actor_id=ALICE.id, chat_id=RES.id)
    async with world.ctx.read() as s:
        chat = await s.get(Chat, RES.id)
        assert chat and chat.community_id is None


async def test_forget_erases_user_keeps_demands_anonymised(world: World) -> None:
    cid = await bind_both(world)
    await world.see(BOB, RES)
    async with world.ctx.tx() as s:
        now = world.ctx.clock()
        s.add(Demand(community_id=cid, number=1, submitter_id=BOB.id, text="路灯坏了", category="roads",
                     accept_by=now, resolve_by=now))
    data = await world.people.export(BOB.id)
    assert b"Bob" in data and "路灯坏了".encode() in data
    await world.people.forget(BOB.id)
    async with world.ctx.read() as s:
        assert await s.get(User, BOB.id) is None
        assert not list(await s.scalars(select(ChatMember).where(ChatMember.user_id == BOB.id)))
        demand = await s.scalar(select(Demand))
        assert demand is not None and demand.submitter_id is None and demand.text == "路灯坏了"
        assert not list(await s.scalars(select(Secretary).where(Secretary.user_id == BOB.id)))


async def test_language(world: World) -> None:
    await world.see(BOB, RES)
    assert await world.people.set_language(BOB.id, "en") == "en"
    with pytest.raises(UserError):
        await world.people.set_language(BOB.id, "fr")
    async with world.ctx.read() as s:
        u = await s.get(User, BOB.id)
        assert u and u.language == "en"
