"""Refreshers (OAuth 2.0 with and without secret, JSON with custom fields, callables)
and the login helpers."""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from contextlib import contextmanager

import pytest
from client_helpers import SyncHTTP, async_client

from freshtoken import LoginFailed, SessionExpired
from freshtoken.client import (
    CallableRefresher,
    FileStore,
    JSONRefresher,
    MemoryStore,
    OAuth2Refresher,
    TokenAuth,
    TokenSet,
    ajson_login,
    alogin,
    json_login,
    login,
)

# --- a small hand-written API: POST /refresh {"refreshToken"} -> {"accessToken", ...} ---


class HandWrittenAPI:
    def __init__(self, ttl: int = 60) -> None:
        self.ttl = ttl
        self.access: dict[str, float] = {}
        self.refresh: set[str] = set()
        self.refreshes = 0

    def _issue(self) -> dict:
        access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self.access[access] = time.time() + self.ttl
        self.refresh.add(refresh)
        return {"data": {"accessToken": access, "expiresIn": self.ttl}, "refreshToken": refresh}

    def app(self):
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def do_login(request: Request):
            body = await request.json()
            if body.get("user") != "alice" or body.get("pass") != "pw":
                return JSONResponse({"message": "bad credentials"}, 401)
            return JSONResponse(self._issue())

        async def do_refresh(request: Request):
            body = await request.json()
            token = body.get("refreshToken")
            if token not in self.refresh:
                return JSONResponse({"error": "invalid_grant"}, 401)
            self.refresh.discard(token)
            self.refreshes += 1
            return JSONResponse(self._issue())

        async def items(request: Request):
            token = request.headers.get("authorization", "")[7:]
            if self.access.get(token, 0) <= time.time():
                return JSONResponse({"message": "unauthorized"}, 401)
            return JSONResponse({"items": [1, 2, 3]})

        return Starlette(
            routes=[
                Route("/login", do_login, methods=["POST"]),
                Route("/refresh", do_refresh, methods=["POST"]),
                Route("/items", items, methods=["GET"]),
            ]
        )


@contextmanager
def serve(app):
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def api():
    handwritten = HandWrittenAPI()
    with serve(handwritten.app()) as url:
        handwritten.url = url
        yield handwritten


def _json_refresher(url):
    return JSONRefresher(
        url + "/refresh",
        request_field="refreshToken",
        access_token_field="data.accessToken",
        refresh_token_field="refreshToken",
        expires_in_field="data.expiresIn",
    )


def test_json_refresher_talks_to_a_hand_written_api(api, lib):
    store = MemoryStore()
    tokens = json_login(
        api.url + "/login",
        {"user": "alice", "pass": "pw"},
        store=store,
        access_token_field="data.accessToken",
        refresh_token_field="refreshToken",
        expires_in_field="data.expiresIn",
    )
    assert tokens.expires_at is not None
    api.access[tokens.access_token] = 0  # expire it on the API side
    auth = TokenAuth(_json_refresher(api.url), store)
    with SyncHTTP(lib, auth) as http:
        r = http.get(api.url + "/items")
        assert r.status_code == 200
        assert r.json() == {"items": [1, 2, 3]}
    assert api.refreshes == 1
    assert store.load().refresh_token != tokens.refresh_token


def test_json_login_refused(api):
    with pytest.raises(LoginFailed, match=r"unauthorized|HTTP 401|bad"):
        json_login(api.url + "/login", {"user": "alice", "pass": "nope"}, store=MemoryStore())


def test_oauth2_refresher_with_a_client_secret_basic_and_post(server, lib):
    server.srv.create_client("conf", secret="s3cret")
    for method in ("client_secret_basic", "client_secret_post"):
        tokens = login(
            server.token_url,
            "alice",
            "pw",
            store=MemoryStore(),
            client_id="conf",
            client_secret="s3cret",
        )
        auth = server.auth(
            tokens=TokenSet(tokens.access_token, tokens.refresh_token, 0.0),
            refresher=OAuth2Refresher(
                server.token_url, client_id="conf", client_secret="s3cret", auth_method=method
            ),
        )
        with SyncHTTP(lib, auth) as http:
            assert http.get(server.me).status_code == 200
    assert server.refreshes == 2


