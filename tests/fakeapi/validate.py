"""Check a Bot API call against the machine-readable spec (shared/telegram/api.json).

Parameters arrive as JSON, url-encoded or multipart form: in forms every value is a string and
nested objects are JSON strings. `validate_call` turns them into typed values by the field types
the spec gives, then applies the limits the spec states in prose.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tests.fakeapi.html_check import Entity, HtmlError, parse_html


class ApiError(Exception):
    """An error answer: HTTP status == error_code, as Telegram does it.

    kind: "rejection" (the bot did something Telegram refuses: a bug) or "refusal" (the world says
    no: blocked, not a member, no rights), so tests can insist on no rejections.
    """

    def __init__(self, code: int, description: str, *, retry_after: int | None = None, kind: str = "rejection",
                 parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.kind = kind
        self.parameters = dict(parameters or {})

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        params = dict(self.parameters)
        if self.retry_after is not None:
            params["retry_after"] = self.retry_after
        if params:
            body["parameters"] = params  # ResponseParameters: retry_after, migrate_to_chat_id
        return body


def bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


@dataclass(frozen=True, slots=True)
class UploadedFile:
    filename: str
    data: bytes
    content_type: str | None = None


# Removed from the documentation in Bot API 7.0 but still accepted by Telegram (and aiogram still
# has the fields).
LEGACY_FIELDS = frozenset({"reply_to_message_id", "allow_sending_without_reply", "disable_web_page_preview"})

TEXT_MAX = 4096
CAPTION_MAX = 1024
CALLBACK_DATA_MAX = 64
CALLBACK_ANSWER_MAX = 200
PARSE_MODES = {"html": "HTML", "markdownv2": "MarkdownV2", "markdown": "Markdown"}
BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")


def spec_path() -> Path:
    env = os.environ.get("LINLI_API_SPEC")
    if env:
        return Path(env)
    # The shared folder beside the project is kept current; a clone elsewhere uses the copy here
    # (Bot API 10.1, from the MIT-licensed telegram-bot-api-spec project, see spec/LICENSE.api-json).
    shared = Path(__file__).resolve().parents[3] / "shared" / "telegram" / "api.json"
    return shared if shared.is_file() else Path(__file__).resolve().parent / "spec" / "api.json"


class Spec:
    def __init__(self, data: dict[str, Any]):
        self.version: str = data.get("version", "?")
        self.methods: dict[str, dict[str, Any]] = {name.lower(): m for name, m in data["methods"].items()}
        self.types: dict[str, dict[str, Any]] = data["types"]

    def method(self, name: str) -> dict[str, Any] | None:
        return self.methods.get(name.lower())

    def fields(self, type_name: str) -> list[dict[str, Any]]:
        return self.types.get(type_name, {}).get("fields", [])

    def update_types(self) -> list[str]:
        return [f["name"] for f in self.fields("Update") if f["name"] != "update_id"]


@lru_cache(maxsize=4)
def load_spec(path: str | None = None) -> Spec:
    p = Path(path) if path else spec_path()
    return Spec(json.loads(p.read_text(encoding="utf-8")))


@dataclass(slots=True)
class Checked:
    """A call that passed validation: typed params plus what the text renders to."""

    method: str  # canonical spelling, e.g. "sendMessage"
    params: dict[str, Any]
    text: str | None = None  # plain text of `text` (after entity parsing)
    caption: str | None = None
    entities: tuple[Entity, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- type coercion

_SCALARS = {"String", "Integer", "Float", "Boolean", "InputFile", "True"}


def _scalar(value: Any, t: str) -> Any:
    """Coerce to the scalar type t or raise ValueError."""
    if t == "String":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    elif t == "Integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
    elif t == "Float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            return float(value)
    elif t in ("Boolean", "True"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif t == "InputFile":
        if isinstance(value, UploadedFile):
            return value
    raise ValueError(t)


class _Coercer:
    def __init__(self, spec: Spec, files: dict[str, UploadedFile]):
        self.spec = spec
        self.files = files

    def value(self, value: Any, types: list[str], path: str) -> Any:
        if isinstance(value, str) and value.startswith("attach://") and "InputFile" in types:
            name = value[len("attach://"):]
            if name not in self.files:
                raise bad(f"file {name!r} referenced by {path} was not uploaded")
            return self.files[name]
        errors: list[str] = []
        for t in types:
            try:
                return self._one(value, t, path)
            except ApiError as e:
                errors.append(e.description.removeprefix("Bad Request: "))
            except (ValueError, TypeError):
                errors.append(f"{path}: expected {t}")
        if len(errors) == 1:
            raise bad(errors[0])
        raise bad(f"can't parse {path}: expected {' or '.join(types)} ({'; '.join(errors)})")

    def _one(self, value: Any, t: str, path: str) -> Any:
        if t in _SCALARS:
            return _scalar(value, t)
        if t.startswith("Array of "):
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, list):
                raise ValueError(t)
            inner = t[len("Array of "):]
            return [self.value(v, [inner], f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, dict):
            raise ValueError(t)
        return self.obj(value, t, path)

    def obj(self, value: dict[str, Any], type_name: str, path: str) -> dict[str, Any]:
        typ = self.spec.types.get(type_name)
        if typ is None:
            return value
        if "subtypes" in typ:
            errors = []
            for sub in typ["subtypes"]:
                try:
                    return self.obj(value, sub, path)
                except ApiError as e:
                    errors.append(e.description.removeprefix("Bad Request: "))
            raise bad(f"{path} matches no kind of {type_name}: {'; '.join(errors)}")
        fields = {f["name"]: f for f in typ.get("fields", [])}
        if not fields:  # e.g. CallbackGame: an empty placeholder object
            return value
        out: dict[str, Any] = {}
        for key, v in value.items():
            if key not in fields:
                raise bad(f"unknown field \"{key}\" in {type_name} at {path}")
            out[key] = self.value(v, fields[key]["types"], f"{path}.{key}")
        for name, f in fields.items():
            if f["required"] and name not in value:
                raise bad(f"field \"{name}\" of {type_name} is required at {path}")
        return out


# --------------------------------------------------------------------------- validation


def validate_call(
    spec: Spec, method_name: str, raw: dict[str, Any], files: dict[str, UploadedFile] | None = None
) -> Checked:
    """Validate one call. Raises ApiError (404 for an unknown method, 400 otherwise)."""
    m = spec.method(method_name)
    if m is None:
        raise ApiError(404, "Not Found")
    files = files or {}
    fields = {f["name"]: f for f in m.get("fields", [])}
    co = _Coercer(spec, files)
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key in fields:
            params[key] = co.value(value, fields[key]["types"], key)
        elif key in LEGACY_FIELDS:
            params[key] = co.value(value, ["Boolean"] if key != "reply_to_message_id" else ["Integer"], key)
        else:
            raise bad(f"unknown parameter \"{key}\" for method {m['name']}")
    # PTB sends a file under its field name; aiogram as attach://<part>, resolved above.
    for key, f in files.items():
        if key in fields and key not in params:
            params[key] = f
    for name, f in fields.items():
        if f["required"] and name not in params:
            if name == "text":
                raise bad("message text is empty")
            raise bad(f"parameter \"{name}\" is required")
    checked = Checked(method=m["name"], params=params)
    _check_limits(checked)
    return checked


def render(text: str, parse_mode: str | None) -> tuple[str, tuple[Entity, ...]]:
    """Plain text (and entities) of a text as Telegram parses it."""
    if parse_mode is None:
        return text, ()
    mode = PARSE_MODES.get(parse_mode.lower())
    if mode is None:
        raise bad(f"unsupported parse_mode \"{parse_mode}\"")
    if mode == "HTML":
        try:
            plain, ents = parse_html(text)
        except HtmlError as e:
            raise bad(f"can't parse entities: {e}") from None
        return plain, tuple(ents)
    # Markdown modes are not modelled: measured as sent.
    return text, ()


def _check_limits(c: Checked) -> None:
    p = c.params
    if "text" in p and c.method != "answerCallbackQuery":
        plain, c.entities = render(p["text"], p.get("parse_mode"))
        if not plain.strip():
            raise bad("message text is empty")
        if len(plain) > TEXT_MAX:
            raise bad(f"message is too long ({len(plain)} characters after entity parsing, max {TEXT_MAX})")
        c.text = plain
    if "caption" in p:
        plain, ents = render(p["caption"], p.get("parse_mode"))
        if len(plain) > CAPTION_MAX:
            raise bad(f"message caption is too long ({len(plain)} characters, max {CAPTION_MAX})")
        c.caption, c.entities = plain, ents
    elif "parse_mode" in p:
        render("", p["parse_mode"])
    markup = p.get("reply_markup")
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        check_inline_keyboard(markup["inline_keyboard"])
    if c.method == "answerCallbackQuery" and len(p.get("text") or "") > CALLBACK_ANSWER_MAX:
        raise bad(f"MESSAGE_TOO_LONG: callback answer text is {len(p['text'])} characters, max {CALLBACK_ANSWER_MAX}")
    if c.method == "setMyCommands":
        cmds = p["commands"]
        if len(cmds) > 100:
            raise bad("too many commands")
        for cmd in cmds:
            if not _COMMAND.fullmatch(cmd["command"]):
                raise bad(f"BOT_COMMAND_INVALID: {cmd['command']!r}")
            if not 1 <= len(cmd["description"]) <= 256:
                raise bad(f"BOT_COMMAND_DESCRIPTION_INVALID: {cmd['command']!r}")


def check_inline_keyboard(rows: list[list[dict[str, Any]]]) -> None:
    count = 0
    for r, row in enumerate(rows):
        for b, button in enumerate(row):
            count += 1
            where = f"row {r}, button {b}"
            if not button.get("text"):
                raise bad(f"BUTTON_TEXT_INVALID ({where})")
            actions = [k for k in BUTTON_ACTIONS if k in button]
            if len(actions) != 1:
                raise bad(
                    f"can't parse inline keyboard button: exactly one action field expected, "
                    f"got {actions or 'none'} ({where})"
                )
            if "callback_data" in button:
                size = len(button["callback_data"].encode("utf-8"))
                if not 1 <= size <= CALLBACK_DATA_MAX:
                    raise bad(f"BUTTON_DATA_INVALID: callback_data is {size} bytes, allowed 1-64 ({where})")
            if "url" in button and not re.match(r"(https?|tg)://\S+$", button["url"]):
                raise bad(f"BUTTON_URL_INVALID ({where})")
    if count > 100:
        raise bad("reply markup is too long")
