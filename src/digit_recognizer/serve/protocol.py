"""HTTP/1.1 for ``digits serve``: uvicorn's httptools protocol with limits on request headers.

uvicorn's fast parser (httptools) accepts headers of any size and count, for as long as
a client takes to send them: one connection can make the server buffer gigabytes, and
connections that send a header line now and then are never closed. Here a request
line plus headers over ``MAX_HEADER_BYTES`` or over ``MAX_HEADERS`` header lines gets
431, and headers not complete within ``HEADER_TIMEOUT`` seconds of the request's first
byte (or of the connection, for its first request) get 408; the connection is closed
after either. The body has its own limit (``app.BodyLimit``).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 32 * 1024  # request line + header names and values; nginx allows 4 x 8 KiB
MAX_HEADERS = 100
HEADER_TIMEOUT = 10.0  # seconds


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request that is refused."""


class LimitedHttpProtocol(HttpToolsProtocol):
    max_header_bytes = MAX_HEADER_BYTES
    max_headers = MAX_HEADERS
    header_timeout = HEADER_TIMEOUT

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._header_bytes = self._header_count = 0
        self._refusal: tuple[int, str] | None = None
        self._header_timer = None

    # --- the header timer: armed when a request may start, cancelled once its headers are in

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self._refuse(408, f"request headers not received within {self.header_timeout:g} s")

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = self._header_count = 0
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The keep-alive timeout closes an idle connection; once the next request's first
        # byte arrives (on_message_begin), its headers get their own deadline.

    # --- the size limits, counted as the parser hands over the pieces

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value), 1)
        super().on_header(name, value)

    def _count(self, size: int, lines: int) -> None:
        self._header_bytes += size
        self._header_count += lines
        if self._header_bytes > self.max_header_bytes:
            self._refusal = (431, f"request headers over the {self.max_header_bytes // 1024} KiB limit")
            raise _Refused
        if self._header_count > self.max_headers:
            self._refusal = (431, f"more than {self.max_headers} request headers")
            raise _Refused

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # refused: the rest of what the client sends is dropped
        super().data_received(data)  # a refusal raised in a callback ends up in send_400_response

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            return super().send_400_response(msg)
        self._refuse(*self._refusal)

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with a JSON error, as the app does, and close the connection."""
        self._refusal = (status, message)
        self._cancel_header_timer()
        body = ('{"error":"' + message + '"}').encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body))
        self.transport.close()
