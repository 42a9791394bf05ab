"""Guessing a demand's category and urgency from its text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from config.categories import CATEGORIES, DEFAULT_KEYWORDS, OTHER, URGENT_KEYWORDS

URGENCIES = ("urgent", "general", "complex")


def merged_keywords(*extra: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """The default keyword lists with each mapping's additions (unknown categories are ignored)."""
    out = {k: tuple(v) for k, v in DEFAULT_KEYWORDS.items()}
    for more in extra:
        for cat, words in (more or {}).items():
            if cat in out:
                out[cat] = out[cat] + tuple(w for w in words if isinstance(w, str) and w.strip())
    return out


def guess_category(text: str, keywords: Mapping[str, Sequence[str]] | None = None) -> str:
    """The category whose keywords appear most often (longer words weigh more); `other` if none."""
    lists = keywords or DEFAULT_KEYWORDS
    lowered = text.lower()
    best, best_score = OTHER, 0
    for cat in CATEGORIES:
        score = sum(len(w) for w in lists.get(cat, ()) if w and w.lower() in lowered)
        if score > best_score:
            best, best_score = cat, score
    return best


def guess_urgency(text: str) -> str:
    lowered = text.lower()
    return "urgent" if any(w in lowered for w in URGENT_KEYWORDS) else "general"


def parse_category(raw: str, names: Mapping[str, Sequence[str]]) -> str | None:
    """A category key from its key or any of its localized names (`names`: key -> names)."""
    word = raw.strip().lower()
    if word in CATEGORIES:
        return word
    for key, labels in names.items():
        if any(word == label.lower() for label in labels):
            return key
    return None
