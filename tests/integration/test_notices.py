"""The notices service on SQLite and PostgreSQL: what a broadcast stores (all of it, or nothing),
how deliveries are counted as they end (concurrently too), 收到, and groups that move."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, update

from bot.services.errors import Denied, UserError
from bot.services.notices import NoticeService, parse_scope
from bot.storage.db import writing
from bot.storage.models import Chat, ChatMember, ChatMove, Notice, NoticeAck, NoticeDelivery, Outbox
from tests.integration.conftest import ALICE, BOB, CAROL, MEM, RES, World
from tests.integration.test_communities import bind_both


async def counts(world: World) -> tuple[int, int, int]:
    async with world.ctx.read() as s:
        return (
            int(await s.scalar(select(func.count()).select_from(Notice)) or 0),
            int(await s.scalar(select(func.count()).select_from(NoticeDelivery)) or 0),
            int(await s.scalar(select(func.count()).select_from(Outbox).where(Outbox.ref.like("notice:%"))) or 0),
        )


def test_scope_parsing() -> None:
    assert parse_scope("residents 明天停水") == ("residents", "明天停水")
    assert parse_scope("Members  开会") == ("members", "开会")
    assert parse_scope("明天停水") == ("all", "明天停水")
    assert parse_scope("Water off tomorrow") == ("all", "Water off tomorrow")
    assert parse_scope("resident 停水") == ("residents", "停水")
    with pytest.raises(UserError) as e:
        parse_scope("residnts 停水")
    assert e.value.key == "err_notice_scope"


async def test_broadcast_stores_everything_in_one_go_or_nothing(world: World) -> None:
    cid = await bind_both(world)
    notices = NoticeService(world.ctx)
    with pytest.raises(Denied):
        await notices.broadcast(actor_id=BOB.id, community_id=cid, scope="all", text="x", reply_chat_id=BOB.id)
    for bad, key in (("  ", "err_notice_usage"), ("字" * 3001, "err_notice_too_long")):
        with pytest.raises(UserError) as e:
            await notices.broadcast(actor_id=ALICE.id, community_id=cid, scope="all", text=bad, reply_chat_id=1)
        assert e.value.key == key
    with pytest.raises(UserError) as e:
        await notices.broadcast(actor_id=ALICE.id, community_id=cid, scope="all", text="长" * 1010, photo="p",
                                reply_chat_id=1)
    assert e.value.key == "err_notice_caption_too_long"
    assert await counts(world) == (0, 0, 0)

    n = await notices.broadcast(actor_id=ALICE.id, community_id=cid, scope="residents", text="停水 <b>", pin=True,
                                reply_chat_id=ALICE.id)
    assert (n.number, n.targets) == (1, 1)
    async with world.ctx.read() as s:
        rows = list(await s.scalars(select(Outbox).order_by(Outbox.id)))
        [to_res, progress] = [r for r in rows if r.ref and r.ref.startswith("notice:")]
        assert to_res.chat_id == RES.id and to_res.pin and "停水 &lt;b&gt;" in to_res.text
        assert progress.chat_id == ALICE.id and "0/1" in progress.text
    n2 = await notices.broadcast(actor_id=ALICE.id, community_id=cid, scope="all", text="开会", reply_chat_id=1)
    assert (n2.number, n2.targets) == (2, 2)


async def test_deliveries_are_counted_exactly_even_at_once(world: World) -> None:
    cid = await bind_both(world)
    notices = NoticeService(world.ctx)
    n = await notices.broadcast(actor_id=ALICE.id, community_id=cid, scope="all", text="开会", reply_chat_id=ALICE.id)
    async with world.ctx.read() as s:
        rows = list(await s.scalars(select(Outbox).where(Outbox.ref == f"notice:{n.id}")))

    async def finish(row_id: int, status: str, error: str | None) -> None:
        async with writing(world.ctx.sessions) as s:
            await s.execute(update(Outbox).where(Outbox.id == row_id).values(status=status, error=error, message_id=5))
            row = await s.get(Outbox, row_id)
            assert row is not None
            await notices.on_final(s, row)

    await asyncio.gather(
        finish(rows[0].id, "sent", None),
        finish(rows[1].id, "failed", "403: Forbidden: bot was kicked from the supergroup chat"),
    )
    await finish(rows[0].id, "sent", None)  # told twice: counted once
    async with world.ctx.read() as s:
        notice = await s.get(Notice, n.id)
        assert notice is not None and (notice.delivered, notice.failed) == (1, 1) and notice.finished_at
        edits = list(await s.scalars(
            select(Outbox).where(Outbox.coalesce_key == f"notice:{n.id}:progress").order_by(Outbox.id)))
        summaries = [e for e in edits if "已送达" in e.text]
        assert len(summaries) == 1 and edits[-1] is summaries[0]  # the last to end wrote it, once
        assert "已送达 1/2" in summaries[0].text and "机器人已被移出该群" in summaries[0].text
        assert all(e.edit_of == notice.progress_outbox_id for e in edits)


async def test_ack_once_per_person_counted_per_chat(world: World) -> None:
    cid = await bind_both(world)
    notices = NoticeService(world.ctx)
    await world.see(BOB, RES)
    await world.see(CAROL, MEM)
    n = await notices.broadcast(actor_id=ALICE.id, community_id=cid, scope="all", text="开会", reply_chat_id=1)
    first = await notices.ack(user_id=BOB.id, notice_id=n.id, chat_id=RES.id)
    again = await notices.ack(user_id=BOB.id, notice_id=n.id, chat_id=MEM.id)
    other = await notices.ack(user_id=CAROL.id, notice_id=n.id, chat_id=MEM.id)
    assert (first.new, first.count) == (True, 1)
    assert (again.new, again.count) == (False, 0)
    assert (other.new, other.count) == (True, 1)
    listing = await notices.acks(actor_id=ALICE.id, community_id=cid, number=1)
    assert sorted(names for _, names in listing.by_chat) == [["Bob"], ["Carol"]]
    with pytest.raises(Denied):
        await notices.acks(actor_id=BOB.id, community_id=cid, number=1)
    await world.people.forget(BOB.id)
    async with world.ctx.read() as s:
        assert await s.scalar(select(func.count()).select_from(NoticeAck)) == 1


async def test_an_upgraded_group_keeps_its_binding_members_and_queue(world: World) -> None:
    cid = await bind_both(world)
    await world.see(BOB, RES)
    notices = NoticeService(world.ctx)
    await notices.broadcast(actor_id=ALICE.id, community_id=cid, scope="residents", text="停电", reply_chat_id=1)
    new = -100999
    await world.communities.migrate(old=RES.id, new=new)
    await world.communities.migrate(old=RES.id, new=new)  # both service messages: the second changes nothing
    async with world.ctx.read() as s:
        moved = await s.get(Chat, new)
        old = await s.get(Chat, RES.id)
        assert moved is not None and (moved.community_id, moved.kind) == (cid, "resident")
        assert old is not None and old.community_id is None and old.bot_status == "migrated"
        assert await s.get(ChatMember, (new, BOB.id)) is not None
        assert await s.get(ChatMember, (RES.id, BOB.id)) is None
        assert (await s.get(ChatMove, RES.id)).new_chat_id == new  # type: ignore[union-attr]
        row = await s.scalar(select(Outbox).where(Outbox.ref == "notice:1"))
        assert row is not None and (row.chat_id, row.moved_from) == (new, RES.id)
    # Later messages for the old id (say, a demand filed there long ago) go to the new one.
    from bot.services.notify import enqueue

    async with world.ctx.tx() as s:
        later = await enqueue(s, chat_id=RES.id, text="回复")
        assert later is not None and later.chat_id == new
    n2 = await notices.broadcast(actor_id=ALICE.id, community_id=cid, scope="residents", text="二", reply_chat_id=1)
    async with world.ctx.read() as s:
        assert [d.chat_id for d in await s.scalars(select(NoticeDelivery).where(NoticeDelivery.notice_id == n2.id))] == [new]
