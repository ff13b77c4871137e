"""The journey clock. Every "now" of the fast path comes from one, so tests run hours of journey
in milliseconds with a ManualClock, and the demo replays its history with one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


def utc_now() -> datetime:
    """Naive UTC, like every timestamp of the raw contract."""
    return datetime.now(UTC).replace(tzinfo=None)


class Clock(Protocol):
    # True when `now()` is the wall clock: latencies are only measured then.
    is_wall: bool

    def now(self) -> datetime: ...


class SystemClock:
    is_wall = True

    def now(self) -> datetime:
        return utc_now()


class ManualClock:
    """A clock that moves only when told to."""

    is_wall = False

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        if moment < self._now:
            raise ValueError("the journey clock never goes back")
        self._now = moment
