"""Interoperability with independent libraries: Authlib as an OAuth 2.0 client,
joserfc as a JWT verifier against the published JWKS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt as jose_jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from freshtoken.testing import FakeClock, LiveServer

from .helpers import FAST_PASSWORDS, PASSWORD, USERNAME


@pytest.fixture
def now_clock() -> FakeClock:
    """A FakeClock at the real time: third-party libraries check exp against time.time()."""
    return FakeClock(time.time())


def test_authlib_password_grant_and_auto_refresh(now_clock: FakeClock) -> None:
    settings = {**FAST_PASSWORDS, "access_token_ttl": 60}
    with LiveServer(clock=now_clock, settings=settings) as srv:
        srv.create_user(USERNAME, PASSWORD)
        saved: list[dict[str, Any]] = []

        def update_token(token: dict[str, Any], refresh_token: str | None = None, **_: Any) -> None:
            saved.append({"token": dict(token), "old_refresh_token": refresh_token})

        with OAuth2Session(
            client_id="default",
            token_endpoint_auth_method="none",
            leeway=10,  # Authlib refreshes this long before expires_at (default 60 s)
            scope="openid read",
            token_endpoint=srv.token_url,
            update_token=update_token,
        ) as session:
            token = session.fetch_token(srv.token_url, username=USERNAME, password=PASSWORD)
            assert token["token_type"] == "Bearer" and token["scope"] == "openid read"
            first_refresh = token["refresh_token"]
            me = session.get(srv.url + "/api/me")
            assert me.status_code == 200 and me.json()["scope"] == "openid read"

            for round_ in (1, 2):
                old_access = session.token["access_token"]
                # The access token expires on the server...
                now_clock.advance(60 + srv.settings.leeway + 1)
                stale = httpx.get(
                    srv.url + "/api/me", headers={"Authorization": f"Bearer {old_access}"}
                )
                assert stale.status_code == 401
                # ...and the client sees it expired: its auto-refresh has to fire.
                session.token["expires_at"] = int(time.time()) - 1
                me = session.get(srv.url + "/api/me")
                assert me.status_code == 200, me.text
                assert session.token["access_token"] != old_access
                assert len(saved) == round_
                assert srv.stats["refresh_rotated"] == round_

            # Each refresh rotated: the client holds the newest token, the first one is spent.
            assert saved[0]["old_refresh_token"] == first_refresh
            assert saved[1]["old_refresh_token"] == saved[0]["token"]["refresh_token"]
            assert session.token["refresh_token"] == saved[1]["token"]["refresh_token"]
            assert session.token["refresh_token"] != first_refresh
            assert srv.stats["refresh_reuse"] == 0


@pytest.fixture(params=["ES256", "RS256", "Ed25519"])
def alg_server(request: pytest.FixtureRequest, now_clock: FakeClock) -> Iterator[LiveServer]:
    settings = {**FAST_PASSWORDS, "signing_alg": request.param}
    with LiveServer(clock=now_clock, settings=settings) as srv:
        srv.create_user(USERNAME, PASSWORD)
        yield srv


def test_joserfc_verifies_access_tokens_against_the_jwks(alg_server: LiveServer) -> None:
    alg = alg_server.settings.signing_alg
    jwks = httpx.get(alg_server.url + "/.well-known/jwks.json").json()
    keys = KeySet.import_key_set(jwks)
    access_token = alg_server.login(USERNAME, PASSWORD)["access_token"]

    token = jose_jwt.decode(access_token, keys, algorithms=[alg])
    assert token.header["typ"] == "at+jwt"
    assert token.header["alg"] == alg
    assert token.header["kid"] == jwks["keys"][0]["kid"]
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": alg_server.url},
        aud={"essential": True, "value": "freshtoken-api"},
        exp={"essential": True},
        sub={"essential": True},
        jti={"essential": True},
    )
    registry.validate(token.claims)
    assert token.claims["client_id"] == "default" and token.claims["sid"]

    head, body, sig = access_token.split(".")
    forged = f"{head}.{body}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
    with pytest.raises(BadSignatureError):
        jose_jwt.decode(forged, keys, algorithms=[alg])
