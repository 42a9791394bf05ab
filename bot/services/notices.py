"""Notices (通知): a secretary's broadcast to the community's bound chats, durable and exact.

The notice, one delivery row per target chat and one outbox row each are written in one
transaction before anything is sent; the outbox delivers them within Telegram's limits and, as
each ends (sent or failed for good), `on_final` records it on the delivery in the same
transaction, counts it on the notice atomically and, every few seconds, edits the secretary's
progress message; the last one turns it into the summary.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.base import ServiceContext
from bot.services.communities import INACTIVE
from bot.services.errors import NotFound, Term, UserError
from bot.services.notify import enqueue
from bot.services.personal import row_dict
from bot.storage.models import Chat, Community, Notice, NoticeAck, NoticeDelivery, Outbox, User
from bot.storage.sequences import next_number
from bot.transport.errors import ErrorKind, kind_of_text
from bot.transport.port import Button, Keyboard
from bot.transport.split import CAPTION_LIMIT, visible_length
from bot.ui.html import Html, esc
from bot.ui.i18n import Translator

SCOPES = ("residents", "members", "all")
_ALIASES = {"resident": "residents", "member": "members", "everyone": "all", "everybody": "all"}
KINDS = {"residents": ("resident",), "members": ("member",), "all": ("resident", "member")}
MAX_TEXT = 3000  # leaves room for the heading within Telegram's 4,096
PROGRESS_EVERY = timedelta(seconds=3)  # the progress message is edited at most this often
ACK_PREFIX = "nack"


def parse_scope(args: str) -> tuple[str, str]:
    """`residents 明天停水` -> ("residents", "明天停水"); no scope -> ("all", args). A Latin first
    word close to a scope (`residnts`, `memebers`) is taken for a typo, not for the text."""
    parts = args.strip().split(None, 1)
    if not parts:
        return "all", ""
    first, rest = parts[0], parts[1].strip() if len(parts) > 1 else ""
    low = first.lower()
    if low in SCOPES:
        return low, rest
    if low in _ALIASES:
        return _ALIASES[low], rest
    if re.fullmatch(r"[a-z]{3,12}", low) and difflib.get_close_matches(low, [*SCOPES, *_ALIASES], n=1, cutoff=0.75):
        raise UserError("err_notice_scope", scope=first)
    return "all", args.strip()


def body_text(tr: Translator, number: int, community: str, text: str) -> Html:
    return tr("notice_body", n=number, community=community, text=text)


def ack_keyboard(tr: Translator, notice_id: int, count: int) -> Keyboard:
    return Keyboard.of([Button(str(tr("notice_ack_button", count=count)), f"{ACK_PREFIX}:{notice_id}")])


@dataclass
class Ack:
    notice: Notice
    new: bool
    count: int  # acknowledgements in the chat it was pressed in (the button's count there)


@dataclass
class NoticeLine:
    notice: Notice
    acks: int


@dataclass
class AckList:
    notice: Notice
    by_chat: list[tuple[str, list[str]]]  # (chat title, names)


class NoticeService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        ctx.personal.register("notices", self._export_user, self._forget_user)

    @property
    def _locale(self) -> str:
        return self.ctx.settings.default_locale

    # ------------------------------------------------------------------ broadcasting

    async def broadcast(
        self,
        *,
        actor_id: int,
        community_id: int,
        scope: str,
        text: str,
        photo: str | None = None,
        document_id: str | None = None,
        pin: bool = False,
        reply_chat_id: int,
        reply_thread_id: int | None = None,
        reply_locale: str | None = None,
    ) -> Notice:
        if scope not in SCOPES:
            raise UserError("err_notice_scope", scope=scope)
        text = text.strip()
        if not text:
            raise UserError("err_notice_usage")
        if len(text) > MAX_TEXT:
            raise UserError("err_notice_too_long", limit=MAX_TEXT, length=len(text))
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            community = await s.get(Community, community_id)
            assert community is not None
            tr = Translator(community.locale or self._locale)
            if photo or document_id:
                # Checked on the rendered caption, before anything is stored: Telegram takes 1,024.
                room = CAPTION_LIMIT - visible_length(body_text(tr, 9999, community.name, ""))
                if len(text) > room:
                    raise UserError("err_notice_caption_too_long", limit=room, length=len(text))
            targets = list(await s.scalars(
                select(Chat).where(Chat.community_id == community_id, Chat.kind.in_(KINDS[scope]),
                                   Chat.bot_status.not_in(INACTIVE)).order_by(Chat.id)
            ))
            if not targets:
                raise UserError("err_notice_no_targets", scope=Term(f"notice_scope_{scope}"))
            notice = Notice(
                community_id=community_id, number=await next_number(s, community_id, "notice"), scope=scope,
                text=text, photo=photo, document_id=document_id, pin=pin, created_by=actor_id,
                created_at=self.ctx.clock(), reply_chat_id=reply_chat_id, reply_thread_id=reply_thread_id,
                locale=tr.locale, reply_locale=reply_locale or tr.locale, targets=len(targets),
            )
            s.add(notice)
            await s.flush()
            body = body_text(tr, notice.number, community.name, text)
            keyboard = {"rows": ack_keyboard(tr, notice.id, 0).to_json()}
            # Written in bulk (a thousand targets is two INSERTs, not a thousand round trips); the
            # targets are bound chats, current ids, so there is nothing to resolve or deduplicate.
            now = self.ctx.clock()
            ref = f"notice:{notice.id}"
            for chunk in _chunks(targets, 400):  # multi-row INSERTs: one round trip per chunk
                await s.execute(insert(Outbox).values([
                    {"chat_id": chat.id, "thread_id": chat.topic_id, "text": body, "keyboard": keyboard,
                     "photo": photo, "document_id": document_id, "pin": pin, "community_id": community_id,
                     "ref": ref, "dedup_key": f"{ref}:c{chat.id}", "not_before": now, "created_at": now,
                     "status": "pending", "attempts": 0}
                    for chat in chunk
                ]))
            outbox_ids = dict((await s.execute(select(Outbox.chat_id, Outbox.id).where(Outbox.ref == ref))).all())
            for chunk in _chunks(targets, 400):
                await s.execute(insert(NoticeDelivery).values([
                    {"notice_id": notice.id, "chat_id": chat.id, "chat_title": chat.title,
                     "outbox_id": outbox_ids[chat.id], "status": "pending", "updated_at": now}
                    for chat in chunk
                ]))
            s.info["outbox"] = True  # bulk rows do not pass the unit of work: wake the outbox all the same
            # The progress message: after the targets, so in a chat that is both it follows the notice.
            rtr = Translator(notice.reply_locale)
            progress = await enqueue(
                s, chat_id=reply_chat_id, thread_id=reply_thread_id, community_id=community_id,
                text=rtr("notice_progress", n=notice.number, done=0, total=notice.targets),
                ref=f"notice:{notice.id}:progress", dedup_key=f"notice:{notice.id}:progress",
            )
            assert progress is not None
            notice.progress_outbox_id = progress.id
        return notice

    async def on_final(self, s: AsyncSession, row: Outbox) -> None:
        """The outbox marked a notice's row sent or failed for good (its transaction). A few plain
        statements: this runs for every delivery of a broadcast, at 30 a second."""
        if not row.ref or not row.ref.startswith("notice:") or row.ref.endswith(":progress"):
            return
        if row.status == "sent":
            values: dict[str, Any] = {
                "status": "sent", "message_id": row.message_id, "sent_chat_id": row.chat_id,
                "reason": ErrorKind.MIGRATED.value if row.moved_from is not None else None, "pin_error": row.pin_error,
            }
            counter = Notice.delivered
        else:
            values = {"status": "failed", "error": (row.error or "")[:512], "reason": kind_of_text(row.error).value}
            counter = Notice.failed
        # Only a delivery still pending counts (an outcome told twice is counted once).
        notice_id = await s.scalar(
            update(NoticeDelivery).where(NoticeDelivery.outbox_id == row.id, NoticeDelivery.status == "pending")
            .values(updated_at=self.ctx.clock(), **values).returning(NoticeDelivery.notice_id)
            .execution_options(synchronize_session=False)
        )
        if notice_id is None:
            return
        # One UPDATE each, so concurrent deliveries (other tasks, other instances) never lose a count
        # and exactly one of them sees the last.
        counts = (await s.execute(
            update(Notice).where(Notice.id == notice_id).values({counter: counter + 1})
            .returning(Notice.delivered, Notice.failed, Notice.targets)
            .execution_options(synchronize_session=False)
        )).one()
        done = counts.delivered + counts.failed
        now = self.ctx.clock()
        if done >= counts.targets:
            won = await s.scalar(
                update(Notice).where(Notice.id == notice_id, Notice.finished_at.is_(None))
                .values(finished_at=now, progress_at=now).returning(Notice.id)
                .execution_options(synchronize_session=False)
            )
            if won is not None:
                await self._edit_progress(s, notice_id, final=True)
            return
        won = await s.scalar(
            update(Notice)
            .where(Notice.id == notice_id, Notice.finished_at.is_(None),
                   (Notice.progress_at.is_(None)) | (Notice.progress_at <= now - PROGRESS_EVERY))
            .values(progress_at=now).returning(Notice.id)
            .execution_options(synchronize_session=False)
        )
        if won is not None:
            await self._edit_progress(s, notice_id, final=False)

    async def _edit_progress(self, s: AsyncSession, notice_id: int, *, final: bool) -> None:
        notice = await s.get(Notice, notice_id)
        assert notice is not None
        await s.refresh(notice)
        tr = Translator(notice.reply_locale)
        if final:
            text = await self.summary_text(s, notice, tr)
        else:
            text = tr("notice_progress", n=notice.number, done=notice.delivered + notice.failed, total=notice.targets)
        # Through the outbox like any edit; queued edits of it collapse into the last.
        await enqueue(
            s, chat_id=notice.reply_chat_id, text=text, community_id=notice.community_id,
            edit_of=notice.progress_outbox_id, coalesce_key=f"notice:{notice.id}:progress",
            ref=f"notice:{notice.id}:progress",
        )

    async def summary_text(self, s: AsyncSession, notice: Notice, tr: Translator) -> Html:
        lines = [str(tr("notice_summary", n=notice.number, sent=notice.delivered, total=notice.targets))]
        deliveries = list(await s.scalars(
            select(NoticeDelivery).where(NoticeDelivery.notice_id == notice.id).order_by(NoticeDelivery.id)
        ))
        failed = [d for d in deliveries if d.status == "failed"]
        if failed:
            lines.append(str(tr("notice_summary_failed")))
            lines += [str(tr("notice_summary_line", chat=d.chat_title or str(d.chat_id), reason=self._reason(tr, d)))
                      for d in failed]
        notes = [d for d in deliveries if d.status == "sent" and (d.reason or d.pin_error)]
        if notes:
            lines.append(str(tr("notice_summary_notes")))
            lines += [str(tr("notice_summary_line", chat=d.chat_title or str(d.chat_id), reason=self._reason(tr, d)))
                      for d in notes]
        return Html("\n".join(lines))

    @staticmethod
    def _reason(tr: Translator, d: NoticeDelivery) -> Html:
        """In plain words: ours for what we know, Telegram's own text otherwise."""
        if d.status == "sent":
            if d.pin_error:
                if "not enough rights" in d.pin_error.lower():
                    return tr("notice_reason_pin_rights")
                return tr("notice_reason_pin", error=_telegram_words(d.pin_error))
            return tr("notice_reason_migrated")
        if d.reason == ErrorKind.CHAT_GONE:
            return tr("notice_reason_chat_gone")
        if d.reason == ErrorKind.TRANSIENT:
            return tr("notice_reason_unreachable", error=_telegram_words(d.error))
        return _telegram_words(d.error)

    # ------------------------------------------------------------------ 收到

    async def ack(self, *, user_id: int, notice_id: int, chat_id: int) -> Ack:
        async with self.ctx.tx() as s:
            notice = await s.get(Notice, notice_id)
            if notice is None:
                raise NotFound("err_notice_unknown", n=notice_id)
            dialect = s.bind.dialect.name if s.bind else "sqlite"
            ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(NoticeAck).values(
                notice_id=notice_id, user_id=user_id, chat_id=chat_id, created_at=self.ctx.clock())
            res = await s.execute(ins.on_conflict_do_nothing(index_elements=["notice_id", "user_id"]))
            new = res.rowcount == 1  # type: ignore[attr-defined]
            count = await s.scalar(
                select(func.count()).select_from(NoticeAck)
                .where(NoticeAck.notice_id == notice_id, NoticeAck.chat_id == chat_id)
            )
        return Ack(notice, new, int(count or 0))

    # ------------------------------------------------------------------ reading

    async def recent(self, *, actor_id: int, community_id: int, limit: int = 10) -> list[NoticeLine]:
        async with self.ctx.read() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            notices = list(await s.scalars(
                select(Notice).where(Notice.community_id == community_id).order_by(Notice.number.desc()).limit(limit)
            ))
            counts = dict((await s.execute(
                select(NoticeAck.notice_id, func.count()).where(NoticeAck.notice_id.in_([n.id for n in notices]))
                .group_by(NoticeAck.notice_id)
            )).all()) if notices else {}
        return [NoticeLine(n, int(counts.get(n.id, 0))) for n in notices]

    async def acks(self, *, actor_id: int, community_id: int, number: int) -> AckList:
        async with self.ctx.read() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            notice = await s.scalar(select(Notice).where(Notice.community_id == community_id, Notice.number == number))
            if notice is None:
                raise NotFound("err_notice_unknown", n=number)
            rows = (await s.execute(
                select(NoticeAck.chat_id, Chat.title, User)
                .join(User, User.id == NoticeAck.user_id)
                .outerjoin(Chat, Chat.id == NoticeAck.chat_id)
                .where(NoticeAck.notice_id == notice.id)
                .order_by(NoticeAck.chat_id, NoticeAck.created_at)
            )).all()
        by_chat: dict[int, tuple[str, list[str]]] = {}
        for chat_id, title, user in rows:
            by_chat.setdefault(chat_id, (title or str(chat_id), []))[1].append(user.display_name)
        return AckList(notice, list(by_chat.values()))

    async def community_of(self, notice_id: int) -> int | None:
        async with self.ctx.read() as s:
            return await s.scalar(select(Notice.community_id).where(Notice.id == notice_id))

    # ------------------------------------------------------------------ /mydata, /forget

    async def _export_user(self, s: AsyncSession, user_id: int) -> dict[str, Any]:
        acks = list(await s.scalars(select(NoticeAck).where(NoticeAck.user_id == user_id)))
        sent = list(await s.scalars(select(Notice).where(Notice.created_by == user_id)))
        return {"acknowledged": [row_dict(a) for a in acks],
                "notices_sent": [{"id": n.id, "number": n.number, "created_at": _iso(n.created_at)} for n in sent]}

    async def _forget_user(self, s: AsyncSession, user_id: int) -> None:
        # Acknowledgements go (the counts drop by theirs); notices they sent stay, unsigned.
        await s.execute(NoticeAck.__table__.delete().where(NoticeAck.user_id == user_id))
        await s.execute(update(Notice).where(Notice.created_by == user_id).values(created_by=None))


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _telegram_words(error: str | None) -> Html:
    """"403: Forbidden: bot was blocked" -> "bot was blocked" (Telegram's own words, without codes)."""
    text = (error or "").strip()
    text = re.sub(r"^\d{3}:\s*", "", text)
    text = re.sub(r"^(Bad Request|Forbidden|Not Found|Conflict|Unauthorized):\s*", "", text)
    return esc(text or "?")


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None
