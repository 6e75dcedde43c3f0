"""DESIGN §3, one test per branch of the refresh transaction, on SQLite and PostgreSQL.

Time moves only through the FakeClock the service shares with the test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from freshtoken.server.app import build_service
from freshtoken.server.exceptions import OAuthError
from freshtoken.server.service import IssuedTokens, TokenService
from freshtoken.server.tokens import REFRESH_TOKEN_PATTERN
from freshtoken.testing import FakeClock

from .helpers import (
    PASSWORD,
    USERNAME,
    audit_rows,
    claims_of,
    contains_anywhere,
    dump_database,
    live_tokens,
    make_settings,
    session_tokens,
)

DAY = 86_400


def login(service: TokenService, **kwargs: str) -> IssuedTokens:
    return service.login(username=USERNAME, password=PASSWORD, **kwargs)


def refresh(service: TokenService, token: str | None, **kwargs: str) -> IssuedTokens:
    assert token is not None
    return service.refresh(refresh_token=token, **kwargs)


def refused(service: TokenService, token: str | None, error: str = "invalid_grant", **kw: str):
    with pytest.raises(OAuthError) as info:
        refresh(service, token, **kw)
    assert info.value.error == error
    return info.value


def test_fresh_rotation_spends_parent_and_issues_one_child(service: TokenService) -> None:
    first = login(service)
    assert first.refresh_token is not None and first.session_id is not None
    second = refresh(service, first.refresh_token)

    assert second.outcome == "refresh_rotated"
    assert second.refresh_token != first.refresh_token
    assert REFRESH_TOKEN_PATTERN.match(second.refresh_token or "")
    # The child is the derived successor of the parent (DESIGN §3).
    assert second.refresh_token == service.deriver.derive(first.refresh_token)
    assert second.session_id == first.session_id
    assert claims_of(second.access_token)["sid"] == first.session_id

    rows = session_tokens(service.db, first.session_id)
    assert len(rows) == 2
    parent, child = rows
    assert parent.used_at == service.clock.now()
    assert child.parent_id == parent.id and child.used_at is None
    assert bytes(child.token_hash) == hashlib.sha256(second.refresh_token.encode()).digest()
    assert [r.id for r in live_tokens(service.db, first.session_id)] == [child.id]
    assert len(audit_rows(service.db, "refresh_rotated")) == 1
    assert service.stats["refresh_rotated"] == 1

    # And the child rotates in turn.
    third = refresh(service, second.refresh_token)
    assert third.outcome == "refresh_rotated"
    assert len(live_tokens(service.db, first.session_id)) == 1


def test_grace_retry_answers_the_same_successor(service: TokenService, clock: FakeClock) -> None:
    first = login(service)
    won = refresh(service, first.refresh_token)
    clock.advance(9.5)  # inside the default 10 s window
    retry = refresh(service, first.refresh_token)

    assert retry.outcome == "refresh_grace"
    assert retry.refresh_token == won.refresh_token
    assert retry.access_token != won.access_token  # a fresh access token
    assert claims_of(retry.access_token)["iat"] == int(clock.now())
    assert len(session_tokens(service.db, first.session_id or "")) == 2  # no new row
    assert len(live_tokens(service.db, first.session_id or "")) == 1
    assert len(audit_rows(service.db, "refresh_grace_replay")) == 1
    # The one live token still works afterwards.
    assert refresh(service, won.refresh_token).outcome == "refresh_rotated"


def test_reuse_after_the_window_revokes_the_whole_session(
    service: TokenService, clock: FakeClock
) -> None:
    first = login(service)
    child = refresh(service, first.refresh_token)
    clock.advance(10)  # the window is [0, 10): exactly 10 s later is reuse

    exc = refused(service, first.refresh_token)
    assert "already used" in exc.description
    assert live_tokens(service.db, first.session_id or "") == []
    # The child dies with its session.
    exc = refused(service, child.refresh_token)
    assert "revoked" in exc.description

    events = audit_rows(service.db, "refresh_token_reuse_detected")
    assert len(events) == 1
    assert events[0].session_id == first.session_id
    assert service.stats["refresh_reuse"] == 1
    # The session's access tokens are inactive too (RFC 7662).
    service.create_client("rs", secret="rs-secret", grant_types=("client_credentials",))
    for token in (child.access_token, child.refresh_token or ""):
        answer = service.introspect(token=token, client_id="rs", client_secret="rs-secret")
        assert answer == {"active": False}


def test_grandparent_inside_the_window_is_reuse(service: TokenService, clock: FakeClock) -> None:
    first = login(service)
    second = refresh(service, first.refresh_token)
    clock.advance(1)
    third = refresh(service, second.refresh_token)
    clock.advance(1)  # first was used 2 s ago: inside the window, but not the live token's parent

    refused(service, first.refresh_token)
    refused(service, third.refresh_token)  # the live token died with the session
    assert live_tokens(service.db, first.session_id or "") == []
    assert len(audit_rows(service.db, "refresh_token_reuse_detected")) == 1


def test_direct_parent_after_a_later_rotation_is_still_grace(
    service: TokenService, clock: FakeClock
) -> None:
    first = login(service)
    second = refresh(service, first.refresh_token)
    third = refresh(service, second.refresh_token)
    clock.advance(3)
    # second is the direct parent of the live token (third): a retry.
    assert refresh(service, second.refresh_token).refresh_token == third.refresh_token


def test_grace_window_zero_disables_it(database_url: str, clock: FakeClock) -> None:
    svc = build_service(make_settings(database_url, refresh_grace_seconds=0), clock)
    try:
        svc.bootstrap()
        svc.create_user(USERNAME, PASSWORD)
        first = login(svc)
        refresh(svc, first.refresh_token)
        refused(svc, first.refresh_token)  # an immediate retry is reuse
        assert len(audit_rows(svc.db, "refresh_token_reuse_detected")) == 1
        assert live_tokens(svc.db, first.session_id or "") == []
    finally:
        svc.db.close()


def test_idle_expiry_and_sliding(service: TokenService, clock: FakeClock) -> None:
    first = login(service)
    clock.advance(7 * DAY - 1)  # just inside the idle limit: it slides
    second = refresh(service, first.refresh_token)
    clock.advance(7 * DAY - 1)
    third = refresh(service, second.refresh_token)
    clock.advance(7 * DAY)  # unused for the whole idle lifetime
    exc = refused(service, third.refresh_token)
    assert "unused" in exc.description
    # An expired token is refused without touching anything (not reuse).
    assert audit_rows(service.db, "refresh_token_reuse_detected") == []


def test_absolute_expiry_is_never_extended(service: TokenService, clock: FakeClock) -> None:
    first = login(service)
    session_start = clock.now()
    token = first.refresh_token
    while clock.now() + 6 * DAY < session_start + 30 * DAY:
        clock.advance(6 * DAY)
        token = refresh(service, token).refresh_token
    last = session_tokens(service.db, first.session_id or "")[-1]
    # The last child's idle expiry is capped by the session's absolute limit.
    assert last.expires_at == session_start + 30 * DAY
    clock.set(session_start + 30 * DAY)
    exc = refused(service, token)
    assert "maximum lifetime" in exc.description


def test_revoked_session_refuses_refresh(service: TokenService) -> None:
    first = login(service)
    assert service.revoke_session(first.session_id or "") is True
    exc = refused(service, first.refresh_token)
    assert "revoked" in exc.description
    assert service.revoke_session(first.session_id or "") is False  # already ended


def test_wrong_client_is_refused_and_changes_nothing(service: TokenService) -> None:
    service.create_client("other", grant_types=("password", "refresh_token"))
    first = login(service)
    exc = refused(service, first.refresh_token, client_id="other")
    assert "another client" in exc.description
    assert refresh(service, first.refresh_token).outcome == "refresh_rotated"


def test_scope_may_narrow(service: TokenService) -> None:
    first = login(service, scope="read write")
    narrowed = refresh(service, first.refresh_token, scope="read")
    assert narrowed.scope == "read"
    assert claims_of(narrowed.access_token)["scope"] == "read"
    # Omitted scope means the originally granted one (RFC 6749 §6).
    again = refresh(service, narrowed.refresh_token)
    assert again.scope == "read write"


def test_scope_may_not_widen(service: TokenService) -> None:
    first = login(service, scope="read")
    refused(service, first.refresh_token, error="invalid_scope", scope="read write")
    # Refused before the token was spent: it still rotates.
    assert refresh(service, first.refresh_token, scope="read").outcome == "refresh_rotated"


def test_unknown_or_malformed_tokens(service: TokenService) -> None:
    for token in [
        "",
        "garbage",
        "ftr_" + "A" * 43,  # well-formed but unknown
        "ftr_" + "A" * 42 + "!",
        "ftr_" + "é" * 43,
        "ftr_" + "A" * 44,
    ]:
        exc = refused(service, token)
        assert exc.status_code == 400
    assert audit_rows(service.db, "refresh_token_reuse_detected") == []


def test_public_client_may_not_send_a_secret(service: TokenService) -> None:
    first = login(service)
    with pytest.raises(OAuthError) as info:
        service.refresh(refresh_token=first.refresh_token or "", client_secret="x")
    assert info.value.error == "invalid_client"


def test_database_holds_only_hashes(service: TokenService, clock: FakeClock) -> None:
    first = login(service)
    second = refresh(service, first.refresh_token)
    clock.advance(1)
    refresh(service, first.refresh_token)  # grace: derived again, still not stored
    third = refresh(service, second.refresh_token)
    tokens = [t.refresh_token or "" for t in (first, second, third)]
    values = dump_database(service.db)
    for token in tokens:
        assert not contains_anywhere(values, token)
        assert not contains_anywhere(values, token.removeprefix("ftr_"))
        digest = hashlib.sha256(token.encode()).digest()
        assert any(isinstance(v, bytes | memoryview) and bytes(v) == digest for v in values)
    assert not contains_anywhere(values, PASSWORD)
    if service.db.is_sqlite:  # the file itself, write-ahead log included
        path = Path(service.db.engine.url.database or "")
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert raw  # really read something
        for token in tokens:
            assert token.encode() not in raw
            assert token.removeprefix("ftr_").encode() not in raw
