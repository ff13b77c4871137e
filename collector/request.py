"""One HTTP request as the collector reads it: the parsed request, the errors it is answered
with, and what is decided from it alone (Basic auth's write key, framing, the body decoded within
its limit). collector/server.py parses connections into these and answers them.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from http import HTTPStatus


class RequestError(Exception):
    """An answer other than success, with Segment-style code and message."""

    def __init__(
        self, status: HTTPStatus, code: str, message: str, *, close: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        # The connection cannot carry another request after this answer.
        self.close = close


class Request:
    """One parsed request: the few headers the collector reads, and its body."""

    __slots__ = (
        "method", "url", "authorization", "content_length", "transfer_encoding",
        "content_encoding", "expect", "chunks", "size", "error", "keep_alive", "header_bytes",
        "header_key",
    )

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.authorization: bytes | None = None
        self.content_length: bytes | None = None
        self.transfer_encoding: bytes | None = None
        self.content_encoding: bytes | None = None
        self.expect: bytes | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        # Known from the headers alone: the body is dropped and this is the answer.
        self.error: RequestError | None = None
        self.keep_alive = True
        self.header_bytes = 0
        # The write key of the Basic auth header (None: none sent), decoded with the headers.
        self.header_key: str | None = None

    @property
    def path(self) -> str:
        return self.url.split(b"?", 1)[0].decode("latin-1").rstrip("/")


# Headers the collector reads, by lower-case name → Request slot. The first occurrence wins
# (as email.message's get did).
WANTED_HEADERS = {
    b"authorization": "authorization",
    b"content-length": "content_length",
    b"transfer-encoding": "transfer_encoding",
    b"content-encoding": "content_encoding",
    b"expect": "expect",
}



def basic_auth_key(header: bytes | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.decode("latin-1").partition(" ")
    if scheme.lower() != "basic":
        raise RequestError(HTTPStatus.UNAUTHORIZED, "unauthorized", "use Basic auth")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise RequestError(HTTPStatus.UNAUTHORIZED, "unauthorized", "bad Basic auth") from exc
    return decoded.partition(":")[0]


def framing_error(request: Request) -> RequestError | None:
    if request.transfer_encoding:
        return RequestError(
            HTTPStatus.LENGTH_REQUIRED, "length_required", "chunked bodies are not accepted",
            close=True,
        )
    if request.content_length is None:
        return RequestError(
            HTTPStatus.LENGTH_REQUIRED, "length_required", "Content-Length", close=True
        )
    return None  # a malformed or negative length is httptools' parse error: 400 bad_length


def request_body(request: Request, limit: int) -> bytes:
    raw = b"".join(request.chunks)
    request.chunks = []
    encoding = (request.content_encoding or b"identity").strip().lower()
    if encoding == b"identity":
        return raw
    too_large = RequestError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large", f"the limit is {limit} bytes"
    )
    # Decompress at most limit + 1 bytes: a zip bomb costs us no more than the limit.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        text = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, "bad_gzip", str(exc)) from exc
    if len(text) > limit or inflater.unconsumed_tail:
        raise too_large
    if not inflater.eof:
        raise RequestError(HTTPStatus.BAD_REQUEST, "bad_gzip", "truncated gzip stream")
    return text
