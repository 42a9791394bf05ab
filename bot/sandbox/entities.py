"""Telegram's HTML parse mode: the plain text and the entities a client receives.

Telegram turns `parse_mode=HTML` text into plain text plus entities (offsets in UTF-16 code
units) and refuses tags it does not know with 400 "can't parse entities". The page renders the
entities with DOM calls, so nothing the bot sends is ever parsed as HTML by the browser.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

# Tag -> entity type, as in the Bot API's "HTML style".
TAGS: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}


class HtmlError(ValueError):
    """Telegram answers such text with 400 "Bad Request: can't parse entities: <message>"."""


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.at = 0  # UTF-16 length of the text so far
        self.open: list[tuple[str, int, dict[str, Any] | None]] = []
        self.entities: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        kind = TAGS.get(tag)
        values = dict(attrs)
        if kind is None or (tag == "span" and values.get("class") != "tg-spoiler"):
            raise HtmlError(f'Unsupported start tag "{tag}"')
        entity: dict[str, Any] | None = {"type": kind}
        if tag == "a":
            if not values.get("href"):
                raise HtmlError('Tag "a" must have an attribute "href"')
            entity = {"type": kind, "url": values["href"]}
        elif tag == "tg-emoji":
            if not values.get("emoji-id"):
                raise HtmlError('Tag "tg-emoji" must have an attribute "emoji-id"')
            entity = {"type": kind, "custom_emoji_id": values["emoji-id"]}
        elif tag == "blockquote" and "expandable" in values:
            entity = {"type": "expandable_blockquote"}
        elif tag == "code" and self.open and self.open[-1][0] == "pre":
            # <pre><code class="language-x"> is one pre entity with a language.
            outer = self.open[-1][2]
            language = (values.get("class") or "").removeprefix("language-")
            if outer is not None and language:
                outer["language"] = language
            entity = None
        self.open.append((tag, self.at, entity))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise HtmlError(f'Unsupported start tag "{tag}/"')

    def handle_endtag(self, tag: str) -> None:
        if not self.open:
            raise HtmlError(f'Unexpected end tag "{tag}"')
        name, start, entity = self.open.pop()
        if name != tag:
            raise HtmlError(f'Unmatched end tag "{tag}", expected "</{name}>"')
        if entity is not None and self.at > start:
            self.entities.append({**entity, "offset": start, "length": self.at - start})

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)
        self.at += utf16_len(data)


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """(plain text, entities) as Telegram would deliver `text` sent with parse_mode=HTML."""
    reader = _Reader()
    reader.feed(text)
    reader.close()
    if reader.open:
        raise HtmlError(f'Can\'t find end tag corresponding to start tag "{reader.open[-1][0]}"')
    # Outer entities first, as Telegram orders them.
    entities = sorted(reader.entities, key=lambda e: (e["offset"], -e["length"]))
    return "".join(reader.chunks), entities


def command_entities(text: str) -> list[dict[str, Any]]:
    """The bot_command entity Telegram adds to a user's message that starts with a command."""
    if not text.startswith("/"):
        return []
    end = 1
    while end < len(text) and (text[end].isascii() and (text[end].isalnum() or text[end] in "_@")):
        end += 1
    return [{"type": "bot_command", "offset": 0, "length": utf16_len(text[:end])}] if end > 1 else []
