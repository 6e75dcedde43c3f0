"""The demo tour, the public testing helpers (FakeTokenServer), and the sans-IO core."""

from __future__ import annotations

import io
import json
import time

import pytest
from client_helpers import SyncHTTP

from freshtoken import SessionExpired
from freshtoken.client import (
    HttpResponse,
    MemoryStore,
    OAuth2Refresher,
    Retry,
    TokenAuth,
    TokenSession,
    TokenSet,
    jwt_exp,
)
from freshtoken.testing import FakeClock, FakeTokenServer


def test_demo_runs_the_whole_tour():
    from rich.console import Console

    from freshtoken.demo import run_demo

    buf = io.StringIO()
    code = run_demo(console=Console(file=buf, width=120), clock=FakeClock())
    text = buf.getvalue()
    assert code == 0, text
    assert "exactly one refresh" in text
    assert "reuse detected" in text
    assert "on_session_expired fired exactly once" in text
    assert "✗" not in text


def test_fake_token_server_rotation_and_reuse_detection(lib):
    with FakeTokenServer(access_token_ttl=60, grace_seconds=0) as srv:
        srv.create_user("alice", "pw")
        answer = srv.login("alice", "pw")
        old = TokenSet(answer["access_token"], answer["refresh_token"], 0.0)
        reasons = []
        auth = TokenAuth(
            OAuth2Refresher(srv.token_url),
            MemoryStore(old),
            on_session_expired=reasons.append,
            retry=Retry(base_delay=0.001),
        )
        with SyncHTTP(lib, auth) as http:
            assert http.get(srv.url + "/api/me").json()["sub"] == "alice"
            assert srv.stats["refresh_rotated"] == 1
            # Replaying the spent token is reuse: the whole session dies.
            import urllib.parse
            import urllib.request

            data = urllib.parse.urlencode(
                {"grant_type": "refresh_token", "refresh_token": old.refresh_token}
            ).encode()
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(srv.token_url, data)
            assert json.loads(info.value.read())["error"] == "invalid_grant"
            assert srv.stats["refresh_reuse"] == 1
            auth.session.replace_tokens(expires_at=0.0)
            with pytest.raises(SessionExpired):
                http.get(srv.url + "/api/me")
        assert len(reasons) == 1


def test_fake_token_server_grace_and_faults_with_a_fake_clock():
    clock = FakeClock()
    with FakeTokenServer(access_token_ttl=10, clock=clock) as srv:
        srv.create_user("alice", "pw")
        answer = srv.login("alice", "pw")
        tokens = TokenSet.from_answer(answer, now=clock.now())
        sleeps = []
        auth = TokenAuth(
            OAuth2Refresher(srv.token_url), MemoryStore(tokens), clock=clock, sleep=sleeps.append
        )
        srv.fail_next(2, status=503)
        with SyncHTTP("httpx2", auth) as http:
            clock.advance(11)  # expired on both sides
            assert http.get(srv.url + "/api/me").status_code == 200
        assert len(sleeps) == 2
        assert srv.stats["refresh_rotated"] == 1


# --- the sans-IO core, driven by hand ------------------------------------------------


class Resp:
    def __init__(self, status: int, date: str | None = None) -> None:
        self.status_code = status
        self.headers = {"date": date} if date else {}


def drive(session: TokenSession, answers: list[Resp], refresh_answers: list[HttpResponse]):
    """Run request_flow with canned responses; returns (sent tokens, http calls, note)."""
    flow = session.request_flow()
    sent, calls = [], []
    value = None
    while True:
        try:
            effect = flow.send(value)
        except StopIteration as stop:
            return sent, calls, stop.value
        name = type(effect).__name__
        if name == "TokenSet":
            sent.append(effect)
            value = answers.pop(0)
        elif name == "HttpRequest":
            calls.append(effect)
            value = refresh_answers.pop(0)
        elif name == "Call":
            value = effect.fn(*effect.args)
        elif name == "Sleep":
            value = None
        else:
            raise AssertionError(effect)


def ok_answer(access: str, **extra) -> HttpResponse:
    body = {"access_token": access, "refresh_token": "r-" + access, "expires_in": 300, **extra}
    return HttpResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())


def test_core_fast_path_sends_once_without_effects():
    clock = FakeClock(1000.0)
    store = MemoryStore(TokenSet("a0", "r0", 2000.0))
    session = TokenSession(OAuth2Refresher("http://x/token"), store, clock=clock)
    sent, calls, note = drive(session, [Resp(200)], [])
    assert [t.access_token for t in sent] == ["a0"]
    assert calls == [] and note is None


def test_core_refreshes_proactively_then_on_401_once():
    clock = FakeClock(1000.0)
    store = MemoryStore(TokenSet("a0", "r0", 1020.0))  # inside the 30 s leeway
    session = TokenSession(OAuth2Refresher("http://x/token"), store, clock=clock)
    sent, calls, _ = drive(session, [Resp(200)], [ok_answer("a1")])
    assert [t.access_token for t in sent] == ["a1"]
    assert b"refresh_token=r0" in calls[0].body
    assert store.load().generation == 1 and store.load().expires_at == 1300.0
    # a 401, then the retry is a 401 too: one refresh, one retry, no loop
    sent, calls, _ = drive(session, [Resp(401), Resp(401)], [ok_answer("a2")])
    assert [t.access_token for t in sent] == ["a1", "a2"]
    assert len(calls) == 1


def test_core_learns_skew_from_the_date_header():
    clock = FakeClock(1_000_000.0)
    session = TokenSession(OAuth2Refresher("http://x/token"), MemoryStore(), clock=clock)
    session.observe_date("Mon, 12 Jan 1970 14:46:40 GMT")  # = 1_003_600
    assert session.skew == pytest.approx(3600.5)
    session.observe_date("Mon, 12 Jan 1970 13:46:40 GMT")  # within resolution: no skew
    assert session.skew == 0.0


def test_jwt_exp_is_read_without_verification():
    import base64

    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{part({'alg': 'none'})}.{part({'exp': 1234})}.sig"
    assert jwt_exp(token) == 1234.0
    assert jwt_exp("opaque-token") is None
    assert jwt_exp("a.!!!.c") is None


def test_retry_delays_are_bounded_and_jittered():
    retry = Retry(attempts=5, base_delay=1.0, max_delay=4.0, max_retry_after=10)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0), (5, 4.0)]:
        for _ in range(20):
            assert ceiling / 2 <= retry.delay(attempt) <= ceiling
    assert retry.delay(1, retry_after=7) == 7
    assert retry.delay(1, retry_after=500) == 10


def test_token_set_repr_hides_values():
    t = TokenSet("secret-access", "secret-refresh", time.time())
    assert "secret" not in repr(t) and "secret" not in str(t)
    assert TokenSet.from_dict(t.to_dict()) == t
