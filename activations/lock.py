"""Two runs of the same sync cannot overlap: an OS file lock next to the warehouse.

flock is released by the kernel when the holder dies (even on SIGKILL), so a crashed run never
leaves a stale lock behind, unlike a lease row that would need a timeout.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class SyncAlreadyRunningError(RuntimeError):
    """Another process is running this sync right now."""


class SyncLock:
    """Exclusive, non-blocking lock for one sync; use as a context manager."""

    def __init__(self, lock_dir: Path, sync_name: str) -> None:
        self.path = lock_dir / f"headwater-sync-{sync_name}.lock"
        self.sync_name = sync_name
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SyncAlreadyRunningError(
                f"Sync {self.sync_name!r} is already running (process {holder}, lock "
                f"{self.path}). Wait for it to finish; runs of one sync never overlap."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SyncLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
