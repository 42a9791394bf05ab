"""The Telegram side of the sandbox: people, chats, messages, files and the update queue.

Everything is kept as the Bot API's own JSON objects (Message, User, Chat ...), so the Bot API
routes hand them to the bot as they are, the page renders the same objects, and a snapshot is
plain JSON. The page and the Bot API both act through this class; it tells the page of every
change (`subscribe`) and wakes the bot's long poll when an update is queued.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import mimetypes
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.sandbox.clock import OffsetClock
from bot.sandbox.entities import command_entities

log = logging.getLogger("linli.sandbox")

BOT_ID = 7_000_000_001
BOT_USERNAME = "linli_sandbox_bot"
PRESENT = frozenset({"creator", "administrator", "member", "restricted"})
ADMINS = frozenset({"creator", "administrator"})
SNAPSHOT_VERSION = 1

# Update kinds Telegram sends only to bots that ask for them in allowed_updates.
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


class ApiError(Exception):
    """An error answer; the HTTP status equals error_code, as on Telegram."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description

    def payload(self) -> dict[str, Any]:
        return {"ok": False, "error_code": self.code, "description": self.description}


def bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def forbidden(description: str) -> ApiError:
    return ApiError(403, f"Forbidden: {description}")


@dataclass(frozen=True, slots=True)
class Person:
    """Someone the visitor can act as."""

    id: int
    name: str
    username: str
    role: str  # secretary, resident or member


@dataclass(frozen=True, slots=True)
class StoredFile:
    file_id: str
    name: str
    mime: str
    size: int


class FileStore:
    """Files sent in the sandbox, one per file on disk (so a restart keeps them)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index: dict[str, StoredFile] = {}

    def put(self, name: str, data: bytes, mime: str | None = None, *, prefix: str = "BQAD") -> StoredFile:
        file_id = f"{prefix}{secrets.token_hex(10)}"
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / file_id).write_bytes(data)
        mime = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
        entry = StoredFile(file_id, name, mime, len(data))
        self.index[file_id] = entry
        return entry

    def get(self, file_id: str) -> StoredFile | None:
        return self.index.get(file_id)

    def read(self, file_id: str) -> bytes:
        return (self.folder / file_id).read_bytes()

    def clear(self) -> None:
        for entry in self.index:
            (self.folder / entry).unlink(missing_ok=True)
        self.index.clear()


def _strip_reply(msg: dict[str, Any]) -> dict[str, Any]:
    """A message as it appears inside another's reply_to_message (Telegram nests one level)."""
    return {k: v for k, v in msg.items() if k not in ("reply_to_message", "reply_markup")}


