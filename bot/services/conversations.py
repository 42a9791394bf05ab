"""Multi-step forms in progress, one per (user, chat), kept in the database across restarts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select

from bot.services.base import ServiceContext
from bot.storage.models import Conversation
from bot.storage.upsert import upsert


class ConversationService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def get(self, user_id: int, chat_id: int, *, max_age: timedelta | None = None) -> Conversation | None:
        async with self.ctx.read() as s:
            conv = await s.scalar(
                select(Conversation).where(Conversation.user_id == user_id, Conversation.chat_id == chat_id)
            )
        if conv is not None and max_age is not None and self.ctx.clock() - conv.updated_at > max_age:
            return None
        return conv

    async def put(self, user_id: int, chat_id: int, kind: str, step: str, data: dict[str, Any]) -> None:
        async with self.ctx.tx() as s:
            await upsert(
                s, Conversation,
                {"user_id": user_id, "chat_id": chat_id, "kind": kind, "step": step, "data": data,
                 "updated_at": self.ctx.clock()},
                ["user_id", "chat_id"], ["kind", "step", "data", "updated_at"],
            )

    async def clear(self, user_id: int, chat_id: int, kind: str | None = None) -> bool:
        async with self.ctx.tx() as s:
            q = delete(Conversation).where(Conversation.user_id == user_id, Conversation.chat_id == chat_id)
            if kind is not None:
                q = q.where(Conversation.kind == kind)
            res = await s.execute(q)
        return bool(res.rowcount)  # type: ignore[attr-defined]
