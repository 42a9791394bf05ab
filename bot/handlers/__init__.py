"""Neutral chat handlers, one module per capability, included in order."""

from __future__ import annotations

from bot.handlers.base import Router


def build_router() -> Router:
    from bot.handlers import (
        consultations,
        core,
        demands,
        grids,
        ledger,
        meetings,
        members,
        notices,
        setup,
        tasks,
    )

    root = Router()
    for module in (core, setup, demands, tasks, meetings, notices, consultations, members, grids, ledger):
        root.include(module.router)
    return root
