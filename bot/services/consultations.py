"""Consultations (议事协商, 征询意见): proposals with 附议, consultations in every resident chat with one
ballot per person, a hidden tally until the close, the close as a jobs row, and the 公示.

One ballot per person per consultation is the database's to keep: a unique key (consultation,
user) and an upsert; a press changes the person's row, never adds a second. Every ballot
transaction first writes the consultation's row while it is open (a row lock on PostgreSQL,
SQLite has one writer), and the close moves that same row from open to closed: a ballot either
commits before the close and is counted, or finds it closed. The tally is read only by the
close, frozen on the row, and shown only from there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.consultations import (
    CHOICES,
    CLOSED,
    DEFAULT_THRESHOLD,
    MAX_COMMENT,
    MAX_DECISION,
    MAX_NOTE,
    MAX_PROPOSAL,
    OPEN,
    ConsultInputError,
    parse_consult,
    title_from,
)
from bot.domain.redact import Identity, redact
from bot.scheduler.runner import JobRunner, add_job
from bot.services.base import ServiceContext
from bot.services.consultation_posts import Editor, PostRefresher, PressBatcher
from bot.services.errors import Denied, NotFound, UserError
from bot.services.notify import alert_secretaries, enqueue
from bot.services.personal import row_dict
from bot.services.roles import PRESENT, secretary_users
from bot.storage.models import (
    Ballot,
    Chat,
    ChatMember,
    Community,
    Consultation,
    ConsultComment,
    ConsultPost,
    ConsultProgress,
    Job,
    Proposal,
    ProposalSecond,
    User,
    utcnow,
)
from bot.storage.sequences import next_number
from bot.transport.port import Keyboard
from bot.ui.consultations import consult_post, proposal_post, result_post
from bot.ui.i18n import Translator, t

log = logging.getLogger("linli.consultations")

JOB_CLOSE = "consult_close"
RECENT = timedelta(days=30)  # /consults shows closed consultations this far back
LIST_LIMIT = 20


def _guard(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def _clean(text: str | None, limit: int, missing: str, too_long: str) -> str:
    value = (text or "").strip()
    if not value:
        raise UserError(missing)
    if len(value) > limit:
        raise UserError(too_long, limit=limit, length=len(value))
    return value


@dataclass
class Opened:
    consultation: Consultation
    community: Community
    chats: int  # resident chats it was posted in
    proposal_number: int | None


@dataclass
class VoteResult:
    number: int
    title: str
    choice: str
    outcome: str  # new | changed | same


@dataclass
class SecondResult:
    number: int
    outcome: str  # seconded | already
    seconds: int


@dataclass
class Listed:
    consultation: Consultation
    turnout: int  # ballots now (open) or at the close


class ConsultationService:
    def __init__(self, ctx: ServiceContext, *, batch_votes: bool = True) -> None:
        self.ctx = ctx
        self.posts = PostRefresher(ctx, self._render)
        self.batch_votes = batch_votes
        self._votes = PressBatcher(self._vote_batch)
        self._fixed: dict[int, tuple[int, datetime]] = {}  # consultation -> (community, opened_at): never change
        ctx.personal.register("consultations", self._export_user, self._forget_user)

    def register_jobs(self, jobs: JobRunner) -> None:
        jobs.register(JOB_CLOSE, self._job_close)

    def attach_editor(self, editor: Editor) -> None:
        """Where post edits go (the one sender); without one, posts are not edited (service tests)."""
        self.posts.editor = editor

    async def start(self) -> None:
        """After a restart, bring the posts of open and lately closed consultations up to date."""
        since = self.ctx.clock() - timedelta(days=2)
        async with self.ctx.read() as s:
            ids = list(await s.scalars(select(Consultation.id).where(
                (Consultation.state == OPEN) | (Consultation.closed_at > since))))
        self.posts.start()
        await self.posts.touch(*[(kind, cid) for cid in ids for kind in ("consult", "result")])

    async def stop(self) -> None:
        await self.posts.stop()

    # ------------------------------------------------------------------ helpers

    @property
    def _locale(self) -> str:
        return self.ctx.settings.default_locale

    async def _community(self, s: AsyncSession, community_id: int) -> Community:
        community = await s.get(Community, community_id)
        if community is None:
            raise NotFound("err_no_community")
        return community

    def threshold(self, community: Community) -> int:
        value = (community.config or {}).get("proposal_threshold")
        return int(value) if isinstance(value, int) and value > 0 else self.ctx.settings.proposal_threshold

    async def _resident_chats(self, s: AsyncSession, community_id: int) -> list[Chat]:
        return list(await s.scalars(
            select(Chat).where(Chat.community_id == community_id, Chat.kind == "resident", Chat.bot_status != "left")
            .order_by(Chat.id)
        ))

    async def _consultation(self, s: AsyncSession, community_id: int, number: int) -> Consultation:
        c = await s.scalar(select(Consultation).where(Consultation.community_id == community_id,
                                                      Consultation.number == number))
        if c is None:
            raise NotFound("err_consult_unknown", n=number)
        return c

    def _residents_before(self, community_id: int, opened_at: datetime) -> Any:
        """Who may vote: seen in one of the community's resident chats before it opened."""
        return (
            select(ChatMember.user_id).join(Chat, Chat.id == ChatMember.chat_id)
            .where(Chat.community_id == community_id, Chat.kind == "resident", ChatMember.status.in_(PRESENT),
                   ChatMember.seen_at <= opened_at)
        )

    async def _turnout(self, s: AsyncSession, consultation_id: int) -> int:
        return int(await s.scalar(select(func.count()).select_from(Ballot)
                                  .where(Ballot.consultation_id == consultation_id)) or 0)

    async def _post(self, s: AsyncSession, kind: str, ref_id: int, chat: Chat, locale: str, text: str,
                    keyboard: Keyboard | None, community_id: int, *, dedup_key: str | None = None,
                    thread_id: int | None = None, reply_to: int | None = None) -> None:
        row = await enqueue(s, chat_id=chat.id, thread_id=thread_id if thread_id is not None else chat.topic_id,
                            reply_to_message_id=reply_to, text=text, keyboard=keyboard, community_id=community_id,
                            ref=f"{kind}:{ref_id}", dedup_key=dedup_key)
        if row is None:
            return  # queued before (a job run again): its post row exists too
        from bot.ui.tasks import digest

        s.add(ConsultPost(kind=kind, ref_id=ref_id, chat_id=row.chat_id, outbox_id=row.id, locale=locale,
                          shown=digest(text, keyboard)))
        await s.flush()

    async def _render(self, s: AsyncSession, kind: str, ref_id: int, locale: str) -> tuple[str, Keyboard | None] | None:
        tr = Translator(locale)
        if kind == "proposal":
            p = await s.get(Proposal, ref_id)
            if p is None:
                return None
            number = None
            if p.consultation_id is not None:
                number = await s.scalar(select(Consultation.number).where(Consultation.id == p.consultation_id))
            return proposal_post(tr, p, number)
        c = await s.get(Consultation, ref_id)
        if c is None:
            return None
        community = await self._community(s, c.community_id)
        if kind == "consult":
            return consult_post(tr, c, community.timezone, await self._turnout(s, c.id))
        if c.state != CLOSED:
            return None
        return result_post(tr, c, community.timezone, await self._published(s, c.id))

    async def _published(self, s: AsyncSession, consultation_id: int) -> list[str]:
        return list(await s.scalars(
            select(ConsultComment.text).where(ConsultComment.consultation_id == consultation_id,
                                              ConsultComment.published.is_(True)).order_by(ConsultComment.seq)))

    async def _require_secretary(self, s: AsyncSession, community_id: int, actor_id: int) -> None:
        await self.ctx.roles.require_secretary(s, community_id, actor_id)

    # ------------------------------------------------------------------ proposals (提议, 附议)

    async def propose(self, *, actor_id: int, community_id: int, chat_id: int, thread_id: int | None,
                      message_id: int | None, text: str) -> Proposal:
        """/propose in a resident chat: posted there with a 附议 button and its count."""
        body = _clean(text, MAX_PROPOSAL, "err_usage_propose", "err_propose_too_long")
        async with self.ctx.tx() as s:
            community = await self._community(s, community_id)
            chat = await s.get(Chat, chat_id)
            if chat is None or chat.community_id != community_id or chat.kind != "resident":
                raise UserError("err_propose_where")
            p = Proposal(community_id=community_id, number=await next_number(s, community_id, "proposal"),
                         chat_id=chat_id, author_id=actor_id, text=body, created_at=self.ctx.clock())
            s.add(p)
            await s.flush()
            locale = community.locale or self._locale
            post, keyboard = proposal_post(Translator(locale), p, None)
            await self._post(s, "proposal", p.id, chat, locale, post, keyboard, community_id, thread_id=thread_id,
                             reply_to=message_id)
        return p

    async def second(self, *, actor_id: int, proposal_id: int) -> SecondResult:
        """附议: once per person; when the seconds reach the threshold the secretaries are told, once."""
        async with self.ctx.tx() as s:
            p = await s.get(Proposal, proposal_id)
            if p is None:
                raise NotFound("err_proposal_gone")
            if p.consultation_id is not None:
                raise UserError("err_proposal_consulted", n=p.number)
            if p.author_id == actor_id:
                raise UserError("err_proposal_own", n=p.number)
            if not await self.ctx.roles.is_resident(s, p.community_id, actor_id):
                raise Denied("err_proposal_residents_only")
            dialect = s.bind.dialect.name if s.bind else "sqlite"
            ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ProposalSecond).values(
                proposal_id=p.id, user_id=actor_id, created_at=self.ctx.clock())
            got = await s.scalar(ins.on_conflict_do_nothing(index_elements=["proposal_id", "user_id"])
                                 .returning(ProposalSecond.id))
            if got is None:
                return SecondResult(p.number, "already", p.seconds)
            seconds = int(await s.scalar(
                update(Proposal).where(Proposal.id == p.id).values(seconds=Proposal.seconds + 1)
                .returning(Proposal.seconds).execution_options(synchronize_session=False)) or 0)
            community = await self._community(s, p.community_id)
            if seconds >= self.threshold(community):
                first = await s.execute(
                    update(Proposal).where(Proposal.id == p.id, Proposal.alerted_at.is_(None))
                    .values(alerted_at=self.ctx.clock()).execution_options(synchronize_session=False))
                if first.rowcount == 1:  # type: ignore[attr-defined]
                    number, text = p.number, p.text

                    def render(tr: Translator) -> tuple[str, Keyboard | None]:
                        return tr("alert_proposal_threshold", n=number, text=text, count=seconds), None

                    secretaries = await secretary_users(s, self.ctx.roles, community.id)
                    await alert_secretaries(s, community, secretaries, render, default_locale=self._locale,
                                            dedup_key=f"proposal{p.id}:threshold")
            await self.posts.mark(s, ("proposal", p.id))
        return SecondResult(p.number, "seconded", seconds)

    async def proposals(self, *, actor_id: int, community_id: int) -> tuple[list[Proposal], int]:
        """Open proposals (not yet consulted), most seconded first, with the community's threshold."""
        async with self.ctx.read() as s:
            community = await self._community(s, community_id)
            await self._require_any_role(s, community_id, actor_id)
            rows = list(await s.scalars(
                select(Proposal).where(Proposal.community_id == community_id, Proposal.consultation_id.is_(None))
                .order_by(Proposal.seconds.desc(), Proposal.number.desc()).limit(LIST_LIMIT)))
            return rows, self.threshold(community)

    async def set_threshold(self, *, actor_id: int, community_id: int, value: int) -> int:
        if value < 1 or value > 10_000:
            raise UserError("err_proposal_threshold")
        async with self.ctx.tx() as s:
            await self._require_secretary(s, community_id, actor_id)
            community = await self._community(s, community_id)
            community.config = {**(community.config or {}), "proposal_threshold": value}
        return value

    async def _require_any_role(self, s: AsyncSession, community_id: int, actor_id: int) -> None:
        roles = self.ctx.roles
        if (await roles.is_resident(s, community_id, actor_id) or await roles.is_member(s, community_id, actor_id)
                or await roles.is_secretary(s, community_id, actor_id)):
            return
        raise Denied("err_consult_not_in_community")

    # ------------------------------------------------------------------ opening

    async def open(self, *, actor_id: int, community_id: int, args: str) -> Opened:
        """/consult: posted in every resident chat (its /setup topic in a forum); closes at a jobs row."""
        async with self.ctx.tx() as s:
            await self._require_secretary(s, community_id, actor_id)
            community = await self._community(s, community_id)
            now = self.ctx.clock()
            try:
                draft = parse_consult(args, now=now, tz=ZoneInfo(community.timezone))
            except ConsultInputError as exc:
                raise UserError(exc.key, **exc.params) from None
            proposal = None
            if draft.proposal is not None:
                proposal = await s.scalar(select(Proposal).where(Proposal.community_id == community_id,
                                                                 Proposal.number == draft.proposal))
                if proposal is None:
                    raise NotFound("err_proposal_unknown", n=draft.proposal)
                if proposal.consultation_id is not None:
                    raise UserError("err_proposal_consulted", n=proposal.number)
            chats = await self._resident_chats(s, community_id)
            if not chats:
                raise UserError("err_consult_no_resident_chat")
            title = draft.title or title_from(proposal.text if proposal else "")
            c = Consultation(
                community_id=community_id, number=await next_number(s, community_id, "consult"), title=title,
                plan=draft.plan, proposal_id=proposal.id if proposal else None, created_by=actor_id,
                created_at=now, opened_at=utcnow(), closes_at=draft.closes_at.astimezone(UTC),
            )
            s.add(c)
            await s.flush()
            locale = community.locale or self._locale
            text, keyboard = consult_post(Translator(locale), c, community.timezone, 0)
            for chat in chats:
                await self._post(s, "consult", c.id, chat, locale, text, keyboard, community_id)
            await add_job(s, JOB_CLOSE, c.id, c.closes_at, _guard(c.closes_at))
            if proposal is not None:
                proposal.consultation_id = c.id
                await self.posts.mark(s, ("proposal", proposal.id))
            return Opened(c, community, len(chats), proposal.number if proposal else None)

    # ------------------------------------------------------------------ ballots

    async def _fixed_of(self, consultation_id: int) -> tuple[int, datetime]:
        hit = self._fixed.get(consultation_id)
        if hit is None:
            async with self.ctx.read() as s:
                row = (await s.execute(select(Consultation.community_id, Consultation.opened_at)
                                       .where(Consultation.id == consultation_id))).first()
            if row is None:
                raise NotFound("err_consult_gone")
            if len(self._fixed) > 10_000:
                self._fixed.clear()
            hit = self._fixed[consultation_id] = (int(row[0]), row[1])
        return hit

    async def vote(self, *, actor_id: int, consultation_id: int, choice: str, order: int | None = None) -> VoteResult:
        """同意 / 反对 / 弃权: the person's one ballot, changeable until the close."""
        if choice not in CHOICES:
            raise UserError("err_consult_choice")
        if self.batch_votes:
            return await self._votes.submit(consultation_id, actor_id, choice, order)  # type: ignore[no-any-return]
        [result] = await self._vote_batch(consultation_id, [(actor_id, choice)])
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    async def _vote_batch(self, consultation_id: int, presses: list[tuple[int, Any]]) -> list[Any]:
        """One transaction for several presses of one consultation, in press order."""
        community_id, opened_at = await self._fixed_of(consultation_id)
        people = list(dict.fromkeys(uid for uid, _ in presses))
        async with self.ctx.read() as s:
            allowed = set(await s.scalars(
                self._residents_before(community_id, opened_at).where(ChatMember.user_id.in_(people))))
        now = self.ctx.clock()
        out: list[Any] = []
        async with self.ctx.tx() as s:
            # Writing the row (to the same value) locks it while open: the close waits for this batch.
            head = (await s.execute(
                update(Consultation)
                .where(Consultation.id == consultation_id, Consultation.state == OPEN, Consultation.closes_at > now)
                .values(version=Consultation.version)
                .returning(Consultation.number, Consultation.title)
                .execution_options(synchronize_session=False)
            )).first()
            if head is None:
                c = await s.get(Consultation, consultation_id)
                if c is None:
                    raise NotFound("err_consult_gone")
                raise UserError("err_consult_closed", n=c.number)
            number, title = head
            voters = [uid for uid in people if uid in allowed]
            before: dict[int, str] = {}
            if voters:
                before = {uid: ch for uid, ch in (await s.execute(
                    select(Ballot.user_id, Ballot.choice)
                    .where(Ballot.consultation_id == consultation_id, Ballot.user_id.in_(voters)))).all()}
            current = dict(before)
            for uid, choice in presses:
                if uid not in allowed:
                    out.append(Denied("err_consult_not_resident"))
                    continue
                was = current.get(uid)
                outcome = "new" if was is None else ("same" if was == choice else "changed")
                current[uid] = choice
                out.append(VoteResult(number, title, choice, outcome))
            rows = [{"consultation_id": consultation_id, "user_id": uid, "choice": ch, "created_at": now,
                     "updated_at": now} for uid, ch in current.items() if before.get(uid) != ch]
            if rows:
                dialect = s.bind.dialect.name if s.bind else "sqlite"
                ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Ballot).values(rows)
                await s.execute(ins.on_conflict_do_update(
                    index_elements=["consultation_id", "user_id"],
                    set_={"choice": ins.excluded.choice, "updated_at": ins.excluded.updated_at}))
            if any(uid not in before for uid in current):
                await s.execute(update(Consultation).where(Consultation.id == consultation_id)
                                .values(version=Consultation.version + 1)
                                .execution_options(synchronize_session=False))
                await self.posts.mark(s, ("consult", consultation_id))
        return out

    # ------------------------------------------------------------------ comments (意见)

    async def comment_target(self, *, actor_id: int, consultation_id: int) -> tuple[Consultation, bool]:
        """The 意见 button: may this person comment (open, a resident before it opened), and can the
        bot write to them privately? Returns (consultation, started)."""
        community_id, opened_at = await self._fixed_of(consultation_id)
        async with self.ctx.read() as s:
            c = await s.get(Consultation, consultation_id)
            if c is None:
                raise NotFound("err_consult_gone")
            if c.state != OPEN or c.closes_at <= self.ctx.clock():
                raise UserError("err_consult_closed", n=c.number)
            ok = await s.scalar(self._residents_before(community_id, opened_at)
                                .where(ChatMember.user_id == actor_id).limit(1))
            if ok is None:
                raise Denied("err_consult_not_resident")
            user = await s.get(User, actor_id)
            return c, bool(user and user.started)

    async def add_comment(self, *, actor_id: int, consultation_id: int, text: str) -> Consultation:
        body = _clean(text, MAX_COMMENT, "err_consult_comment_empty", "err_consult_comment_too_long")
        await self.comment_target(actor_id=actor_id, consultation_id=consultation_id)
        now = self.ctx.clock()
        async with self.ctx.tx() as s:
            head = (await s.execute(
                update(Consultation)
                .where(Consultation.id == consultation_id, Consultation.state == OPEN, Consultation.closes_at > now)
                .values(version=Consultation.version).returning(Consultation.number)
                .execution_options(synchronize_session=False))).first()
            c = await s.get(Consultation, consultation_id)
            assert c is not None
            if head is None:
                raise UserError("err_consult_closed", n=c.number)
            seq = int(await s.scalar(select(func.coalesce(func.max(ConsultComment.seq), 0))
                                     .where(ConsultComment.consultation_id == consultation_id)) or 0) + 1
            s.add(ConsultComment(consultation_id=consultation_id, seq=seq, user_id=actor_id, text=body,
                                 created_at=now))
        return c

    async def comments(self, *, actor_id: int, community_id: int, number: int) -> tuple[Consultation, list[tuple[ConsultComment, str]]]:
        """/comments <n>: the secretary reads them (with names, privately)."""
        async with self.ctx.read() as s:
            await self._require_secretary(s, community_id, actor_id)
            c = await self._consultation(s, community_id, number)
            rows = (await s.execute(
                select(ConsultComment, User).outerjoin(User, User.id == ConsultComment.user_id)
                .where(ConsultComment.consultation_id == c.id).order_by(ConsultComment.seq))).all()
            return c, [(cm, u.display_name if u else "-") for cm, u in rows]

    async def publish(self, *, actor_id: int, community_id: int, number: int, seqs: list[int],
                      on: bool) -> tuple[Consultation, list[int]]:
        """Choose comments for the 公示 (or take them back); a published result is edited."""
        async with self.ctx.tx() as s:
            await self._require_secretary(s, community_id, actor_id)
            c = await self._consultation(s, community_id, number)
            found = list(await s.scalars(select(ConsultComment.seq).where(
                ConsultComment.consultation_id == c.id, ConsultComment.seq.in_(seqs))))
            missing = sorted(set(seqs) - set(found))
            if missing:
                raise NotFound("err_consult_comment_unknown", n=number, k=missing[0])
            await s.execute(update(ConsultComment).where(ConsultComment.consultation_id == c.id,
                                                         ConsultComment.seq.in_(seqs)).values(published=on)
                            .execution_options(synchronize_session=False))
            await self.posts.mark(s, ("result", c.id))
            return c, sorted(found)

    # ------------------------------------------------------------------ the close (公示)

    async def close_early(self, *, actor_id: int, community_id: int, number: int) -> Consultation:
        """/closeconsult: the close now; its job then finds nothing to do."""
        async with self.ctx.tx() as s:
            await self._require_secretary(s, community_id, actor_id)
            c = await self._consultation(s, community_id, number)
            if c.state != OPEN or not await self._close(s, c, closed_by=actor_id):
                raise UserError("err_consult_closed", n=number)
        return c

    async def _close(self, s: AsyncSession, c: Consultation, *, closed_by: int | None = None) -> bool:
        now = self.ctx.clock()
        res = await s.execute(
            update(Consultation).where(Consultation.id == c.id, Consultation.state == OPEN)
            .values(state=CLOSED, closed_at=now, closed_early_by=closed_by, version=Consultation.version + 1)
            .execution_options(synchronize_session=False))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        counts = dict((await s.execute(select(Ballot.choice, func.count()).where(Ballot.consultation_id == c.id)
                                       .group_by(Ballot.choice))).all())
        eligible = int(await s.scalar(select(func.count(func.distinct(ChatMember.user_id))).where(
            ChatMember.user_id.in_(self._residents_before(c.community_id, c.opened_at)))) or 0)
        await s.refresh(c)
        c.agree, c.disagree, c.abstain = (int(counts.get(k, 0)) for k in CHOICES)
        c.turnout = c.agree + c.disagree + c.abstain
        c.eligible = max(eligible, c.turnout)
        await s.flush()
        community = await self._community(s, c.community_id)
        locale = community.locale or self._locale
        text, keyboard = result_post(Translator(locale), c, community.timezone, await self._published(s, c.id))
        for chat in await self._resident_chats(s, c.community_id):
            await self._post(s, "result", c.id, chat, locale, text, keyboard, c.community_id,
                             dedup_key=f"consult:{c.id}:result:c{chat.id}")
        await self.posts.mark(s, ("consult", c.id))
        log.info("consultation %s closed", c.id)  # ids only: never a count before it is published
        return True

    async def _job_close(self, s: AsyncSession, job: Job) -> str:
        c = await s.get(Consultation, job.ref_id)
        if c is None or c.state != OPEN or job.guard != _guard(c.closes_at):
            return "moved-on"
        return "closed" if await self._close(s, c) else "moved-on"

    # ------------------------------------------------------------------ decision, progress, finish

    async def decide(self, *, actor_id: int, community_id: int, number: int, text: str) -> Consultation:
        body = _clean(text, MAX_DECISION, "err_usage_decide", "err_consult_decision_too_long")
        async with self.ctx.tx() as s:
            await self._require_secretary(s, community_id, actor_id)
            c = await self._consultation(s, community_id, number)
            if c.state != CLOSED:
                raise UserError("err_consult_decide_open", n=number)
            if c.finished_at is not None:
                raise UserError("err_consult_finished", n=number)
            c.decision, c.decided_at = body, self.ctx.clock()
            c.version += 1
            await self.posts.mark(s, ("result", c.id))
        return c

    async def _decided(self, s: AsyncSession, community_id: int, number: int, actor_id: int) -> Consultation:
        await self._require_secretary(s, community_id, actor_id)
        c = await self._consultation(s, community_id, number)
        if c.decision is None:
            raise UserError("err_consult_undecided", n=number)
        if c.finished_at is not None:
            raise UserError("err_consult_finished", n=number)
        return c

    async def progress(self, *, actor_id: int, community_id: int, number: int, note: str,
                       photo: str | None) -> tuple[Consultation, int]:
        """/progress: a note (and photo) on a decided matter, in every resident chat, until /finish."""
        body = _clean(note, MAX_NOTE, "err_usage_progress", "err_consult_note_too_long")
        async with self.ctx.tx() as s:
            c = await self._decided(s, community_id, number, actor_id)
            row = ConsultProgress(consultation_id=c.id, note=body, photo=photo, created_at=self.ctx.clock())
            s.add(row)
            await s.flush()
            community = await self._community(s, community_id)
            text = t(community.locale or self._locale, "cst_progress_post", n=c.number, title=c.title, note=body)
            chats = await self._resident_chats(s, community_id)
            for chat in chats:
                await enqueue(s, chat_id=chat.id, thread_id=chat.topic_id, text=text, photo=photo,
                              community_id=community_id, ref=f"consult:{c.id}:progress",
                              dedup_key=f"consult:{c.id}:progress{row.id}:c{chat.id}")
        return c, len(chats)

    async def finish(self, *, actor_id: int, community_id: int, number: int) -> tuple[Consultation, int]:
        async with self.ctx.tx() as s:
            c = await self._decided(s, community_id, number, actor_id)
            c.finished_at = self.ctx.clock()
            c.version += 1
            community = await self._community(s, community_id)
            text = t(community.locale or self._locale, "cst_finished_post", n=c.number, title=c.title)
            chats = await self._resident_chats(s, community_id)
            for chat in chats:
                await enqueue(s, chat_id=chat.id, thread_id=chat.topic_id, text=text, community_id=community_id,
                              ref=f"consult:{c.id}:finished", dedup_key=f"consult:{c.id}:finished:c{chat.id}")
            await self.posts.mark(s, ("result", c.id))
        return c, len(chats)

    # ------------------------------------------------------------------ reading

    async def listing(self, *, actor_id: int, community_id: int) -> tuple[list[Listed], str]:
        """/consults: open ones with their turnout only; those closed lately with their result."""
        async with self.ctx.read() as s:
            community = await self._community(s, community_id)
            await self._require_any_role(s, community_id, actor_id)
            since = self.ctx.clock() - RECENT
            rows = list(await s.scalars(
                select(Consultation).where(Consultation.community_id == community_id,
                                           (Consultation.state == OPEN) | (Consultation.closed_at > since))
                .order_by(Consultation.state.desc(), Consultation.number.desc()).limit(LIST_LIMIT)))
            open_ids = [c.id for c in rows if c.state == OPEN]
            turnout = dict((await s.execute(
                select(Ballot.consultation_id, func.count()).where(Ballot.consultation_id.in_(open_ids))
                .group_by(Ballot.consultation_id))).all()) if open_ids else {}
        return [Listed(c, int(turnout.get(c.id, 0)) if c.state == OPEN else c.turnout) for c in rows], \
            community.timezone

    async def consultation_id_for(self, community_id: int, number: int) -> int:
        async with self.ctx.read() as s:
            return (await self._consultation(s, community_id, number)).id

    # ------------------------------------------------------------------ personal data

    async def _export_user(self, s: AsyncSession, user_id: int) -> dict[str, Any]:
        ballots = (await s.execute(
            select(Ballot, Consultation.community_id, Consultation.number, Consultation.title)
            .join(Consultation, Consultation.id == Ballot.consultation_id).where(Ballot.user_id == user_id)
            .order_by(Ballot.id))).all()
        comments = (await s.execute(
            select(ConsultComment, Consultation.community_id, Consultation.number)
            .join(Consultation, Consultation.id == ConsultComment.consultation_id)
            .where(ConsultComment.user_id == user_id).order_by(ConsultComment.id))).all()
        return {
            "ballots": [{**row_dict(b), "community_id": cid, "consultation_number": n, "consultation_title": title}
                        for b, cid, n, title in ballots],
            "comments": [{**row_dict(cm), "community_id": cid, "consultation_number": n} for cm, cid, n in comments],
            "proposals": [row_dict(p) for p in await s.scalars(select(Proposal).where(Proposal.author_id == user_id))],
            "seconds": [row_dict(p) for p in await s.scalars(
                select(ProposalSecond).where(ProposalSecond.user_id == user_id))],
        }

    async def _forget_user(self, s: AsyncSession, user_id: int) -> None:
        """Ballots and seconds leave the record (no longer anyone's) but stay counted; comments go
        (a published one leaves the 公示); their name leaves the texts of their communities."""
        user = await s.get(User, user_id)
        who = Identity.of(user_id, user.first_name, user.last_name, user.username) if user else Identity(user_id)
        await s.execute(update(Ballot).where(Ballot.user_id == user_id).values(user_id=None)
                        .execution_options(synchronize_session=False))
        await s.execute(update(ProposalSecond).where(ProposalSecond.user_id == user_id).values(user_id=None)
                        .execution_options(synchronize_session=False))
        touched = list(await s.scalars(
            select(ConsultComment.consultation_id).where(ConsultComment.user_id == user_id,
                                                         ConsultComment.published.is_(True))))
        await s.execute(delete(ConsultComment).where(ConsultComment.user_id == user_id)
                        .execution_options(synchronize_session=False))
        await s.execute(update(Proposal).where(Proposal.author_id == user_id).values(author_id=None)
                        .execution_options(synchronize_session=False))
        await s.execute(update(Consultation).where(Consultation.created_by == user_id).values(created_by=None)
                        .execution_options(synchronize_session=False))
        await s.execute(update(Consultation).where(Consultation.closed_early_by == user_id)
                        .values(closed_early_by=None).execution_options(synchronize_session=False))
        communities = list(await s.scalars(select(Chat.community_id).join(ChatMember, ChatMember.chat_id == Chat.id)
                                           .where(ChatMember.user_id == user_id, Chat.community_id.is_not(None))))
        placeholder = str(t(self._locale, "someone_anonymous"))
        keys: list[tuple[str, int]] = [("result", cid) for cid in touched]
        for p in await s.scalars(select(Proposal).where(Proposal.community_id.in_(communities))):
            new = redact(p.text, who, placeholder)
            if new is not None and new != p.text:
                p.text = new
                keys.append(("proposal", p.id))
        for cm in await s.scalars(select(ConsultComment).join(Consultation, Consultation.id == ConsultComment.consultation_id)
                                  .where(Consultation.community_id.in_(communities))):
            new = redact(cm.text, who, placeholder)
            if new is not None and new != cm.text:
                cm.text = new
                if cm.published:
                    keys.append(("result", cm.consultation_id))
        await self.posts.mark(s, *keys)


