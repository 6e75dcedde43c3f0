"""The auto-refreshing client: ``TokenAuth`` for httpx2, httpx and requests.

See docs/client.md. The HTTP libraries are imported only if installed.
"""

from freshtoken.client._auth import AsyncTokenAuth, TokenAuth
from freshtoken.client._base import NOTE_HEADER, SKIP_HEADER
from freshtoken.client._events import RefreshEvent
from freshtoken.client._login import ajson_login, alogin, json_login, login
from freshtoken.client._session import (
    HttpRequest,
    HttpResponse,
    Retry,
    TokenAnswer,
    TokenSession,
    TokenSet,
    TokenStore,
    jwt_exp,
)
from freshtoken.client.refreshers import CallableRefresher, JSONRefresher, OAuth2Refresher
from freshtoken.client.stores import FileStore, KeyringStore, MemoryStore, RedisStore

SKIP_AUTH = {SKIP_HEADER: "1"}
"""Pass as ``headers=freshtoken.SKIP_AUTH`` to send one request without a token."""

__all__ = [
    "NOTE_HEADER",
    "SKIP_AUTH",
    "SKIP_HEADER",
    "AsyncTokenAuth",
    "CallableRefresher",
    "FileStore",
    "HttpRequest",
    "HttpResponse",
    "JSONRefresher",
    "KeyringStore",
    "MemoryStore",
    "OAuth2Refresher",
    "RedisStore",
    "RefreshEvent",
    "Retry",
    "TokenAnswer",
    "TokenAuth",
    "TokenSession",
    "TokenSet",
    "TokenStore",
    "ajson_login",
    "alogin",
    "json_login",
    "jwt_exp",
    "login",
]
