"""uvicorn's httptools protocol with the two limits it lacks: a cap on the size of
the request head (request line + headers) and a deadline for receiving it.

Without them one client can send a 100 MB header (uvicorn buffers it all, and
the parser's concatenation makes the event loop crawl for every other client),
or open connections and never finish a request line (slowloris). With them:

* a head larger than :data:`MAX_HEAD_BYTES` (64 KiB) is answered
  ``431 {"error": "invalid_request", ...}`` and the connection closed;
* a head not complete within :data:`HEAD_TIMEOUT` (10 s) of the connection
  opening (or of the previous response) gets ``408`` and the connection closed.

The body has its own limit and deadline in :func:`freshtoken.server.http.read_body`.
Use it with ``uvicorn.run(..., http="freshtoken.server.protocol:LimitedHttpToolsProtocol")``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT = 10.0


def _head_too_large(limit: int) -> Any:
    body = json.dumps(
        {
            "error": "invalid_request",
            "error_description": f"the request head is larger than {limit} bytes",
        }
    ).encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 431,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"pragma", b"no-cache"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = MAX_HEAD_BYTES
    head_timeout = HEAD_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    # --- the deadline -----------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            if self._head_bytes:
                self._refuse(408, "the request head was not received in time")
            else:
                self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    # --- the size cap -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        too_big = self._in_head and self._head_bytes > self.max_head_bytes
        if too_big and not self.transport.is_closing():
            self._refuse(431, f"the request head is larger than {self.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a kept-alive connection
            self._in_head = True
            self._head_bytes = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size <= self.max_head_bytes:
            super().on_headers_complete()
            return
        # A head that arrived whole but is too large: answer through the normal
        # request cycle (so keep-alive state stays consistent), with a tiny app.
        app = self.app
        self.app = _head_too_large(self.max_head_bytes)
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def _refuse(self, status: int, description: str) -> None:
        self._cancel_head_timer()
        body = json.dumps({"error": "invalid_request", "error_description": description}).encode()
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            *[name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers],
            b"content-type: application/json\r\n",
            b"cache-control: no-store\r\npragma: no-cache\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
