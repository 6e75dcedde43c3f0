"""The other grants and rules of TokenService: login, client credentials, revocation,
introspection, users and clients (SQLite and PostgreSQL)."""

from __future__ import annotations

import hmac

import pytest
from sqlalchemy import select, update

from freshtoken.server import passwords as passwords_module
from freshtoken.server.app import build_service
from freshtoken.server.exceptions import OAuthError
from freshtoken.server.passwords import Passwords, hash_client_secret, verify_client_secret
from freshtoken.server.service import TokenService
from freshtoken.server.settings import Settings
from freshtoken.server.storage.tables import sessions, users
from freshtoken.testing import FakeClock

from .helpers import PASSWORD, USERNAME, audit_rows, claims_of, live_tokens, make_settings


def oauth_error(fn, *args, **kwargs) -> OAuthError:
    with pytest.raises(OAuthError) as info:
        fn(*args, **kwargs)
    return info.value


def test_documented_defaults() -> None:
    settings = Settings(_env_file=None)
    assert settings.access_token_ttl == 300
    assert settings.refresh_grace_seconds == 10
    assert settings.refresh_idle_ttl == 7 * 86_400
    assert settings.session_max_ttl == 30 * 86_400
    assert settings.signing_alg == "ES256"
    assert settings.ratelimit_storage_url == "memory://"


def test_login_creates_a_session_with_both_lifetimes(
    service: TokenService, clock: FakeClock
) -> None:
    issued = service.login(username=USERNAME, password=PASSWORD)
    now = clock.now()
    assert issued.expires_in == 300
    assert issued.scope == "openid profile read write"
    assert issued.session_expires_at == now + 30 * 86_400
    claims = claims_of(issued.access_token)
    assert claims["exp"] - claims["iat"] == 300
    assert claims["sid"] == issued.session_id
    assert claims["client_id"] == "default"
    with service.db.engine.connect() as conn:
        session = conn.execute(select(sessions).where(sessions.c.id == issued.session_id)).one()
    assert session.absolute_expires_at == now + 30 * 86_400
    assert session.client_id == "default"
    (token,) = live_tokens(service.db, issued.session_id or "")
    assert token.expires_at == now + 7 * 86_400  # idle lifetime
    assert token.parent_id is None
    rows = audit_rows(service.db, "login_succeeded")
    assert len(rows) == 1 and rows[0].session_id == issued.session_id


def test_access_token_lifetime_is_configurable(tmp_path, clock: FakeClock) -> None:
    svc = build_service(make_settings(f"sqlite:///{tmp_path}/a.db", access_token_ttl=42), clock)
    try:
        svc.bootstrap()
        svc.create_user(USERNAME, PASSWORD)
        issued = svc.login(username=USERNAME, password=PASSWORD)
        assert issued.expires_in == 42
        claims = claims_of(issued.access_token)
        assert claims["exp"] - claims["iat"] == 42
        assert svc.decode_access_token(issued.access_token) is not None
        clock.advance(42)
        assert svc.decode_access_token(issued.access_token) is None
    finally:
        svc.db.close()


@pytest.mark.parametrize(("username", "password"), [(USERNAME, "wrong"), ("nobody", PASSWORD)])
def test_bad_credentials_are_invalid_grant_and_audited(
    service: TokenService, username: str, password: str
) -> None:
    exc = oauth_error(service.login, username=username, password=password)
    assert exc.error == "invalid_grant"
    assert exc.description == "invalid username or password"  # same for both cases
    assert len(audit_rows(service.db, "login_failed")) == 1


def test_disabled_user_cannot_log_in(service: TokenService) -> None:
    with service.db.transaction() as conn:
        conn.execute(update(users).where(users.c.username == USERNAME).values(disabled=True))
    assert oauth_error(service.login, username=USERNAME, password=PASSWORD).error == "invalid_grant"


def test_passwords_are_argon2id(service: TokenService) -> None:
    with service.db.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert Passwords().hash("x").startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_set_password_and_remove_user(service: TokenService) -> None:
    issued = service.login(username=USERNAME, password=PASSWORD)
    assert service.set_password(USERNAME, "new password") is True
    assert oauth_error(service.login, username=USERNAME, password=PASSWORD).error == (
        "invalid_grant"
    )
    assert service.login(username=USERNAME, password="new password").refresh_token
    assert service.set_password("nobody", "x") is False
    assert service.remove_user(USERNAME) is True
    assert service.remove_user(USERNAME) is False
    assert live_tokens(service.db, issued.session_id or "") == []
    exc = oauth_error(service.refresh, refresh_token=issued.refresh_token or "")
    assert exc.error == "invalid_grant"


def test_create_user_validation(service: TokenService) -> None:
    assert oauth_error(service.create_user, USERNAME, "pw").error == "user_exists"
    assert oauth_error(service.create_user, "bob", "").error == "invalid_request"
    assert oauth_error(service.create_user, "  ", "pw").error == "invalid_request"
    assert oauth_error(service.create_user, "x" * 256, "pw").error == "invalid_request"


