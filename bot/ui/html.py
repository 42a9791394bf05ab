"""HTML for Telegram's parse mode: escape user text, mark trusted markup."""

from __future__ import annotations

import html


class Html(str):
    """A string that is already safe HTML (made by us, not typed by a user)."""

    __slots__ = ()


def esc(text: object) -> Html:
    """Escape anything a user typed so `<b>`, `&` or a fake link shows as typed."""
    if isinstance(text, Html):
        return text
    return Html(html.escape("" if text is None else str(text), quote=False))


def bold(text: object) -> Html:
    return Html(f"<b>{esc(text)}</b>")


def code(text: object) -> Html:
    return Html(f"<code>{esc(text)}</code>")


def mention(user_id: int, name: str) -> Html:
    """A mention that works without a username (tg://user?id=...)."""
    return Html(f'<a href="tg://user?id={int(user_id)}">{esc(name)}</a>')
