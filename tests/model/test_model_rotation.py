"""Model-based test of the token lifecycle (DESIGN §2-3).

A Hypothesis ``RuleBasedStateMachine`` drives the real :class:`TokenService`
(SQLite and PostgreSQL, a FakeClock) with random sequences of: login (right and
wrong password), refresh of the live token, replay of its parent (inside and
outside the grace window) and of older ancestors, logout, revocation by refresh
token, by access token and by the admin, signing-key rotation, and time jumps
past the grace window, the access-token lifetime, the idle and the absolute
limits. After every step it checks the service against a tiny reference model:

* every refresh outcome (new token, same successor, refusal, session revoked)
  is the one the model predicts, and a rotated token is the derived successor;
* a session never has two live refresh tokens; a live session has exactly the
  one the model holds; a revoked or expired one has none;
* a detected reuse ends the whole session;
* every issued access token verifies exactly until its ``exp`` — across key rotations.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from freshtoken.server.app import build_service
from freshtoken.server.exceptions import OAuthError
from freshtoken.server.settings import Settings
from freshtoken.server.storage import repository as repo
from freshtoken.testing import FakeClock

ACCESS_TTL = 60
IDLE = 300
ABSOLUTE = 900
USER, PASSWORD = "model-user", "model password"
MAX_SESSIONS = 6
# Jumps chosen around every boundary: grace (10 s), access TTL (60 s), idle (300 s),
# absolute (900 s), and the retired key's publication window (90 s).
# Small steps are more common so sessions live long enough to rotate many times.
JUMPS = st.sampled_from(
    [0.5, 0.5, 1, 1, 2, 4, 4, 9.5, 10.5, 20, 59.5, 61, 91, 150, 299, 301, 450, 901]
)

STATS: dict[str, int] = {}


@dataclass
class MToken:
    value: str
    issued_at: float
    expires_at: float
    used_at: float | None = None


@dataclass
class MSession:
    sid: str
    absolute: float
    chain: list[MToken]
    revoked: bool = False
    access: list[tuple[str, int]] = field(default_factory=list)

    @property
    def live(self) -> MToken:
        return self.chain[-1]


def _count(key: str) -> None:
    STATS[key] = STATS.get(key, 0) + 1


def make_machine(service: Any, clock: FakeClock, grace: float) -> type[RuleBasedStateMachine]:
    class TokenLifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.sessions: list[MSession] = []
            self.access_tokens: list[tuple[str, int]] = []
            self.rotations = 0
            clock.advance(ABSOLUTE + 1)  # nothing from a previous example is live

        # --- helpers --------------------------------------------------------------

        def _pick(self, index: int) -> MSession:
            return self.sessions[index % len(self.sessions)]

        def _issued(self, session: MSession | None, access: str, now: float) -> None:
            exp = int(now) + ACCESS_TTL
            claims = service.decode_access_token(access)
            assert claims is not None and claims["exp"] == exp
            if session is not None:
                assert claims["sid"] == session.sid
                session.access.append((access, exp))
            self.access_tokens.append((access, exp))
            del self.access_tokens[:-40]

        def _expect(self, session: MSession, k: int) -> str:
            """What presenting chain[k] must do, by DESIGN §3."""
            now = clock.now()
            tok = session.chain[k]
            if session.revoked or now >= session.absolute or now >= tok.expires_at:
                return "refused"
            if tok.used_at is None:
                return "rotated"
            child = session.chain[k + 1] if k + 1 < len(session.chain) else None
            if (
                grace > 0
                and now - tok.used_at < grace
                and child is not None
                and child is session.live
                and child.used_at is None
                and child.expires_at > now
            ):
                return "grace"
            return "reuse"

        def _present(self, session: MSession, k: int) -> None:
            expected = self._expect(session, k)
            _count(f"refresh_{expected}")
            tok = session.chain[k]
            now = clock.now()
            try:
                issued = service.refresh(refresh_token=tok.value, client_id="default")
            except OAuthError as exc:
                assert exc.error == "invalid_grant", exc
                assert expected in ("refused", "reuse"), f"expected {expected}, got {exc}"
                if expected == "reuse":
                    assert "already used" in exc.description
                    session.revoked = True
                return
            assert expected in ("rotated", "grace"), f"expected {expected}, got a token"
            assert issued.session_id == session.sid
            if expected == "rotated":
                assert issued.refresh_token == service.deriver.derive(tok.value)
                assert issued.refresh_token not in {t.value for t in session.chain}
                tok.used_at = now
                session.chain.append(
                    MToken(issued.refresh_token, now, min(now + IDLE, session.absolute))
                )
            else:
                assert issued.refresh_token == session.live.value
            self._issued(session, issued.access_token, now)

        # --- rules ----------------------------------------------------------------

        @precondition(lambda self: len(self.sessions) < MAX_SESSIONS)
        @rule()
        def login(self) -> None:
            now = clock.now()
            issued = service.login(username=USER, password=PASSWORD, client_id="default")
            assert issued.refresh_token and issued.session_id
            session = MSession(
                issued.session_id,
                now + ABSOLUTE,
                [MToken(issued.refresh_token, now, min(now + IDLE, now + ABSOLUTE))],
            )
            self.sessions.append(session)
            self._issued(session, issued.access_token, now)
            _count("login")

        @rule(password=st.sampled_from(["", "model passwor", "MODEL PASSWORD", "x" * 70]))
        def login_wrong_password(self, password: str) -> None:
            with pytest.raises(OAuthError) as err:
                service.login(username=USER, password=password, client_id="default")
            assert err.value.error == "invalid_grant"

        @precondition(lambda self: self.sessions)
        @rule(index=st.integers(0, MAX_SESSIONS - 1))
        def refresh_live(self, index: int) -> None:
            """The owner refreshing (mostly sessions that are still alive)."""
            alive = [x for x in self.sessions if not x.revoked] or self.sessions
            session = alive[index % len(alive)]
            self._present(session, len(session.chain) - 1)

        @precondition(lambda self: self.sessions)
        @rule(index=st.integers(0, MAX_SESSIONS - 1), delay=st.sampled_from([0, 0.5, 9.5]))
        def refresh_then_retry(self, index: int, delay: float) -> None:
            """A lost answer: the client retries the token it still holds, soon after."""
            alive = [x for x in self.sessions if not x.revoked] or self.sessions
            session = alive[index % len(alive)]
            before = len(session.chain)
            self._present(session, before - 1)
            if len(session.chain) > before:
                clock.advance(delay)
                self._present(session, before - 1)

        @precondition(lambda self: any(len(s.chain) >= 2 for s in self.sessions))
        @rule(index=st.integers(0, MAX_SESSIONS - 1))
        def replay_parent(self, index: int) -> None:
            """A retry after a lost response, or a second process: grace if recent."""
            candidates = [s for s in self.sessions if len(s.chain) >= 2]
            session = candidates[index % len(candidates)]
            self._present(session, len(session.chain) - 2)

        @precondition(lambda self: any(len(s.chain) >= 3 for s in self.sessions))
        @rule(index=st.integers(0, MAX_SESSIONS - 1), depth=st.integers(3, 10))
        def replay_older(self, index: int, depth: int) -> None:
            """A stolen, older token: always reuse (or refused if already dead)."""
            candidates = [s for s in self.sessions if len(s.chain) >= 3]
            session = candidates[index % len(candidates)]
            k = max(0, len(session.chain) - depth)
            self._present(session, k)

        @precondition(lambda self: self.sessions)
        @rule(
            index=st.integers(0, MAX_SESSIONS - 1),
            how=st.sampled_from(["logout", "logout_old_token", "access_token", "admin"]),
        )
        def end_session(self, index: int, how: str) -> None:
            """Logout (with the live or an old token), RFC 7009 revoke with the
            access token, or the admin's revoke: the whole session ends."""
            session = self._pick(index)
            _count(f"end_{how}")
            if how in ("logout", "logout_old_token"):
                token = session.chain[0 if how == "logout_old_token" else -1].value
                ended = service.logout(refresh_token=token, client_id="default")
                assert ended == (not session.revoked)
                session.revoked = True
            elif how == "access_token":
                access, exp = session.access[-1]
                valid = clock.now() < exp
                ended = service.revoke(token=access, client_id="default", client_secret=None)
                assert ended == (valid and not session.revoked)
                if valid:
                    session.revoked = True
            else:
                assert service.revoke_session(session.sid) == (not session.revoked)
                session.revoked = True

        @precondition(lambda self: self.rotations < 2)
        @rule()
        def rotate_signing_key(self) -> None:
            self.rotations += 1
            kid = service.rotate_signing_key()
            assert kid == service.keyring.current().kid
            _count("key_rotation")

        @rule(seconds=JUMPS)
        def time_passes(self, seconds: float) -> None:
            clock.advance(seconds)

        # --- invariants -------------------------------------------------------------

        @invariant()
        def at_most_one_live_refresh_token(self) -> None:
            now = clock.now()
            with service.db.transaction() as conn:
                for session in self.sessions:
                    live = repo.live_tokens(conn, session.sid, now)
                    assert len(live) <= 1, f"session {session.sid} has {len(live)} live tokens"
                    alive = (
                        not session.revoked
                        and now < session.absolute
                        and now < session.live.expires_at
                    )
                    if alive:
                        want = hashlib.sha256(session.live.value.encode()).digest()
                        assert len(live) == 1 and bytes(live[0].token_hash) == want
                    else:  # revoked, idle-expired or past the absolute limit
                        assert not live, f"session {session.sid} should have no live token"

        @invariant()
        def access_tokens_verify_exactly_until_exp(self) -> None:
            now = clock.now()
            for access, exp in self.access_tokens:
                ok = service.decode_access_token(access) is not None
                assert ok == (now < exp), f"now={now} exp={exp} verified={ok}"

    return TokenLifecycle


