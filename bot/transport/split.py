"""Cutting Telegram HTML into parts that each fit one message, every part well-formed.

Lengths are counted the way Telegram limits them: on the text *after* entity parsing (tags are
free, `&amp;` is one character). We count UTF-16 code units, which Telegram uses for entity
offsets; it is never less than the number of code points, so a part that fits here fits
whichever of the two Telegram applies.

Splits fall at a blank line if the part has one, else a newline, else a space, else anywhere —
never inside a tag, an entity or a surrogate/combining sequence. Tags open at a split are closed
at the end of the part and reopened, with the same attributes, at the start of the next.
"""

from __future__ import annotations

import html
import re
import unicodedata
from enum import IntEnum
from typing import NamedTuple

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
RAW_LIMIT = 10_000  # Telegram bounds only the parsed length; keep requests modest anyway
ELLIPSIS = "…"

_TOKEN = re.compile(
    r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?>"  # a tag, attributes included
    r"|&(?:[A-Za-z]{2,8}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});"  # an entity
    r"|[^<&]+"  # a run of text, cut into characters below
    r"|[<&]"  # a bare < or & (Telegram would refuse it, but we must not loop on it)
)
_TAG_NAME = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)")


class _Kind(IntEnum):
    TEXT = 0
    OPEN = 1
    CLOSE = 2


class _Tok(NamedTuple):  # a tuple: there is one per character, so it must be cheap
    kind: _Kind
    raw: str
    vis: int = 0  # visible length in UTF-16 code units
    char: str = ""  # the decoded character(s) for TEXT
    name: str = ""  # tag name for OPEN / CLOSE


class _Break(IntEnum):
    """Where a part may end, best first (higher is better)."""

    ANY = 0
    SPACE = 1
    NEWLINE = 2
    BLANK_LINE = 3


