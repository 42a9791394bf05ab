"""What one instance remembers of people and chats, dropped when another instance changes them.

The people cache (bot/services/people_cache.py) and the "already written" sets of PeopleService
see the writes of their own process only. With several instances on one PostgreSQL, instance B's
/forget, /lang or community binding would leave instance A serving the old rows until the TTL.
So the database announces every committed change itself: triggers (migration 0012) on `users`,
`chats`, `communities` and admin changes in `chat_members` NOTIFY the channel `linli_people`,
and each instance LISTENs on one connection of its own and drops what it remembers of the row
(an admin change is noted in the AdminCache as Telegram reported it to the other instance).

Notifications of this instance's own connections are skipped (its own writes are seen by the
cache directly), else each of its writes would drop what it had just stored. While the listening
connection is down nothing is trusted: the cache's TTL is 0 until it is back, and then everything
remembered before is dropped, since changes meanwhile were not heard.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.services.people import PeopleService
from bot.services.people_cache import CHATS, USERS
from bot.services.roles import AdminCache

log = logging.getLogger("linli.people_sync")

CHANNEL = "linli_people"


class PeopleSync:
    def __init__(self, engine: AsyncEngine, people: PeopleService, admins: AdminCache) -> None:
        self.engine = engine
        self.people = people
        self.admins = admins
        self.heard = 0  # notifications of other instances acted on (tests)
        self._ttl = people.cache.ttl
        self._own: set[int] = set()  # server pids of this instance's pooled connections
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        people.cache.ttl = 0  # nothing remembered is trusted until we listen
        sync = engine.sync_engine
        event.listen(sync, "checkout", self._on_checkout)
        event.listen(sync, "close", self._on_close)

    # ---- which notifications are our own

    def _on_checkout(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        pid = self._pid(dbapi_conn)
        if pid is not None:
            self._own.add(pid)

    def _on_close(self, dbapi_conn: Any, _record: Any) -> None:
        pid = self._pid(dbapi_conn)
        if pid is not None:
            self._own.discard(pid)  # the server may give the pid to another instance's connection

    @staticmethod
    def _pid(dbapi_conn: Any) -> int | None:
        try:
            return int(dbapi_conn.driver_connection.get_server_pid())
        except Exception:
            return None

    # ---- listening

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="people-sync")

    async def listening(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await asyncio.wait_for(self._listening.wait(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        sync = self.engine.sync_engine
        for name, fn in (("checkout", self._on_checkout), ("close", self._on_close)):
            if event.contains(sync, name, fn):
                event.remove(sync, name, fn)

    async def _run(self) -> None:
        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                # Heard from now on; what was remembered before may have changed unheard.
                self._drop_everything()
                self.people.cache.ttl = self._ttl
                self._listening.set()
                delay = 0.5
                while not lost.is_set() and not conn.is_closed():
                    try:
                        await asyncio.wait_for(lost.wait(), 30.0)
                    except TimeoutError:
                        await conn.execute("SELECT 1")  # a silent network drop shows up here
                log.warning("the cache's notification connection was lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listening for cache notifications failed: %s", type(exc).__name__)
            finally:
                self.people.cache.ttl = 0
                self._listening.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _drop_everything(self) -> None:
        self.people.cache.drop({(USERS, None), (CHATS, None)})
        self.people.forget_remembered(everything=True)

    def _on_notify(self, _conn: Any, pid: int, _channel: str, payload: str) -> None:
        if pid in self._own:
            return
        self.heard += 1
        kind, _, rest = payload.partition(":")
        try:
            if kind == "u":
                user_id = int(rest)
                self.people.cache.drop({(USERS, user_id)})
                self.people.forget_remembered(user_id=user_id)
            elif kind == "c":
                if rest == "*":  # a community: every chat row carries its community
                    self.people.cache.drop({(CHATS, None)})
                else:
                    chat_id = int(rest)
                    self.people.cache.drop({(CHATS, chat_id)})
                    self.people.forget_remembered(chat_id=chat_id)
                self.admins.generation += 1  # which chats an update reads ahead may have changed
            elif kind == "m":
                chat, user, status = rest.split(":", 2)
                self.admins.note(int(chat), int(user), status)
        except ValueError:
            log.warning("unreadable cache notification %r", payload[:64])
