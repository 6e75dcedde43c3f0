"""Limits: bodies, heads (request line + headers), token and field lengths are capped
with a clear 4xx in the documented error shape; slow or huge requests cannot pin
the server (the event loop keeps answering everyone else).

Server timeouts (documented in SECURITY.md): head 10 s (408), body 10 s after the
handler reads it (408), keep-alive idle 5 s (CLI; LiveServer 30 s).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx2
import pytest
from sec_helpers import FAST_ARGON2, PASSWORD, USER

from freshtoken.server import http as server_http
from freshtoken.server.protocol import LimitedHttpToolsProtocol
from freshtoken.testing import LiveServer

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def srv() -> Iterator[LiveServer]:
    with LiveServer(settings=FAST_ARGON2) as server:
        server.create_user(USER, PASSWORD)
        yield server


@pytest.fixture
def http(srv: LiveServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=srv.url, timeout=10) as client:
        yield client


def _is_error(response: httpx2.Response, status: int, error: str = "invalid_request") -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    return str(body.get("error_description", ""))


def _raw(srv: LiveServer, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=read_timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def _healthz_latency(srv: LiveServer, n: int = 10) -> float:
    worst = 0.0
    with httpx2.Client(timeout=10) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            assert client.get(srv.url + "/healthz").status_code == 200
            worst = max(worst, time.perf_counter() - t0)
    return worst


# --- bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/oauth/token", "application/x-www-form-urlencoded"),
        ("/oauth/revoke", "application/x-www-form-urlencoded"),
        ("/oauth/introspect", "application/x-www-form-urlencoded"),
        ("/auth/login", "application/json"),
        ("/auth/refresh", "application/json"),
        ("/auth/logout", "application/json"),
    ],
)
def test_oversized_body_is_413(http: httpx2.Client, path: str, content_type: str) -> None:
    body = b"a=" + b"x" * (17 * 1024)
    assert "larger than" in _is_error(
        http.post(path, content=body, headers={"content-type": content_type}), 413
    )


def test_oversized_chunked_body_is_413(http: httpx2.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"grant_type=password&username="
        for _ in range(40):
            yield b"x" * 1024

    _is_error(http.post("/oauth/token", content=chunks(), headers=FORM), 413)


def test_lying_content_length(srv: LiveServer) -> None:
    answer = _raw(
        srv,
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: "
        b"application/x-www-form-urlencoded\r\nContent-Length: 99999999\r\n\r\nabc",
    )
    assert answer.startswith(b"HTTP/1.1 413")


def test_too_many_form_fields(http: httpx2.Client) -> None:
    form = {f"f{i}": "v" for i in range(40)} | {"grant_type": "password"}
    assert "too many" in _is_error(http.post("/oauth/token", data=form), 400)


def test_wrong_content_type_is_415(http: httpx2.Client) -> None:
    _is_error(http.post("/oauth/token", json={"grant_type": "password"}), 415)
    _is_error(
        http.post("/auth/login", content=b"username=a", headers=FORM),
        415,
    )


# --- token and field lengths ------------------------------------------------------------


def test_field_lengths_are_capped(http: httpx2.Client) -> None:
    long_rt = "ftr_" + "A" * 600
    assert "too long" in _is_error(
        http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": long_rt, "client_id": "default"},
        ),
        400,
    )
    assert "too long" in _is_error(http.post("/auth/refresh", json={"refresh_token": long_rt}), 400)
    assert "too long" in _is_error(
        http.post("/auth/login", json={"username": "u" * 300, "password": "p"}), 400
    )
    assert "too long" in _is_error(
        http.post("/auth/login", json={"username": USER, "password": "p" * 2000}), 400
    )
    # A revoke/introspect token is bounded by the 16 KiB body first.
    _is_error(http.post("/oauth/revoke", data={"token": "t" * 16_385, "client_id": "x"}), 413)


def test_oversized_bearer_token_is_401(http: httpx2.Client) -> None:
    response = http.get("/api/me", headers={"authorization": "Bearer " + "a" * 40_000})
    assert response.status_code == 401
    assert "invalid_token" in response.headers["www-authenticate"]


# --- the request head -----------------------------------------------------------------


def test_large_but_legal_head_is_served(http: httpx2.Client) -> None:
    assert http.get("/healthz", headers={"x-pad": "a" * 32_000}).status_code == 200


def test_oversized_head_is_431(http: httpx2.Client) -> None:
    desc = _is_error(http.get("/healthz", headers={"x-big": "a" * 70_000}), 431)
    assert "65536" in desc
    # Many small headers count too.
    response = http.get("/healthz", headers={f"x-h{i}": "a" * 100 for i in range(1000)})
    _is_error(response, 431)
    # The same server still answers normal requests.
    assert http.get("/healthz").status_code == 200


def test_endless_header_is_cut_early_and_does_not_stall_others(srv: LiveServer) -> None:
    """One client streaming a 50 MB header: refused after ~64 KiB, others unaffected."""
    sent = 0
    refused = threading.Event()

    def attack() -> None:
        nonlocal sent
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                for _ in range(50 * 16):
                    sock.sendall(b"a" * 65536)
                    sent += 65536
            except OSError:
                refused.set()

    thread = threading.Thread(target=attack)
    thread.start()
    worst = _healthz_latency(srv, 20)
    thread.join(timeout=30)
    assert refused.is_set()
    assert sent < 8 * 1024 * 1024  # stopped long before 50 MB (socket buffers aside)
    assert worst < 0.5


def test_slow_head_gets_408(srv: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LimitedHttpToolsProtocol, "head_timeout", 0.5)
    t0 = time.monotonic()
    answer = _raw(srv, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"not received in time" in answer
    assert time.monotonic() - t0 < 4
    # A connection that never sends a byte is closed too.
    t0 = time.monotonic()
    assert _raw(srv, b"") == b""
    assert time.monotonic() - t0 < 4


def test_slow_body_gets_408(srv: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_http, "BODY_TIMEOUT", 0.5)
    t0 = time.monotonic()
    answer = _raw(
        srv,
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: "
        b"application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=pa",
    )
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b"not received in time" in answer
    assert time.monotonic() - t0 < 4


def test_stalled_connections_do_not_pin_the_server(srv: LiveServer) -> None:
    """100 clients stuck mid-head and mid-body; everyone else is served at once."""
    socks = []
    try:
        for i in range(100):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            if i % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:
                sock.sendall(
                    b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: "
                    b"application/x-www-form-urlencoded\r\nContent-Length: 50\r\n\r\ngrant"
                )
            socks.append(sock)
        assert _healthz_latency(srv, 20) < 0.5
        with httpx2.Client(timeout=10) as client:
            answer = client.post(
                srv.token_url,
                data={
                    "grant_type": "password",
                    "username": USER,
                    "password": PASSWORD,
                    "client_id": "default",
                },
            )
        assert answer.status_code == 200
        assert answer.json()["refresh_token"].startswith("ftr_")
    finally:
        for sock in socks:
            sock.close()
