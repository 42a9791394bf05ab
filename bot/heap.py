"""How a serving process keeps the garbage collector's pauses short.

Handling an update allocates thousands of short-lived objects (ORM rows, the framework's models,
JSON), so CPython's cyclic collector runs often, and each full collection walks every object the
process holds: mostly what startup made (modules, mappers, the frameworks' model classes), which
lives as long as the process anyway. On bench/claims.py (1,000 presses in a second) full
collections took about a quarter of the burst's time.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation (CPython: 700)


def settle() -> None:
    """Once the bot has started: collect once, leave what is alive now out of later collections
    (gc.freeze), and collect the youngest generation less often. Process-wide, so the process's
    entry point calls it (main.py), not the App (tests run many Apps in one process)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