def test_client_rules_on_login(service: TokenService) -> None:
    service.create_client("machine", secret="s3cret", grant_types=("client_credentials",))
    service.create_client("conf", secret="s3cret", scope="read")
    cases = [
        ({"client_id": "nope"}, "invalid_client"),
        ({"client_id": None}, "invalid_client"),
        ({"client_id": "machine", "client_secret": "s3cret"}, "unauthorized_client"),
        ({"client_id": "conf", "client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "conf"}, "invalid_client"),
        ({"client_id": "default", "client_secret": "x"}, "invalid_client"),
        ({"client_id": "conf", "client_secret": "s3cret", "scope": "write"}, "invalid_scope"),
        ({"scope": "read admin"}, "invalid_scope"),
    ]
    for kwargs, error in cases:
        exc = oauth_error(service.login, username=USERNAME, password=PASSWORD, **kwargs)
        assert exc.error == error, kwargs
        assert exc.status_code == (401 if error == "invalid_client" else 400)
    ok = service.login(
        username=USERNAME, password=PASSWORD, client_id="conf", client_secret="s3cret"
    )
    assert ok.scope == "read"
    assert claims_of(ok.access_token)["client_id"] == "conf"


def test_client_credentials(service: TokenService) -> None:
    service.create_client(
        "machine", secret="s3cret", grant_types=("client_credentials",), scope="read write"
    )
    issued = service.client_credentials(client_id="machine", client_secret="s3cret", scope="read")
    assert issued.refresh_token is None
    assert issued.scope == "read"
    claims = claims_of(issued.access_token)
    assert claims["sub"] == "machine" and claims["client_id"] == "machine"
    assert "sid" not in claims
    exc = oauth_error(service.client_credentials, client_id="default", client_secret=None)
    assert exc.error == "unauthorized_client"
    service.create_client("conf", secret="x")  # confidential, but not allowed this grant
    exc = oauth_error(service.client_credentials, client_id="conf", client_secret="x")
    assert exc.error == "unauthorized_client"
    exc = oauth_error(service.client_credentials, client_id="machine", client_secret="bad")
    assert exc.error == "invalid_client"


def test_create_client_validation(service: TokenService) -> None:
    assert oauth_error(service.create_client, "default").error == "client_exists"
    exc = oauth_error(service.create_client, "x", grant_types=("implicit",))
    assert exc.error == "invalid_request"
    exc = oauth_error(service.create_client, "x", grant_types=("client_credentials",))
    assert exc.error == "invalid_request"


def test_revoke_refresh_token_ends_the_session(service: TokenService) -> None:
    issued = service.login(username=USERNAME, password=PASSWORD)
    assert service.revoke(token=issued.refresh_token or "", client_id="default", client_secret=None)
    assert live_tokens(service.db, issued.session_id or "") == []
    assert oauth_error(service.refresh, refresh_token=issued.refresh_token or "").error == (
        "invalid_grant"
    )
    rows = audit_rows(service.db, "session_revoked")
    assert len(rows) == 1 and rows[0].session_id == issued.session_id


def test_revoke_access_token_ends_the_session(service: TokenService) -> None:
    issued = service.login(username=USERNAME, password=PASSWORD)
    assert service.revoke(token=issued.access_token, client_id="default", client_secret=None)
    assert live_tokens(service.db, issued.session_id or "") == []


def test_revoke_ignores_unknown_and_foreign_tokens(service: TokenService) -> None:
    service.create_client("other")
    issued = service.login(username=USERNAME, password=PASSWORD)
    for token in ("garbage", "ftr_" + "A" * 43, "eyJhbGciOiJub25lIn0.e30.", issued.refresh_token):
        assert not service.revoke(token=token or "", client_id="other", client_secret=None)
    assert len(live_tokens(service.db, issued.session_id or "")) == 1
    assert service.logout(refresh_token=issued.refresh_token or "") is True
    assert service.logout(refresh_token=issued.refresh_token or "") is False  # idempotent


def test_introspection(service: TokenService, clock: FakeClock) -> None:
    service.create_client("rs", secret="rs-secret", grant_types=("client_credentials",))
    issued = service.login(username=USERNAME, password=PASSWORD)

    def introspect(token: str) -> dict:
        return service.introspect(token=token, client_id="rs", client_secret="rs-secret")

    access = introspect(issued.access_token)
    assert access["active"] is True and access["token_type"] == "access_token"
    for claim in ("scope", "client_id", "sub", "exp", "iat", "iss", "aud", "jti", "sid"):
        assert claim in access
    refresh = introspect(issued.refresh_token or "")
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    assert refresh["sid"] == issued.session_id and refresh["client_id"] == "default"
    assert introspect("garbage") == {"active": False}
    assert introspect("ftr_" + "A" * 43) == {"active": False}

    # A used refresh token is inactive; so is everything after revocation or expiry.
    rotated = service.refresh(refresh_token=issued.refresh_token or "")
    assert introspect(issued.refresh_token or "") == {"active": False}
    assert introspect(rotated.refresh_token or "")["active"] is True
    clock.advance(301)
    assert introspect(rotated.access_token) == {"active": False}  # expired
    fresh = service.refresh(refresh_token=rotated.refresh_token or "")
    service.revoke_session(issued.session_id or "")
    assert introspect(fresh.access_token) == {"active": False}
    assert introspect(fresh.refresh_token or "") == {"active": False}

    # Only confidential clients may introspect.
    exc = oauth_error(
        service.introspect, token=fresh.access_token, client_id="default", client_secret=None
    )
    assert exc.error == "invalid_client"
    exc = oauth_error(service.introspect, token="x", client_id="rs", client_secret="wrong")
    assert exc.error == "invalid_client"


def test_client_secret_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(passwords_module.hmac, "compare_digest", spy)
    stored = hash_client_secret("s3cret")
    assert stored.startswith("sha256:") and "s3cret" not in stored
    assert verify_client_secret(stored, "s3cret") is True
    assert verify_client_secret(stored, "s3creT") is False
    assert len(calls) == 2
    assert verify_client_secret(stored, None) is False
    assert verify_client_secret(None, "s3cret") is False
