"""freshtoken: access tokens and rotating refresh tokens, done right."""

from typing import TYPE_CHECKING, Any

from freshtoken._clock import Clock, SystemClock
from freshtoken.errors import (
    ConfigurationError,
    FreshtokenError,
    InsufficientScope,
    InvalidToken,
    LoginFailed,
    NoTokens,
    RefreshFailed,
    SessionExpired,
    TokenStoreError,
)

if TYPE_CHECKING:
    from freshtoken.client import (
        SKIP_AUTH,
        AsyncTokenAuth,
        CallableRefresher,
        FileStore,
        JSONRefresher,
        KeyringStore,
        MemoryStore,
        OAuth2Refresher,
        RedisStore,
        RefreshEvent,
        Retry,
        TokenAuth,
        TokenSet,
        TokenStore,
        ajson_login,
        alogin,
        json_login,
        login,
    )

__version__ = "0.1.0"

# Client names load on first use, so ``import freshtoken`` stays light and
# imports no HTTP library (TokenAuth adapts to whichever is installed).
_CLIENT_NAMES = frozenset(
    {
        "SKIP_AUTH",
        "AsyncTokenAuth",
        "CallableRefresher",
        "FileStore",
        "JSONRefresher",
        "KeyringStore",
        "MemoryStore",
        "OAuth2Refresher",
        "RedisStore",
        "RefreshEvent",
        "Retry",
        "TokenAuth",
        "TokenSet",
        "TokenStore",
        "ajson_login",
        "alogin",
        "json_login",
        "login",
    }
)


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        import freshtoken.client

        value = getattr(freshtoken.client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'freshtoken' has no attribute {name!r}")


__all__ = [
    "SKIP_AUTH",
    "AsyncTokenAuth",
    "CallableRefresher",
    "Clock",
    "ConfigurationError",
    "FileStore",
    "FreshtokenError",
    "InsufficientScope",
    "InvalidToken",
    "JSONRefresher",
    "KeyringStore",
    "LoginFailed",
    "MemoryStore",
    "NoTokens",
    "OAuth2Refresher",
    "RedisStore",
    "RefreshEvent",
    "RefreshFailed",
    "Retry",
    "SessionExpired",
    "SystemClock",
    "TokenAuth",
    "TokenSet",
    "TokenStore",
    "TokenStoreError",
    "__version__",
    "ajson_login",
    "alogin",
    "json_login",
    "login",
]
