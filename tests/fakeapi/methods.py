"""Bot API methods of the fake server, acting on the World.

Each handler takes a validated call and returns the `result` Telegram would send, or raises
ApiError. Methods not implemented here but present in the spec answer `true`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakeapi.validate import ApiError, Checked, UploadedFile, bad
from tests.fakeapi.world import BOT_ID, PRESENT, World, strip_reply


def forbidden(description: str) -> ApiError:
    return ApiError(403, f"Forbidden: {description}", kind="refusal")


@dataclass(slots=True)
class SentRecord:
    """One successful bot call (everything except getUpdates)."""

    method: str
    chat_id: int | str | None = None
    text: str | None = None  # text or caption as the user sees it (HTML parsed, entities decoded)
    raw_text: str | None = None  # as the bot sent it
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None
    message_id: int | None = None
    message_thread_id: int | None = None
    reply_to: int | None = None  # message_id replied to
    document_name: str | None = None
    document_bytes: bytes | None = None
    photo: str | UploadedFile | None = None  # file_id/URL or the uploaded file
    params: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    time: float = 0.0

    @property
    def buttons(self) -> list[tuple[str, str | None]]:
        """(text, callback_data or url) of every inline button, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [(b["text"], b.get("callback_data") or b.get("url")) for row in rows for b in row]

    @property
    def message(self) -> dict[str, Any] | None:
        return self.result if isinstance(self.result, dict) and "message_id" in self.result else None


Handler = Callable[[Checked], Awaitable[Any]]


