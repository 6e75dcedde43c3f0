"""A real freshtoken server on an ephemeral loopback port, in a background thread.

For tests whose behaviour crosses HTTP: clients, verifiers, browsers and other
processes talk to it over real TCP, while the test keeps a handle on the
service (to create users, count refreshes) and on the clock (to move time).
"""

from __future__ import annotations

import secrets
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from freshtoken._clock import SYSTEM_CLOCK, Clock

AppWrapper = Callable[[Any], Any]


class LiveServer:
    """``with LiveServer() as srv: httpx.post(srv.token_url, ...)``.

    ``settings`` overrides :class:`freshtoken.server.settings.Settings` fields.
    Rate limits are off unless ``settings={"ratelimit_enabled": True}``.
    ``app_wrapper`` wraps the ASGI app (e.g. fault-injecting middleware).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        settings: dict[str, Any] | None = None,
        app_wrapper: AppWrapper | None = None,
        database_url: str | None = None,
        port: int = 0,
    ) -> None:
        self.clock = clock or SYSTEM_CLOCK
        self._overrides = dict(settings or {})
        self._app_wrapper = app_wrapper
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._database_url = database_url
        self._port = port
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self.url = ""
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> LiveServer:
        import uvicorn

        from freshtoken.server.app import create_app
        from freshtoken.server.settings import Settings

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if self._database_url is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="freshtoken-live-")
            self._database_url = f"sqlite:///{Path(self._tmp.name) / 'freshtoken.db'}"
        values: dict[str, Any] = {
            "database_url": self._database_url,
            "issuer": self.url,
            "secret_key": secrets.token_urlsafe(48),
            "ratelimit_enabled": False,
            "log_level": "WARNING",
            # Not in a test process: it starts many servers, and each freeze would
            # keep that moment's garbage forever.
            "gc_freeze": False,
        }
        values.update(self._overrides)
        self.settings = Settings(**values)
        self.app = create_app(self.settings, clock=self.clock)
        asgi = self._app_wrapper(self.app) if self._app_wrapper else self.app
        config = uvicorn.Config(
            asgi,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_keep_alive=30,
            http="freshtoken.server.protocol:LimitedHttpToolsProtocol",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="freshtoken-live", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live freshtoken server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- handles for tests ------------------------------------------------------------

    @property
    def service(self) -> Any:
        return self.app.state.service

    @property
    def database_url(self) -> str:
        assert self._database_url is not None
        return self._database_url

    @property
    def token_url(self) -> str:
        return self.url + "/oauth/token"

    @property
    def stats(self) -> Counter[str]:
        """Outcomes the service saw: refresh_rotated, refresh_grace, refresh_reuse, ..."""
        stats: Counter[str] = self.service.stats
        return stats

    def create_user(self, username: str, password: str) -> str:
        user_id: str = self.service.create_user(username, password)
        return user_id

    def create_client(
        self,
        client_id: str,
        secret: str | None = None,
        grant_types: tuple[str, ...] = ("password", "refresh_token"),
        scope: str = "openid profile read write",
    ) -> None:
        self.service.create_client(client_id, secret=secret, grant_types=grant_types, scope=scope)

    def login(
        self, username: str, password: str, client_id: str = "default", scope: str | None = None
    ) -> dict[str, Any]:
        """Log in through the service (no HTTP); returns the token answer."""
        issued = self.service.login(
            username=username, password=password, client_id=client_id, scope=scope
        )
        answer: dict[str, Any] = issued.to_json()
        return answer
