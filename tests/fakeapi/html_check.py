"""Telegram's HTML parse mode, strictly: what the server accepts, and the text a user then sees.

Rules (Bot API "HTML style" + the shared README): only the tags below, balanced; `span` needs
class="tg-spoiler"; `a` needs href; `tg-emoji` needs emoji-id; entities are &lt; &gt; &amp; &quot;
and numeric (&#NN; &#xHH;); a bare `<`, `>` or `&` is an error.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

# Tag name -> the entity it produces (synonyms collapse, so "not modified" compares rendering).
_TAGS: dict[str, str] = {
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

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_ATTR = re.compile(r"""\s+([A-Za-z_][A-Za-z0-9_-]*)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")


class HtmlError(ValueError):
    """The text would get 400 "Bad Request: can't parse entities: <message>"."""


@dataclass(frozen=True, slots=True)
class Entity:
    type: str
    offset: int  # in code points of the plain text
    length: int
    extra: str = ""  # href, emoji id, code language, "expandable"


def _byte_offset(text: str, i: int) -> int:
    return len(text[:i].encode("utf-8"))


def _unescape(text: str, base: int, src: str) -> str:
    """Decode entities in an attribute value; a bare & or < is an error as in text."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "&":
            m = _ENTITY.match(text, i)
            if not m:
                raise HtmlError(f"Character entity expected at byte offset {_byte_offset(src, base + i)}")
            out.append(_decode_entity(m.group(0), src, base + i))
            i = m.end()
            continue
        if ch == "<":
            raise HtmlError(f"Unexpected \"<\" in attribute value at byte offset {_byte_offset(src, base + i)}")
        out.append(ch)
        i += 1
    return "".join(out)


def _decode_entity(ent: str, src: str, pos: int) -> str:
    value = html.unescape(ent)
    if value == ent or not value:
        raise HtmlError(f"Unsupported HTML entity at byte offset {_byte_offset(src, pos)}")
    cp = ord(value[0]) if len(value) == 1 else 0
    if len(value) != 1 or cp == 0 or 0xD800 <= cp <= 0xDFFF:
        raise HtmlError(f"Invalid character entity at byte offset {_byte_offset(src, pos)}")
    return value


def parse_html(src: str) -> tuple[str, list[Entity]]:
    """Return (plain text, entities) or raise HtmlError with Telegram-like wording."""
    out: list[str] = []
    plain_len = 0
    stack: list[tuple[str, int, str, int]] = []  # (tag, plain start, extra, src pos)
    entities: list[Entity] = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch == "&":
            m = _ENTITY.match(src, i)
            if not m:
                raise HtmlError(
                    f"Character entity expected at byte offset {_byte_offset(src, i)}; "
                    "escape a bare \"&\" as &amp;"
                )
            value = _decode_entity(m.group(0), src, i)
            out.append(value)
            plain_len += 1
            i = m.end()
        elif ch == ">":
            raise HtmlError(f"Unexpected \">\" at byte offset {_byte_offset(src, i)}; escape it as &gt;")
        elif ch == "<":
            if src.startswith("</", i):
                m = _NAME.match(src, i + 2)
                end = re.compile(r"\s*>").match(src, m.end()) if m else None
                if not m or not end:
                    raise HtmlError(f"Unclosed end tag at byte offset {_byte_offset(src, i)}")
                name = m.group(0).lower()
                if not stack:
                    raise HtmlError(f"Unexpected end tag \"{name}\" at byte offset {_byte_offset(src, i)}")
                top, start, extra, _ = stack.pop()
                if top != name:
                    raise HtmlError(
                        f"Unmatched end tag at byte offset {_byte_offset(src, i)}, "
                        f"expected \"</{top}>\", found \"</{name}>\""
                    )
                if plain_len > start:  # Telegram drops empty entities
                    entities.append(Entity(_TAGS[top], start, plain_len - start, extra))
                i = end.end()
            else:
                m = _NAME.match(src, i + 1)
                if not m:
                    raise HtmlError(
                        f"Unsupported start tag \"\" at byte offset {_byte_offset(src, i)}; "
                        "escape a bare \"<\" as &lt;"
                    )
                name = m.group(0).lower()
                if name not in _TAGS:
                    raise HtmlError(f"Unsupported start tag \"{name}\" at byte offset {_byte_offset(src, i)}")
                j = m.end()
                attrs: dict[str, str] = {}
                while True:
                    am = _ATTR.match(src, j)
                    if not am:
                        break
                    raw = am.group(2)
                    if raw is None:
                        value = ""
                        vstart = am.end()
                    else:
                        vstart = am.start(2) + (1 if raw[0] in "\"'" else 0)
                        value = raw[1:-1] if raw[0] in "\"'" else raw
                    attrs[am.group(1).lower()] = _unescape(value, vstart, src) if value else value
                    j = am.end()
                close = re.compile(r"\s*(/?)>").match(src, j)
                if not close:
                    raise HtmlError(f"Unclosed start tag \"{name}\" at byte offset {_byte_offset(src, i)}")
                if close.group(1):
                    raise HtmlError(f"Unsupported self-closing tag \"{name}\" at byte offset {_byte_offset(src, i)}")
                extra = _check_attrs(name, attrs, src, i)
                stack.append((name, plain_len, extra, i))
                i = close.end()
        else:
            out.append(ch)
            plain_len += 1
            i += 1
    if stack:
        raise HtmlError(f"Can't find end tag corresponding to start tag \"{stack[-1][0]}\"")
    return "".join(out), sorted(entities, key=lambda e: (e.offset, -e.length, e.type))


def _check_attrs(name: str, attrs: dict[str, str], src: str, pos: int) -> str:
    where = f"at byte offset {_byte_offset(src, pos)}"
    if name == "span":
        if attrs.get("class") != "tg-spoiler":
            raise HtmlError(f"Tag \"span\" must have class \"tg-spoiler\" {where}")
        return ""
    if name == "a":
        if "href" not in attrs:
            raise HtmlError(f"Tag \"a\" must have attribute \"href\" {where}")
        return attrs["href"]
    if name == "tg-emoji":
        if not attrs.get("emoji-id"):
            raise HtmlError(f"Tag \"tg-emoji\" must have attribute \"emoji-id\" {where}")
        return attrs["emoji-id"]
    if name == "code":
        return attrs.get("class", "")
    if name == "blockquote":
        return "expandable" if "expandable" in attrs else ""
    return ""


def html_to_text(src: str) -> str:
    """The plain text a user sees; raises HtmlError when Telegram would refuse the markup."""
    return parse_html(src)[0]
