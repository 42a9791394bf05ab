"""The sandbox's clock: wall time plus an offset the page can move forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class OffsetClock:
    """A service clock (`App(settings, clock=...)`) that runs with the wall clock, shifted ahead."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        if delta <= timedelta(0):
            raise ValueError("the sandbox clock only moves forward")
        self.offset += delta
