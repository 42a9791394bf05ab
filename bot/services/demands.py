"""Demands (诉求): placeholder until the demand loop lands."""

from __future__ import annotations

from bot.scheduler.runner import JobRunner
from bot.services.base import ServiceContext


class DemandService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def register_jobs(self, jobs: JobRunner) -> None:
        return None
