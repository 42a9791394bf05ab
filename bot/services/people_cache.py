"""What every update needs to know about its person and its chat, kept in process between updates.

Every update used to read its user row and its chat (with the chat's community) from the database
before reaching a handler: two queries per update, the biggest part of a button press's cost in a
burst. Those rows change rarely, so they are remembered here and each update gets fresh detached
copies of them (as a read would give), without a query.

Staleness is ruled out within the process by watching the engine: a committed INSERT, UPDATE or
DELETE that touches `users`, `chats` or `communities` through it (ORM flushes, Core statements,
raw SQL alike) drops what is remembered of that table, after the commit, and a read that began
before such a commit does not store what it read. Another process writing the same database is
not seen: an entry is trusted for `ttl` seconds at most.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any, TypeVar

from sqlalchemy import Column, event, exc, inspect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter

from bot.storage.models import Chat, Community, User

M = TypeVar("M", User, Chat, Community)

USERS, CHATS = "users", "chats"  # what is dropped when a table changes
_WATCHED = {"users": USERS, "chats": CHATS, "communities": CHATS}
_DML = re.compile(r"^\s*(insert|update|delete|with|merge)\b", re.IGNORECASE)
_TABLES = re.compile(r"\b(users|chats|communities)\b", re.IGNORECASE)
_DIRTY, _COMMITTED = "linli_people_dirty", "linli_people_committed"
_WRITTEN = "linli_people_written"  # session.info: user rows written, to remember after the commit


def _values(obj: Any) -> dict[str, Any]:
    return {a.key: getattr(obj, a.key) for a in inspect(type(obj)).column_attrs}


def _copy(model: type[M], values: dict[str, Any]) -> M:
    """A detached instance equal to what a finished read session leaves behind."""
    obj = model(**{k: copy.deepcopy(v) if isinstance(v, (dict, list)) else v for k, v in values.items()})
    make_transient_to_detached(obj)
    return obj


Key = tuple[str, int | None]  # (USERS or CHATS, the row's id, or None for every row)


class PeopleCache:
    def __init__(self, ttl: float = 60.0, cap: int = 50_000) -> None:
        self.ttl, self.cap = ttl, cap
        self.generation = 0  # moves at every committed change of a watched table
        self._wide = {USERS: 0, CHATS: 0}  # generation of the last change of any row
        self._changed: dict[Key, int] = {}  # generation of the last change of one row
        self._users: dict[int, tuple[float, dict[str, Any]]] = {}
        # chat id -> (stored at, chat values, community values or None)
        self._chats: dict[int, tuple[float, dict[str, Any], dict[str, Any] | None]] = {}
        self._engines: list[Any] = []

    # ---- reading

    def user(self, user_id: int) -> User | None:
        hit = self._users.get(user_id)
        if hit is None or time.monotonic() - hit[0] >= self.ttl:
            return None
        return _copy(User, hit[1])

    def chat(self, chat_id: int) -> tuple[Chat, Community | None] | None:
        hit = self._chats.get(chat_id)
        if hit is None or time.monotonic() - hit[0] >= self.ttl:
            return None
        return _copy(Chat, hit[1]), (_copy(Community, hit[2]) if hit[2] is not None else None)

    # ---- storing what a read found (the read began at `generation`)

    def _fresh(self, generation: int, table: str, key: int) -> bool:
        """No change of this row was committed since the read began (else it may be older)."""
        return self._wide[table] <= generation and self._changed.get((table, key), -1) <= generation

    def put_user(self, generation: int, user: User) -> None:
        if not self._fresh(generation, USERS, user.id):
            return
        if len(self._users) >= self.cap:
            self._users.clear()
        self._users[user.id] = (time.monotonic(), _values(user))

    def put_values(self, generation: int, values: dict[str, Any]) -> None:
        """A user row as a write returned it (committed since `generation` was read)."""
        if not self._fresh(generation, USERS, values["id"]):
            return
        if len(self._users) >= self.cap:
            self._users.clear()
        self._users[values["id"]] = (time.monotonic(), dict(values))

    @staticmethod
    def written(session: Any, values: dict[str, Any]) -> None:
        """A user row as a write in `session` returned it; remembered once that commits (`settle`)."""
        session.info.setdefault(_WRITTEN, []).append(dict(values))

    def settle(self, info: dict[str, Any]) -> None:
        """After the commit of the session whose `info` this was, and after its connection went back
        (what the commit changed is dropped by then): remember the rows it wrote. No other commit can
        come in between (no await), so they are the newest."""
        for values in info.pop(_WRITTEN, ()):
            self.put_values(self.generation, values)

    @staticmethod
    def user_from(values: dict[str, Any]) -> User:
        return _copy(User, values)

    def put_chat(self, generation: int, chat: Chat, community: Community | None) -> None:
        if not self._fresh(generation, CHATS, chat.id):
            return
        if len(self._chats) >= self.cap:
            self._chats.clear()
        self._chats[chat.id] = (time.monotonic(), _values(chat), _values(community) if community else None)

    def drop(self, keys: set[Key]) -> None:
        self.generation += 1
        if len(self._changed) > self.cap:
            self._changed.clear()
            keys = {(table, None) for table, _ in keys} | {(USERS, None), (CHATS, None)}
        for table, key in keys:
            entries = self._users if table == USERS else self._chats
            if key is None:
                self._wide[table] = self.generation
                entries.clear()
            else:
                self._changed[(table, key)] = self.generation
                entries.pop(key, None)

    # ---- watching the engine

    def watch(self, engine: AsyncEngine) -> None:
        sync = engine.sync_engine
        event.listen(sync, "after_cursor_execute", self._on_execute)
        event.listen(sync, "commit", self._on_commit)
        event.listen(sync, "rollback", self._on_rollback)
        event.listen(sync, "checkin", self._on_checkin)
        self._engines.append(sync)

    def unwatch(self) -> None:
        for sync in self._engines:
            for name, fn in (("after_cursor_execute", self._on_execute), ("commit", self._on_commit),
                             ("rollback", self._on_rollback), ("checkin", self._on_checkin)):
                if event.contains(sync, name, fn):
                    event.remove(sync, name, fn)
        self._engines.clear()

    def _on_execute(self, conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        keys = self._touched(statement, context)
        if keys:
            conn.info.setdefault(_DIRTY, set()).update(keys)
            if not conn.in_transaction():  # autocommit: already committed
                self.drop(conn.info.pop(_DIRTY))

    @staticmethod
    def _touched(statement: str, context: Any) -> set[Key]:
        """Which remembered rows a statement may change: one row for an insert (or upsert) of it
        by id, every row of the table for anything else."""
        compiled = getattr(context, "compiled", None)
        if compiled is not None and (context.isinsert or context.isupdate or context.isdelete):
            name = getattr(getattr(compiled.statement, "table", None), "name", None)
            if name is not None:
                table = _WATCHED.get(name)
                if table is None:
                    return set()
                if context.isinsert and name != "communities":
                    ids = [p.get("id") for p in (context.compiled_parameters or [])]
                    if ids and all(isinstance(i, int) for i in ids):
                        return {(table, i) for i in ids}
                if not context.isinsert and name != "communities":
                    one = PeopleCache._one_row(compiled, context)
                    if one is not None:
                        return {(table, one)}
                return {(table, None)}
        if not _DML.match(statement):  # a read (or DDL)
            return set()
        return {(_WATCHED[m.lower()], None) for m in _TABLES.findall(statement)}

    @staticmethod
    def _one_row(compiled: Any, context: Any) -> int | None:
        """The id of the one row an UPDATE or DELETE `WHERE <table>.id = <value>` touches (else None)."""
        where = getattr(compiled.statement, "whereclause", None)
        if (not isinstance(where, BinaryExpression) or where.operator is not operators.eq
                or not isinstance(where.left, Column) or where.left.name != "id"
                or not isinstance(where.right, BindParameter) or len(context.compiled_parameters or ()) != 1):
            return None
        value = context.compiled_parameters[0].get(compiled.bind_names.get(where.right))
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _on_commit(self, conn: Any) -> None:
        dirty = conn.info.pop(_DIRTY, None)
        if dirty:  # dropped again once the connection is back in the pool, i.e. after the commit
            conn.info.setdefault(_COMMITTED, set()).update(dirty)
            self.drop(dirty)

    def _on_rollback(self, conn: Any) -> None:
        # A connection whose transaction is already invalid raises on `.info`; raising here would
        # break the rollback itself. What it wrote is undone anyway; a mark left behind only drops
        # rows from memory at that connection's next commit (too many, never too few).
        try:
            conn.info.pop(_DIRTY, None)
        except exc.SQLAlchemyError:
            pass

    def _on_checkin(self, _dbapi_conn: Any, record: Any) -> None:
        committed = record.info.pop(_COMMITTED, None) if record is not None else None
        if committed:
            self.drop(committed)
