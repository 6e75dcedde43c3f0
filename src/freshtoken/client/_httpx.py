"""The httpx-family driver: ``httpx2`` and ``httpx`` (same ``Auth`` design), sync and async.

httpx calls ``auth.sync_auth_flow(request)`` / ``auth.async_auth_flow(request)``,
a generator that yields requests and receives their responses. We run the
session's sans-IO flow inside it: a yielded TokenSet becomes "send the request
with this token"; every other effect is run here (sync) or awaited (async).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

from freshtoken.client._base import NOTE_HEADER, SKIP_HEADER, TokenAuthBase
from freshtoken.client._session import TokenSet


def _library(request: Any) -> str:
    module = type(request).__module__
    return "httpx2" if module.startswith("httpx2") else "httpx"


def _replayable(request: Any) -> bool:
    """A body already read into memory can be sent again; a stream cannot."""
    try:
        request.content  # noqa: B018 - raises RequestNotRead for a streaming body
    except Exception:
        return False
    return True


def _annotate(response: Any, note: str | None) -> None:
    if note and response is not None:
        response.headers[NOTE_HEADER] = note
        response.extensions["freshtoken_note"] = note


class HttpxFlows(TokenAuthBase):
    """``sync_auth_flow``/``async_auth_flow`` for httpx2.Auth and httpx.Auth."""

    requires_request_body = False
    requires_response_body = False

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:  # pragma: no cover
        raise RuntimeError("TokenAuth drives httpx through sync_auth_flow/async_auth_flow")

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        headers = request.headers
        if SKIP_HEADER in headers:
            del headers[SKIP_HEADER]
            yield request
            return
        lib = _library(request)
        flow = self.session.request_flow(_replayable(request))
        response: Any = None
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                _annotate(response, stop.value)
                return
            error = None
            if type(effect) is TokenSet:
                headers["Authorization"] = "Bearer " + effect.access_token
                response = value = yield request
                continue
            try:
                value = self.run_sync(effect, lib)
            except BaseException as exc:
                error, value = exc, None

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        headers = request.headers
        if SKIP_HEADER in headers:
            del headers[SKIP_HEADER]
            yield request
            return
        lib = _library(request)
        flow = self.session.request_flow(_replayable(request))
        response: Any = None
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                _annotate(response, stop.value)
                return
            error = None
            if type(effect) is TokenSet:
                headers["Authorization"] = "Bearer " + effect.access_token
                response = value = yield request
                continue
            try:
                value = await self.run_async(effect, lib)
            except BaseException as exc:
                error, value = exc, None
