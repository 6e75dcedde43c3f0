"""The FastAPI dependency, and the ten-line example from docs/verifier.md."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import pytest
from fastapi import Depends, FastAPI
from verify_helpers import AUDIENCE, ISSUER

from freshtoken.verify import AccessTokenClaims, BearerAuthMiddleware, Verifier, require_scopes

DOCS = Path(__file__).resolve().parents[2] / "docs" / "verifier.md"


@pytest.fixture
def verifier(clock, jwks) -> Verifier:
    return Verifier(issuer=ISSUER, audience=AUDIENCE, keys=jwks, clock=clock)


def fastapi_app(verifier: Verifier) -> FastAPI:
    app = FastAPI()

    @app.get("/notes")
    async def notes(claims: AccessTokenClaims = Depends(require_scopes("read", verifier=verifier))):
        return {"sub": claims.sub}

    @app.get("/admin")
    def admin(claims: AccessTokenClaims = Depends(require_scopes("admin", verifier=verifier))):
        return {"sub": claims.sub}

    return app


async def get(app, path, token=None, raw=None):
    headers = (
        {"Authorization": raw if raw is not None else f"Bearer {token}"} if token or raw else {}
    )
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://rs") as client:
        return await client.get(path, headers=headers)


async def test_dependency_accepts_and_refuses(verifier, minter):
    app = fastapi_app(verifier)
    ok = await get(app, "/notes", minter.token())
    assert ok.status_code == 200
    assert ok.json() == {"sub": "user-1"}

    missing = await get(app, "/notes")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"

    basic = await get(app, "/notes", raw="Basic dXNlcjpwYXNz")
    assert basic.status_code == 401
    assert basic.headers["www-authenticate"] == "Bearer"

    bad = await get(app, "/notes", "not.a.token")
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert bad.json()["detail"]["error"] == "invalid_token"

    forbidden = await get(app, "/admin", minter.token())
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]
    assert 'scope="admin"' in forbidden.headers["www-authenticate"]
    assert (await get(app, "/admin", minter.token(scope="admin"))).status_code == 200


async def test_dependency_reuses_middleware_claims(verifier, minter):
    app = fastapi_app(verifier)
    calls = []
    original = verifier.averify

    async def counting(token, **kw):
        calls.append(token)
        return await original(token, **kw)

    verifier.averify = counting  # type: ignore[method-assign]
    wrapped = BearerAuthMiddleware(app, verifier, paths=["/notes", "/admin"])
    assert (await get(wrapped, "/notes", minter.token())).status_code == 200
    assert len(calls) == 1  # the dependency did not verify a second time
    assert (await get(wrapped, "/admin", minter.token())).status_code == 403


async def test_dependency_uses_app_state_verifier(verifier, minter):
    app = FastAPI()
    app.state.freshtoken_verifier = verifier

    @app.get("/me")
    async def me(claims: AccessTokenClaims = Depends(require_scopes())):
        return {"client": claims.client_id}

    assert (await get(app, "/me", minter.token())).json() == {"client": "default"}


def test_openapi_shows_bearer_security(verifier):
    schema = fastapi_app(verifier).openapi()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


async def test_documented_example_runs(jwks, minter, clock, monkeypatch):
    """The ten-line FastAPI example in docs/verifier.md, executed as written."""
    text = DOCS.read_text()
    match = re.search(r"<!-- example:fastapi -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/verifier.md lost its FastAPI example"
    code = match.group(1)
    assert len(code.strip().splitlines()) <= 10
    namespace: dict = {}
    exec(compile(code, str(DOCS), "exec"), namespace)
    app = namespace["app"]
    documented: Verifier = namespace["verifier"]
    # Point the documented verifier at test keys and time instead of the network.
    test_verifier = Verifier(
        issuer=documented.issuer, audience=documented.audiences, keys=jwks, clock=clock
    )
    for name in ("keys", "clock"):
        monkeypatch.setattr(documented, name, getattr(test_verifier, name))
    token = minter.token(
        iss=documented.issuer, aud=sorted(documented.audiences)[0], scope="notes:read"
    )
    response = await get(app, "/notes", token)
    assert response.status_code == 200, response.text
    assert response.json() == {"user": "user-1"}
    assert (await get(app, "/notes", minter.token(iss=documented.issuer))).status_code in (401, 403)
