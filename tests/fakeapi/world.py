"""The fake Telegram's world: users, chats, memberships, stored messages, and the update queue.

Everything here is plain Telegram JSON (dicts), so tests can hand messages back and forth and the
frameworks parse exactly what a real server would send.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

from tests.fakeapi.validate import Spec, load_spec

BOT_ID = 1000
BOT_USERNAME = "linli_test_bot"
BOT_USER: dict[str, Any] = {"id": BOT_ID, "is_bot": True, "first_name": "Linli Test", "username": BOT_USERNAME}
PRESENT = frozenset({"creator", "administrator", "member", "restricted"})
_STATUS_TYPES = {
    "creator": "ChatMemberOwner",
    "administrator": "ChatMemberAdministrator",
    "member": "ChatMemberMember",
    "restricted": "ChatMemberRestricted",
    "left": "ChatMemberLeft",
    "kicked": "ChatMemberBanned",
}
_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}")
_HASHTAG = re.compile(r"(?<![\w#])#\w*[^\W\d]\w*")

Ref = dict[str, Any] | int  # a user/chat dict or its id


def _id(x: Ref) -> int:
    return x if isinstance(x, int) else int(x["id"])


def u16(s: str) -> int:
    """Length in UTF-16 code units, the unit of entity offsets."""
    return len(s.encode("utf-16-le")) // 2


def text_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram's client would attach: a leading bot command, mentions, hashtags."""
    found: list[tuple[int, int, str]] = []
    m = _COMMAND.match(text)
    if m:
        found.append((m.start(), m.end(), "bot_command"))
    found += [(m.start(), m.end(), "mention") for m in _MENTION.finditer(text)]
    found += [(m.start(), m.end(), "hashtag") for m in _HASHTAG.finditer(text)]
    return [
        {"type": t, "offset": u16(text[:s]), "length": u16(text[s:e])}
        for s, e, t in sorted(found)
    ]


def strip_reply(msg: dict[str, Any]) -> dict[str, Any]:
    """A message as it appears inside reply_to_message (Telegram nests one level only)."""
    return {k: v for k, v in msg.items() if k != "reply_to_message"}