@pytest.fixture
def lifecycle(database_url: str) -> Iterator[tuple[Any, FakeClock]]:
    clock = FakeClock(1_800_000_000.0)
    service = build_service(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=database_url,
            secret_key=secrets.token_urlsafe(48),
            access_token_ttl=ACCESS_TTL,
            refresh_idle_ttl=IDLE,
            session_max_ttl=ABSOLUTE,
            refresh_grace_seconds=10,
            key_retire_grace=0,
            leeway=30,
            password_time_cost=1,
            password_memory_kib=8 * 1024,
        ),
        clock,
    )
    service.bootstrap()
    service.create_user(USER, PASSWORD)
    try:
        yield service, clock
    finally:
        service.db.close()


@pytest.mark.parametrize("grace", [10.0, 0.0], ids=["grace10", "grace0"])
def test_token_lifecycle_matches_the_model(
    lifecycle: tuple[Any, FakeClock], grace: float, request: pytest.FixtureRequest
) -> None:
    service, clock = lifecycle
    if grace != service.settings.refresh_grace_seconds:
        service.settings = service.settings.model_copy(update={"refresh_grace_seconds": grace})
    STATS.clear()
    run_state_machine_as_test(
        make_machine(service, clock, grace),
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=False,
        ),
    )
    # The run really went through the interesting transitions.
    assert STATS.get("login", 0) >= 20
    assert STATS.get("refresh_rotated", 0) >= 8
    assert STATS.get("refresh_reuse", 0) >= 1
    assert STATS.get("refresh_refused", 0) >= 1
    if grace:
        assert STATS.get("refresh_grace", 0) >= 1
    else:
        assert STATS.get("refresh_grace", 0) == 0
    print(f"\n[{request.node.name}] transitions: {dict(sorted(STATS.items()))}")
