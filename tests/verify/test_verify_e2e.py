"""End to end: tokens issued by a real freshtoken server (LiveServer) verified over HTTP."""

from __future__ import annotations

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from freshtoken.errors import InvalidToken
from freshtoken.verify import BearerAuthMiddleware, IntrospectionChecker, Verifier

try:
    from freshtoken.testing import LiveServer
except ImportError:  # pragma: no cover - the lead's server is not there yet
    LiveServer = None


pytestmark = pytest.mark.skipif(LiveServer is None, reason="freshtoken.testing.LiveServer missing")


@pytest.fixture(scope="module")
def srv():
    with LiveServer() as server:
        server.create_user("alice", "correct horse battery")
        server.create_client(
            "rs", secret="s3cret", grant_types=("client_credentials",), scope="read"
        )
        yield server


def password_login(srv) -> dict:
    response = httpx2.post(
        srv.token_url,
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "correct horse battery",
            "client_id": "default",
            "scope": "read",
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_server_tokens_verify_with_discovery_and_introspection(srv):
    answer = password_login(srv)
    access = answer["access_token"]
    verifier = Verifier.from_issuer(srv.url, audience=srv.settings.audience)
    claims = verifier.verify(access, required_scopes={"read"})
    assert claims.iss == srv.url
    assert claims.client_id == "default"
    assert claims.sid
    assert (await verifier.averify(access)).sub == claims.sub

    checker = IntrospectionChecker.for_issuer(srv.url, client_id="rs", client_secret="s3cret")
    online = Verifier.from_issuer(srv.url, audience=srv.settings.audience, introspection=checker)
    assert online.verify(access).sub == claims.sub
    answer_json = checker.check(access)
    assert answer_json is not None and answer_json["active"] is True

    # Revoke the session (logout with the refresh token): introspection notices.
    logout = httpx2.post(
        srv.url + "/auth/logout",
        json={"refresh_token": answer["refresh_token"], "client_id": "default"},
    )
    assert logout.status_code == 200
    fresh = IntrospectionChecker.for_issuer(srv.url, client_id="rs", client_secret="s3cret")
    revoked = Verifier.from_issuer(srv.url, audience=srv.settings.audience, introspection=fresh)
    with pytest.raises(InvalidToken) as info:
        await revoked.averify(access)
    assert info.value.code == "inactive"
    assert verifier.verify(access).sub == claims.sub  # offline verification cannot know
    checker.close()
    fresh.close()


async def test_client_credentials_token_and_middleware(srv):
    response = httpx2.post(
        srv.token_url,
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=("rs", "s3cret"),
    )
    assert response.status_code == 200, response.text
    access = response.json()["access_token"]

    async def me(request: Request) -> JSONResponse:
        claims = request.state.claims
        return JSONResponse({"sub": claims.sub, "sid": claims.sid})

    verifier = Verifier.from_issuer(srv.url, audience=srv.settings.audience)
    app = BearerAuthMiddleware(Starlette(routes=[Route("/me", me)]), verifier)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://rs") as client:
        ok = await client.get("/me", headers={"Authorization": f"Bearer {access}"})
        assert ok.status_code == 200
        assert ok.json()["sid"] is None
        bad = await client.get("/me", headers={"Authorization": f"Bearer {access[:-2]}xx"})
        assert bad.status_code == 401


def test_in_process_key_ring_loader(srv):
    """The wiring the server's own /api/me uses: keys from the key ring, no HTTP."""
    service = srv.service
    verifier = Verifier(
        issuer=srv.settings.issuer,
        audience=srv.settings.audience,
        keys=lambda: service.keyring.jwks(service.clock.now()),
        clock=service.clock,
    )
    assert verifier.verify(srv.login("alice", "correct horse battery")["access_token"]).sub