class World:
    def __init__(self, token: str = "123:ABC", *, privacy_mode: bool = False):
        self.token = token
        self.spec: Spec = load_spec()
        self.bot: dict[str, Any] = dict(BOT_USER)
        self.privacy_mode = privacy_mode  # True: in groups the bot sees only commands/replies/mentions
        self.users: dict[int, dict[str, Any]] = {BOT_ID: self.bot}
        self.chats: dict[int, dict[str, Any]] = {}
        self.status: dict[tuple[int, int], str] = {}
        self.blocked: set[int] = set()  # users who blocked the bot
        self.topics: dict[int, set[int]] = {}  # forum chat -> thread ids
        self.messages: dict[int, dict[int, dict[str, Any]]] = {}  # chat -> message_id -> message
        self.meta: dict[tuple[int, int], dict[str, Any]] = {}  # (chat, mid) -> raw text etc.
        self.callbacks: dict[str, dict[str, Any]] = {}  # id -> {"query":..., "answered":...}
        self.updates: list[dict[str, Any]] = []  # not yet confirmed by an offset
        self.dropped_updates: list[dict[str, Any]] = []  # filtered out by allowed_updates
        self.undelivered: list[dict[str, Any]] = []  # chat_member without admin rights, privacy mode
        self.allowed_updates: list[str] | None = None
        self.last_update_id = 0
        self._update_ids = itertools.count(1)
        self._mids: dict[int, int] = {}
        self._group_ids = itertools.count(1)
        self._cb_ids = itertools.count(1)
        self._file_seq = itertools.count(1)
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (filename, bytes)
        self.migrated: dict[int, int] = {}  # basic group -> the supergroup it became
        self._update_event = asyncio.Event()

    # ------------------------------------------------------------------ world building

    def user(
        self,
        id: int,  # noqa: A002 - Telegram's name
        first_name: str,
        username: str | None = None,
        language_code: str | None = "zh-hans",
        *,
        last_name: str | None = None,
    ) -> dict[str, Any]:
        u: dict[str, Any] = {"id": id, "is_bot": False, "first_name": first_name}
        if last_name:
            u["last_name"] = last_name
        if username:
            u["username"] = username
        if language_code:
            u["language_code"] = language_code
        self.users[id] = u
        return u

    def private_chat(self, user: Ref) -> dict[str, Any]:
        """The user's private chat with the bot (the user has started the bot)."""
        u = self.users[_id(user)]
        chat: dict[str, Any] = {"id": u["id"], "type": "private", "first_name": u["first_name"]}
        for k in ("last_name", "username"):
            if k in u:
                chat[k] = u[k]
        self.chats[u["id"]] = chat
        self.status[(u["id"], u["id"])] = "member"
        self.status[(u["id"], BOT_ID)] = "member"
        return chat

    def group(
        self, title: str, forum: bool = False, *, basic: bool = False, with_bot: bool = True,
        username: str | None = None,
    ) -> dict[str, Any]:
        """A supergroup (negative -100... id), or a basic group with basic=True.

        with_bot: the bot is already a member (no update is sent); use with_bot=False and add_bot()
        to play the bot being added.
        """
        n = next(self._group_ids)
        cid = -(4000 + n) if basic else -(1001000000000 + n)
        chat: dict[str, Any] = {"id": cid, "type": "group" if basic else "supergroup", "title": title}
        if forum and not basic:
            chat["is_forum"] = True
            self.topics[cid] = set()
        if username:
            chat["username"] = username
        self.chats[cid] = chat
        self.status[(cid, BOT_ID)] = "member" if with_bot else "left"
        return chat

    def set_status(self, chat: Ref, user: Ref, status: str) -> None:
        if status not in _STATUS_TYPES:
            raise ValueError(f"unknown chat member status {status!r}")
        self.status[(_id(chat), _id(user))] = status

    def get_status(self, chat: Ref, user: Ref) -> str:
        return self.status.get((_id(chat), _id(user)), "left")

    def topic(self, chat: Ref, name: str, *, by: Ref | None = None, notify: bool = True) -> int:
        """Create a forum topic; returns its message_thread_id (the id of its creation message)."""
        c = self.chats[_id(chat)]
        if not c.get("is_forum"):
            raise ValueError("topics exist only in forum supergroups")
        mid = self._next_mid(c["id"])
        msg = {
            "message_id": mid, "date": int(time.time()), "chat": c,
            "from": self.users[_id(by)] if by is not None else self.bot,
            "message_thread_id": mid, "is_topic_message": True,
            "forum_topic_created": {"name": name, "icon_color": 7322096},
        }
        self._store(msg)
        self.topics[c["id"]].add(mid)
        if notify:
            self._enqueue({"message": msg})
        return mid

    def block(self, user: Ref) -> None:
        """The user blocks the bot: my_chat_member (member -> kicked) in the private chat."""
        uid = _id(user)
        self.blocked.add(uid)
        if uid in self.chats:
            self._member_update("my_chat_member", uid, self.bot, "kicked", by=uid)

    def unblock(self, user: Ref) -> None:
        uid = _id(user)
        self.blocked.discard(uid)
        if uid in self.chats:
            self._member_update("my_chat_member", uid, self.bot, "member", by=uid)

    def migrate(self, chat: Ref, by: Ref, *, notify: bool = True) -> dict[str, Any]:
        """A basic group is upgraded to a supergroup: a new id, the same people (and bot).

        Telegram posts `migrate_to_chat_id` in the old group and `migrate_from_chat_id` in the new
        one; with notify=False those updates are lost (the bot learns it from a 400 later)."""
        old = self.chats[_id(chat)]
        if old["type"] != "group":
            raise ValueError("only a basic group can be upgraded")
        n = next(self._group_ids)
        new: dict[str, Any] = {"id": -(1001000000000 + n), "type": "supergroup", "title": old["title"]}
        self.chats[new["id"]] = new
        for (cid, uid), status in list(self.status.items()):
            if cid == old["id"]:
                self.status[(new["id"], uid)] = status
        self.migrated[old["id"]] = new["id"]
        u = self.users[_id(by)]
        for c, content in ((old, {"migrate_to_chat_id": new["id"]}), (new, {"migrate_from_chat_id": old["id"]})):
            msg = {"message_id": self._next_mid(c["id"]), "from": u, "chat": c, "date": int(time.time()), **content}
            self._store(msg)
            if notify:
                self._enqueue({"message": msg})
        return new

    # ------------------------------------------------------------------ driving updates

    def send(
        self,
        user: Ref,
        chat: Ref,
        text: str | None = None,
        *,
        reply_to: dict[str, Any] | None = None,
        thread_id: int | None = None,
        photo: bool = False,
        caption: str | None = None,
    ) -> dict[str, Any]:
        """A user's message; enqueues the update and returns the Message dict."""
        u, c = self.users[_id(user)], self.chats[_id(chat)]
        if c["type"] != "private" and self.get_status(c, u) not in PRESENT:
            self.status[(c["id"], u["id"])] = "member"  # to post there one must be in the group
        msg: dict[str, Any] = {"message_id": self._next_mid(c["id"]), "from": u, "chat": c, "date": int(time.time())}
        if reply_to is not None:
            target = self.messages.get(c["id"], {}).get(reply_to["message_id"], reply_to)
            msg["reply_to_message"] = strip_reply(target)
            if thread_id is None and target.get("is_topic_message"):
                thread_id = target.get("message_thread_id")
        if thread_id is not None:
            msg["message_thread_id"] = thread_id
            if c.get("is_forum"):
                msg["is_topic_message"] = True
                root = self._topic_root(c, thread_id)
                # Telegram quirk: a topic message that replies to nothing "replies" to the topic's
                # creation message.
                msg.setdefault("reply_to_message", strip_reply(root))
        if photo:
            msg["photo"] = self._photo_sizes(f"u{c['id']}_{msg['message_id']}")
            if caption is not None:
                msg["caption"] = caption
                if ents := text_entities(caption):
                    msg["caption_entities"] = ents
        else:
            if text is None:
                raise ValueError("text is required unless photo=True")
            msg["text"] = text
            if ents := text_entities(text):
                msg["entities"] = ents
        self._store(msg)
        if self._bot_sees(msg):
            self._enqueue({"message": msg})
        else:
            self.undelivered.append({"message": msg})
        return msg

    def press(self, user: Ref, message: dict[str, Any], data: str, *, force: bool = False) -> dict[str, Any]:
        """The user presses an inline button with `data` on a bot message; returns the CallbackQuery."""
        chat_id, mid = message["chat"]["id"], message["message_id"]
        current = self.messages.get(chat_id, {}).get(mid, message)
        if not force:
            datas = [b.get("callback_data") for row in (current.get("reply_markup") or {}).get("inline_keyboard", [])
                     for b in row]
            if data not in datas:
                raise AssertionError(f"message {mid} in chat {chat_id} has no button with data {data!r}; has {datas}")
        qid = f"cbq{next(self._cb_ids)}"
        query = {
            "id": qid, "from": self.users[_id(user)], "message": current,
            "chat_instance": str(abs(chat_id) * 7 + 13), "data": data,
        }
        self.callbacks[qid] = {"query": query, "answered": None}
        self._enqueue({"callback_query": query})
        return query

    def click(self, user: Ref, message: dict[str, Any], text_contains: str) -> dict[str, Any]:
        """Press the button whose text contains `text_contains`."""
        return self.press(user, message, find_button(self.current(message), text_contains))

    def add_bot(self, chat: Ref, by: Ref, status: str = "member") -> dict[str, Any]:
        """The bot is added (or promoted): my_chat_member from its current status to `status`.

        A group made with with_bot=True already holds the bot; adding it again plays "left -> status".
        """
        if self.get_status(chat, BOT_ID) == status:
            self.status[(_id(chat), BOT_ID)] = "left"
        return self._member_update("my_chat_member", _id(chat), self.bot, status, by=_id(by))

    def remove_bot(self, chat: Ref, by: Ref, status: str = "left") -> dict[str, Any]:
        return self._member_update("my_chat_member", _id(chat), self.bot, status, by=_id(by))

    def join(self, chat: Ref, user: Ref, *, service_message: bool = False) -> dict[str, Any]:
        """A user joins: chat_member update (delivered only when the bot is admin and asked for it)."""
        upd = self._member_update("chat_member", _id(chat), self.users[_id(user)], "member", by=_id(user))
        if service_message:
            self._service(chat, user, {"new_chat_members": [self.users[_id(user)]]})
        return upd

    def leave(self, chat: Ref, user: Ref, *, service_message: bool = False) -> dict[str, Any]:
        upd = self._member_update("chat_member", _id(chat), self.users[_id(user)], "left", by=_id(user))
        if service_message:
            self._service(chat, user, {"left_chat_member": self.users[_id(user)]})
        return upd

    # ------------------------------------------------------------------ queries

    def current(self, message: dict[str, Any]) -> dict[str, Any]:
        """The stored (latest, after edits) state of a message."""
        return self.messages.get(message["chat"]["id"], {}).get(message["message_id"], message)

    def messages_to(self, chat: Ref, thread_id: int | None = None) -> list[dict[str, Any]]:
        """Bot messages in a chat, in order, as they are now. thread_id: None = all, 0 = no topic."""
        out = []
        for msg in self.messages.get(_id(chat), {}).values():
            if msg["from"]["id"] != BOT_ID or "forum_topic_created" in msg:
                continue
            if thread_id is not None and msg.get("message_thread_id", 0) != thread_id:
                continue
            out.append(msg)
        return out

    def last_to(self, chat: Ref, thread_id: int | None = None) -> dict[str, Any] | None:
        msgs = self.messages_to(chat, thread_id)
        return msgs[-1] if msgs else None

    def find_button(self, message: dict[str, Any], text_contains: str) -> str:
        return find_button(self.current(message), text_contains)

    def unanswered_callbacks(self) -> list[dict[str, Any]]:
        return [c["query"] for c in self.callbacks.values() if c["answered"] is None]

    # ------------------------------------------------------------------ internals

    def _next_mid(self, chat_id: int) -> int:
        self._mids[chat_id] = self._mids.get(chat_id, 0) + 1
        return self._mids[chat_id]

    def _store(self, msg: dict[str, Any]) -> None:
        self.messages.setdefault(msg["chat"]["id"], {})[msg["message_id"]] = msg

    def _topic_root(self, chat: dict[str, Any], thread_id: int) -> dict[str, Any]:
        stored = self.messages.get(chat["id"], {}).get(thread_id)
        if stored is not None:
            return stored
        # A topic the test did not create with topic(): invent its creation message.
        self._mids[chat["id"]] = max(self._mids.get(chat["id"], 0), thread_id)
        root = {
            "message_id": thread_id, "date": int(time.time()), "chat": chat, "from": self.bot,
            "message_thread_id": thread_id, "is_topic_message": True,
            "forum_topic_created": {"name": f"Topic {thread_id}", "icon_color": 7322096},
        }
        self._store(root)
        self.topics.setdefault(chat["id"], set()).add(thread_id)
        return root

    def _photo_sizes(self, key: str, data: bytes | None = None) -> list[dict[str, Any]]:
        sizes = []
        for i, (w, h) in enumerate(((90, 67), (320, 240), (1280, 960))):
            fid = f"AgACAgPhoto{key}_{i}"
            self.files[fid] = (f"photo_{key}_{i}.jpg", data or b"\xff\xd8\xff\xe0fake-jpeg-" + fid.encode())
            sizes.append({"file_id": fid, "file_unique_id": f"AQAD{key}{i}", "width": w, "height": h,
                          "file_size": len(self.files[fid][1])})
        return sizes

    def _bot_sees(self, msg: dict[str, Any]) -> bool:
        chat = msg["chat"]
        if chat["type"] == "private":
            return msg["from"]["id"] not in self.blocked
        if self.get_status(chat, BOT_ID) not in PRESENT:
            return False
        if not self.privacy_mode or self.get_status(chat, BOT_ID) == "administrator":
            return True
        text = msg.get("text") or msg.get("caption") or ""
        m = _COMMAND.match(text)
        if m and ("@" not in m.group(0) or m.group(0).endswith("@" + BOT_USERNAME)):
            return True
        reply = msg.get("reply_to_message")
        if reply and reply["from"]["id"] == BOT_ID and "forum_topic_created" not in reply:
            return True
        return f"@{BOT_USERNAME}" in text

    def _member_json(self, status: str, user: dict[str, Any]) -> dict[str, Any]:
        """A ChatMember of the right kind, every required field filled from the spec."""
        out: dict[str, Any] = {"status": status, "user": user}
        for f in self.spec.fields(_STATUS_TYPES[status]):
            if not f["required"] or f["name"] in out:
                continue
            if f["types"] == ["Boolean"]:
                out[f["name"]] = f["name"] not in ("is_anonymous", "can_be_edited")
            elif f["types"] == ["Integer"]:
                out[f["name"]] = 0
        if status == "administrator":
            # can_send_welcome_messages is newer than the spec (Bot API 10.3), but aiogram 3.31 requires it.
            out.update(can_pin_messages=True, can_manage_topics=True, can_send_welcome_messages=True)
        return out

    def _member_update(self, kind: str, chat_id: int, member: dict[str, Any], new: str, *, by: int) -> dict[str, Any]:
        old = self.get_status(chat_id, member["id"])
        self.status[(chat_id, member["id"])] = new
        body = {
            "chat": self.chats[chat_id], "from": self.users[by], "date": int(time.time()),
            "old_chat_member": self._member_json(old, member),
            "new_chat_member": self._member_json(new, member),
        }
        update = {kind: body}
        if kind == "chat_member" and self.get_status(chat_id, BOT_ID) != "administrator":
            self.undelivered.append(update)  # Telegram sends chat_member only to admin bots
            return body
        self._enqueue(update)
        return body

    def _service(self, chat: Ref, user: Ref, content: dict[str, Any]) -> dict[str, Any]:
        c = self.chats[_id(chat)]
        msg = {"message_id": self._next_mid(c["id"]), "from": self.users[_id(user)], "chat": c,
               "date": int(time.time()), **content}
        self._store(msg)
        self._enqueue({"message": msg})
        return msg

    def _enqueue(self, update: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._update_ids), **update}
        self.last_update_id = update["update_id"]
        self.updates.append(update)
        self._wake()
        return update

    def _wake(self) -> None:
        self._update_event.set()
        self._update_event = asyncio.Event()


def find_button(message: dict[str, Any], text_contains: str) -> str:
    """callback_data of the first inline button whose text contains `text_contains`."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    for row in rows:
        for b in row:
            if text_contains in b.get("text", "") and "callback_data" in b:
                return b["callback_data"]
    texts = [b.get("text") for row in rows for b in row]
    raise AssertionError(f"no button containing {text_contains!r} in message {message.get('message_id')}: {texts}")
