"""Login helpers: get a first token set and put it in the store.

``login`` uses the OAuth 2.0 password grant (first-party clients); ``json_login``
posts JSON credentials to a login endpoint with configurable field names. Both
have async twins (``alogin``, ``ajson_login``) that use httpx2 or httpx.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from freshtoken.client._session import (
    HttpRequest,
    HttpResponse,
    TerminalRefreshError,
    TokenSet,
    TokenStore,
    TransientRefreshError,
)
from freshtoken.client._transport import (
    ASYNC_LIBS,
    SYNC_LIBS,
    SyncClients,
    first_installed,
    perform_async,
)
from freshtoken.client.refreshers import check_url, classify_token_response
from freshtoken.errors import ConfigurationError, LoginFailed

__all__ = ["ajson_login", "alogin", "json_login", "login"]


def _password_request(
    token_url: str,
    username: str,
    password: str,
    client_id: str | None,
    client_secret: str | None,
    scope: str | None,
    timeout: float,
) -> HttpRequest:
    check_url(token_url)
    form = {"grant_type": "password", "username": username, "password": password}
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if client_secret is not None:
        if not client_id:
            raise ConfigurationError("a client_secret needs a client_id")
        pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    elif client_id:
        form["client_id"] = client_id
    if scope:
        form["scope"] = scope
    return HttpRequest("POST", token_url, headers, urlencode(form).encode(), timeout)


def _json_request(
    url: str, credentials: Mapping[str, Any], headers: Mapping[str, str] | None, timeout: float
) -> HttpRequest:
    check_url(url, "login endpoint")
    all_headers = {"Content-Type": "application/json", "Accept": "application/json"}
    all_headers.update(headers or {})
    return HttpRequest("POST", url, all_headers, json.dumps(dict(credentials)).encode(), timeout)


def _finish(response: HttpResponse, url: str, store: Any, fields: Mapping[str, str]) -> TokenSet:
    try:
        answer = classify_token_response(response, url, **fields)
    except TerminalRefreshError as exc:
        raise LoginFailed(f"login refused: {exc.reason}") from None
    except TransientRefreshError as exc:
        raise LoginFailed(f"login failed, try again later: {exc.reason}") from None
    now = time.time()
    if answer.server_date is not None and abs(answer.server_date + 0.5 - now) > 2.0:
        now = answer.server_date + 0.5
    tokens = answer.to_token_set(now=now, previous=None, generation=0)
    if hasattr(store, "set_tokens"):  # a TokenAuth
        store.set_tokens(tokens)
    else:
        store.save(tokens)
    return tokens


def _fields(
    access_token_field: str, refresh_token_field: str, expires_in_field: str
) -> dict[str, str]:
    return {
        "access_field": access_token_field,
        "refresh_field": refresh_token_field,
        "expires_in_field": expires_in_field,
    }


def _perform_once(req: Any) -> Any:
    """One request with whichever sync HTTP library is installed, then close it."""
    clients = SyncClients()
    try:
        return clients.perform(first_installed(SYNC_LIBS), req)
    finally:
        clients.close()


def login(
    token_url: str,
    username: str,
    password: str,
    *,
    store: TokenStore | Any,
    client_id: str | None = "default",
    client_secret: str | None = None,
    scope: str | None = None,
    timeout: float = 10.0,
) -> TokenSet:
    """Password grant against ``token_url``; saves the tokens to ``store`` (or a TokenAuth).

    Raises :class:`~freshtoken.LoginFailed` when refused or unreachable.
    """
    req = _password_request(token_url, username, password, client_id, client_secret, scope, timeout)
    response = _perform_once(req)
    return _finish(
        response, token_url, store, _fields("access_token", "refresh_token", "expires_in")
    )


def json_login(
    url: str,
    credentials: Mapping[str, Any],
    *,
    store: TokenStore | Any,
    access_token_field: str = "access_token",  # noqa: S107
    refresh_token_field: str = "refresh_token",  # noqa: S107
    expires_in_field: str = "expires_in",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> TokenSet:
    """POST ``credentials`` as JSON to ``url``; saves the answer's tokens to ``store``."""
    req = _json_request(url, credentials, headers, timeout)
    response = _perform_once(req)
    return _finish(
        response, url, store, _fields(access_token_field, refresh_token_field, expires_in_field)
    )


def _async_lib() -> str:
    lib = first_installed(ASYNC_LIBS)
    if lib is None:
        raise ConfigurationError(
            "async login needs httpx2 or httpx: pip install 'freshtoken[httpx2]'"
        )
    return lib


async def alogin(
    token_url: str,
    username: str,
    password: str,
    *,
    store: TokenStore | Any,
    client_id: str | None = "default",
    client_secret: str | None = None,
    scope: str | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> TokenSet:
    """Async :func:`login` (httpx2 or httpx)."""
    req = _password_request(token_url, username, password, client_id, client_secret, scope, timeout)
    response = await perform_async(_async_lib(), req)
    return _finish(
        response, token_url, store, _fields("access_token", "refresh_token", "expires_in")
    )


async def ajson_login(
    url: str,
    credentials: Mapping[str, Any],
    *,
    store: TokenStore | Any,
    access_token_field: str = "access_token",  # noqa: S107
    refresh_token_field: str = "refresh_token",  # noqa: S107
    expires_in_field: str = "expires_in",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> TokenSet:
    """Async :func:`json_login` (httpx2 or httpx)."""
    req = _json_request(url, credentials, headers, timeout)
    response = await perform_async(_async_lib(), req)
    return _finish(
        response, url, store, _fields(access_token_field, refresh_token_field, expires_in_field)
    )
