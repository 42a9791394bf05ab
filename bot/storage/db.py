"""Engine, sessions and migrations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bot.storage.sqlite_conn import OneTripConnection
from bot.storage.sqlite_conn import connect as sqlite_connect

log = logging.getLogger("linli.db")
MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; busy_timeout waits out a held lock instead of failing.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # A database error names the statement, never the values bound to it (a demand's text, a
    # name): such errors end up in logs (a failed job, a failed handler), and logs hold no content.
    kwargs.setdefault("hide_parameters", True)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Sessions end their own transactions; a second rollback on return is a wasted thread hop.
        kwargs.setdefault("pool_reset_on_return", None)
        # Connections come from sqlite_conn (one thread trip per statement), opened with the very
        # arguments SQLAlchemy derives from the URL for aiosqlite.
        connect_args: dict[str, Any] = {}

        async def connect() -> OneTripConnection:
            return await sqlite_connect(*connect_args["args"], **connect_args["kwargs"])

        kwargs.setdefault("async_creator", connect)
        engine = create_async_engine(url, **kwargs)
        args, params = engine.sync_engine.dialect.create_connect_args(engine.url)
        connect_args.update(args=args, kwargs={**params, **kwargs.get("connect_args", {})})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


_WRITERS: WeakKeyDictionary[Any, asyncio.Lock] = WeakKeyDictionary()
_WRITING: ContextVar[bool] = ContextVar("linli_writing", default=False)


def _writer_lock(sessions: async_sessionmaker[AsyncSession]) -> asyncio.Lock | None:
    """SQLite has one writer at a time and makes the others sleep-and-retry (and give up after
    busy_timeout); writers of this process take turns on a lock instead. PostgreSQL needs none."""
    bind = sessions.kw.get("bind")
    if bind is None or bind.dialect.name != "sqlite":
        return None
    key = bind.sync_engine
    lock = _WRITERS.get(key)
    if lock is None:
        lock = _WRITERS[key] = asyncio.Lock()
    return lock


@asynccontextmanager
async def writing(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A write transaction: commit on success, roll back on error. Every writer uses this."""
    lock = _writer_lock(sessions)
    # A transaction opened inside another in the same task must not wait for itself.
    async with lock if lock is not None and not _WRITING.get() else nullcontext():
        token = _WRITING.set(True)
        try:
            async with sessions() as session, session.begin():
                yield session
        finally:
            _WRITING.reset(token)


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


MIGRATION_LOCK = 0x4C494E4C49  # "LINLI": the advisory lock key migrations take on PostgreSQL


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (run at every start; a no-op when current)."""

    def upgrade(conn: Connection) -> None:
        command.upgrade(alembic_config(conn), "head")

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Instances starting together on one database migrate one at a time: the others wait
            # here, then find the schema current (held until this transaction ends).
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.run_sync(upgrade)
    log.info("database schema is current")
