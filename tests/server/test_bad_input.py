"""Bad input: every malformed request gets a documented 4xx JSON error, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from freshtoken.testing import LiveServer

from .helpers import FAST_PASSWORDS, PASSWORD, USERNAME, assert_oauth_error

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
BIG = 16 * 1024 + 1


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(settings=dict(FAST_PASSWORDS)) as srv:
        srv.create_user(USERNAME, PASSWORD)
        yield srv


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def basic(raw: str) -> str:
    return "Basic " + base64.b64encode(raw.encode()).decode()


GOOD_FORM = b"grant_type=password&username=alice&password=x&client_id=default"

# (path, content-type, body, extra headers, status, error)
CASES = [
    # --- the form endpoints ---------------------------------------------------------
    ("/oauth/token", JSON, b'{"grant_type": "password"}', {}, 415, "invalid_request"),
    ("/oauth/token", None, GOOD_FORM, {}, 415, "invalid_request"),
    ("/oauth/token", "multipart/form-data; boundary=x", GOOD_FORM, {}, 415, "invalid_request"),
    ("/oauth/token", "text/plain", GOOD_FORM, {}, 415, "invalid_request"),
    ("/oauth/token", FORM, b"grant_type=password&username=\xff\xfe", {}, 400, "invalid_request"),
    ("/oauth/token", FORM, b"grant_type=password&username=%ff%fe", {}, 400, "invalid_request"),
    ("/oauth/token", FORM, GOOD_FORM + b"&grant_type=password", {}, 400, "invalid_request"),
    ("/oauth/token", FORM, GOOD_FORM + b"&client_id=other", {}, 400, "invalid_request"),
    ("/oauth/token", FORM, b"username=alice&password=x", {}, 400, "invalid_request"),
    ("/oauth/token", FORM, b"grant_type=&client_id=default", {}, 400, "invalid_request"),
    ("/oauth/token", FORM, b"", {}, 400, "invalid_request"),
    ("/oauth/token", FORM, b"===&&&%%%", {}, 400, "invalid_request"),
    ("/oauth/token", FORM, b"grant_type=bogus", {}, 400, "unsupported_grant_type"),
    (
        "/oauth/token",
        FORM,
        b"grant_type=password&client_id=default&username=alice",
        {},
        400,
        "invalid_request",
    ),
    ("/oauth/token", FORM, GOOD_FORM.replace(b"alice", b"a%00b"), {}, 400, "invalid_request"),
    ("/oauth/token", FORM, GOOD_FORM.replace(b"alice", b"a" * 300), {}, 400, "invalid_request"),
    ("/oauth/token", FORM, b"grant_type=password&" + b"x=1&" * 40, {}, 400, "invalid_request"),
    ("/oauth/token", FORM, b"a=" + b"x" * BIG, {}, 413, "invalid_request"),
    (
        "/oauth/token",
        FORM,
        b"grant_type=refresh_token&client_id=default",
        {},
        400,
        "invalid_request",
    ),
    (
        "/oauth/token",
        FORM,
        b"grant_type=refresh_token&client_id=default&refresh_token=garbage",
        {},
        400,
        "invalid_grant",
    ),
    (
        "/oauth/token",
        FORM,
        b"grant_type=refresh_token&client_id=default&refresh_token=ftr_" + b"A" * 600,
        {},
        400,
        "invalid_request",
    ),
    (
        "/oauth/token",
        FORM,
        b"grant_type=refresh_token&client_id=default&refresh_token=%F0%9F%94%91",
        {},
        400,
        "invalid_grant",
    ),
    (
        "/oauth/token",
        FORM,
        b"grant_type=refresh_token&refresh_token=x",
        {"Authorization": "Basic !!!not-base64!!!"},
        401,
        "invalid_client",
    ),
    (
        "/oauth/token",
        FORM,
        b"grant_type=refresh_token&refresh_token=x",
        {"Authorization": basic("no-colon")},
        401,
        "invalid_client",
    ),
    (
        "/oauth/token",
        FORM,
        b"grant_type=refresh_token&refresh_token=x&client_secret=y",
        {"Authorization": basic("default:")},
        400,
        "invalid_request",
    ),
    (
        "/oauth/token",
        FORM,
        b"grant_type=client_credentials",
        {"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()},
        401,
        "invalid_client",
    ),
    (
        "/oauth/token",
        FORM,
        b"grant_type=password&username=alice&password=x",
        {"Authorization": basic("de\x00fault:")},
        401,
        "invalid_client",
    ),
    (
        "/oauth/token",
        FORM,
        b"grant_type=password&username=alice&password=x",
        {"Authorization": basic("de%00fault:")},
        401,
        "invalid_client",
    ),
    (
        "/oauth/token",
        FORM,
        b"grant_type=client_credentials",
        {"Authorization": basic("m2m:s%00cret")},
        401,
        "invalid_client",
    ),
    ("/oauth/token", FORM, GOOD_FORM.replace(b"default", b"c" * 5000), {}, 401, "invalid_client"),
    ("/oauth/revoke", JSON, b'{"token": "x"}', {}, 415, "invalid_request"),
    ("/oauth/revoke", FORM, b"token=x&token=y&client_id=default", {}, 400, "invalid_request"),
    ("/oauth/revoke", FORM, b"client_id=default", {}, 400, "invalid_request"),
    ("/oauth/revoke", FORM, b"token=" + b"x" * BIG, {}, 413, "invalid_request"),
    ("/oauth/introspect", JSON, b'{"token": "x"}', {}, 415, "invalid_request"),
    ("/oauth/introspect", FORM, b"token=\xff", {}, 400, "invalid_request"),
    ("/oauth/introspect", FORM, b"token=x", {}, 401, "invalid_client"),
    # --- the JSON endpoints ---------------------------------------------------------
    ("/auth/login", FORM, b"username=alice&password=x", {}, 415, "invalid_request"),
    ("/auth/login", "text/plain", b'{"username": "alice"}', {}, 415, "invalid_request"),
    ("/auth/login", JSON, b'{"username": "alice", "password": ', {}, 400, "invalid_request"),
    ("/auth/login", JSON, b"not json", {}, 400, "invalid_request"),
    ("/auth/login", JSON, b"", {}, 400, "invalid_request"),
    ("/auth/login", JSON, b"[]", {}, 400, "invalid_request"),
    ("/auth/login", JSON, b'"alice"', {}, 400, "invalid_request"),
    ("/auth/login", JSON, b"null", {}, 400, "invalid_request"),
    ("/auth/login", JSON, b"42", {}, 400, "invalid_request"),
    ("/auth/login", JSON, b'{"username": 42, "password": "x"}', {}, 400, "invalid_request"),
    ("/auth/login", JSON, b'{"username": "alice", "password": ["x"]}', {}, 400, "invalid_request"),
    (
        "/auth/login",
        JSON,
        b'{"username": "alice", "password": {"$ne": 1}}',
        {},
        400,
        "invalid_request",
    ),
    ("/auth/login", JSON, b'{"username": null, "password": "x"}', {}, 400, "invalid_request"),
    ("/auth/login", JSON, b'{"username": true, "password": "x"}', {}, 400, "invalid_request"),
    ("/auth/login", JSON, b'{"username": "alice", "password": NaN}', {}, 400, "invalid_request"),
    (
        "/auth/login",
        JSON,
        b'{"username": "alice", "password": "x", "scope": 7}',
        {},
        400,
        "invalid_request",
    ),
    (
        "/auth/login",
        JSON,
        b'{"username": "alice", "password": "x", "client_id": []}',
        {},
        400,
        "invalid_request",
    ),
    (
        "/auth/login",
        JSON,
        b'{"username": "a", "username": "alice", "password": "x"}',
        {},
        400,
        "invalid_request",
    ),
    ("/auth/login", JSON, b'{"username": "\xff", "password": "x"}', {}, 400, "invalid_request"),
    ("/auth/login", JSON, '{"username": "alice"}'.encode("utf-16"), {}, 400, "invalid_request"),
    (
        "/auth/login",
        JSON,
        b'{"username": "a\\u0000b", "password": "x"}',
        {},
        400,
        "invalid_request",
    ),
    ("/auth/login", JSON, b"[" * 20_000, {}, 413, "invalid_request"),
    ("/auth/login", JSON, b"[" * 10_000 + b"]" * 10_000, {}, 413, "invalid_request"),
    ("/auth/login", JSON, b"[" * 5_000 + b"]" * 5_000, {}, 400, "invalid_request"),
    ("/auth/login", JSON, b'{"a":' * 2_000 + b"1" + b"}" * 2_000, {}, 400, "invalid_request"),
    (
        "/auth/login",
        JSON,
        b'{"username": ' + b"9" * 5_000 + b', "password": "x"}',
        {},
        400,
        "invalid_request",
    ),
    (
        "/auth/login",
        JSON,
        json.dumps({"username": "x" * 300, "password": "x"}).encode(),
        {},
        400,
        "invalid_request",
    ),
    (
        "/auth/login",
        JSON,
        json.dumps({"username": "alice", "pad": "x" * BIG}).encode(),
        {},
        413,
        "invalid_request",
    ),
    ("/auth/login", JSON, b'{"username": "\\ud800", "password": "x"}', {}, 400, "invalid_request"),
    (
        "/auth/login",
        JSON,
        b'{"username": "alice", "password": "x\\udfff"}',
        {},
        400,
        "invalid_request",
    ),
    (
        "/auth/login",
        JSON,
        b'{"username": "alice", "password": "x", "client_id": "\\ud800"}',
        {},
        400,
        "invalid_request",
    ),
    ("/auth/refresh", JSON, b'{"refresh_token": "ftr_\\ud800"}', {}, 400, "invalid_request"),
    ("/auth/refresh", JSON, b'{"refresh_token": 12345}', {}, 400, "invalid_request"),
    ("/auth/refresh", JSON, b'{"refresh_token": ["ftr_x"]}', {}, 400, "invalid_request"),
    (
        "/auth/refresh",
        JSON,
        json.dumps({"refresh_token": "ftr_" + "A" * 600}).encode(),
        {},
        400,
        "invalid_request",
    ),
    ("/auth/refresh", JSON, b'{"refresh_token": "not-a-token"}', {}, 400, "invalid_grant"),
    ("/auth/refresh", JSON, b"{", {}, 400, "invalid_request"),
    ("/auth/refresh", FORM, b"refresh_token=x", {}, 415, "invalid_request"),
    ("/auth/logout", JSON, b'{"refresh_token": false}', {}, 400, "invalid_request"),
    ("/auth/logout", JSON, b"[1, 2]", {}, 400, "invalid_request"),
]


@pytest.mark.parametrize(
    ("path", "content_type", "body", "headers", "status", "error"),
    CASES,
    ids=[f"{i}-{c[0]}-{c[4]}" for i, c in enumerate(CASES)],
)
def test_bad_request_is_a_documented_4xx(
    client: httpx.Client,
    path: str,
    content_type: str | None,
    body: bytes,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    response = send(client, (path, content_type, body, headers, status, error))
    assert_oauth_error(response, status, error)


def send(client: httpx.Client, case: tuple[Any, ...]) -> httpx.Response:
    path, content_type, body, headers, _, _ = case
    request_headers = dict(headers)
    if content_type is not None:
        request_headers["Content-Type"] = content_type
    return client.post(path, content=body, headers=request_headers)


def test_every_case_on_postgresql(postgres_url: str) -> None:
    """PostgreSQL is stricter than SQLite (no NUL in text, typed columns): same answers."""
    with LiveServer(database_url=postgres_url, settings=dict(FAST_PASSWORDS)) as srv:
        srv.create_user(USERNAME, PASSWORD)
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            for case in CASES:
                assert_oauth_error(send(client, case), case[4], case[5])
            ok = client.post("/auth/login", json={"username": USERNAME, "password": PASSWORD})
            assert ok.status_code == 200


def test_oversized_chunked_body_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 1024

    response = client.post("/oauth/token", content=chunks(), headers={"Content-Type": FORM})
    assert "content-length" not in response.request.headers  # really chunked
    assert_oauth_error(response, 413, "invalid_request")


def test_lying_content_length_is_refused(server: LiveServer) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: "
            + FORM.encode()
            + b"\r\nContent-Length: 999999\r\n\r\ngrant_type=password"
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"invalid_request"' in answer


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Basic YWxpY2U6cHc=", "Token x"])
def test_missing_bearer_token(client: httpx.Client, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/api/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert isinstance(response.json()["error"], str)


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "x" * 10_000,
        "ftr_" + "A" * 43,
        "\u00e9t\u00e9",
    ],
)
def test_garbage_bearer_tokens(client: httpx.Client, token: str) -> None:
    header = b"Bearer " + token.encode()  # raw bytes: non-ASCII goes out as UTF-8
    response = client.get("/api/me", headers={"Authorization": header})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer") and 'error="invalid_token"' in challenge
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/oauth/token", 405, "method_not_allowed"),
        ("PUT", "/auth/login", 405, "method_not_allowed"),
        ("GET", "/no/such/route", 404, "not_found"),
        ("GET", "/static/no-such-file.js", 404, "not_found"),
    ],
)
def test_routing_errors_have_the_documented_shape(
    client: httpx.Client, method: str, path: str, status: int, error: str
) -> None:
    assert_oauth_error(client.request(method, path), status, error)


def test_server_still_serves_after_the_garbage(client: httpx.Client, server: LiveServer) -> None:
    response = client.post("/auth/login", json={"username": USERNAME, "password": PASSWORD})
    assert response.status_code == 200
    assert server.stats["login"] >= 1
