"""The OAuth routes over real HTTP: /oauth/token, /oauth/revoke, /oauth/introspect,
discovery and the demo API."""

from __future__ import annotations

import base64

import httpx
import jwt
import pytest

from freshtoken.testing import FakeClock, LiveServer

from .helpers import (
    PASSWORD,
    assert_oauth_error,
    audit_rows,
    claims_of,
    live_tokens,
    password_grant,
    refresh_grant,
)


def basic(client_id: str, secret: str) -> dict[str, str]:
    value = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


def assert_token_answer(response: httpx.Response, *, refresh: bool = True) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert isinstance(body["scope"], str)
    assert body["access_token"].count(".") == 2
    assert ("refresh_token" in body) is refresh
    return body


def test_password_grant(http: httpx.Client, live: LiveServer) -> None:
    body = assert_token_answer(password_grant(http))
    assert body["refresh_token"].startswith("ftr_")
    assert body["scope"] == "openid profile read write"
    assert claims_of(body["access_token"])["iss"] == live.url
    narrowed = assert_token_answer(password_grant(http, scope="read"))
    assert narrowed["scope"] == "read"


def test_password_grant_errors(http: httpx.Client, live: LiveServer) -> None:
    assert_oauth_error(password_grant(http, password="nope"), 400, "invalid_grant")
    assert_oauth_error(password_grant(http, username="nobody"), 400, "invalid_grant")
    assert_oauth_error(password_grant(http, scope="admin"), 400, "invalid_scope")
    assert_oauth_error(password_grant(http, client_id="ghost"), 401, "invalid_client")
    live.create_client("machine", secret="s3cret", grant_types=("client_credentials",))
    response = http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers=basic("machine", "s3cret"),
    )
    assert_oauth_error(response, 400, "unauthorized_client")
    response = http.post("/oauth/token", data={"grant_type": "implicit", "client_id": "default"})
    assert_oauth_error(response, 400, "unsupported_grant_type")
    response = http.post("/oauth/token", data={"grant_type": "password", "client_id": "default"})
    body = assert_oauth_error(response, 400, "invalid_request")
    assert "username" in body["error_description"]
    # Error answers are not cacheable either.
    assert response.headers["cache-control"] == "no-store"


def test_refresh_grant_rotation_grace_and_reuse(
    http: httpx.Client, live: LiveServer, clock: FakeClock
) -> None:
    first = password_grant(http).json()
    second = assert_token_answer(refresh_grant(http, first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    clock.advance(2)
    retry = assert_token_answer(refresh_grant(http, first["refresh_token"]))
    assert retry["refresh_token"] == second["refresh_token"]  # grace: same successor
    assert live.stats["refresh_rotated"] == 1 and live.stats["refresh_grace"] == 1
    clock.advance(10)
    body = assert_oauth_error(refresh_grant(http, first["refresh_token"]), 400, "invalid_grant")
    assert "already used" in body["error_description"]
    assert_oauth_error(refresh_grant(http, second["refresh_token"]), 400, "invalid_grant")
    assert live.stats["refresh_reuse"] == 1
    assert len(audit_rows(live.service.db, "refresh_token_reuse_detected")) == 1


def test_refresh_grant_scope_rules(http: httpx.Client) -> None:
    first = password_grant(http, scope="read write").json()
    narrowed = assert_token_answer(refresh_grant(http, first["refresh_token"], scope="read"))
    assert narrowed["scope"] == "read"
    widened = refresh_grant(http, narrowed["refresh_token"], scope="read write admin")
    assert_oauth_error(widened, 400, "invalid_scope")


def test_refresh_grant_with_a_confidential_client(http: httpx.Client, live: LiveServer) -> None:
    live.create_client("web", secret="web-secret")
    login = http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers=basic("web", "web-secret"),
    ).json()
    # client_secret_post works as well as Basic.
    rotated = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": login["refresh_token"],
            "client_id": "web",
            "client_secret": "web-secret",
        },
    )
    assert_token_answer(rotated)
    # Another client cannot use it.
    other = refresh_grant(http, rotated.json()["refresh_token"])
    assert_oauth_error(other, 400, "invalid_grant")
    # A wrong secret: 401, with a Basic challenge only when Basic was used.
    bad_basic = http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": rotated.json()["refresh_token"]},
        headers=basic("web", "wrong"),
    )
    assert_oauth_error(bad_basic, 401, "invalid_client")
    assert bad_basic.headers["www-authenticate"].startswith("Basic")
    bad_post = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": rotated.json()["refresh_token"],
            "client_id": "web",
            "client_secret": "wrong",
        },
    )
    assert_oauth_error(bad_post, 401, "invalid_client")
    assert "www-authenticate" not in bad_post.headers