class World:
    def __init__(self, clock: OffsetClock, files: FileStore) -> None:
        self.clock = clock
        self.files = files
        self.bot: dict[str, Any] = {"id": BOT_ID, "is_bot": True, "first_name": "邻里", "username": BOT_USERNAME}
        self.people: list[Person] = []
        self.listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dirty = False
        self.ready = False  # the community is set up; the page may be played
        self.phase = "starting"  # starting, seeding, ready, resetting (shown on the page)
        self._update_event = asyncio.Event()
        self._bot_event = asyncio.Event()
        self.seq = 0  # page events, numbered across resets so the page can order them
        self.clear()

    def clear(self) -> None:
        self.users: dict[int, dict[str, Any]] = {BOT_ID: self.bot}
        self.chats: dict[int, dict[str, Any]] = {}
        self.status: dict[tuple[int, int], str] = {}
        self.messages: dict[int, dict[int, dict[str, Any]]] = {}
        self.pins: dict[int, list[int]] = {}
        self.callbacks: dict[str, dict[str, Any]] = {}
        self.updates: list[dict[str, Any]] = []
        self.allowed_updates: list[str] | None = None
        self.next_update_id = 1
        self.next_mid: dict[int, int] = {}
        self._callback_ids = itertools.count(1)
        self.files.clear()
        self.dirty = True

    # ------------------------------------------------------------------ the cast

    def add_person(self, person: Person) -> dict[str, Any]:
        self.people.append(person)
        user = {"id": person.id, "is_bot": False, "first_name": person.name, "username": person.username,
                "language_code": "zh-hans"}
        self.users[person.id] = user
        return user

    def add_group(self, chat_id: int, title: str) -> dict[str, Any]:
        chat = {"id": chat_id, "type": "supergroup", "title": title}
        self.chats[chat_id] = chat
        return chat

    def private_chat(self, user_id: int) -> dict[str, Any]:
        """The user's private chat with the bot; it exists once they have written to it."""
        chat = self.chats.get(user_id)
        if chat is None:
            u = self.users[user_id]
            chat = {"id": user_id, "type": "private", "first_name": u["first_name"]}
            if u.get("username"):
                chat["username"] = u["username"]
            self.chats[user_id] = chat
            self.status[(user_id, user_id)] = "member"
            self.status[(user_id, BOT_ID)] = "member"
        return chat

    def set_status(self, chat_id: int, user_id: int, status: str) -> None:
        self.status[(chat_id, user_id)] = status

    def get_status(self, chat_id: int, user_id: int) -> str:
        return self.status.get((chat_id, user_id), "left")

    def chats_of(self, user_id: int) -> list[int]:
        return [cid for cid in self.chats if self.get_status(cid, user_id) in PRESENT]

    def now(self) -> int:
        return int(self.clock().timestamp())

    # ------------------------------------------------------------------ page notifications

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        self.listeners.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.listeners.discard(q)

    def emit(self, event: dict[str, Any]) -> None:
        self.seq += 1
        self.dirty = True
        event = {**event, "seq": self.seq}
        for q in list(self.listeners):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:  # a page that stopped reading: it reloads on reconnect
                self.listeners.discard(q)

    def _emit_message(self, msg: dict[str, Any]) -> None:
        self.emit({"t": "msg", "chat_id": msg["chat"]["id"], "message": msg})

    # ------------------------------------------------------------------ messages

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        return self.messages.get(chat_id, {}).get(message_id)

    def _new_message(self, chat: dict[str, Any], sender: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
        cid = chat["id"]
        mid = self.next_mid.get(cid, 0) + 1
        self.next_mid[cid] = mid
        msg = {"message_id": mid, "from": sender, "chat": chat, "date": self.now(), **content}
        self.messages.setdefault(cid, {})[mid] = msg
        return msg

    def _enqueue(self, kind: str, body: dict[str, Any]) -> None:
        update = {"update_id": self.next_update_id, kind: copy.deepcopy(body)}
        self.next_update_id += 1
        self.updates.append(update)
        self.dirty = True
        self._update_event.set()

    def _reply_part(self, chat_id: int, reply_to: int | None) -> dict[str, Any]:
        if reply_to is None:
            return {}
        target = self.message(chat_id, reply_to)
        if target is None:
            raise bad("message to be replied not found")
        return {"reply_to_message": _strip_reply(target)}

    def user_message(
        self,
        user_id: int,
        chat_id: int,
        *,
        text: str | None = None,
        file: StoredFile | None = None,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        """The visitor, acting as `user_id`, writes in a chat: stored, shown, and passed to the bot."""
        user = self.users.get(user_id)
        if user is None or user_id == BOT_ID:
            raise bad("unknown user")
        if chat_id == user_id:
            chat = self.private_chat(user_id)
        else:
            chat = self.chats.get(chat_id)
            if chat is None or self.get_status(chat_id, user_id) not in PRESENT:
                raise forbidden("not a member of this chat")
        text = (text or "").strip()
        if file is None and not text:
            raise bad("message text is empty")
        content: dict[str, Any] = self._reply_part(chat_id, reply_to)
        if file is None:
            content["text"] = text
            if ents := command_entities(text):
                content["entities"] = ents
        else:
            if file.mime.startswith("image/"):
                content["photo"] = [{"file_id": file.file_id, "file_unique_id": file.file_id[-12:],
                                     "width": 1280, "height": 960, "file_size": file.size}]
            else:
                content["document"] = {"file_id": file.file_id, "file_unique_id": file.file_id[-12:],
                                       "file_name": file.name, "mime_type": file.mime, "file_size": file.size}
            if text:
                content["caption"] = text
                if ents := command_entities(text):
                    content["caption_entities"] = ents
        msg = self._new_message(chat, user, content)
        self._emit_message(msg)
        if self.get_status(chat_id, BOT_ID) in PRESENT:
            self._enqueue("message", msg)
        return msg

    def press(self, user_id: int, chat_id: int, message_id: int, data: str) -> str:
        """The visitor presses an inline button: a callback_query for the bot."""
        msg = self.message(chat_id, message_id)
        if msg is None or self.get_status(chat_id, user_id) not in PRESENT:
            raise bad("message not found")
        rows = (msg.get("reply_markup") or {}).get("inline_keyboard", [])
        if not any(b.get("callback_data") == data for row in rows for b in row):
            raise bad("the message has no such button (it may have changed)")
        qid = f"{BOT_ID % 100000}{next(self._callback_ids):08d}"
        self.callbacks[qid] = {"user_id": user_id, "answered": False}
        query = {"id": qid, "from": self.users[user_id], "message": msg,
                 "chat_instance": str(abs(chat_id) * 31 + 7), "data": data}
        self._enqueue("callback_query", query)
        return qid

    def member_change(self, chat_id: int, member_id: int, new: str, *, by: int, service: bool = True) -> None:
        """Someone (the bot too) joins or leaves a group: the updates Telegram sends for it."""
        chat = self.chats[chat_id]
        member = self.users[member_id]
        old = self.get_status(chat_id, member_id)
        self.status[(chat_id, member_id)] = new
        body = {"chat": chat, "from": self.users[by], "date": self.now(),
                "old_chat_member": self.member_json(old, member), "new_chat_member": self.member_json(new, member)}
        if member_id == BOT_ID:
            self._enqueue("my_chat_member", body)
        elif self.get_status(chat_id, BOT_ID) == "administrator":
            self._enqueue("chat_member", body)  # Telegram tells only admin bots of others' joins
        if service:
            joined = new in PRESENT and old not in PRESENT
            content = {"new_chat_members": [member]} if joined else {"left_chat_member": member}
            msg = self._new_message(chat, self.users[by], content)
            self._emit_message(msg)
            if self.get_status(chat_id, BOT_ID) in PRESENT or member_id == BOT_ID:
                self._enqueue("message", msg)

    def member_json(self, status: str, user: dict[str, Any]) -> dict[str, Any]:
        """A ChatMember object with every field the frameworks require for its status."""
        out: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            out["is_anonymous"] = False
        elif status == "administrator":
            out.update({
                "can_be_edited": False, "is_anonymous": False, "can_manage_chat": True,
                "can_delete_messages": True, "can_manage_video_chats": True, "can_restrict_members": True,
                "can_promote_members": False, "can_change_info": True, "can_invite_users": True,
                "can_post_stories": False, "can_edit_stories": False, "can_delete_stories": False,
                "can_pin_messages": True, "can_manage_topics": False, "can_send_welcome_messages": True,
            })
        elif status == "kicked":
            out["until_date"] = 0
        return out

    # ------------------------------------------------------------------ the bot's side

    def writable_chat(self, chat_id: Any) -> dict[str, Any]:
        """The chat a bot call targets, or the error Telegram gives for it."""
        chat = self.known_chat(chat_id)
        if chat["type"] == "private":
            return chat
        st = self.get_status(chat["id"], BOT_ID)
        if st == "kicked":
            raise forbidden("bot was kicked from the supergroup chat")
        if st not in PRESENT:
            raise forbidden("bot is not a member of the supergroup chat")
        return chat

    def known_chat(self, chat_id: Any) -> dict[str, Any]:
        try:
            cid = int(chat_id)
        except (TypeError, ValueError):
            raise bad("chat not found") from None
        chat = self.chats.get(cid)
        if chat is None:
            if cid in self.users and cid != BOT_ID:
                raise forbidden("bot can't initiate conversation with a user")
            raise bad("chat not found")
        return chat

    def bot_message(self, chat: dict[str, Any], content: dict[str, Any], reply_to: int | None) -> dict[str, Any]:
        target = self.message(chat["id"], reply_to) if reply_to is not None else None
        if target is not None:
            content = {"reply_to_message": _strip_reply(target), **content}
        msg = self._new_message(chat, self.bot, content)
        self._emit_message(msg)
        self._bot_event.set()
        self._bot_event = asyncio.Event()
        return msg

    def edited(self, msg: dict[str, Any]) -> None:
        msg["edit_date"] = self.now()
        self._emit_message(msg)
        self._bot_event.set()
        self._bot_event = asyncio.Event()

    def delete(self, chat_id: int, message_id: int) -> None:
        self.messages.get(chat_id, {}).pop(message_id, None)
        pins = self.pins.get(chat_id, [])
        if message_id in pins:
            pins.remove(message_id)
        self.emit({"t": "del", "chat_id": chat_id, "message_id": message_id})

    def pin(self, chat: dict[str, Any], message_id: int) -> None:
        pins = self.pins.setdefault(chat["id"], [])
        if message_id in pins:
            pins.remove(message_id)
        pins.append(message_id)
        if chat["type"] != "private":  # the service line everybody sees
            target = self.message(chat["id"], message_id)
            self._new_service(chat, {"pinned_message": _strip_reply(target) if target else {}})
        self.emit({"t": "pins", "chat_id": chat["id"], "pins": list(pins)})

    def unpin(self, chat: dict[str, Any], message_id: int | None) -> None:
        pins = self.pins.get(chat["id"], [])
        if message_id is None:
            pins.clear()
        elif message_id in pins:
            pins.remove(message_id)
        self.emit({"t": "pins", "chat_id": chat["id"], "pins": list(pins)})

    def _new_service(self, chat: dict[str, Any], content: dict[str, Any]) -> None:
        self._emit_message(self._new_message(chat, self.bot, content))

    def answer(self, qid: str, text: str | None, alert: bool) -> None:
        cb = self.callbacks.get(qid)
        if cb is None or cb["answered"]:
            raise bad("query is too old and response timeout expired or query ID is invalid")
        cb["answered"] = True
        self.emit({"t": "answer", "user_id": cb["user_id"], "qid": qid, "text": text or "", "alert": alert})

    async def get_updates(self, offset: int | None, limit: int, timeout: float) -> list[dict[str, Any]]:
        if offset is not None:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            self._update_event.clear()
            batch = [u for u in self.updates if self._allowed(u)][:limit]
            left = deadline - time.monotonic()
            if batch or left <= 0:
                return batch
            try:
                await asyncio.wait_for(self._update_event.wait(), timeout=left)
            except TimeoutError:
                pass

    def _allowed(self, update: dict[str, Any]) -> bool:
        kind = next(k for k in update if k != "update_id")
        if self.allowed_updates:
            return kind in self.allowed_updates
        return kind not in OPT_IN_UPDATES

    async def wait_for_bot(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first bot message (sent or edited) that matches, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            waiter = self._bot_event
            for chat in self.messages.values():
                for msg in chat.values():
                    if msg["from"]["id"] == BOT_ID and predicate(msg):
                        return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the bot did not answer in time")
            try:
                await asyncio.wait_for(waiter.wait(), timeout=left)
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ page state and snapshots

    def page_state(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ready": self.ready,
            "phase": self.phase,
            "bot": self.bot,
            "offset_ms": int(self.clock.offset.total_seconds() * 1000),
            "people": [asdict(p) | {"chats": self.chats_of(p.id)} for p in self.people],
            "chats": list(self.chats.values()),
            "messages": {str(cid): list(msgs.values()) for cid, msgs in self.messages.items()},
            "pins": {str(cid): pins for cid, pins in self.pins.items() if pins},
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "offset_seconds": self.clock.offset.total_seconds(),
            "users": list(self.users.values()),
            "chats": list(self.chats.values()),
            "status": [[c, u, s] for (c, u), s in self.status.items()],
            "messages": [m for chat in self.messages.values() for m in chat.values()],
            "next_mid": [[c, n] for c, n in self.next_mid.items()],
            "pins": [[c, p] for c, p in self.pins.items()],
            "updates": self.updates,
            "next_update_id": self.next_update_id,
            "files": [asdict(f) for f in self.files.index.values()],
            "ready": self.ready,
        }

    def restore(self, data: dict[str, Any]) -> bool:
        """Load a snapshot; False (and nothing changed) if it is not one this version wrote."""
        if data.get("version") != SNAPSHOT_VERSION:
            return False
        self.clock.offset = timedelta(seconds=float(data["offset_seconds"]))
        self.users = {u["id"]: u for u in data["users"]}
        self.users[BOT_ID] = self.bot
        self.chats = {c["id"]: c for c in data["chats"]}
        self.status = {(c, u): s for c, u, s in data["status"]}
        self.messages = {}
        for m in data["messages"]:
            self.messages.setdefault(m["chat"]["id"], {})[m["message_id"]] = m
        self.next_mid = {c: n for c, n in data["next_mid"]}
        self.pins = {c: p for c, p in data["pins"]}
        self.updates = list(data["updates"])
        self.next_update_id = int(data["next_update_id"])
        self.files.index = {f["file_id"]: StoredFile(**f) for f in data["files"]}
        self.ready = bool(data.get("ready"))
        return True
