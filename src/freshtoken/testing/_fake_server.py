"""An in-process fake token server for your own tests (standard library only).

It speaks the parts of the freshtoken HTTP API a client needs, with the same
rotation, grace window and reuse detection rules as the real server::

    with FakeTokenServer(access_token_ttl=60) as srv:
        srv.create_user("alice", "pw")
        answer = srv.login("alice", "pw")
        ...  # point your client at srv.token_url, call srv.url + "/api/me"
        assert srv.stats["refresh_rotated"] == 1

Fault injection: ``srv.fail_next(3, status=503, retry_after=1)`` answers the next
three token calls with that error. ``clock`` (e.g. a FakeClock) drives expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from freshtoken._clock import SYSTEM_CLOCK, Clock

__all__ = ["FakeTokenServer"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class _Refresh:
    session: str
    client_id: str
    used_at: float | None = None
    child: str | None = None


@dataclass
class _Session:
    user: str
    client_id: str
    scope: str
    revoked: bool = False
    live: str | None = None  # the one live refresh token
    tokens: list[str] = field(default_factory=list)


class _Failure:
    def __init__(self, count: int, status: int, retry_after: float | None, body: bytes) -> None:
        self.count = count
        self.status = status
        self.retry_after = retry_after
        self.body = body


class FakeTokenServer:
    """A small real HTTP server on ``127.0.0.1:<ephemeral port>`` in a background thread."""

    def __init__(
        self,
        *,
        access_token_ttl: float = 300.0,
        grace_seconds: float = 10.0,
        clock: Clock | None = None,
        include_expires_in: bool = True,
    ) -> None:
        self.access_token_ttl = access_token_ttl
        self.grace_seconds = grace_seconds
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.include_expires_in = include_expires_in
        self.stats: Counter[str] = Counter()
        self.users: dict[str, str] = {}
        self.clients: set[str] = {"default"}
        self._secret = secrets.token_bytes(32)
        self._refresh: dict[str, _Refresh] = {}
        self._sessions: dict[str, _Session] = {}
        self._access: dict[str, str] = {}  # jti -> session id
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> FakeTokenServer:
        server = self

        class Handler(_Handler):
            fake = server

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024

        httpd = Server(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(target=httpd.serve_forever, name="fake-token-server")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeTokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def token_url(self) -> str:
        return self.url + "/oauth/token"

    @property
    def refresh_url(self) -> str:
        return self.url + "/auth/refresh"

    @property
    def login_url(self) -> str:
        return self.url + "/auth/login"

    # -- admin -----------------------------------------------------------------------

    def create_user(self, username: str, password: str) -> str:
        with self._lock:
            self.users[username] = password
        return username

    def create_client(self, client_id: str) -> None:
        with self._lock:
            self.clients.add(client_id)

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 503,
        retry_after: float | None = None,
        body: bytes = b'{"error": "temporarily_unavailable"}',
    ) -> None:
        """Answer the next ``count`` token-endpoint calls with ``status``."""
        with self._lock:
            self._failures.append(_Failure(count, status, retry_after, body))

    def revoke_all(self) -> None:
        """End every session (like an admin revoking them)."""
        with self._lock:
            for s in self._sessions.values():
                s.revoked = True

    def login(self, username: str, password: str, client_id: str = "default") -> dict[str, Any]:
        status, body = self._password(username, password, client_id, "read write")
        if status != 200:
            raise ValueError(f"login failed: {body}")
        return body

    # -- token rules --------------------------------------------------------------------

    def _access_token(self, session_id: str, sess: _Session) -> tuple[str, float]:
        now = self.clock.now()
        jti = secrets.token_hex(8)
        claims = {
            "sub": sess.user,
            "iat": int(now),
            "exp": int(now + self.access_token_ttl),
            "jti": jti,
            "sid": session_id,
            "client_id": sess.client_id,
            "scope": sess.scope,
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt"}).encode())
        payload = _b64(json.dumps(claims).encode())
        sig = hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        self._access[jti] = session_id
        return f"{header}.{payload}.{_b64(sig)}", now + self.access_token_ttl

    def _answer(self, session_id: str, refresh: str) -> dict[str, Any]:
        sess = self._sessions[session_id]
        access, _ = self._access_token(session_id, sess)
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "refresh_token": refresh,
            "scope": sess.scope,
        }
        if self.include_expires_in:
            answer["expires_in"] = int(self.access_token_ttl)
        return answer

    def _new_refresh(self, session_id: str, client_id: str) -> str:
        token = "ftr_" + secrets.token_urlsafe(32)
        self._refresh[token] = _Refresh(session_id, client_id)
        sess = self._sessions[session_id]
        sess.live = token
        sess.tokens.append(token)
        return token

    def _password(
        self, username: str, password: str, client_id: str, scope: str
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if client_id not in self.clients:
                return 401, {"error": "invalid_client"}
            if self.users.get(username) != password:
                return 400, {"error": "invalid_grant", "error_description": "bad credentials"}
            session_id = secrets.token_hex(8)
            self._sessions[session_id] = _Session(username, client_id, scope)
            token = self._new_refresh(session_id, client_id)
            self.stats["login"] += 1
            return 200, self._answer(session_id, token)

    def _rotate(self, presented: str, client_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            row = self._refresh.get(presented)
            if row is None or row.client_id != client_id:
                self.stats["refresh_failed"] += 1
                return 400, {"error": "invalid_grant", "error_description": "unknown token"}
            sess = self._sessions[row.session]
            if sess.revoked:
                self.stats["refresh_failed"] += 1
                return 400, {"error": "invalid_grant", "error_description": "session revoked"}
            now = self.clock.now()
            if row.used_at is None:
                row.used_at = now
                child = self._new_refresh(row.session, client_id)
                row.child = child
                self.stats["refresh_rotated"] += 1
                return 200, self._answer(row.session, child)
            if (
                row.child is not None
                and row.child == sess.live
                and now - row.used_at < self.grace_seconds
            ):
                self.stats["refresh_grace"] += 1
                return 200, self._answer(row.session, row.child)
            sess.revoked = True
            self.stats["refresh_reuse"] += 1
            return 400, {"error": "invalid_grant", "error_description": "refresh token reused"}

    def _failure(self) -> _Failure | None:
        with self._lock:
            while self._failures:
                f = self._failures[0]
                if f.count <= 0:
                    self._failures.pop(0)
                    continue
                f.count -= 1
                return f
        return None

    def check_access(self, header: str | None) -> tuple[int, dict[str, Any]]:
        if not header or not header.startswith("Bearer "):
            return 401, {"error": "invalid_token", "error_description": "no bearer token"}
        token = header[7:]
        parts = token.split(".")
        if len(parts) != 3:
            return 401, {"error": "invalid_token", "error_description": "malformed"}
        expected = hmac.new(
            self._secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(_b64(expected), parts[2]):
            return 401, {"error": "invalid_token", "error_description": "bad signature"}
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        if claims["exp"] <= self.clock.now():
            return 401, {"error": "invalid_token", "error_description": "expired"}
        with self._lock:
            sess = self._sessions.get(claims["sid"])
            if sess is None or sess.revoked:
                return 401, {"error": "invalid_token", "error_description": "session revoked"}
        return 200, {"sub": claims["sub"], "sid": claims["sid"], "scope": claims["scope"]}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTokenServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        if self.path.startswith("/api/"):
            status, body = self.fake.check_access(self.headers.get("Authorization"))
            self._send(status, body)
        elif self.path == "/healthz":
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self) -> None:
        raw = self._body()
        fake = self.fake
        if self.path.startswith("/api/"):
            status, body = fake.check_access(self.headers.get("Authorization"))
            self._send(status, body)
            return
        if self.path in ("/oauth/token", "/auth/refresh", "/auth/login"):
            failure = fake._failure()
            if failure is not None:
                extra = {}
                if failure.retry_after is not None:
                    extra["Retry-After"] = str(int(failure.retry_after))
                self.send_response(failure.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(failure.body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(failure.body)
                return
        if self.path == "/oauth/token":
            form = dict(parse_qsl(raw.decode()))
            client_id = form.get("client_id", "default")
            grant = form.get("grant_type")
            if grant == "password":
                status, body = fake._password(
                    form.get("username", ""),
                    form.get("password", ""),
                    client_id,
                    form.get("scope", "read write"),
                )
            elif grant == "refresh_token":
                status, body = fake._rotate(form.get("refresh_token", ""), client_id)
            else:
                status, body = 400, {"error": "unsupported_grant_type"}
            self._send(status, body)
            return
        if self.path in ("/auth/login", "/auth/refresh"):
            try:
                data = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, {"error": "invalid_request"})
                return
            client_id = data.get("client_id", "default")
            if self.path == "/auth/login":
                status, body = fake._password(
                    str(data.get("username", "")),
                    str(data.get("password", "")),
                    client_id,
                    str(data.get("scope", "read write")),
                )
            else:
                status, body = fake._rotate(str(data.get("refresh_token", "")), client_id)
            self._send(status, body)
            return
        self._send(404, {"error": "not_found"})
