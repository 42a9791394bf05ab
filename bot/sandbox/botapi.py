"""The Bot API methods the bot calls, answered from the sandbox's World as Telegram answers them.

Parameters arrive as JSON, url-encoded or multipart forms (aiogram attaches files as
`attach://name`, PTB under the parameter's own name); nested objects are JSON strings in forms.
Errors are answered with HTTP status == error_code, which both frameworks rely on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.sandbox.entities import HtmlError, parse_html, utf16_len
from bot.sandbox.world import ADMINS, BOT_ID, PRESENT, ApiError, StoredFile, World, bad

log = logging.getLogger("linli.sandbox.api")

TEXT_MAX = 4096
CAPTION_MAX = 1024
CALLBACK_DATA_MAX = 64
ANSWER_MAX = 200

Params = dict[str, Any]
Method = Callable[[Params], Awaitable[Any]]


def _int(p: Params, name: str, default: int | None = None) -> int:
    value = p.get(name, default)
    if value is None:
        raise bad(f"{name} is empty")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad(f"invalid {name} specified") from None


def _opt_int(p: Params, name: str) -> int | None:
    return _int(p, name) if p.get(name) not in (None, "") else None


def _json(p: Params, name: str) -> Any:
    value = p.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise bad(f"can't parse {name} JSON object") from None
    return value


def _bool(p: Params, name: str) -> bool:
    value = p.get(name)
    return value is True or (isinstance(value, str) and value.lower() == "true")


class BotApi:
    """aiohttp routes `/bot<token>/<method>` and `/file/bot<token>/<path>` over a World."""

    def __init__(self, world: World, token: str) -> None:
        self.world = world
        self.token = token
        self.methods: dict[str, Method] = {
            name.lower(): fn
            for name, fn in {
                "getMe": self.get_me,
                "getUpdates": self.get_updates,
                "sendMessage": self.send_message,
                "sendPhoto": self.send_photo,
                "sendDocument": self.send_document,
                "editMessageText": self.edit_text,
                "editMessageCaption": self.edit_caption,
                "editMessageReplyMarkup": self.edit_markup,
                "deleteMessage": self.delete_message,
                "pinChatMessage": self.pin,
                "unpinChatMessage": self.unpin,
                "answerCallbackQuery": self.answer_callback,
                "getChatMember": self.get_chat_member,
                "getChatAdministrators": self.get_admins,
                "getChatMemberCount": self.member_count,
                "getChat": self.get_chat,
                "getFile": self.get_file,
                "getWebhookInfo": self.webhook_info,
            }.items()
        }
        # Calls that change nothing here: the sandbox has no webhook, menu or typing indicator.
        for name in ("setWebhook", "deleteWebhook", "setMyCommands", "deleteMyCommands", "sendChatAction",
                     "setMyDescription", "setMyShortDescription", "setChatMenuButton", "logOut", "close"):
            self.methods[name.lower()] = self.no_op
        self.methods["getmycommands"] = self.empty_list

    def routes(self) -> list[web.RouteDef]:
        return [
            web.route("*", "/bot{token}/{method}", self.handle),
            web.get("/file/bot{token}/{path:.*}", self.download),
        ]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").payload(), status=401)
        name = request.match_info["method"]
        method = self.methods.get(name.lower())
        if method is None:
            log.warning("the sandbox does not know Bot API method %s", name)
            return web.json_response(ApiError(404, "Not Found").payload(), status=404)
        try:
            params = await self._params(request)
            result = await method(params)
        except ApiError as exc:
            if exc.code != 403:
                log.warning("%s refused: %s", name, exc.description)
            return web.json_response(exc.payload(), status=exc.code)
        return web.json_response({"ok": True, "result": result}, dumps=_dumps)

    @staticmethod
    async def _params(request: web.Request) -> Params:
        params: Params = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json() if request.can_read_body else None
            if body is not None and not isinstance(body, dict):
                raise bad("the request body must be a JSON object")
            params.update(body or {})
        elif request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                params[key] = value
        return params

    async def download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        file_id = request.match_info["path"].rsplit("/", 1)[-1]
        entry = self.world.files.get(file_id)
        if entry is None:
            return web.Response(status=404)
        return web.Response(body=self.world.files.read(file_id), content_type=entry.mime)

    # ------------------------------------------------------------------ helpers

    def _upload(self, p: Params, name: str, kind: str) -> StoredFile:
        """An InputFile (uploaded now) or the file_id of a file sent before."""
        value = p.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            value = p.get(value.removeprefix("attach://"))
        if isinstance(value, web.FileField):
            data = value.file.read()
            if not data:
                raise bad("file must be non-empty")
            filename = value.filename or ("photo.jpg" if kind == "photo" else "file")
            prefix = "AgAC" if kind == "photo" else "BQAD"
            return self.world.files.put(filename, data, value.content_type, prefix=prefix)
        if isinstance(value, str) and value:
            entry = self.world.files.get(value)
            if entry is None:  # a URL or a file_id from elsewhere: the sandbox is offline
                raise bad("wrong file identifier/HTTP URL specified")
            return entry
        raise bad(f"there is no {kind} in the request")

    def _formatted(self, p: Params, field: str, limit: int, *, required: bool) -> dict[str, Any]:
        """`text`/`caption` parsed as Telegram does, as the message fields it becomes."""
        raw = p.get(field)
        if raw is None or raw == "":
            if required:
                raise bad("message text is empty")
            return {}
        raw = str(raw)
        mode = str(p.get("parse_mode") or "").lower()
        if mode == "html":
            try:
                text, entities = parse_html(raw)
            except HtmlError as exc:
                raise bad(f"can't parse entities: {exc}") from None
        elif mode:
            text, entities = raw, []  # the bot uses HTML only; show other modes as typed
        else:
            text, entities = raw, _json(p, "entities" if field == "text" else "caption_entities") or []
        if not text.strip():
            if required:
                raise bad("message text is empty")
            return {}
        if utf16_len(text) > limit:
            raise bad("message is too long" if field == "text" else "message caption is too long")
        out: dict[str, Any] = {field: text}
        if entities:
            out["entities" if field == "text" else "caption_entities"] = entities
        return out

    @staticmethod
    def _markup(p: Params) -> dict[str, Any] | None:
        markup = _json(p, "reply_markup")
        if not markup:
            return None
        if not isinstance(markup, dict) or "inline_keyboard" not in markup:
            return None  # reply keyboards are not part of a Message; the sandbox shows none
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad("field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays")
        for row in rows:
            for b in row:
                if not isinstance(b, dict) or not b.get("text"):
                    raise bad("text buttons are unallowed in the inline keyboard")
                data = b.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_MAX:
                    raise bad("BUTTON_DATA_INVALID")
                if data is None and not b.get("url"):
                    raise bad("can't find field \"callback_data\" or \"url\" in the inline keyboard button")
        return {"inline_keyboard": rows}

    def _reply_to(self, p: Params) -> int | None:
        params = _json(p, "reply_parameters") or {}
        mid = params.get("message_id", p.get("reply_to_message_id"))
        return int(mid) if mid not in (None, "") else None

    def _send(self, p: Params, content: dict[str, Any]) -> dict[str, Any]:
        chat = self.world.writable_chat(p.get("chat_id"))
        reply_to = self._reply_to(p)
        if reply_to is not None and self.world.message(chat["id"], reply_to) is None:
            allow = (_json(p, "reply_parameters") or {}).get("allow_sending_without_reply") or _bool(
                p, "allow_sending_without_reply"
            )
            if not allow:
                raise bad("message to be replied not found")
            reply_to = None
        if (markup := self._markup(p)) is not None:
            content["reply_markup"] = markup
        return self.world.bot_message(chat, content, reply_to)

    def _editable(self, p: Params) -> dict[str, Any]:
        if p.get("inline_message_id"):
            raise bad("the sandbox has no inline messages")
        chat = self.world.known_chat(p.get("chat_id"))
        msg = self.world.message(chat["id"], _int(p, "message_id"))
        if msg is None:
            raise bad("message to edit not found")
        if msg["from"]["id"] != BOT_ID:
            raise bad("message can't be edited")
        return msg

    @staticmethod
    def _not_modified() -> ApiError:
        return bad(
            "message is not modified: specified new message content and reply markup are exactly the same "
            "as a current message content and reply markup of the message"
        )

    # ------------------------------------------------------------------ methods

    async def no_op(self, p: Params) -> Any:
        return True

    async def empty_list(self, p: Params) -> Any:
        return []

    async def get_me(self, p: Params) -> Any:
        return {**self.world.bot, "can_join_groups": True, "can_read_all_group_messages": True,
                "supports_inline_queries": False, "can_connect_to_business": False, "has_main_web_app": False}

    async def webhook_info(self, p: Params) -> Any:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self.world.updates)}

    async def get_updates(self, p: Params) -> Any:
        allowed = _json(p, "allowed_updates")
        if isinstance(allowed, list):
            self.world.allowed_updates = [str(a) for a in allowed]
        limit = min(max(_int(p, "limit", 100), 1), 100)
        timeout = float(p.get("timeout") or 0)
        return await self.world.get_updates(_opt_int(p, "offset"), limit, min(timeout, 50.0))

    async def send_message(self, p: Params) -> Any:
        return self._send(p, self._formatted(p, "text", TEXT_MAX, required=True))

    async def send_photo(self, p: Params) -> Any:
        entry = self._upload(p, "photo", "photo")
        content = self._formatted(p, "caption", CAPTION_MAX, required=False)
        content["photo"] = [{"file_id": entry.file_id, "file_unique_id": entry.file_id[-12:],
                             "width": 1280, "height": 960, "file_size": entry.size}]
        return self._send(p, content)

    async def send_document(self, p: Params) -> Any:
        entry = self._upload(p, "document", "document")
        content = self._formatted(p, "caption", CAPTION_MAX, required=False)
        content["document"] = {"file_id": entry.file_id, "file_unique_id": entry.file_id[-12:],
                               "file_name": entry.name, "mime_type": entry.mime, "file_size": entry.size}
        return self._send(p, content)

    async def edit_text(self, p: Params) -> Any:
        msg = self._editable(p)
        if "text" not in msg:
            raise bad("there is no text in the message to edit")
        new = self._formatted(p, "text", TEXT_MAX, required=True)
        markup = self._markup(p)
        same = msg["text"] == new["text"] and msg.get("entities", []) == new.get("entities", [])
        if same and msg.get("reply_markup") == markup:
            raise self._not_modified()
        msg["text"] = new["text"]
        msg.pop("entities", None)
        msg.update(new)
        self._set_markup(msg, markup)  # an edit without reply_markup drops the keyboard, as on Telegram
        self.world.edited(msg)
        return msg

    async def edit_caption(self, p: Params) -> Any:
        msg = self._editable(p)
        if "photo" not in msg and "document" not in msg:
            raise bad("there is no caption in the message to edit")
        new = self._formatted(p, "caption", CAPTION_MAX, required=False)
        markup = self._markup(p)
        same = msg.get("caption") == new.get("caption") and msg.get("caption_entities") == new.get("caption_entities")
        if same and msg.get("reply_markup") == markup:
            raise self._not_modified()
        msg.pop("caption", None)
        msg.pop("caption_entities", None)
        msg.update(new)
        self._set_markup(msg, markup)
        self.world.edited(msg)
        return msg

    async def edit_markup(self, p: Params) -> Any:
        msg = self._editable(p)
        markup = self._markup(p)
        if msg.get("reply_markup") == markup:
            raise self._not_modified()
        self._set_markup(msg, markup)
        self.world.edited(msg)
        return msg

    @staticmethod
    def _set_markup(msg: dict[str, Any], markup: dict[str, Any] | None) -> None:
        if markup:
            msg["reply_markup"] = markup
        else:
            msg.pop("reply_markup", None)

    async def delete_message(self, p: Params) -> Any:
        chat = self.world.known_chat(p.get("chat_id"))
        mid = _int(p, "message_id")
        if self.world.message(chat["id"], mid) is None:
            raise bad("message to delete not found")
        self.world.delete(chat["id"], mid)
        return True

    def _pin_rights(self, chat: dict[str, Any]) -> None:
        if chat["type"] != "private" and self.world.get_status(chat["id"], BOT_ID) not in ADMINS:
            raise bad("not enough rights to manage pinned messages in the chat")

    async def pin(self, p: Params) -> Any:
        chat = self.world.writable_chat(p.get("chat_id"))
        self._pin_rights(chat)
        mid = _int(p, "message_id")
        if self.world.message(chat["id"], mid) is None:
            raise bad("message to pin not found")
        self.world.pin(chat, mid)
        return True

    async def unpin(self, p: Params) -> Any:
        chat = self.world.writable_chat(p.get("chat_id"))
        self._pin_rights(chat)
        self.world.unpin(chat, _opt_int(p, "message_id"))
        return True

    async def answer_callback(self, p: Params) -> Any:
        text = p.get("text")
        if text is not None and len(str(text)) > ANSWER_MAX:
            raise bad("MESSAGE_TOO_LONG")
        self.world.answer(str(p.get("callback_query_id")), str(text) if text else None, _bool(p, "show_alert"))
        return True

    async def get_chat_member(self, p: Params) -> Any:
        chat = self.world.known_chat(p.get("chat_id"))
        uid = _int(p, "user_id")
        user = self.world.users.get(uid)
        if user is None:
            raise bad("user not found")
        if chat["type"] == "private" and uid not in (chat["id"], BOT_ID):
            raise bad("user not found")
        return self.world.member_json(self.world.get_status(chat["id"], uid), user)

    async def get_admins(self, p: Params) -> Any:
        chat = self.world.known_chat(p.get("chat_id"))
        if chat["type"] == "private":
            raise bad("there are no administrators in the private chat")
        return [
            self.world.member_json(st, self.world.users[uid])
            for (cid, uid), st in self.world.status.items()
            if cid == chat["id"] and st in ADMINS
        ]

    async def member_count(self, p: Params) -> Any:
        chat = self.world.known_chat(p.get("chat_id"))
        return sum(1 for (cid, _), st in self.world.status.items() if cid == chat["id"] and st in PRESENT)

    async def get_chat(self, p: Params) -> Any:
        chat = self.world.known_chat(p.get("chat_id"))
        full = {**chat, "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False,
                                        "unique_gifts": False, "premium_subscription": False}}
        pins = self.world.pins.get(chat["id"])
        if pins and (pinned := self.world.message(chat["id"], pins[-1])):
            full["pinned_message"] = pinned
        return full

    async def get_file(self, p: Params) -> Any:
        file_id = str(p.get("file_id") or "")
        entry = self.world.files.get(file_id)
        if entry is None:
            raise bad("wrong file_id or the file is temporarily unavailable")
        return {"file_id": file_id, "file_unique_id": file_id[-12:], "file_size": entry.size,
                "file_path": f"files/{file_id}"}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)