def test_client_credentials_grant(http: httpx.Client, live: LiveServer) -> None:
    live.create_client("machine", secret="s3cret", grant_types=("client_credentials",))
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        headers=basic("machine", "s3cret"),
    )
    body = assert_token_answer(response, refresh=False)
    claims = claims_of(body["access_token"])
    assert claims["sub"] == "machine" and "sid" not in claims and claims["scope"] == "read"
    post = http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "machine",
            "client_secret": "s3cret",
        },
    )
    assert_token_answer(post, refresh=False)
    public = http.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": "default"}
    )
    assert_oauth_error(public, 400, "unauthorized_client")
    anonymous = http.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert_oauth_error(anonymous, 401, "invalid_client")


def test_revoke_refresh_token_ends_the_session(http: httpx.Client, live: LiveServer) -> None:
    login = password_grant(http).json()
    sid = claims_of(login["access_token"])["sid"]
    response = http.post(
        "/oauth/revoke",
        data={
            "token": login["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": "default",
        },
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert live_tokens(live.service.db, sid) == []
    assert_oauth_error(refresh_grant(http, login["refresh_token"]), 400, "invalid_grant")
    assert len(audit_rows(live.service.db, "session_revoked")) == 1


def test_revoke_access_token_and_unknown_tokens(http: httpx.Client, live: LiveServer) -> None:
    login = password_grant(http).json()
    for token in ("ftr_" + "x" * 43, "garbage", "a.b.c"):
        response = http.post("/oauth/revoke", data={"token": token, "client_id": "default"})
        assert response.status_code == 200, token
    assert len(live_tokens(live.service.db, claims_of(login["access_token"])["sid"])) == 1
    response = http.post(
        "/oauth/revoke", data={"token": login["access_token"], "client_id": "default"}
    )
    assert response.status_code == 200
    assert_oauth_error(refresh_grant(http, login["refresh_token"]), 400, "invalid_grant")
    bad_hint = http.post(
        "/oauth/revoke", data={"token": "x", "token_type_hint": "id_token", "client_id": "default"}
    )
    assert_oauth_error(bad_hint, 400, "unsupported_token_type")
    assert_oauth_error(http.post("/oauth/revoke", data={"token": "x"}), 401, "invalid_client")
    assert_oauth_error(
        http.post("/oauth/revoke", data={"client_id": "default"}), 400, "invalid_request"
    )


def test_introspection(http: httpx.Client, live: LiveServer) -> None:
    live.create_client("rs", secret="rs-secret", grant_types=("client_credentials",))
    rs = basic("rs", "rs-secret")
    login = password_grant(http).json()

    def introspect(token: str, headers: dict[str, str] | None = rs, **form: str) -> httpx.Response:
        return http.post("/oauth/introspect", data={"token": token, **form}, headers=headers)

    access = introspect(login["access_token"]).json()
    assert access["active"] is True and access["token_type"] == "access_token"
    assert access["sub"] == claims_of(login["access_token"])["sub"]
    assert {"scope", "client_id", "exp", "iat", "iss", "aud", "jti", "sid"} <= set(access)
    refresh = introspect(login["refresh_token"]).json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    post_auth = introspect(login["access_token"], None, client_id="rs", client_secret="rs-secret")
    assert post_auth.json()["active"] is True
    assert introspect("garbage").json() == {"active": False}

    # Public clients and anonymous callers may not introspect.
    assert_oauth_error(
        introspect(login["access_token"], None, client_id="default"), 401, "invalid_client"
    )
    assert_oauth_error(introspect(login["access_token"], None), 401, "invalid_client")
    assert_oauth_error(introspect(login["access_token"], basic("rs", "bad")), 401, "invalid_client")

    http.post("/oauth/revoke", data={"token": login["refresh_token"], "client_id": "default"})
    assert introspect(login["access_token"]).json() == {"active": False}
    assert introspect(login["refresh_token"]).json() == {"active": False}


def test_jwks_and_metadata(http: httpx.Client, live: LiveServer) -> None:
    jwks = http.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    (key,) = jwks.json()["keys"]
    assert key["use"] == "sig" and key["alg"] == "ES256" and key["kty"] == "EC"
    assert "d" not in key
    assert key["kid"] == live.service.keyring.current().kid
    meta = http.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == live.url
    assert meta["token_endpoint"] == live.token_url
    assert meta["jwks_uri"] == live.url + "/.well-known/jwks.json"
    assert meta["revocation_endpoint"] == live.url + "/oauth/revoke"
    assert meta["introspection_endpoint"] == live.url + "/oauth/introspect"
    assert set(meta["grant_types_supported"]) == {"password", "refresh_token", "client_credentials"}
    # The published key verifies what the server signs.
    token = password_grant(http).json()["access_token"]
    public = jwt.PyJWK.from_dict(key).key
    claims = jwt.decode(
        token,
        public,
        algorithms=["ES256"],
        audience="freshtoken-api",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == live.url


def test_key_rotation_is_published(http: httpx.Client, live: LiveServer, clock: FakeClock) -> None:
    old_kid = live.service.keyring.current().kid
    new_kid = live.service.rotate_signing_key()
    kids = {k["kid"] for k in http.get("/.well-known/jwks.json").json()["keys"]}
    assert kids == {old_kid, new_kid}
    clock.advance(live.settings.key_activation_delay)
    token = password_grant(http).json()["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    assert {k["kid"] for k in http.get("/.well-known/jwks.json").json()["keys"]} == kids


def test_api_me(http: httpx.Client, live: LiveServer, clock: FakeClock) -> None:
    missing = http.get("/api/me")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "error" in missing.json()
    bad = http.get("/api/me", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    login = password_grant(http).json()
    good = http.get("/api/me", headers={"Authorization": f"Bearer {login['access_token']}"})
    assert good.status_code == 200
    me = good.json()
    assert me["sub"] == claims_of(login["access_token"])["sub"]
    assert me["client_id"] == "default" and me["sid"]
    refresh_as_bearer = http.get(
        "/api/me", headers={"Authorization": f"Bearer {login['refresh_token']}"}
    )
    assert refresh_as_bearer.status_code == 401
    clock.advance(300 + live.settings.leeway)  # verifiers allow the leeway for clock skew
    expired = http.get("/api/me", headers={"Authorization": f"Bearer {login['access_token']}"})
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 200
    assert response.json()["status"] in ("ok", "ready")


def test_metrics_counters_move(http: httpx.Client) -> None:
    def value(text: str, line_start: str) -> float:
        for line in text.splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = http.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    login = password_grant(http).json()
    refresh_grant(http, login["refresh_token"])
    refresh_grant(http, login["refresh_token"])  # grace
    password_grant(http, password="wrong")
    text = http.get("/metrics").text
    assert (
        value(text, 'freshtoken_token_requests_total{grant_type="password",outcome="login"}') == 1
    )
    assert (
        value(
            text, 'freshtoken_token_requests_total{grant_type="password",outcome="invalid_grant"}'
        )
        == 1
    )
    assert (
        value(
            text,
            'freshtoken_token_requests_total{grant_type="refresh_token",outcome="refresh_rotated"}',
        )
        == 1
    )
    assert (
        value(
            text,
            'freshtoken_token_requests_total{grant_type="refresh_token",outcome="refresh_grace"}',
        )
        == 1
    )
    assert value(text, 'freshtoken_token_request_seconds_count{grant_type="refresh_token"}') == 2


def test_reuse_metric_counts_both_apis(http: httpx.Client, clock: FakeClock) -> None:
    one = password_grant(http).json()["refresh_token"]
    two = http.post("/auth/login", json={"username": "alice", "password": PASSWORD}).json()
    refresh_grant(http, one)
    http.post("/auth/refresh", json={"refresh_token": two["refresh_token"]})
    clock.advance(60)
    assert refresh_grant(http, one).status_code == 400
    replay = http.post("/auth/refresh", json={"refresh_token": two["refresh_token"]})
    assert replay.status_code == 400
    assert "freshtoken_refresh_reuse_detected_total 2.0" in http.get("/metrics").text
