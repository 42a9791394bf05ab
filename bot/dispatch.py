"""From an Event to a handler and back out through the sender.

Events of one chat are handled in order, one at a time; chats run side by side, so a slow or
failing chat never stalls another. Replies are handed to the sender without waiting for them
to go out (the sender keeps per-chat order and Telegram's limits).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from bot import metrics
from bot.handlers.base import Context, Router
from bot.services.errors import ChooseCommunity, Term, UserError
from bot.services.notify import enqueue_message, enqueue_replies, locale_of
from bot.services.roles import begin_snapshot, end_snapshot
from bot.services.unit import AlreadyHandled, UpdateUnit
from bot.storage.models import Conversation
from bot.transport.inbox import InboxItem
from bot.transport.port import Button, CallbackAnswer, Event, EventKind, Keyboard, OutMessage
from bot.ui.i18n import Translator

if TYPE_CHECKING:
    from bot.app import Services
    from bot.services.chat_order import ChatOrder
    from bot.services.people import Observed
    from bot.transport.inbox import Inbox

log = logging.getLogger("linli.dispatch")

PICK = "pick"  # the conversation that keeps a command while the user picks a community


class _Gate:
    """Keeps parallel presses entering their handler in the order they arrived."""

    def __init__(self, before: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        self.before = before
        self.mine = mine

    async def turn(self) -> None:
        if self.before is not None:
            await asyncio.shield(self.before)

    def open(self) -> None:
        if not self.mine.done():
            self.mine.set_result(None)


class Dispatcher:
    def __init__(self, services: Services, router: Router) -> None:
        self.services = services
        self.router = router
        self._queues: dict[int, asyncio.Queue[Event]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self._loose: set[asyncio.Task[None]] = set()  # parallel button presses being handled
        self._gates: dict[tuple[int, str], asyncio.Future[None]] = {}  # the latest parallel press per chat
        self.handled = 0
        self.inbox: Inbox | None = None  # set when updates come through the durable inbox
        self.order: ChatOrder | None = None  # set on PostgreSQL, which several instances may share
        self.max_attempts = 3

    async def on_update(self, item: InboxItem) -> None:
        """Called by the inbox for every stored update; returns at once. Handled in per-chat order
        (presses of a parallel button side by side), each in one transaction (bot/services/unit.py)."""
        if len(item.events) == 1:
            event = item.events[0]
            prefix = (event.callback_data or "").split(":", 1)[0] if event.kind == EventKind.CALLBACK else None
            if prefix is not None and prefix in self.router.parallel:
                gate_key = (event.chat.id, prefix)
                gate = _Gate(self._gates.get(gate_key), asyncio.get_running_loop().create_future())
                self._gates[gate_key] = gate.mine
                gate.mine.add_done_callback(
                    lambda f, k=gate_key: self._gates.pop(k) if self._gates.get(k) is f else None)
                task = asyncio.create_task(self._item_one(item, gate), name=f"press-{item.update_id}")
                self._loose.add(task)
                task.add_done_callback(self._loose.discard)
                return
        self._enqueue(item.chat_id, item)

    async def _item_one(self, item: InboxItem, gate: _Gate) -> None:
        try:
            await self.handle_item(item, gate)
        finally:
            gate.open()
            self.handled += 1

    async def on_event(self, event: Event) -> None:
        """Called by the transport for every update; returns at once."""
        prefix = (event.callback_data or "").split(":", 1)[0] if event.kind == EventKind.CALLBACK else None
        if prefix is not None and prefix in self.router.parallel:
            # Handled side by side; each press still reaches its handler after the one before it.
            gate_key = (event.chat.id, prefix)
            gate = _Gate(self._gates.get(gate_key), asyncio.get_running_loop().create_future())
            self._gates[gate_key] = gate.mine
            gate.mine.add_done_callback(
                lambda f, k=gate_key: self._gates.pop(k) if self._gates.get(k) is f else None)
            task = asyncio.create_task(self._drain_one(event, gate), name=f"press-{event.update_id}")
            self._loose.add(task)
            task.add_done_callback(self._loose.discard)
            return
        self._enqueue(event.chat.id, event)

    def _enqueue(self, key: int, item: Event | InboxItem) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
        queue.put_nowait(item)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._drain(key, queue), name=f"chat-{key}")

    async def _drain(self, key: int, queue: asyncio.Queue[Event | InboxItem]) -> None:
        try:
            while not queue.empty():
                item = queue.get_nowait()
                try:
                    if isinstance(item, InboxItem):
                        await self.handle_item(item)
                    else:
                        await self.handle(item)
                except Exception:
                    log.exception("update %s in chat %s failed", item.update_id, key)
                finally:
                    self.handled += 1
        finally:
            del self._workers[key]
            if queue.empty():
                self._queues.pop(key, None)
            else:  # an event arrived between the last get and the cleanup
                self._workers[key] = asyncio.create_task(self._drain(key, queue), name=f"chat-{key}")

    async def _drain_one(self, event: Event, gate: _Gate) -> None:
        try:
            await self.handle(event, gate)
        except Exception:
            log.exception("update %s in chat %s failed", event.update_id, event.chat.id)
        finally:
            gate.open()
            self.handled += 1

    async def idle(self, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self._workers or self._sends or self._loose) and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        await self.idle()

    # ---- one stored update: effects, replies and the inbox mark in one transaction

    async def handle_item(self, item: InboxItem, gate: _Gate | None = None) -> None:
        try:
            if self.order is not None and gate is None:  # several instances: the chat's earlier ones first
                for earlier in await self.order.turn(item):
                    await self._attempts(earlier, None)
            await self._attempts(item, gate)
        finally:
            if self.inbox is not None:
                self.inbox.settled(item.update_id)

    async def _attempts(self, item: InboxItem, gate: _Gate | None) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                outcome = await self._handle_item_once(item, gate)
            except Exception as exc:
                # The transaction failed (the database, not the handler): nothing of it stayed.
                log.warning("update %s: attempt %d failed: %s", item.update_id, attempt, type(exc).__name__)
                gate = None  # the gate was passed on the first attempt
                if attempt < self.max_attempts:
                    await asyncio.sleep(0.2 * 2**attempt)
                    continue
                metrics.UPDATES_HANDLED.labels("error").inc()
                if self.inbox is not None:
                    try:
                        await self.inbox.give_up(item.update_id)
                    except Exception:
                        log.exception("update %s: could not be marked given up", item.update_id)
                return
            if outcome is not None:
                metrics.UPDATES_HANDLED.labels(outcome).inc()
                metrics.HANDLING_SECONDS.observe(time.monotonic() - item.received)
            return

    async def _handle_item_once(self, item: InboxItem, gate: _Gate | None) -> str | None:
        svc = self.services
        # Who they are is recorded first, in its own small transactions (idempotent upserts).
        observed = [await svc.people.observe(ev) for ev in item.events]
        snapshot = begin_snapshot()
        try:
            # What the transaction will need from Telegram (admin lists) is read before it opens.
            await self._prefetch(item, observed)
            return await self._in_unit(item, observed, gate)
        finally:
            end_snapshot(snapshot)

    async def _prefetch(self, item: InboxItem, observed: list[Observed]) -> None:
        ctx = self.services.ctx
        try:
            wanted = [(event.user.id, obs.community.id if obs.community else None)
                      for event, obs in zip(item.events, observed, strict=True) if self._may_check_roles(event, obs)]
            unknown = [w for w in wanted if not await ctx.roles.prefetch_known(*w)]
            if unknown:  # a session only when the database has to say which chats
                async with ctx.read() as s:
                    for user_id, community_id in unknown:
                        await ctx.roles.prefetch_for(s, user_id, community_id)
        except Exception:
            log.warning("update %s: reading admin lists ahead failed", item.update_id, exc_info=True)

    def _may_check_roles(self, event: Event, obs: Observed) -> bool:
        """Whether handling it may ask who administers a chat: not group chatter no trigger takes up."""
        if event.user.is_bot:
            return False
        if event.kind != EventKind.MESSAGE or event.command or event.chat.is_private:
            return True
        if event.migrate_to_chat_id or event.migrate_from_chat_id:
            return True
        if obs.chat is None or obs.chat.kind != "resident":  # the text triggers act in resident chats only
            return False
        svc = self.services
        probe = Context(event, svc, obs.user, obs.chat, Translator(svc.settings.default_locale), router=self.router)
        try:
            return any(when(probe) for when, _ in self.router.texts)
        except Exception:
            return True

    async def _in_unit(self, item: InboxItem, observed: list[Observed], gate: _Gate | None) -> str | None:
        svc = self.services
        unit = UpdateUnit(svc.ctx.sessions, [item.update_id], svc.ctx.clock())
        unit.enter()
        ctxs: list[Context] = []
        outcome = "ok"
        try:
            for event, obs in zip(item.events, observed, strict=True):
                ctx = await self.handle(event, gate, observed=obs, unit=unit)
                if ctx.failed:
                    outcome = "error"
                elif ctx.refused and outcome == "ok":
                    outcome = "user_error"
                ctxs.append(ctx)
                gate = None
            stored = [msg for ctx in ctxs for msg in ctx.messages if msg.photo_bytes is None]
            if unit.marked and not unit.writing and not stored:
                # A claim batch marked the update with its effects, and nothing is left to write:
                # taking the writer lock for an empty commit would queue every press of a burst.
                info: dict[str, object] = {}
            else:
                session = await unit.write()
                await enqueue_replies(session, stored, ref=f"reply:{item.update_id}")  # ref: which update it answers
                info = dict(session.info)
                await unit.commit()
        except AlreadyHandled:
            await unit.rollback()
            log.info("update %s was handled already", item.update_id)
            return None
        except BaseException:
            await unit.rollback()
            raise
        finally:
            await unit.close()
        svc.people.cache.settle(info)  # rows it wrote of people, remembered now that they committed
        if info.pop("outbox", False):
            svc.ctx.wake_outbox()
        if info.pop("jobs", False):
            svc.ctx.wake_jobs()
        for ctx in ctxs:  # what is not stored: the button's answer, a generated picture
            self._flush(ctx, direct_only=True)
        return outcome

    # ---- one event

    async def handle(
        self, event: Event, gate: _Gate | None = None, *, observed: Observed | None = None,
        unit: UpdateUnit | None = None,
    ) -> Context:
        svc = self.services
        if observed is None:
            observed = await svc.people.observe(event)
        locale = locale_of(observed.user, observed.community, svc.settings.default_locale)
        ctx = Context(event, svc, observed.user, observed.chat, Translator(locale), router=self.router)
        try:
            if gate is None:
                await self._route(ctx)
            else:
                await gate.turn()
                routed = asyncio.ensure_future(self._route(ctx))
                if unit is not None:
                    unit.adopt(routed)  # type: ignore[arg-type]
                gate.open()  # the next press's handler starts after this one's first step
                await routed
        except ChooseCommunity as exc:
            ctx.reply(ctx.t("err_choose_community"), await self._choice_keyboard(ctx, exc.options))
            ctx.answer()
        except AlreadyHandled:
            raise
        except UserError as exc:
            ctx.refused = True
            params = {k: ctx.t(v) if isinstance(v, Term) else v for k, v in exc.params.items()}
            text = ctx.t(exc.key, **params)
            if event.kind == EventKind.CALLBACK:
                ctx.answer(str(text), alert=True)
            else:
                ctx.reply(text, quote=event.chat.is_group)
        except Exception:
            # Ids and the error only: the event holds what was typed and who typed it.
            log.exception("handler failed for update %s (%s) in chat %s", event.update_id, event.kind.value,
                          event.chat.id)
            ctx.failed = True
            ctx.messages.clear()
            if event.kind == EventKind.CALLBACK:
                ctx.answer(str(ctx.t("err_internal")), alert=True)
            elif event.kind == EventKind.MESSAGE and (event.command or event.chat.is_private):
                ctx.reply(ctx.t("err_internal"))
        if unit is not None and unit.lost:
            raise AlreadyHandled()
        if unit is None:
            self._flush(ctx)
        return ctx

    async def _choice_keyboard(self, ctx: Context, options: list[tuple[int, str]]) -> Keyboard:
        """Buttons that re-run the same command for the chosen community: "pick:<community>:<command>".

        A command too long for a button's 64 bytes, or one that came with a photo, is kept in the
        database meanwhile ("pick:<community>:@"), so nothing the user typed is lost."""
        ev = ctx.event
        cmd = f"{ev.command or ''} {ev.args}".strip()
        longest = max(len(f"pick:{cid}:{cmd}".encode()) for cid, _ in options)
        if longest > 64 or ev.photo_file_id:
            await self.services.conversations.put(
                ev.user.id, ev.chat.id, PICK, "pick", {"cmd": cmd, "photo": ev.photo_file_id}
            )
            cmd = "@"
        return Keyboard.of(*[[Button(name, f"pick:{cid}:{cmd}")] for cid, name in options])

    async def _route(self, ctx: Context) -> None:
        event = ctx.event
        router = self.router
        if event.kind == EventKind.MEMBER:
            for fn in router.member_handlers:
                await fn(ctx)
            return
        if event.kind == EventKind.CALLBACK:
            data = event.callback_data or ""
            fn = router.callbacks.get(data.split(":", 1)[0])
            if fn is None:
                ctx.answer()
                return
            await fn(ctx)
            return
        if event.command:
            fn, match = router.find_command(event.command)
            if fn is not None:
                ctx.match = match
                await fn(ctx)
            elif event.chat.is_private:
                ctx.reply(ctx.t("err_unknown_command"))
            return
        # Free text: a form in progress first (forms live in private chats only, so group chatter
        # costs no lookup), then triggers such as #诉求.
        if ctx.user is not None and event.chat.is_private:
            conv = await self._conversation(ctx)
            if conv is not None and conv.kind in router.forms:
                await router.forms[conv.kind](ctx)
                return
        for when, fn in router.texts:
            if when(ctx):
                await fn(ctx)
                return
        if event.chat.is_private:
            ctx.reply(ctx.t("hint_private_text"))

    async def _conversation(self, ctx: Context) -> Conversation | None:
        async with self.services.ctx.read() as s:
            return await s.scalar(
                select(Conversation).where(
                    Conversation.user_id == ctx.event.user.id, Conversation.chat_id == ctx.event.chat.id
                )
            )

    def _flush(self, ctx: Context, *, direct_only: bool = False) -> None:
        event = ctx.event
        answer = ctx.callback_answer
        if event.kind == EventKind.CALLBACK and answer is None and event.callback_id:
            answer = CallbackAnswer(event.callback_id)  # stop the spinner even when nothing to say
        messages = [m for m in ctx.messages if m.photo_bytes is not None] if direct_only else list(ctx.messages)
        if not messages and answer is None:
            return
        task = asyncio.create_task(self._send(messages, answer))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, messages: list[OutMessage], answer: CallbackAnswer | None) -> None:
        sender = self.services.sender
        try:
            if answer is not None:
                await sender.answer_callback(answer)
            # Replies that may fold when their chat is busy go through the outbox, where folding
            # happens. (Interim: once every reply is an outbox row written in the update's
            # transaction, this split goes away.)
            folding = [m for m in messages if m.fold is not None]
            if folding:
                async with self.services.ctx.tx() as s:
                    for msg in folding:
                        await enqueue_message(s, msg)
            for msg in messages:
                if msg.fold is None:
                    await sender.send(msg)
        except Exception:
            log.exception("sending replies failed")
