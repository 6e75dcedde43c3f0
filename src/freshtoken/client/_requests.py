"""The requests driver: ``auth(prepared_request)`` plus a response hook.

``__call__`` runs the session's flow up to the first send (refreshing first if
the token is about to expire) and sets the header; the response hook feeds the
answer back to the flow and, when it asks for a retry, resends through the same
connection adapter (like ``requests.auth.HTTPDigestAuth`` does).
"""

from __future__ import annotations

from typing import Any

from freshtoken.client._base import NOTE_HEADER, SKIP_HEADER, TokenAuthBase
from freshtoken.client._session import TokenSet


def _body_state(request: Any) -> tuple[bool, int | None]:
    """(replayable, file position to rewind to)."""
    body = request.body
    if body is None or isinstance(body, bytes | str):
        return True, None
    tell = getattr(body, "tell", None)
    if tell is not None and hasattr(body, "seek"):
        try:
            return True, int(tell())
        except OSError:
            return False, None
    return False, None


class _ResponseHook:
    __slots__ = ("auth", "done", "flow", "pos")

    def __init__(self, auth: RequestsFlows, flow: Any, pos: int | None) -> None:
        self.auth = auth
        self.flow = flow
        self.pos = pos
        self.done = False

    def __call__(self, response: Any, **kwargs: Any) -> Any:
        if self.done:  # a redirect's response, or a resend: the flow is over
            return response
        flow = self.flow
        value: Any = response
        error: BaseException | None = None
        while True:
            try:
                effect = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                self.done = True
                if stop.value:
                    response.headers[NOTE_HEADER] = stop.value
                return response
            except BaseException:
                self.done = True
                raise
            error = None
            if type(effect) is TokenSet:
                response = value = self._resend(response, effect, kwargs)
                continue
            try:
                value = self.auth.run_sync(effect, "requests")
            except BaseException as exc:
                error, value = exc, None

    def _resend(self, response: Any, tokens: TokenSet, kwargs: dict[str, Any]) -> Any:
        from requests.cookies import extract_cookies_to_jar

        response.content  # noqa: B018 - consume, so the connection can be reused
        response.close()
        prep = response.request.copy()
        if self.pos is not None:
            prep.body.seek(self.pos)
        jar = getattr(prep, "_cookies", None)
        if jar is not None:
            extract_cookies_to_jar(jar, response.request, response.raw)  # type: ignore[no-untyped-call,unused-ignore]
            prep.prepare_cookies(jar)
        prep.headers["Authorization"] = "Bearer " + tokens.access_token
        new = response.connection.send(prep, **kwargs)
        new.history.append(response)
        new.request = prep
        return new


class RequestsFlows(TokenAuthBase):
    """``__call__`` for ``requests.auth.AuthBase``."""

    def __call__(self, request: Any) -> Any:
        headers = request.headers
        if SKIP_HEADER in headers:
            del headers[SKIP_HEADER]
            return request
        replayable, pos = _body_state(request)
        flow = self.session.request_flow(replayable)
        value: Any = None
        error: BaseException | None = None
        while True:
            effect = flow.send(value) if error is None else flow.throw(error)
            error = None
            if type(effect) is TokenSet:
                break
            try:
                value = self.run_sync(effect, "requests")
            except BaseException as exc:
                error, value = exc, None
        headers["Authorization"] = "Bearer " + effect.access_token
        request.register_hook("response", _ResponseHook(self, flow, pos))
        return request
