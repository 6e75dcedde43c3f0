"""``TokenAuth``: one object that plugs into httpx2, httpx (sync and async) and requests.

The class is assembled when this module is imported: it subclasses ``httpx2.Auth``,
``httpx.Auth`` and ``requests.auth.AuthBase`` for whichever of them is installed,
so ``httpx2.Client(auth=auth)``, ``httpx.AsyncClient(auth=auth)`` and
``requests.Session().auth = auth`` all accept it. Nothing is imported that is
not installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from freshtoken.client._httpx import HttpxFlows
from freshtoken.client._requests import RequestsFlows


def _library_bases() -> tuple[type[Any], ...]:
    bases: list[type[Any]] = []
    for module, attr in (("httpx2", "Auth"), ("httpx", "Auth"), ("requests.auth", "AuthBase")):
        try:
            bases.append(getattr(importlib.import_module(module), attr))
        except ImportError:
            continue
    return tuple(bases)


class TokenAuth(HttpxFlows, RequestsFlows, *_library_bases()):  # type: ignore[misc]
    """Bearer auth that refreshes itself.

    ::

        auth = TokenAuth(
            refresher=OAuth2Refresher("https://auth.example.com/oauth/token", client_id="cli"),
            store=FileStore("~/.config/myapp/tokens.json"),
            on_session_expired=lambda reason: print("please log in again:", reason),
        )
        with httpx2.Client(auth=auth) as http:   # or httpx.AsyncClient, or requests
            http.get("https://api.example.com/items")

    Arguments: ``refresher`` (an OAuth2Refresher, JSONRefresher or any callable
    ``refresh_token -> answer``), ``store`` (default: MemoryStore),
    ``on_session_expired(reason)``, ``leeway`` (seconds before expiry to refresh,
    default 30), ``refresh_on`` (status codes, default ``(401,)``), ``should_refresh``
    (a predicate on the response), ``on_event`` (hooks receiving RefreshEvent),
    ``retry`` (a Retry policy), ``clock``, ``sleep``/``async_sleep`` (for tests).

    Opt out per request with ``auth=None`` (httpx) or the header
    ``X-Freshtoken-Skip: 1`` (any library; it is removed before sending).
    """


AsyncTokenAuth = TokenAuth
