"""Performing a refresh/login :class:`HttpRequest` with whichever HTTP library is at hand.

Each library is imported only when used, so an install with just one of httpx2,
httpx or requests works (and with none of them, ``urllib`` does the job).
"""

from __future__ import annotations

import importlib
import threading
import urllib.error
import urllib.request
from typing import Any

from freshtoken.client._session import HttpRequest, HttpResponse

SYNC_LIBS = ("httpx2", "httpx", "requests")
ASYNC_LIBS = ("httpx2", "httpx")


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def installed(lib: str) -> bool:
    try:
        importlib.import_module(lib)
    except ImportError:
        return False
    return True


def first_installed(libs: tuple[str, ...]) -> str | None:
    for lib in libs:
        if installed(lib):
            return lib
    return None


class SyncClients:
    """One private, thread-safe client per library, made on first use."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, lib: str) -> Any:
        client = self._clients.get(lib)
        if client is None:
            with self._lock:
                client = self._clients.get(lib)
                if client is None:
                    module = importlib.import_module(lib)
                    client = module.Session() if lib == "requests" else module.Client()
                    self._clients[lib] = client
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()

    def perform(self, lib: str | None, req: HttpRequest) -> HttpResponse:
        if lib is None:
            return perform_urllib(req)
        client = self.get(lib)
        if lib == "requests":
            import requests

            try:
                r = client.request(
                    req.method,
                    req.url,
                    headers=dict(req.headers),
                    data=req.body,
                    timeout=req.timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                return HttpResponse(0, error=f"{type(exc).__name__}: {exc}")
            return HttpResponse(r.status_code, _lower(r.headers), r.content)
        module = importlib.import_module(lib)
        try:
            resp = client.request(
                req.method,
                req.url,
                headers=dict(req.headers),
                content=req.body,
                timeout=req.timeout,
            )
        except module.TransportError as exc:
            return HttpResponse(0, error=f"{type(exc).__name__}: {exc}")
        return HttpResponse(resp.status_code, _lower(resp.headers), resp.content)


_ssl_contexts: dict[str, Any] = {}


def _ssl_context(lib: str, module: Any) -> Any:
    """Building an SSL context costs ~20-90 ms: make it once per library."""
    ctx = _ssl_contexts.get(lib)
    if ctx is None:
        ctx = _ssl_contexts[lib] = module.create_ssl_context()
    return ctx


async def perform_async(lib: str, req: HttpRequest) -> HttpResponse:
    """One short-lived AsyncClient per call (refreshes are rare, and event loops come
    and go), sharing one SSL context so that it stays cheap."""
    module = importlib.import_module(lib)
    try:
        async with module.AsyncClient(verify=_ssl_context(lib, module)) as client:
            resp = await client.request(
                req.method,
                req.url,
                headers=dict(req.headers),
                content=req.body,
                timeout=req.timeout,
            )
    except module.TransportError as exc:
        return HttpResponse(0, error=f"{type(exc).__name__}: {exc}")
    return HttpResponse(resp.status_code, _lower(resp.headers), resp.content)


def perform_urllib(req: HttpRequest) -> HttpResponse:
    request = urllib.request.Request(  # noqa: S310 - check_url() allowed only http(s)
        req.url, data=req.body, headers=dict(req.headers), method=req.method
    )
    try:
        with urllib.request.urlopen(request, timeout=req.timeout) as r:  # noqa: S310
            return HttpResponse(r.status, _lower(r.headers), r.read())
    except urllib.error.HTTPError as exc:
        return HttpResponse(exc.code, _lower(exc.headers), exc.read())
    except (urllib.error.URLError, OSError) as exc:
        return HttpResponse(0, error=f"{type(exc).__name__}: {exc}")
