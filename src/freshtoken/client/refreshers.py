"""Refreshers: how a refresh token becomes new tokens.

Each refresher describes its call as an :class:`~freshtoken.client.HttpRequest` and
parses the :class:`~freshtoken.client.HttpResponse`; the HTTP library that
performs it is the driver's business (httpx2, httpx or requests, sync or async).
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from freshtoken.client._session import (
    HttpRequest,
    HttpResponse,
    Invoke,
    TerminalRefreshError,
    TokenAnswer,
    TokenSet,
    TransientRefreshError,
    parse_http_date,
    parse_retry_after,
)
from freshtoken.errors import ConfigurationError, RefreshFailed, SessionExpired

__all__ = [
    "CallableRefresher",
    "JSONRefresher",
    "OAuth2Refresher",
    "check_url",
    "classify_token_response",
]

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def check_url(url: str, what: str = "token endpoint") -> str:
    """Refuse a URL that cannot work, with a message that says why."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"the {what} URL is empty")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"the {what} URL {url!r} must start with http:// or https:// "
            f"(got scheme {parts.scheme or 'none'!r})"
        )
    if not parts.hostname:
        raise ConfigurationError(f"the {what} URL {url!r} has no host")
    return url


def _error_text(response: HttpResponse) -> str:
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status}"
    if isinstance(data, dict):
        error = data.get("error")
        desc = data.get("error_description") or data.get("message")
        if isinstance(error, str):
            return f"{error}: {desc}" if isinstance(desc, str) and desc else error
    return f"HTTP {response.status}"


def classify_token_response(
    response: HttpResponse,
    url: str,
    *,
    access_field: str = "access_token",
    refresh_field: str = "refresh_token",
    expires_in_field: str = "expires_in",
    scope_field: str = "scope",
) -> TokenAnswer:
    """Turn a token endpoint's response into an answer, or the right error.

    * no answer (connection refused, timeout), 408/425/429/5xx → transient (retried);
    * 400/401 → terminal (``invalid_grant`` and friends: the session is over);
    * 404/405/415 or other 4xx, a non-JSON body, JSON without the access token field →
      :class:`~freshtoken.ConfigurationError` (fix the URL or field names; tokens kept).
    """
    status = response.status
    if response.error is not None:
        raise TransientRefreshError(f"no answer from {url}: {response.error}")
    if status in _TRANSIENT_STATUS or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"), 0.0)
        raise TransientRefreshError(f"HTTP {status} ({_error_text(response)})", retry_after)
    if status in (400, 401):
        raise TerminalRefreshError(_error_text(response))
    if not 200 <= status < 300:
        raise ConfigurationError(
            f"the token endpoint {url} answered HTTP {status} ({_error_text(response)}); "
            "is the URL right?"
        )
    try:
        data = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        ctype = response.headers.get("content-type", "no content type")
        raise ConfigurationError(
            f"the token endpoint {url} answered HTTP {status} with a body that is not JSON "
            f"({ctype}, {len(response.body)} bytes); is the URL right?"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"the token endpoint {url} answered JSON that is not an object; is the URL right?"
        )
    answer = TokenAnswer.from_mapping(
        data,
        access_field=access_field,
        refresh_field=refresh_field,
        expires_in_field=expires_in_field,
        scope_field=scope_field,
        where=f"the token endpoint {url}",
    )
    date = parse_http_date(response.headers.get("date"))
    if date is not None:
        answer = replace(answer, server_date=date)
    return answer


class OAuth2Refresher:
    """The OAuth 2.0 refresh grant (RFC 6749 §6) against ``token_url``.

    ``client_secret`` is optional (public clients send ``client_id`` only). With a
    secret, ``auth_method`` is ``"client_secret_basic"`` (default) or
    ``"client_secret_post"``. ``scope`` may narrow the session's scope.
    """

    def __init__(
        self,
        token_url: str,
        *,
        client_id: str | None = "default",
        client_secret: str | None = None,
        scope: str | None = None,
        auth_method: str = "client_secret_basic",
        extra: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.token_url = check_url(token_url)
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ConfigurationError(
                "auth_method must be 'client_secret_basic' or 'client_secret_post'"
            )
        if client_secret is not None and not client_id:
            raise ConfigurationError("a client_secret needs a client_id")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.auth_method = auth_method
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"OAuth2Refresher({self.token_url!r}, client_id={self.client_id!r})"

    def build_request(self, refresh_token: str) -> HttpRequest:
        form: dict[str, str] = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            **self.headers,
        }
        if self.client_secret is not None and self.auth_method == "client_secret_basic":
            assert self.client_id is not None
            pair = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif self.client_id:
            form["client_id"] = self.client_id
            if self.client_secret is not None:
                form["client_secret"] = self.client_secret
        if self.scope:
            form["scope"] = self.scope
        form.update(self.extra)
        return HttpRequest("POST", self.token_url, headers, urlencode(form).encode(), self.timeout)

    def flow(self, tokens: TokenSet) -> Generator[Any, Any, TokenAnswer]:
        assert tokens.refresh_token is not None
        response: HttpResponse = yield self.build_request(tokens.refresh_token)
        return classify_token_response(response, self.token_url)


