"""Demand commands: placeholder until the demand loop lands."""

from __future__ import annotations

from bot.handlers.base import Router

router = Router()
