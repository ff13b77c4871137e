"""Knowing that a file landed without listing the folder: Linux inotify, through ctypes.

The landing folder holds tens of thousands of files between compactions, and the fast path
would otherwise list it every few milliseconds. The collector renames each file into place, so
one IN_MOVED_TO event per landed file names it. The watch is only an accelerator: the kernel
may drop events when its queue overflows (IN_Q_OVERFLOW), so the source still lists the folder
at least once a second and whenever an overflow is reported. Elsewhere than Linux
`DirectoryWatch.open` returns None and the source lists every step, as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
from pathlib import Path

IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of name


class DirectoryWatch:
    """Names renamed into one folder since the last `drain`; `fd` is readable when there are
    some (the source polls it with its other descriptors)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, folder: Path) -> DirectoryWatch | None:
        if not hasattr(select, "poll") or os.uname().sysname != "Linux":
            return None
        name = ctypes.util.find_library("c")
        if not name:
            return None
        libc = ctypes.CDLL(name, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, os.fsencode(folder), IN_MOVED_TO) < 0:
            os.close(fd)
            return None
        return cls(fd)

    def drain(self) -> tuple[list[str], bool]:
        """(names renamed in since the last drain, whether events were lost)."""
        names: list[str] = []
        overflow = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return names, overflow
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                offset += _HEADER.size
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                raw = data[offset:offset + length].rstrip(b"\0")
                offset += length
                if raw:
                    names.append(os.fsdecode(raw))

    def close(self) -> None:
        os.close(self.fd)
