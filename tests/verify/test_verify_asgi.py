"""BearerAuthMiddleware: RFC 6750 answers, header parsing, path selection, scope storage."""

from __future__ import annotations

import socket
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from verify_helpers import AUDIENCE, ISSUER

from freshtoken.errors import InvalidToken
from freshtoken.verify import BearerAuthMiddleware, Verifier, challenge, parse_bearer


def starlette_app() -> Starlette:
    async def me(request: Request) -> JSONResponse:
        claims = request.scope["freshtoken.claims"]
        assert request.state.claims is claims
        return JSONResponse({"sub": claims.sub, "scopes": sorted(claims.scopes)})

    async def public(request: Request) -> PlainTextResponse:
        return PlainTextResponse("public " + str("freshtoken.claims" in request.scope))

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.scope["freshtoken.claims"].sub)
        await websocket.close()

    return Starlette(
        routes=[
            Route("/api/me", me),
            Route("/api/admin", me),
            Route("/public", public),
            Route("/apix", public),
            WebSocketRoute("/api/ws", ws),
        ]
    )


@pytest.fixture
def verifier(clock, jwks) -> Verifier:
    return Verifier(issuer=ISSUER, audience=AUDIENCE, keys=jwks, clock=clock)


async def call(app: Any, path: str = "/api/me", headers: Any = None) -> httpx2.Response:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://rs") as client:
        return await client.get(path, headers=headers)


@pytest.mark.parametrize(
    "template",
    [
        "Bearer {t}",
        "bearer {t}",
        "BEARER {t}",
        "BeArEr {t}",
        "Bearer   {t}",
        "Bearer\t{t}",
        "  Bearer {t}  ",
        "Bearer {t}\t",
    ],
)
async def test_accepted_header_forms(verifier, minter, template):
    app = BearerAuthMiddleware(starlette_app(), verifier)
    response = await call(app, headers={"Authorization": template.format(t=minter.token())})
    assert response.status_code == 200, response.text
    assert response.json() == {"sub": "user-1", "scopes": ["read", "write"]}


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": ""},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Digest username=x"},
        {"Authorization": "Bearertoken"},
        {"X-Authorization": "Bearer abc"},
    ],
)
async def test_no_bearer_credentials_gives_a_bare_challenge(verifier, headers):
    response = await call(BearerAuthMiddleware(starlette_app(), verifier), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"  # no error attribute (RFC 6750 §3.1)
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error_description"] == "a bearer token is required"


@pytest.mark.parametrize(
    "value",
    [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer " + "A" * (1024 * 1024),
        b"Bearer \xff\xfe",
        "Bearer \x01abc",
    ],
    ids=["bare", "bare-space", "two-tokens", "1MB", "non-ascii", "control"],
)
async def test_malformed_bearer_credentials(verifier, value):
    response = await call(
        BearerAuthMiddleware(starlette_app(), verifier), headers=[("Authorization", value)]
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_two_authorization_headers_are_refused(verifier, minter):
    token = minter.token()
    response = await call(
        BearerAuthMiddleware(starlette_app(), verifier),
        headers=[("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")],
    )
    assert response.status_code == 401
    assert "more than one" in response.json()["error_description"]


async def test_insufficient_scope_is_403(verifier, minter):
    app = BearerAuthMiddleware(starlette_app(), verifier, required_scopes=["admin", "read"])
    response = await call(app, headers={"Authorization": f"Bearer {minter.token()}"})
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", error_description="missing scope: admin", '
        'scope="admin read"'
    )
    assert response.json() == {
        "error": "insufficient_scope",
        "error_description": "missing scope: admin",
    }
    ok = await call(app, headers={"Authorization": f"Bearer {minter.token(scope='read admin')}"})
    assert ok.status_code == 200


async def test_expired_token_challenge(verifier, minter, clock):
    token = minter.token()
    clock.advance(330)
    response = await call(
        BearerAuthMiddleware(starlette_app(), verifier, realm="api"),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer realm="api", error="invalid_token", error_description="the token has expired"'
    )


@pytest.mark.parametrize("paths", [["/api"], ["/api/"], lambda p: p.startswith("/api/")])
async def test_paths_select_what_is_guarded(verifier, paths):
    app = BearerAuthMiddleware(starlette_app(), verifier, paths=paths)
    assert (await call(app, "/api/me")).status_code == 401
    public = await call(app, "/public")
    assert public.status_code == 200
    assert public.text == "public False"
    assert (await call(app, "/apix")).status_code == 200  # a prefix is a path segment


async def test_lifespan_passes_through(verifier):
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await BearerAuthMiddleware(app, verifier)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


async def test_websocket_is_guarded(verifier, minter):
    """No websocket library is installed for uvicorn here, so drive the ASGI calls directly."""
    reached: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["freshtoken.claims"].sub)

    async def run(headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "websocket", "path": "/api/ws", "headers": headers}
        await BearerAuthMiddleware(app, verifier)(scope, None, send)  # type: ignore[arg-type]
        return sent

    assert await run([]) == [{"type": "websocket.close", "code": 1008}]
    assert await run([(b"authorization", b"Bearer garbage")]) == [
        {"type": "websocket.close", "code": 1008}
    ]
    assert reached == []
    assert await run([(b"authorization", f"Bearer {minter.token()}".encode())]) == []
    assert reached == ["user-1"]


async def test_keys_unavailable_is_503_not_401(clock, minter):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    verifier = Verifier(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=f"http://127.0.0.1:{port}/jwks", clock=clock
    )
    response = await call(
        BearerAuthMiddleware(starlette_app(), verifier),
        headers={"Authorization": f"Bearer {minter.token()}"},
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "temporarily_unavailable"


async def test_unexpected_verifier_bug_is_401_not_500(verifier, minter, monkeypatch):
    async def boom(token: str, **kw: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(verifier, "averify", boom)
    response = await call(
        BearerAuthMiddleware(starlette_app(), verifier),
        headers={"Authorization": f"Bearer {minter.token()}"},
    )
    assert response.status_code == 401


def test_real_uvicorn_never_answers_500_for_a_huge_header(verifier, serve_app):
    server = serve_app(BearerAuthMiddleware(starlette_app(), verifier))
    with httpx2.Client(base_url=server.url, timeout=5) as client:
        for value in ["Bearer " + "A" * (1024 * 1024), "Bearer " + "A" * 9000]:
            try:
                response = client.get("/api/me", headers={"Authorization": value})
            except httpx2.TransportError:
                continue  # h11 may just drop an oversized request: fine, never a 500
            assert 400 <= response.status_code < 500
        assert client.get("/api/me").status_code == 401  # and the server is still up


# --- the header pieces ---------------------------------------------------------------


def test_challenge_never_echoes_injection():
    evil = 'x", error="none\\"\r\nSet-Cookie: a=b\x00' + "é" * 10 + "y" * 500
    value = challenge("invalid_token", evil)
    assert value.startswith('Bearer error="invalid_token", error_description="x, error=none')
    assert "\r" not in value and "\n" not in value and "\\" not in value
    assert value.count('"') == 4
    assert value.isascii()
    assert len(value) < 300


def test_parse_bearer():
    assert parse_bearer(None) is None
    assert parse_bearer("") is None
    assert parse_bearer("Basic abc") is None
    assert parse_bearer("Bearer abc") == "abc"
    assert parse_bearer(b"bearer \t abc ") == "abc"
    for bad in ["Bearer", "Bearer a b", b"Bearer \x80", "Bearer " + "a" * 20000]:
        with pytest.raises(InvalidToken) as info:
            parse_bearer(bad)
        assert info.value.code == "malformed"