class ConsultationSheetPart:
    """The 议事 sheet of /export (wired in by the ledger): closed consultations only, never a tally of
    an open one. `start`/`end`: the period, by opening time (None: unbounded)."""

    def title(self, locale: str) -> str:
        return str(t(locale, "cst_sheet_title"))

    def headers(self, locale: str) -> list[str]:
        return [str(t(locale, f"cst_sheet_h_{k}")) for k in (
            "number", "title", "opened", "closed", "eligible", "turnout", "agree", "disagree", "abstain",
            "comments", "decision", "progress", "finished")]

    async def rows(self, session: AsyncSession, community_id: int, start: datetime | None, end: datetime | None,
                   locale: str) -> list[list[Any]]:
        q = select(Consultation).where(Consultation.community_id == community_id, Consultation.state == CLOSED)
        if start is not None:
            q = q.where(Consultation.created_at >= start)
        if end is not None:
            q = q.where(Consultation.created_at < end)
        community = await session.get(Community, community_id)
        tz = ZoneInfo(community.timezone if community else "Asia/Shanghai")
        out: list[list[Any]] = []
        for c in await session.scalars(q.order_by(Consultation.number)):
            published = list(await session.scalars(
                select(ConsultComment.text).where(ConsultComment.consultation_id == c.id,
                                                  ConsultComment.published.is_(True)).order_by(ConsultComment.seq)))
            notes = list(await session.scalars(select(ConsultProgress.note).where(
                ConsultProgress.consultation_id == c.id).order_by(ConsultProgress.id)))

            def local(dt: datetime | None) -> str:
                return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M") if dt else ""

            out.append([c.number, c.title, local(c.created_at), local(c.closed_at), c.eligible, c.turnout, c.agree,
                        c.disagree, c.abstain, "\n".join(published), c.decision or "", "\n".join(notes),
                        local(c.finished_at)])
        return out


__all__ = ["JOB_CLOSE", "ConsultationService", "ConsultationSheetPart", "DEFAULT_THRESHOLD"]
