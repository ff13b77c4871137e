"""Handing landed rows to the fast-path worker over a Unix socket, so it need not read them back.

Measured here at 500 events/s, reading the landing files back (one small Parquet file per group
commit: open, footer, decode) was 40% of the worker's CPU, and the collector already holds the
rows it just wrote. So once a file is durable, the writer also sends its rows, as one Arrow IPC
stream, to every worker subscribed on `<landing dir>/.handoff.sock`.

The files stay the truth; the handoff is only a faster way to learn what is in them:
- a frame is sent only after its file is durable (renamed and fsynced), so a worker never acts
  on rows that a crash could take back;
- the writer never waits for a worker: a subscriber whose socket buffer is full (a stalled
  worker) is disconnected, and a worker that loses its subscription (that, or a collector
  restart) lists the folder again and reads what it missed from the files;
- a subscription starts with the next file; what landed before it is in the folder.

Frame: `!II` (name length, payload length), the file name (UTF-8), then the Arrow IPC stream of
the file's rows (EVENT_SCHEMA). The socket is the landing folder's, as readable as the files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
import threading
import time
from pathlib import Path

import pyarrow as pa

log = logging.getLogger(__name__)

SOCKET_NAME = ".handoff.sock"
FRAME = struct.Struct("!II")
# Unix socket paths are limited to 108 bytes on Linux (sun_path); a longer landing folder gets
# no handoff (the worker reads the files, as it always can).
MAX_SOCKET_PATH = 107


def socket_path(landing_dir: Path) -> Path:
    return landing_dir / SOCKET_NAME


def encode(name: str, table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    payload = sink.getvalue().to_pybytes()
    raw_name = name.encode()
    return FRAME.pack(len(raw_name), len(payload)) + raw_name + payload


class HandoffServer:
    """The collector's end: accepts subscribers, sends each durable file's rows to all."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self._sock = sock
        self.path = path
        self._subscribers: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._accept, name="handoff-accept", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, landing_dir: Path) -> HandoffServer | None:
        """Listen on the folder's socket; None where that is impossible (path too long, no
        AF_UNIX), which only costs the worker its shortcut. The caller holds the folder's
        writer lock, so a socket file already there is a crashed collector's: replaced."""
        path = socket_path(landing_dir)
        if not hasattr(socket, "AF_UNIX") or len(os.fsencode(path)) > MAX_SOCKET_PATH:
            log.info("No handoff socket for %s: the worker reads the landing files.", landing_dir)
            return None
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(path))
            os.chmod(path, 0o600)
            sock.listen(8)
        except OSError as exc:
            sock.close()
            log.warning("No handoff socket (%s): the worker reads the landing files.", exc)
            return None
        return cls(sock, path)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _accept(self) -> None:
        while not self._closing:
            try:
                ready, _, _ = select.select([self._sock], [], [], 0.2)
                if not ready:
                    continue
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            conn.setblocking(False)
            with self._lock:
                self._subscribers.append(conn)

    def publish(self, name: str, table: pa.Table) -> None:
        """Send a durable file's rows to every subscriber, never blocking: one that cannot
        take the whole frame now is dropped (a partial frame would corrupt its stream)."""
        with self._lock:
            if not self._subscribers:
                return
            subscribers = list(self._subscribers)
        frame = encode(name, table)
        dropped = []
        for conn in subscribers:
            try:
                sent = conn.send(frame)
            except OSError:  # BlockingIOError (buffer full), or the worker went away
                sent = -1
            if sent != len(frame):
                dropped.append(conn)
        if dropped:
            log.info("Dropped %d handoff subscriber(s) that fell behind or left; they read "
                     "the landing files instead.", len(dropped))
            with self._lock:
                self._subscribers = [c for c in self._subscribers if c not in dropped]
            for conn in dropped:
                conn.close()

    def close(self) -> None:
        self._closing = True
        self._sock.close()
        self._thread.join(2)
        with self._lock:
            for conn in self._subscribers:
                conn.close()
            self._subscribers = []
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class HandoffClient:
    """The worker's end: a subscription that reconnects, and the frames it has received.

    `drain` returns the complete frames read so far, and whether the subscription was (re)made
    or lost since the last call: either way the caller must list the folder, because files may
    have landed with nobody subscribed."""

    RETRY_SECONDS = 1.0

    def __init__(self, landing_dir: Path) -> None:
        self.path = socket_path(landing_dir)
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._retry_at = 0.0
        self._changed = False
        # Wall-clock ns when the subscription began: files stamped before it may never come.
        self.subscribed_ns = 0

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def fileno(self) -> int | None:
        return self._sock.fileno() if self._sock is not None else None

    def connect(self, now: float) -> None:
        """Subscribe if not subscribed (at most once per RETRY_SECONDS)."""
        if self._sock is not None or now < self._retry_at:
            return
        self._retry_at = now + self.RETRY_SECONDS
        if not self.path.exists():
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(os.fspath(self.path))
        except OSError:  # a crashed collector's socket file: nobody listens
            sock.close()
            return
        sock.setblocking(False)
        self.subscribed_ns = time.time_ns()
        self._sock = sock
        self._buffer.clear()
        self._changed = True

    def drain(self) -> tuple[list[tuple[str, pa.Table]], bool]:
        frames: list[tuple[str, pa.Table]] = []
        if self._sock is not None:
            lost = False
            while True:
                try:
                    chunk = self._sock.recv(1 << 20)
                except BlockingIOError:
                    break
                except OSError:
                    chunk = b""
                if not chunk:
                    lost = True
                    break
                self._buffer += chunk
            frames = self._frames()
            if lost:
                self.close()
                self._changed = True
        changed, self._changed = self._changed, False
        return frames, changed

    def _frames(self) -> list[tuple[str, pa.Table]]:
        frames = []
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= FRAME.size:
            name_len, payload_len = FRAME.unpack_from(buffer, offset)
            end = offset + FRAME.size + name_len + payload_len
            if len(buffer) < end:
                break
            start = offset + FRAME.size
            name = bytes(buffer[start:start + name_len]).decode()
            payload = pa.py_buffer(bytes(buffer[start + name_len:end]))
            frames.append((name, pa.ipc.open_stream(payload).read_all()))
            offset = end
        del buffer[:offset]
        return frames

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buffer.clear()