class BotMethods(World):
    def __init__(self, token: str = "123:ABC", *, privacy_mode: bool = False):
        super().__init__(token, privacy_mode=privacy_mode)
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.webhook_url = ""
        self.webhook_params: dict[str, Any] = {}
        self.pinned: dict[int, list[int]] = {}
        self.handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "editMessageText": self._edit_text,
            "editMessageReplyMarkup": self._edit_markup,
            "deleteMessage": self._delete_message,
            "pinChatMessage": self._pin,
            "unpinChatMessage": self._unpin,
            "answerCallbackQuery": self._answer_callback,
            "getChatMember": self._get_chat_member,
            "getChatAdministrators": self._get_admins,
            "getChatMemberCount": self._get_member_count,
            "getChat": self._get_chat,
            "getFile": self._get_file,
            "setMyCommands": self._set_commands,
            "deleteMyCommands": self._delete_commands,
            "getMyCommands": self._get_commands,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._webhook_info,
            "sendChatAction": self._chat_action,
        }

    # ------------------------------------------------------------------ helpers

    def _chat(self, chat_id: int | str) -> dict[str, Any]:
        if isinstance(chat_id, str):
            for c in self.chats.values():
                if c.get("username") and f"@{c['username']}".lower() == chat_id.lower():
                    return c
            raise bad("chat not found")
        c = self.chats.get(chat_id)
        if c is None:
            if chat_id in self.users and chat_id != BOT_ID:
                raise forbidden("bot can't initiate conversation with a user")
            raise bad("chat not found")
        return c

    def _chat_to_write(self, chat_id: int | str) -> dict[str, Any]:
        c = self._chat(chat_id)
        if c["id"] in self.migrated:
            raise ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat", kind="refusal",
                           parameters={"migrate_to_chat_id": self.migrated[c["id"]]})
        if c["type"] == "private":
            if c["id"] in self.blocked:
                raise forbidden("bot was blocked by the user")
            return c
        kind = "group chat" if c["type"] == "group" else "supergroup chat"
        st = self.get_status(c, BOT_ID)
        if st == "kicked":
            raise forbidden(f"bot was kicked from the {kind}")
        if st not in PRESENT:
            raise forbidden(f"bot is not a member of the {kind}")
        return c

    def _message(self, chat_id: int, mid: int) -> dict[str, Any] | None:
        return self.messages.get(chat_id, {}).get(mid)

    def _new_bot_message(self, c: Checked, content: dict[str, Any]) -> dict[str, Any]:
        p = c.params
        chat = self._chat_to_write(p["chat_id"])
        thread = p.get("message_thread_id")
        reply_id = (p.get("reply_parameters") or {}).get("message_id", p.get("reply_to_message_id"))
        allow_missing = (p.get("reply_parameters") or {}).get(
            "allow_sending_without_reply", p.get("allow_sending_without_reply", False)
        )
        reply = self._message(chat["id"], reply_id) if reply_id is not None else None
        if reply_id is not None and reply is None and not allow_missing:
            raise bad("message to be replied not found")
        if reply is not None and thread is None and reply.get("is_topic_message"):
            thread = reply.get("message_thread_id")  # a reply goes to the replied message's topic
        if thread is not None and chat.get("is_forum") and thread not in self.topics.get(chat["id"], set()):
            raise bad("message thread not found")
        msg: dict[str, Any] = {
            "message_id": self._next_mid(chat["id"]), "from": self.bot, "chat": chat, "date": int(time.time()),
        }
        if thread is not None:
            msg["message_thread_id"] = thread
            if chat.get("is_forum"):
                msg["is_topic_message"] = True
        if reply is not None:
            msg["reply_to_message"] = strip_reply(reply)
        msg.update(content)
        markup = p.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            msg["reply_markup"] = markup  # only inline keyboards are part of a Message
        self._store(msg)
        self.meta[(chat["id"], msg["message_id"])] = {
            "raw": p.get("text", p.get("caption")), "parse_mode": p.get("parse_mode"), "entities": c.entities,
        }
        return msg

    def _new_file_id(self, kind: str, name: str, data: bytes) -> str:
        fid = f"BQAC{kind}{next(self._file_seq):06d}"
        self.files[fid] = (name, data)
        return fid

    def _file_source(self, value: Any) -> tuple[str, bytes, str | UploadedFile]:
        """(filename, bytes, what the bot passed) for an InputFile-or-String field."""
        if isinstance(value, UploadedFile):
            return value.filename, value.data, value
        if "://" in value:
            return value.rsplit("/", 1)[-1] or "file", b"", value  # a URL: never fetched
        if value not in self.files:
            raise bad("wrong file identifier/HTTP URL specified")
        name, data = self.files[value]
        return name, data, value

    # ------------------------------------------------------------------ methods

    async def _get_me(self, c: Checked) -> Any:
        me = dict(self.bot)
        for f in self.spec.fields("User"):
            if f["types"] == ["Boolean"] and f["name"] not in me and not f["name"].startswith("is_"):
                me[f["name"]] = f["name"] == "can_join_groups" or (
                    f["name"] == "can_read_all_group_messages" and not self.privacy_mode
                )
        return me

    async def _send_message(self, c: Checked) -> Any:
        return self._new_bot_message(c, {"text": c.text})

    async def _send_photo(self, c: Checked) -> Any:
        _, data, _ = self._file_source(c.params["photo"])
        content: dict[str, Any] = {"photo": self._photo_sizes(f"b{next(self._file_seq)}", data or None)}
        if c.caption:
            content["caption"] = c.caption
        return self._new_bot_message(c, content)

    async def _send_document(self, c: Checked) -> Any:
        name, data, _ = self._file_source(c.params["document"])
        fid = self._new_file_id("Doc", name, data)
        doc: dict[str, Any] = {"file_id": fid, "file_unique_id": f"AgAD{fid[-6:]}", "file_name": name,
                               "file_size": len(data)}
        up = c.params["document"]
        if isinstance(up, UploadedFile) and up.content_type:
            doc["mime_type"] = up.content_type
        content: dict[str, Any] = {"document": doc}
        if c.caption:
            content["caption"] = c.caption
        return self._new_bot_message(c, content)

    def _editable(self, c: Checked) -> dict[str, Any]:
        p = c.params
        if "inline_message_id" in p:
            raise bad("inline messages are not supported by the fake server")
        if "chat_id" not in p or "message_id" not in p:
            raise bad("message identifier is not specified")
        chat = self._chat(p["chat_id"])
        msg = self._message(chat["id"], p["message_id"])
        if msg is None:
            raise bad("message to edit not found")
        if msg["from"]["id"] != BOT_ID:
            raise bad("message can't be edited")
        return msg

    async def _edit_text(self, c: Checked) -> Any:
        msg = self._editable(c)
        if "text" not in msg:
            raise bad("there is no text in the message to edit")
        key = (msg["chat"]["id"], msg["message_id"])
        new_markup = c.params.get("reply_markup")
        old = self.meta.get(key, {})
        same_text = msg["text"] == c.text and tuple(old.get("entities", ())) == tuple(c.entities)
        if same_text and msg.get("reply_markup") == new_markup:
            raise bad(
                "message is not modified: specified new message content and reply markup are exactly "
                "the same as a current message content and reply markup of the message"
            )
        msg["text"] = c.text
        msg["edit_date"] = int(time.time())
        # Telegram drops the inline keyboard when an edit does not repeat it.
        if new_markup:
            msg["reply_markup"] = new_markup
        else:
            msg.pop("reply_markup", None)
        self.meta[key] = {"raw": c.params["text"], "parse_mode": c.params.get("parse_mode"), "entities": c.entities}
        return msg

    async def _edit_markup(self, c: Checked) -> Any:
        msg = self._editable(c)
        new_markup = c.params.get("reply_markup") or None
        if msg.get("reply_markup") == new_markup:
            raise bad(
                "message is not modified: specified new message content and reply markup are exactly "
                "the same as a current message content and reply markup of the message"
            )
        if new_markup:
            msg["reply_markup"] = new_markup
        else:
            msg.pop("reply_markup", None)
        msg["edit_date"] = int(time.time())
        return msg

    async def _delete_message(self, c: Checked) -> Any:
        chat = self._chat(c.params["chat_id"])
        if self.messages.get(chat["id"], {}).pop(c.params["message_id"], None) is None:
            raise bad("message to delete not found")
        return True

    def _need_pin_rights(self, chat: dict[str, Any]) -> None:
        if chat["type"] != "private" and self.get_status(chat, BOT_ID) not in ("administrator", "creator"):
            raise ApiError(400, "Bad Request: not enough rights to manage pinned messages in the chat",
                           kind="refusal")

    async def _pin(self, c: Checked) -> Any:
        chat = self._chat_to_write(c.params["chat_id"])
        self._need_pin_rights(chat)
        mid = c.params["message_id"]
        if self._message(chat["id"], mid) is None:
            raise bad("message to pin not found")
        pins = self.pinned.setdefault(chat["id"], [])
        if mid in pins:
            pins.remove(mid)
        pins.append(mid)
        return True

    async def _unpin(self, c: Checked) -> Any:
        chat = self._chat_to_write(c.params["chat_id"])
        self._need_pin_rights(chat)
        pins = self.pinned.get(chat["id"], [])
        mid = c.params.get("message_id", pins[-1] if pins else None)
        if mid in pins:
            pins.remove(mid)
        return True

    async def _answer_callback(self, c: Checked) -> Any:
        cb = self.callbacks.get(c.params["callback_query_id"])
        if cb is None or cb["answered"] is not None:
            raise bad("query is too old and response timeout expired or query ID is invalid")
        cb["answered"] = c.params
        return True

    async def _get_chat_member(self, c: Checked) -> Any:
        chat = self._chat(c.params["chat_id"])
        uid = c.params["user_id"]
        user = self.users.get(uid)
        if user is None:
            raise bad("user not found")
        return self._member_json(self.get_status(chat, uid), user)

    async def _get_admins(self, c: Checked) -> Any:
        chat = self._chat(c.params["chat_id"])
        if chat["type"] == "private":
            raise bad("there are no administrators in the private chat")
        return [
            self._member_json(st, self.users[uid])
            for (cid, uid), st in self.status.items()
            if cid == chat["id"] and st in ("creator", "administrator")
        ]

    async def _get_member_count(self, c: Checked) -> Any:
        chat = self._chat(c.params["chat_id"])
        return sum(1 for (cid, _), st in self.status.items() if cid == chat["id"] and st in PRESENT)

    async def _get_chat(self, c: Checked) -> Any:
        chat = self._chat(c.params["chat_id"])
        full: dict[str, Any] = dict(chat)
        defaults: dict[str, Any] = {"accent_color_id": 0, "max_reaction_count": 11}
        for f in self.spec.fields("ChatFullInfo"):
            if f["required"] and f["name"] not in full:
                if f["name"] in defaults:
                    full[f["name"]] = defaults[f["name"]]
                elif len(f["types"]) == 1 and f["types"][0] in self.spec.types:
                    full[f["name"]] = {
                        g["name"]: False for g in self.spec.fields(f["types"][0]) if g["types"] == ["Boolean"]
                    }
                else:
                    full[f["name"]] = 0
        pins = self.pinned.get(chat["id"])
        if pins and (pm := self._message(chat["id"], pins[-1])):
            full["pinned_message"] = strip_reply(pm)
        return full

    async def _get_file(self, c: Checked) -> Any:
        fid = c.params["file_id"]
        if fid not in self.files:
            raise bad("wrong file_id or the file is temporarily unavailable")
        name, data = self.files[fid]
        return {"file_id": fid, "file_unique_id": f"AgAD{abs(hash(fid)) % 10**8}", "file_size": len(data),
                "file_path": f"files/{fid}/{name}"}

    @staticmethod
    def _scope_key(c: Checked) -> tuple[str, str]:
        scope = c.params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), c.params.get("language_code", "")

    async def _set_commands(self, c: Checked) -> Any:
        self.commands[self._scope_key(c)] = c.params["commands"]
        return True

    async def _delete_commands(self, c: Checked) -> Any:
        self.commands.pop(self._scope_key(c), None)
        return True

    async def _get_commands(self, c: Checked) -> Any:
        return self.commands.get(self._scope_key(c), [])

    async def _set_webhook(self, c: Checked) -> Any:
        self.webhook_url = c.params["url"]
        self.webhook_params = dict(c.params)  # secret_token, allowed_updates, max_connections ...
        if "allowed_updates" in c.params:
            self.allowed_updates = list(c.params["allowed_updates"])
        self._wake()  # the pusher (server.py) starts delivering
        return True

    async def _delete_webhook(self, c: Checked) -> Any:
        self.webhook_url = ""
        if c.params.get("drop_pending_updates"):
            self.updates.clear()
        return True

    async def _webhook_info(self, c: Checked) -> Any:
        return {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": len(self.updates)}

    async def _chat_action(self, c: Checked) -> Any:
        self._chat_to_write(c.params["chat_id"])
        return True

    # ------------------------------------------------------------------ recording

    def make_record(self, c: Checked, result: Any) -> SentRecord:
        p = c.params
        msg = result if isinstance(result, dict) and "message_id" in result else None
        rec = SentRecord(method=c.method, params=p, result=result, time=time.monotonic())
        rec.chat_id = msg["chat"]["id"] if msg else p.get("chat_id")
        rec.text = c.text if c.text is not None else c.caption
        if c.method == "answerCallbackQuery":
            rec.text = p.get("text")
        rec.raw_text = p.get("text", p.get("caption"))
        rec.parse_mode = p.get("parse_mode")
        rec.reply_markup = p.get("reply_markup")
        rec.message_id = msg["message_id"] if msg else p.get("message_id")
        rec.message_thread_id = msg.get("message_thread_id") if msg else p.get("message_thread_id")
        if msg and "reply_to_message" in msg and "forum_topic_created" not in msg["reply_to_message"]:
            rec.reply_to = msg["reply_to_message"]["message_id"]
        if c.method == "sendDocument" and msg:
            doc = p["document"]
            rec.document_name = msg["document"]["file_name"]
            rec.document_bytes = doc.data if isinstance(doc, UploadedFile) else self.files[msg["document"]["file_id"]][1]
        if c.method == "sendPhoto":
            rec.photo = p["photo"]
        return rec


__all__ = ["BotMethods", "SentRecord", "forbidden"]
