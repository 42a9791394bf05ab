"""The serving process's collector settings: what startup made is left out of later collections."""

from __future__ import annotations

import gc
from pathlib import Path

from bot import heap


def test_settle_freezes_what_is_alive_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        heap.settle()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_main_settles_the_heap_once_the_bot_has_started() -> None:
    text = (Path(heap.__file__).resolve().parents[1] / "main.py").read_text(encoding="utf-8")
    assert text.index("await app.start()") < text.index("heap.settle()") < text.index("await stop.wait()")
