"""Optional RFC 7662 introspection: revocation noticed within the short cache TTL."""

from __future__ import annotations

import base64

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from verify_helpers import AUDIENCE, ISSUER

from freshtoken.errors import InvalidToken
from freshtoken.verify import (
    BearerAuthMiddleware,
    IntrospectionChecker,
    IntrospectionUnavailable,
    Verifier,
)


def make(auth_server, clock, jwks, **kw) -> tuple[Verifier, IntrospectionChecker]:
    checker = IntrospectionChecker(
        auth_server.url + "/oauth/introspect",
        client_id="rs",
        client_secret="s3cr:et/+",
        ttl=5,
        clock=clock,
        **kw,
    )
    verifier = Verifier(
        issuer=ISSUER, audience=AUDIENCE, keys=jwks, clock=clock, introspection=checker
    )
    return verifier, checker


async def test_revocation_is_noticed_after_the_short_cache(auth_server, clock, jwks, minter):
    verifier, checker = make(auth_server, clock, jwks)
    token = minter.token()
    assert verifier.verify(token).sub == "user-1"
    assert (await verifier.averify(token)).sub == "user-1"
    assert auth_server.hits["/oauth/introspect"] == 1  # the second call was a cache hit
    auth_server.revoked.add(token)
    clock.advance(4)
    assert verifier.verify(token).sub == "user-1"  # still cached
    clock.advance(2)
    with pytest.raises(InvalidToken) as info:
        await verifier.averify(token)
    assert info.value.code == "inactive"
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert auth_server.hits["/oauth/introspect"] == 2
    assert checker.requests == 2


def test_client_secret_basic_is_form_encoded(auth_server, clock, jwks, minter):
    verifier, _ = make(auth_server, clock, jwks)
    verifier.verify(minter.token())
    scheme, _, value = auth_server.introspect_auth[0].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == "rs:s3cr%3Aet%2F%2B"  # RFC 6749 §2.3.1


def test_forged_tokens_never_reach_the_network(auth_server, clock, jwks, minter):
    verifier, _ = make(auth_server, clock, jwks)
    with pytest.raises(InvalidToken):
        verifier.verify(minter.token()[:-3] + "AAA")
    assert auth_server.hits["/oauth/introspect"] == 0


async def test_endpoint_down_fails_closed_by_default(auth_server, clock, jwks, minter):
    auth_server.status = 500
    verifier, _ = make(auth_server, clock, jwks)
    with pytest.raises(IntrospectionUnavailable):
        verifier.verify(minter.token())

    app = BearerAuthMiddleware(Starlette(routes=[]), verifier)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://rs") as client:
        response = await client.get("/x", headers={"Authorization": f"Bearer {minter.token()}"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


def test_fail_open_accepts_when_endpoint_is_down(auth_server, clock, jwks, minter):
    auth_server.status = 500
    verifier, _ = make(auth_server, clock, jwks, fail_open=True)
    assert verifier.verify(minter.token()).sub == "user-1"


async def test_client_secret_post(serve_app, clock, jwks, minter):
    seen = []

    async def introspect(request: Request) -> JSONResponse:
        form = await request.form()
        seen.append((form.get("client_id"), form.get("client_secret"), form.get("token")))
        return JSONResponse({"active": True})

    server = serve_app(Starlette(routes=[Route("/i", introspect, methods=["POST"])]))
    checker = IntrospectionChecker(
        server.url + "/i",
        client_id="rs",
        client_secret="pw",
        clock=clock,
        auth_method="client_secret_post",
    )
    token = minter.token()
    assert (await checker.acheck(token))["active"] is True
    assert seen == [("rs", "pw", token)]
