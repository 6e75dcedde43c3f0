"""Retention (`freshtoken db prune`, TokenService.prune), SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import func, select

from freshtoken.server.exceptions import OAuthError
from freshtoken.server.service import TokenService
from freshtoken.server.storage.tables import audit_events, refresh_tokens, sessions
from freshtoken.testing import FakeClock

from .helpers import PASSWORD, USERNAME, session_tokens

DAY = 86_400


def count(service: TokenService, table) -> int:  # type: ignore[no-untyped-def]
    with service.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_prune_deletes_ended_sessions_and_old_audit_events_only(
    service: TokenService, clock: FakeClock
) -> None:
    revoked = service.login(username=USERNAME, password=PASSWORD)
    live = service.login(username=USERNAME, password=PASSWORD)
    assert revoked.refresh_token and live.refresh_token
    service.refresh(refresh_token=revoked.refresh_token)
    service.revoke_session(revoked.session_id or "")
    first = service.refresh(refresh_token=live.refresh_token)
    assert first.refresh_token
    clock.advance(6 * DAY)  # the live session's token is still inside its 7-day idle TTL
    recent = service.login(username=USERNAME, password=PASSWORD)
    audit_before = count(service, audit_events)

    assert service.prune(ended_days=5, audit_days=3) == (1, 2, audit_before - 1)

    with service.db.engine.connect() as conn:
        left = {row[0] for row in conn.execute(select(sessions.c.id))}
        assert (
            conn.execute(
                select(audit_events.c.session_id).where(audit_events.c.at < clock.now())
            ).all()
            == []
        )
    assert left == {live.session_id, recent.session_id}
    # The live session keeps its used token: a replay is still a detected reuse.
    assert len(session_tokens(service.db, live.session_id or "")) == 2
    second = service.refresh(refresh_token=first.refresh_token)
    assert second.refresh_token
    try:
        service.refresh(refresh_token=live.refresh_token)
        raise AssertionError("a replayed token was accepted")
    except OAuthError as exc:
        assert "already used" in exc.description


def test_prune_keeps_recently_ended_sessions_and_works_in_batches(
    service: TokenService, clock: FakeClock
) -> None:
    ids = []
    for _ in range(5):
        issued = service.login(username=USERNAME, password=PASSWORD)
        service.revoke_session(issued.session_id or "")
        ids.append(issued.session_id)
    clock.advance(2 * DAY)
    assert service.prune(ended_days=7, audit_days=90, batch=2) == (0, 0, 0)
    clock.advance(6 * DAY)
    assert service.prune(ended_days=7, audit_days=90, batch=2) == (5, 5, 0)
    assert count(service, sessions) == 0
    assert count(service, refresh_tokens) == 0
    assert count(service, audit_events) > 0
