"""Taking one person out of stored text: their mentions, names, username and id.

/forget runs this over texts that stay (delivered messages kept for a while, the ledger's notes),
so what remains reads "(anonymous)" where the person was named. Pure functions, no I/O.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

# A Telegram mention as bot/ui/html.py writes it, with whatever name inside.
_MENTION = r'<a href="tg://user\?id={uid}">.*?</a>'


@dataclass(frozen=True)
class Identity:
    """What names a person in text."""

    user_id: int
    names: tuple[str, ...] = ()  # full name first, then first name alone
    username: str | None = None

    @classmethod
    def of(cls, user_id: int, first_name: str | None, last_name: str | None, username: str | None) -> Identity:
        full = " ".join(p for p in (first_name, last_name) if p)
        names = tuple(dict.fromkeys(n.strip() for n in (full, first_name or "") if n and n.strip()))
        return cls(user_id, names, username or None)

    def terms(self) -> list[str]:
        """Every spelling to look for, longest first (a full name before the first name inside it)."""
        out: list[str] = []
        for name in self.names:
            if _searchable(name):
                out += [name, html.escape(name, quote=False)]
        if self.username:
            out += [f"@{self.username}", self.username]
        out.append(str(self.user_id))
        return sorted(dict.fromkeys(out), key=len, reverse=True)


def _searchable(name: str) -> bool:
    """A name worth replacing wherever it stands: two or more characters (one CJK character or a
    single letter would erase parts of unrelated words)."""
    return len(name) >= 2


def _word(term: str) -> str:
    """`term` as a regex that does not match inside a longer Latin word or number: "Li" must not
    hit "Linli", and id 12 must not hit 123. CJK has no word boundaries, so it matches as is."""
    pattern = re.escape(term)
    if re.match(r"[A-Za-z0-9_]", term):
        pattern = r"(?<![A-Za-z0-9_])" + pattern
    if re.search(r"[A-Za-z0-9_]$", term):
        pattern += r"(?![A-Za-z0-9_])"
    return pattern


def pattern_for(who: Identity) -> re.Pattern[str]:
    parts = [_MENTION.format(uid=who.user_id)] + [_word(t) for t in who.terms()]
    return re.compile("|".join(parts), re.IGNORECASE | re.DOTALL)


def redact(text: str | None, who: Identity, placeholder: str) -> str | None:
    """`text` with every mention and spelling of `who` replaced by `placeholder` (already HTML-safe)."""
    if not text:
        return text
    return pattern_for(who).sub(placeholder, text)


def mentions(text: str | None, who: Identity) -> bool:
    return bool(text) and pattern_for(who).search(text) is not None  # type: ignore[arg-type]