class JSONRefresher:
    """A JSON refresh endpoint with configurable field names.

    For a hand-written API shaped like ``POST /refresh {"refreshToken": …}`` →
    ``{"accessToken": …, "refreshToken": …}``::

        JSONRefresher("https://api.example.com/refresh",
                      request_field="refreshToken",
                      access_token_field="accessToken",
                      refresh_token_field="refreshToken",
                      expires_in_field="expiresIn")

    Answer field names may be dotted paths (``"data.accessToken"``). ``extra`` adds
    fixed fields to the request body. Without an ``expires_in`` field the JWT's ``exp``
    is used.
    """

    def __init__(
        self,
        url: str,
        *,
        request_field: str = "refresh_token",
        access_token_field: str = "access_token",  # noqa: S107
        refresh_token_field: str = "refresh_token",  # noqa: S107
        expires_in_field: str = "expires_in",
        scope_field: str = "scope",
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
        timeout: float = 10.0,
    ) -> None:
        self.url = check_url(url, "refresh endpoint")
        self.request_field = request_field
        self.access_token_field = access_token_field
        self.refresh_token_field = refresh_token_field
        self.expires_in_field = expires_in_field
        self.scope_field = scope_field
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        self.method = method.upper()
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"JSONRefresher({self.url!r})"

    def build_request(self, refresh_token: str) -> HttpRequest:
        body = {**self.extra, self.request_field: refresh_token}
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.headers}
        return HttpRequest(self.method, self.url, headers, json.dumps(body).encode(), self.timeout)

    def flow(self, tokens: TokenSet) -> Generator[Any, Any, TokenAnswer]:
        assert tokens.refresh_token is not None
        response: HttpResponse = yield self.build_request(tokens.refresh_token)
        return classify_token_response(
            response,
            self.url,
            access_field=self.access_token_field,
            refresh_field=self.refresh_token_field,
            expires_in_field=self.expires_in_field,
            scope_field=self.scope_field,
        )


RefreshCallable = Callable[[str], "Mapping[str, Any] | TokenSet | Awaitable[Any]"]


class CallableRefresher:
    """Any callable ``fn(refresh_token) -> answer``, sync or ``async``.

    The answer is a mapping with OAuth field names (``access_token``, optional
    ``refresh_token``, ``expires_in``, ``scope``) or a :class:`TokenSet`. Raise
    :class:`~freshtoken.SessionExpired` for "this session is over"; any other
    exception counts as transient and is retried with backoff. An ``async`` callable
    only works with an async client.
    """

    def __init__(self, fn: RefreshCallable) -> None:
        if not callable(fn):
            raise ConfigurationError("CallableRefresher needs a callable")
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)

    def __repr__(self) -> str:
        return f"CallableRefresher({getattr(self.fn, '__qualname__', self.fn)!r})"

    def flow(self, tokens: TokenSet) -> Generator[Any, Any, TokenAnswer]:
        assert tokens.refresh_token is not None
        try:
            result = yield Invoke(self.fn, (tokens.refresh_token,))
        except SessionExpired as exc:
            raise TerminalRefreshError(exc.reason) from None
        except (ConfigurationError, RefreshFailed):
            raise
        except Exception as exc:
            raise TransientRefreshError(f"{type(exc).__name__}: {exc}") from exc
        if isinstance(result, TokenSet):
            return TokenAnswer(
                result.access_token,
                result.refresh_token,
                scope=result.scope,
                expires_at=result.expires_at,
            )
        if not isinstance(result, Mapping):
            raise ConfigurationError(
                f"the refresh callable returned {type(result).__name__}; "
                "return a mapping with 'access_token' or a TokenSet"
            )
        return TokenAnswer.from_mapping(result, where="the refresh callable")


def as_refresher(value: Any) -> Any:
    """Accept a refresher, or wrap a plain callable."""
    if hasattr(value, "flow"):
        return value
    if callable(value):
        return CallableRefresher(value)
    raise ConfigurationError(
        f"refresher must be OAuth2Refresher, JSONRefresher, a callable or have a flow(); "
        f"got {type(value).__name__}"
    )
