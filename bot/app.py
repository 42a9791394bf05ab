"""Composition root: engine, services, scheduler, outbox, transport."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.dispatch import Dispatcher
from bot.handlers import build_router
from bot.scheduler.runner import JobRunner
from bot.services.base import ServiceContext
from bot.services.chat_order import ChatOrder
from bot.services.clock import Clock, system_clock
from bot.services.communities import CommunityService
from bot.services.consultations import ConsultationService, ConsultationSheetPart
from bot.services.conversations import ConversationService
from bot.services.demands import DemandService
from bot.services.grid_ledger import attach_to_ledger
from bot.services.grids import GridService
from bot.services.ledger import LedgerService
from bot.services.meetings import MeetingService
from bot.services.members import MemberService
from bot.services.notices import NoticeService
from bot.services.people import PeopleService
from bot.services.people_sync import PeopleSync
from bot.services.retention import RetentionService
from bot.services.roles import AdminCache, Roles
from bot.services.tasks import TaskService
from bot.storage.db import make_engine, make_session_factory, migrate
from bot.transport.base import Transport
from bot.transport.factory import make_transport
from bot.transport.inbox import Inbox
from bot.transport.limits import RateLimiter
from bot.transport.listener import Listener
from bot.transport.outbox import OutboxWorker
from bot.transport.port import BotApi
from bot.transport.sender import Sender, SendLimits
from bot.transport.shared_limits import SharedLimiter
from config.settings import Settings, parse_duration, split_listen

log = logging.getLogger("linli.app")


@dataclass
class Services:
    settings: Settings
    ctx: ServiceContext
    sender: Sender
    api: BotApi
    people: PeopleService
    communities: CommunityService
    conversations: ConversationService
    demands: DemandService
    notices: NoticeService
    meetings: MeetingService
    tasks: TaskService
    consultations: ConsultationService
    members: MemberService
    retention: RetentionService
    jobs: JobRunner
    outbox: OutboxWorker
    transport: Transport
    ledger: LedgerService
    grids: GridService | None = None

    @property
    def bot_user_id(self) -> int | None:
        return self.transport.bot_user.id if self.transport.bot_user else None


def send_limits(settings: Settings) -> SendLimits:
    return SendLimits(
        global_per_second=settings.send_rate_global,
        per_chat_per_second=settings.send_rate_per_chat,
        per_chat_burst=settings.send_burst_per_chat,
        per_group_per_minute=settings.send_rate_per_group,
    )


def send_limiter(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> RateLimiter | None:
    """The send windows in the database when instances may share it (PostgreSQL), else in process."""
    shared = settings.send_limiter == "database" or (
        settings.send_limiter == "auto" and engine.dialect.name == "postgresql")
    return SharedLimiter(sessions, stale=settings.send_slot_stale_seconds) if shared else None


class App:
    """The running bot. `start()` migrates, arms timers, begins delivery and polling."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: Transport | None = None,
        engine: AsyncEngine | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url)
        self._own_engine = engine is None
        self.transport = transport or make_transport(
            settings.bot_framework, settings.bot_token, settings.telegram_api_base, poll_timeout=settings.poll_timeout
        )
        sessions = make_session_factory(self.engine)
        sender = Sender(self.transport.api, send_limits(settings), limiter=send_limiter(settings, self.engine, sessions))
        api = self.transport.api
        roles = Roles(
            settings.superadmins,
            AdminCache(api.get_chat_member_status, settings.admin_cache_seconds, api.get_chat_admin_ids),
        )
        ctx = ServiceContext(sessions=sessions, roles=roles, settings=settings, clock=clock)
        outbox = OutboxWorker(sessions, sender, clock=clock, lease=settings.outbox_lease_seconds)
        jobs = JobRunner(sessions, clock=clock, sweep_seconds=settings.scheduler_sweep_seconds, after_run=outbox.wake)
        ctx.wake_outbox = outbox.wake
        ctx.wake_jobs = jobs.wake
        demands = DemandService(ctx)
        demands.register_jobs(jobs)
        notices = NoticeService(ctx)
        communities = CommunityService(ctx)
        outbox.chat_events = communities  # what Telegram's refusals tell about chats
        outbox.on_final(notices.on_final)  # a notice's deliveries are counted as they end
        meetings = MeetingService(ctx)
        meetings.register_jobs(jobs)
        tasks = TaskService(ctx, demands)
        tasks.register_jobs(jobs)
        tasks.attach_editor(sender.send)  # roster edits: re-rendered from the database, coalesced
        consultations = ConsultationService(ctx)
        consultations.register_jobs(jobs)
        consultations.attach_editor(sender.send)  # turnout and result edits, coalesced
        members = MemberService(ctx, tasks)  # its kept pledges count in the tasks' 先锋指数
        members.register_jobs(jobs)
        members.attach_editor(sender.send)  # the wall's edits: re-rendered from the database, coalesced
        retention = RetentionService(ctx)
        retention.register_jobs(jobs)
        grids = GridService(ctx, demands)  # grids and the street: hooks into demands, its own timers
        grids.register_jobs(jobs)
        ledger = LedgerService(ctx)
        ledger.register_jobs(jobs)
        attach_to_ledger(ledger)  # /stats: level shares; /export: the level column
        ledger.add_sheet(ConsultationSheetPart())  # /export: the 议事 sheet
        people = PeopleService(ctx)
        # Several instances may share PostgreSQL: another one's writes drop what this one remembers.
        self.people_sync = PeopleSync(self.engine, people, roles.admins) if self.engine.dialect.name == "postgresql" else None
        self.services = Services(
            settings=settings,
            ctx=ctx,
            sender=sender,
            api=self.transport.api,
            people=people,
            communities=communities,
            conversations=ConversationService(ctx),
            demands=demands,
            notices=notices,
            meetings=meetings,
            tasks=tasks,
            consultations=consultations,
            members=members,
            retention=retention,
            jobs=jobs,
            outbox=outbox,
            transport=self.transport,
            grids=grids,
            ledger=ledger,
        )
        self.dispatcher = Dispatcher(self.services, build_router())
        # Every update is stored before it is confirmed, and handled once (bot/transport/inbox.py).
        self.inbox = Inbox(sessions, self.transport.events_of, self.dispatcher.on_update, clock=clock,
                           retention=parse_duration(settings.inbox_retention))
        self.dispatcher.inbox = self.inbox
        if self.engine.dialect.name == "postgresql":  # instances may share it: per-chat order across them
            self.dispatcher.order = ChatOrder(sessions, self.inbox, wait=settings.chat_order_wait_seconds)
        ctx.personal.register("inbox", self.inbox.export_user, self.inbox.erase_user)
        # Webhook mode's listener, which also serves /healthz and /metrics (on METRICS_LISTEN when polling).
        self.listener: Listener | None = None
        listen = settings.webhook_listen if settings.webhook_url else settings.metrics_listen
        if listen:
            host, port = split_listen(listen)
            self.listener = Listener(
                sessions, self.inbox, host=host, port=port, clock=clock, secret=settings.webhook_secret,
                webhook_path=(urlsplit(settings.webhook_url).path or "/") if settings.webhook_url else None,
            )

    async def start(self) -> None:
        await migrate(self.engine)
        if self.people_sync is not None:
            await self.people_sync.start()
        await self.services.retention.schedule()
        await self.services.ledger.schedule()  # the weekly digest's timers
        await self.services.outbox.start()
        await self.services.jobs.start()
        await self.services.tasks.start()
        await self.services.consultations.start()
        await self.services.members.start()
        await self.transport.open()
        await self.inbox.recover()  # what a crash left stored but unhandled goes first
        self.inbox.start_housekeeping()
        if self.listener is not None:
            await self.listener.start()
        st = self.settings
        if st.webhook_url:
            assert st.webhook_secret is not None  # the settings refuse webhook mode without it
            self.inbox.start_webhook(st.bot_token, st.telegram_api_base, url=st.webhook_url,
                                     secret=st.webhook_secret, max_connections=st.webhook_max_connections)
        else:
            self.inbox.start_polling(st.bot_token, st.telegram_api_base, timeout=st.poll_timeout)
        log.info("Linli is running on %s", self.settings.bot_framework)

    async def stop(self) -> None:
        # Finish what is in hand before the HTTP session closes: timers, handlers, deliveries.
        if self.listener is not None:
            await self.listener.stop()
        await self.inbox.stop()  # no more updates taken; those stored are handled below or at the next start
        await self.services.jobs.stop()
        await self.dispatcher.stop()
        await self.services.tasks.stop()
        await self.services.consultations.stop()
        await self.services.members.stop()
        await self.services.outbox.stop()
        await self.services.sender.close()
        if isinstance(self.services.sender.limiter, SharedLimiter):
            await self.services.sender.limiter.close()  # the last answers logged
        await self.transport.stop()
        if self.people_sync is not None:
            await self.people_sync.stop()
        if self._own_engine:
            await self.engine.dispose()
