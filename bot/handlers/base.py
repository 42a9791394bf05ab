"""Neutral routing: commands, buttons, free text and membership changes to handler functions."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.transport.port import CallbackAnswer, Document, Event, Keyboard, OutMessage
from bot.ui.html import Html
from bot.ui.i18n import Translator

if TYPE_CHECKING:
    from bot.app import Services
    from bot.storage.models import Chat as ChatRow
    from bot.storage.models import User as UserRow

Handler = Callable[["Context"], Awaitable[None]]
HELP_ROLES = ("resident", "member", "secretary")
TextFilter = Callable[["Context"], bool]


@dataclass
class Context:
    event: Event
    services: Services
    user: UserRow | None  # None right after /forget erased them
    chat: ChatRow | None  # the chat's row (binding, topic), None for an unknown chat
    tr: Translator
    messages: list[OutMessage] = field(default_factory=list)
    callback_answer: CallbackAnswer | None = None
    match: re.Match[str] | None = None  # for pattern commands like /view_12
    chosen_community: int | None = None  # picked from the "which community?" buttons
    router: Router | None = None  # the whole router, for handlers that re-dispatch (/start payload, picker)
    refused: bool = False  # the handler answered with a UserError (metrics)
    failed: bool = False  # the handler raised (metrics)

    @property
    def locale(self) -> str:
        return self.tr.locale

    @property
    def args(self) -> str:
        return self.event.args

    def reply(
        self,
        text: str,
        keyboard: Keyboard | None = None,
        *,
        quote: bool = False,
        photo: str | None = None,
        document: Document | None = None,
    ) -> OutMessage:
        """Answer in the chat (and forum topic) the event came from."""
        msg = OutMessage(
            chat_id=self.event.chat.id,
            text=text,
            thread_id=self.event.thread_id,
            reply_to_message_id=self.event.message_id if quote else None,
            keyboard=keyboard,
            photo=photo,
            document=document,
        )
        self.messages.append(msg)
        return msg

    def send_to(self, chat_id: int, text: str, keyboard: Keyboard | None = None, **kw: Any) -> OutMessage:
        msg = OutMessage(chat_id=chat_id, text=text, keyboard=keyboard, **kw)
        self.messages.append(msg)
        return msg

    def answer(self, text: str | None = None, *, alert: bool = False) -> None:
        """Answer a button press (the small toast); every press gets exactly one answer."""
        if self.event.callback_id:
            self.callback_answer = CallbackAnswer(self.event.callback_id, text[:200] if text else None, alert)

    def t(self, key: str, /, **params: Any) -> Html:
        return self.tr(key, **params)


@dataclass
class Router:
    commands: dict[str, Handler] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern[str], Handler]] = field(default_factory=list)
    callbacks: dict[str, Handler] = field(default_factory=dict)
    # Button prefixes whose presses need no order among themselves in a chat (see callback()).
    parallel: set[str] = field(default_factory=set)
    texts: list[tuple[TextFilter, Handler]] = field(default_factory=list)
    member_handlers: list[Handler] = field(default_factory=list)
    forms: dict[str, Handler] = field(default_factory=dict)  # conversation kind -> step handler
    start_payloads: list[tuple[re.Pattern[str], Handler]] = field(default_factory=list)  # /start <payload>
    # /help: (role, catalog key) in order; a role's texts are shown together under its heading.
    help_sections: list[tuple[str, str]] = field(default_factory=list)

    def command(self, *names: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            for name in names:
                self.commands[name] = fn
            return fn

        return deco

    def pattern(self, regex: str) -> Callable[[Handler], Handler]:
        """A command spelled with its argument, e.g. `view_(\\d+)` for the clickable /view_12."""

        def deco(fn: Handler) -> Handler:
            self.patterns.append((re.compile(regex + r"\Z"), fn))
            return fn

        return deco

    def callback(self, prefix: str, *, parallel: bool = False) -> Callable[[Handler], Handler]:
        """Button data is `prefix:arg:arg`; the prefix picks the handler. parallel=True: presses are
        handled side by side instead of one after another in their chat (for a button many people
        press at once, whose handler keeps its own order)."""

        def deco(fn: Handler) -> Handler:
            self.callbacks[prefix] = fn
            if parallel:
                self.parallel.add(prefix)
            return fn

        return deco

    def text(self, when: TextFilter) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.texts.append((when, fn))
            return fn

        return deco

    def member(self) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.member_handlers.append(fn)
            return fn

        return deco

    def form(self, kind: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.forms[kind] = fn
            return fn

        return deco

    def start_payload(self, regex: str) -> Callable[[Handler], Handler]:
        """A deep link `t.me/<bot>?start=<payload>`; the handler finds the match in ctx.match."""

        def deco(fn: Handler) -> Handler:
            self.start_payloads.append((re.compile(regex + r"\Z"), fn))
            return fn

        return deco

    def help(self, role: str, key: str) -> None:
        """Add catalog `key` to /help for `role` (resident, member or secretary)."""
        if role not in HELP_ROLES:
            raise ValueError(f"unknown help role {role!r}")
        self.help_sections.append((role, key))

    def help_keys(self, role: str) -> list[str]:
        return [key for r, key in self.help_sections if r == role]

    def include(self, other: Router) -> None:
        self.help_sections.extend(other.help_sections)
        self.start_payloads.extend(other.start_payloads)
        self.commands.update(other.commands)
        self.patterns.extend(other.patterns)
        self.callbacks.update(other.callbacks)
        self.parallel.update(other.parallel)
        self.texts.extend(other.texts)
        self.member_handlers.extend(other.member_handlers)
        self.forms.update(other.forms)

    def find_command(self, name: str) -> tuple[Handler | None, re.Match[str] | None]:
        if name in self.commands:
            return self.commands[name], None
        for regex, fn in self.patterns:
            m = regex.match(name)
            if m:
                return fn, m
        return None, None