def _units(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _tokenize(text: str, max_raw: int | None = None) -> list[_Tok]:
    """Tokens of `text`; with `max_raw`, only those that start within its first max_raw characters."""
    toks: list[_Tok] = []
    for m in _TOKEN.finditer(text):
        if max_raw is not None and m.start() >= max_raw:
            break
        raw = m.group(0)
        if raw.startswith("<") and len(raw) > 1:
            name_m = _TAG_NAME.match(raw)
            assert name_m is not None
            kind = _Kind.CLOSE if raw.startswith("</") else _Kind.OPEN
            toks.append(_Tok(kind, raw, name=name_m.group(1).lower()))
        elif raw.startswith("&") and len(raw) > 1:
            char = html.unescape(raw)
            if char == raw:  # unknown entity: Telegram refuses it; count it as one character
                char = "?"
            toks.append(_Tok(_Kind.TEXT, raw, _units(char), char))
        else:
            if max_raw is not None:
                raw = raw[: max_raw - m.start()]
            toks.extend(_Tok(_Kind.TEXT, ch, 2 if ch > "\uffff" else 1, ch) for ch in raw)
    return toks


def visible_length(html_text: str) -> int:
    """The length Telegram checks against its limits: tags not counted, entities as one character."""
    n = 0
    for m in _TOKEN.finditer(html_text):
        raw = m.group(0)
        if raw[0] == "<" and len(raw) > 1:
            continue
        if raw[0] == "&" and len(raw) > 1:
            char = html.unescape(raw)
            n += 1 if char == raw else _units(char)
        else:
            n += _units(raw)
    return n


def _closing(name: str) -> str:
    return f"</{name}>"


def _glued(prev: _Tok, nxt: _Tok) -> bool:
    """True when cutting between two characters would break what the reader sees as one."""
    if prev.kind != _Kind.TEXT or nxt.kind != _Kind.TEXT:
        return False
    a, b = prev.char[-1:], nxt.char[:1]
    if not a or not b:
        return False
    if a == "\u200d" or b == "\u200d":  # zero-width joiner inside an emoji sequence
        return True
    if "\ufe00" <= b <= "\ufe0f" or "\U0001f3fb" <= b <= "\U0001f3ff":  # variation selector, skin tone
        return True
    if a == "\r" and b == "\n":
        return True
    return unicodedata.combining(b) != 0 or unicodedata.category(b) in ("Mn", "Me")


def _replay(stack: list[_Tok], toks: list[_Tok], start: int, end: int) -> list[_Tok]:
    """The open-tag stack after toks[start:end], starting from `stack`."""
    out = list(stack)
    for t in toks[start:end]:
        if t.kind == _Kind.OPEN:
            out.append(t)
        elif t.kind == _Kind.CLOSE:
            # Pop to the matching tag; tolerate stray closers (Telegram would refuse them anyway).
            for k in range(len(out) - 1, -1, -1):
                if out[k].name == t.name:
                    del out[k:]
                    break
    return out


def _find_end(
    toks: list[_Tok], start: int, stack: list[_Tok], limit: int, raw_limit: int, *, best_fill: bool
) -> int:
    """Index after the last token of the part that starts at `start` with `stack` reopened.

    With `best_fill` (truncation) the longest part wins whatever the break kind; otherwise the
    best kind of break wins, and among those the latest.
    """
    n = len(toks)
    vis = 0
    raw = sum(len(t.raw) for t in stack)
    open_ = list(stack)
    closing = sum(len(_closing(t.name)) for t in open_)
    best: dict[_Break, int] = {}
    last_char = ""
    j = start
    while j < n:
        t = toks[j]
        if t.kind == _Kind.TEXT:
            if vis + t.vis > limit or raw + len(t.raw) + closing > raw_limit:
                break
            vis += t.vis
            raw += len(t.raw)
        elif t.kind == _Kind.OPEN:
            if raw + len(t.raw) + closing + len(_closing(t.name)) > raw_limit:
                break
            raw += len(t.raw)
            open_.append(t)
            closing += len(_closing(t.name))
        else:
            raw += len(t.raw)
            for k in range(len(open_) - 1, -1, -1):
                if open_[k].name == t.name:
                    closing -= sum(len(_closing(o.name)) for o in open_[k:])
                    del open_[k:]
                    break
        j += 1
        if t.kind == _Kind.TEXT:
            kind = _Break.ANY
            if t.char == "\n":
                kind = _Break.BLANK_LINE if last_char == "\n" else _Break.NEWLINE
            elif t.char.isspace():
                kind = _Break.SPACE
            last_char = t.char
            if vis and (j == n or not _glued(t, toks[j])):
                best[kind] = j
        elif vis:
            best[_Break.ANY] = j
    if j >= n:
        return n
    if best_fill:
        end = max(best.values(), default=j)
    else:
        end = best[max(best)] if best else j
    if end <= start:  # nothing fits (a tiny limit, or one huge tag): take one token to progress
        end = start + 1
    # A part should not end with tags that open the next one's text: leave them to the next part,
    # unless that would leave this part without visible text.
    while end - 1 > start and toks[end - 1].kind == _Kind.OPEN:
        if not any(t.vis for t in toks[start : end - 1]):
            break
        end -= 1
    # Closing tags right after the cut belong to this part (they cost nothing visible).
    still_open = _replay(stack, toks, start, end)
    while end < n and toks[end].kind == _Kind.CLOSE and any(o.name == toks[end].name for o in still_open):
        still_open = _replay(still_open, toks, end, end + 1)
        end += 1
    return end


def _render(toks: list[_Tok], start: int, end: int, stack: list[_Tok]) -> tuple[str, str, str, list[_Tok]]:
    """(reopened tags, body, closing tags, stack after) for toks[start:end]."""
    after = _replay(stack, toks, start, end)
    prefix = "".join(t.raw for t in stack)
    body = "".join(t.raw for t in toks[start:end])
    suffix = "".join(_closing(t.name) for t in reversed(after))
    return prefix, body, suffix, after


def split_html(text: str, limit: int = TEXT_LIMIT, raw_limit: int = RAW_LIMIT) -> list[str]:
    """Split into well-formed parts of at most `limit` visible characters (and `raw_limit` raw)."""
    if limit < 1:
        raise ValueError("limit must be positive")
    if visible_length(text) <= limit and len(text) <= raw_limit:
        return [text]
    toks = _tokenize(text)
    parts: list[str] = []
    stack: list[_Tok] = []
    i = 0
    while i < len(toks):
        end = _find_end(toks, i, stack, limit, raw_limit, best_fill=False)
        prefix, body, suffix, after = _render(toks, i, end, stack)
        # A part of only whitespace would be refused ("message text is empty"); it carries nothing.
        if any(t.kind == _Kind.TEXT and not t.char.isspace() for t in toks[i:end]) or not parts and end >= len(toks):
            parts.append(prefix + body + suffix)
        stack, i = after, end
    return parts


def truncate_html(text: str, limit: int = CAPTION_LIMIT, raw_limit: int = RAW_LIMIT) -> str:
    """Cut to at most `limit` visible characters ending in an ellipsis, still well-formed."""
    if visible_length(text) <= limit and len(text) <= raw_limit:
        return text
    if limit < 1:
        raise ValueError("limit must be positive")
    # No part can be longer than raw_limit, so the rest of a huge text need not be read.
    toks = _tokenize(text, raw_limit)
    room = limit - _units(ELLIPSIS)
    if room <= 0:
        return ELLIPSIS[:limit]
    end = _find_end(toks, 0, [], room, raw_limit - len(ELLIPSIS), best_fill=True)
    # Prefer to stop after a word when one ends in the last fifth; otherwise cut mid-word.
    word_end = _last_space(toks, end)
    if word_end is not None and _vis(toks, 0, word_end) >= room * 4 // 5:
        end = word_end
    while end > 0 and toks[end - 1].kind == _Kind.OPEN:  # do not leave empty tags before the ellipsis
        end -= 1
    _, body, suffix, _ = _render(toks, 0, end, [])
    return body.rstrip() + ELLIPSIS + suffix


def _last_space(toks: list[_Tok], end: int) -> int | None:
    for k in range(end - 1, 0, -1):
        if toks[k].kind == _Kind.TEXT and toks[k].char.isspace():
            return k  # stop before the space: rstrip drops it anyway
    return None


def _vis(toks: list[_Tok], start: int, end: int) -> int:
    return sum(t.vis for t in toks[start:end])
