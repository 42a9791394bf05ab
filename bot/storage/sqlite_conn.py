"""An aiosqlite connection whose statements cost one trip to its thread instead of four.

aiosqlite runs SQLite in a thread of its own and SQLAlchemy's adapter asks that thread for every
step of a statement: open a cursor, execute, fetch the rows, close the cursor (and a commit or a
rollback even when nothing is open). Each trip is a thread switch and a wake-up of the event loop,
and under load they were most of the time an update spent holding the writer lock. Here a
statement is one trip: the cursor is opened, run, read to the end and closed in the thread, and
SQLAlchemy is handed the rows, the description, rowcount and lastrowid. Commit and rollback with
no transaction open skip the trip (SQLite would do nothing). Everything else is aiosqlite's.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterable
from typing import Any

import aiosqlite


def _run(conn: sqlite3.Connection, sql: str, params: Any) -> tuple[Any, int, int | None, list[Any]]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        desc = cur.description
        rows = cur.fetchall() if desc else []
        return desc, cur.rowcount, cur.lastrowid, rows
    finally:
        cur.close()


def _run_many(conn: sqlite3.Connection, sql: str, seq: Iterable[Any]) -> tuple[int, int | None]:
    cur = conn.cursor()
    try:
        cur.executemany(sql, seq)
        return cur.rowcount, cur.lastrowid
    finally:
        cur.close()


class OneTripCursor:
    """What SQLAlchemy's asyncio adapter uses of an aiosqlite cursor; the rows are already here."""

    __slots__ = ("_link", "description", "rowcount", "lastrowid", "arraysize", "_rows")

    def __init__(self, link: OneTripConnection) -> None:
        self._link = link
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1
        self._rows: deque[Any] = deque()

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def execute(self, sql: str, parameters: Any = ()) -> OneTripCursor:
        self.description, self.rowcount, self.lastrowid, rows = await self._link._execute(
            _run, self._link._conn, sql, parameters)
        self._rows = deque(rows)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneTripCursor:
        self.description = None
        self._rows = deque()
        self.rowcount, self.lastrowid = await self._link._execute(_run_many, self._link._conn, sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        n = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(n, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()  # the SQLite cursor was closed in the thread already

    async def nextset(self) -> None:
        return None


class OneTripConnection(aiosqlite.Connection):
    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)

    async def commit(self) -> None:
        # Reading in_transaction from here is safe: a connection serves one session at a time.
        if self._connection is not None and not self._connection.in_transaction:
            return
        await super().commit()

    async def rollback(self) -> None:
        if self._connection is not None and not self._connection.in_transaction:
            return
        await super().rollback()


async def connect(database: str, **kwargs: Any) -> OneTripConnection:
    """Like aiosqlite.connect (same arguments), for SQLAlchemy's `async_creator`."""

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, **kwargs)

    conn = OneTripConnection(connector, 64)
    conn._thread.daemon = True  # as SQLAlchemy does for aiosqlite: a stuck query never blocks exit
    return await conn
