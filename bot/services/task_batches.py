"""Group commit for presses of one task (认领)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bot.services.unit import UpdateUnit, current_unit

if TYPE_CHECKING:
    from bot.services.tasks import ClaimResult, TaskService

_Press = tuple[int, int, int, UpdateUnit | None, "asyncio.Future[ClaimResult]"]


class ClaimBatcher:
    """Group commit for presses of one task: while a task's transaction runs, the presses that
    arrive wait together and go into the next one, in press order. A burst of 1,000 presses costs
    a few dozen transactions instead of 1,000, which is what lets every press be answered within
    seconds; exactness does not depend on it (the database enforces it per transaction).

    A press's update is marked handled in the batch's transaction, with its claim (its own unit
    then has nothing to mark, bot/services/unit.py): a burst costs no transaction per press."""

    MAX_BATCH = 500

    def __init__(self, service: TaskService) -> None:
        self.service = service
        self._pending: dict[int, list[_Press]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._arrivals = 0

    async def submit(self, task_id: int, actor_id: int, order: int | None) -> ClaimResult:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ClaimResult] = loop.create_future()
        self._arrivals += 1
        # The caller's update is marked with the claim unless its unit has written already (it then
        # holds the SQLite writer lock, and its own commit carries the mark).
        unit = current_unit()
        if unit is not None and (unit.writing or unit.marked or unit.lost):
            unit = None
        self._pending.setdefault(task_id, []).append((order or 0, self._arrivals, actor_id, unit, fut))
        if task_id not in self._workers:
            self._workers[task_id] = loop.create_task(self._run(task_id), name=f"claims-{task_id}")
        return await asyncio.shield(fut)

    async def _run(self, task_id: int) -> None:
        try:
            while self._pending.get(task_id):
                waiting = sorted(self._pending.pop(task_id), key=lambda p: (p[0], p[1]))
                for i in range(0, len(waiting), self.MAX_BATCH):
                    chunk = waiting[i:i + self.MAX_BATCH]
                    try:
                        results = await self.service._claim_batch(
                            task_id, [(uid, order) for order, _, uid, _, _ in chunk], [p[3] for p in chunk])
                    except Exception as exc:  # the whole batch: task closed, begun, gone, or a fault
                        for *_, fut in chunk:
                            if not fut.done():
                                fut.set_exception(exc)
                        continue
                    for (*_, fut), result in zip(chunk, results, strict=True):
                        if fut.done():
                            continue
                        if isinstance(result, BaseException):
                            fut.set_exception(result)
                        else:
                            fut.set_result(result)
        finally:
            del self._workers[task_id]
            if self._pending.get(task_id):
                self._workers[task_id] = asyncio.get_running_loop().create_task(self._run(task_id))