def test_oauth2_refresher_with_a_wrong_secret_ends_the_session(server):
    server.srv.create_client("conf", secret="s3cret")
    tokens = login(
        server.token_url,
        "alice",
        "pw",
        store=MemoryStore(),
        client_id="conf",
        client_secret="s3cret",
    )
    reasons = []
    auth = server.auth(
        tokens=TokenSet(tokens.access_token, tokens.refresh_token, 0.0),
        refresher=OAuth2Refresher(server.token_url, client_id="conf", client_secret="wrong"),
        on_session_expired=reasons.append,
    )
    with SyncHTTP("httpx2", auth) as http:
        with pytest.raises(SessionExpired, match="invalid_client"):
            http.get(server.me)
    assert len(reasons) == 1


def test_callable_refresher_sync(server, lib):
    calls = []

    def refresh(refresh_token: str) -> dict:
        calls.append(refresh_token)
        issued = server.srv.service.refresh(refresh_token=refresh_token)
        return issued.to_json()

    auth = server.auth(tokens=server.session(expired=True), refresher=refresh)
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
    assert len(calls) == 1
    assert server.refreshes == 1


async def test_callable_refresher_async(server, alib):
    import httpx2

    async def refresh(refresh_token: str) -> dict:
        async with httpx2.AsyncClient() as c:
            r = await c.post(
                server.token_url,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "client_id": "default",
                },
            )
            return r.json()

    auth = server.auth(tokens=server.session(expired=True), refresher=CallableRefresher(refresh))
    async with async_client(alib, auth) as http:
        rs = await asyncio.gather(*(http.get(server.me) for _ in range(10)))
    assert [r.status_code for r in rs] == [200] * 10
    assert server.refreshes == 1


def test_an_async_callable_with_a_sync_client_is_a_clear_error(server):
    from freshtoken import ConfigurationError

    async def refresh(refresh_token: str) -> dict:
        return {}

    auth = server.auth(tokens=server.session(expired=True), refresher=refresh)
    with SyncHTTP("httpx2", auth) as http:
        with pytest.raises(ConfigurationError, match="async client"):
            http.get(server.me)


def test_a_callable_raising_session_expired_ends_the_session(server):
    def refresh(refresh_token: str) -> dict:
        raise SessionExpired("gone")

    reasons = []
    auth = server.auth(
        tokens=server.session(expired=True), refresher=refresh, on_session_expired=reasons.append
    )
    with SyncHTTP("requests", auth) as http:
        with pytest.raises(SessionExpired, match="gone"):
            http.get(server.me)
    assert reasons == ["gone"]


def test_login_with_the_password_grant_fills_the_store(server, tmp_path, lib):
    store = FileStore(tmp_path / "tokens.json")
    tokens = login(server.token_url, "alice", "pw", store=store)
    assert store.load() == tokens
    assert tokens.refresh_token.startswith("ftr_")
    auth = server.auth(store)
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
    with pytest.raises(LoginFailed, match="invalid_grant"):
        login(server.token_url, "alice", "wrong", store=store)


def test_login_into_a_token_auth_and_json_login_on_the_server(server):
    auth = server.auth()
    login(server.token_url, "alice", "pw", store=auth)
    assert auth.session.tokens is not None
    store = MemoryStore()
    tokens = json_login(
        server.url + "/auth/login", {"username": "alice", "password": "pw"}, store=store
    )
    assert store.load() == tokens


async def test_async_login_helpers(server, api):
    store = MemoryStore()
    tokens = await alogin(server.token_url, "alice", "pw", store=store)
    assert store.load() == tokens
    tokens = await ajson_login(
        api.url + "/login",
        {"user": "alice", "pass": "pw"},
        store=store,
        access_token_field="data.accessToken",
        refresh_token_field="refreshToken",
    )
    assert store.load() == tokens
    with pytest.raises(LoginFailed):
        await alogin(server.token_url, "alice", "nope", store=store)


def test_login_against_a_closed_port_fails_clearly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LoginFailed, match="try again later"):
        login(f"http://127.0.0.1:{port}/oauth/token", "a", "b", store=MemoryStore())
