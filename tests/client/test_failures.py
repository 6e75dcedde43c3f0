"""Transient vs terminal refresh failures, never losing a rotated token, clear errors."""

from __future__ import annotations

import json
import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from client_helpers import FAST_RETRY, SyncHTTP

from freshtoken import (
    ConfigurationError,
    NoTokens,
    RefreshFailed,
    SessionExpired,
    TokenStoreError,
)
from freshtoken.client import (
    JSONRefresher,
    MemoryStore,
    OAuth2Refresher,
    Retry,
    TokenAuth,
    TokenSet,
)
from freshtoken.testing import LiveServer

JSON = {"content-type": "application/json"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_5xx_is_retried_with_backoff_and_the_session_survives(server, lib):
    tokens = server.session(expired=True)
    sleeps, events = [], []
    auth = server.auth(
        tokens=tokens,
        retry=Retry(attempts=4, base_delay=0.5, max_delay=4.0),
        sleep=sleeps.append,
        on_event=events.append,
    )
    for status in (503, 502, 500):
        server.faults.token_answers.append((status, JSON, b'{"error":"temporarily_unavailable"}'))
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
    assert server.faults.token_calls == 4
    assert server.refreshes == 1
    # Exponential backoff with jitter: each delay within [d/2, d], d = 0.5, 1, 2.
    assert len(sleeps) == 3
    for delay, ceiling in zip(sleeps, (0.5, 1.0, 2.0), strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert [e.kind for e in events].count("refresh_retrying") == 3


def test_429_waits_for_retry_after(server, lib):
    sleeps = []
    auth = server.auth(tokens=server.session(expired=True), sleep=sleeps.append)
    server.faults.token_answers.append(
        (429, {**JSON, "retry-after": "7"}, b'{"error":"rate_limited"}')
    )
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
    assert sleeps and sleeps[0] >= 7
    assert server.refreshes == 1


def test_retries_are_bounded_and_the_tokens_are_kept(server, lib):
    tokens = server.session(expired=True)
    expired = []
    auth = server.auth(tokens=tokens, on_session_expired=expired.append)
    for _ in range(10):
        server.faults.token_answers.append((503, JSON, b"{}"))
    with SyncHTTP(lib, auth) as http:
        with pytest.raises(RefreshFailed, match="HTTP 503"):
            http.get(server.me)
    assert server.faults.token_calls == FAST_RETRY.attempts + 1
    assert auth.store.load() == tokens  # kept
    assert expired == []
    server.faults.token_answers.clear()
    with SyncHTTP(lib, auth) as http:  # the endpoint is back: the same session goes on
        assert http.get(server.me).status_code == 200
    assert server.refreshes == 1


def test_connection_refused_is_transient(server, lib):
    tokens = server.session(expired=True)
    port = _free_port()
    auth = server.auth(
        tokens=tokens, refresher=OAuth2Refresher(f"http://127.0.0.1:{port}/oauth/token")
    )
    with SyncHTTP(lib, auth) as http:
        with pytest.raises(RefreshFailed, match="no answer") as info:
            http.get(server.me)
    assert "tokens kept" in str(info.value)
    assert auth.store.load() == tokens


def test_a_timeout_is_transient(server, lib):
    tokens = server.session(expired=True)
    server.faults.hold_token = threading.Event()
    auth = server.auth(
        tokens=tokens,
        refresher=OAuth2Refresher(server.token_url, timeout=0.2),
        retry=Retry(attempts=1, base_delay=0.001),
    )
    try:
        with SyncHTTP(lib, auth) as http:
            with pytest.raises(RefreshFailed, match="no answer"):
                http.get(server.me)
    finally:
        server.faults.hold_token.set()
    assert auth.store.load() == tokens


def test_the_token_endpoint_down_for_a_while_then_back(tmp_path, lib):
    """Connection refused twice (the server is stopped), then it is started again."""
    port = _free_port()
    settings = {
        "secret_key": secrets.token_urlsafe(48),
        "password_time_cost": 1,
        "password_memory_kib": 8192,
    }
    db = f"sqlite:///{tmp_path / 'ft.db'}"
    first = LiveServer(database_url=db, settings=settings, port=port).start()
    try:
        first.create_user("alice", "pw")
        tokens = replace(TokenSet.from_answer(first.login("alice", "pw")), expires_at=0.0)
        me = first.url + "/api/me"
    finally:
        first.stop()

    restarted: list[LiveServer] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:  # after the second refused attempt, the server comes back
            restarted.append(LiveServer(database_url=db, settings=settings, port=port).start())

    auth = TokenAuth(
        OAuth2Refresher(f"http://127.0.0.1:{port}/oauth/token"),
        MemoryStore(tokens),
        retry=Retry(attempts=5, base_delay=0.001),
        sleep=sleep,
    )
    try:
        with SyncHTTP(lib, auth) as http:
            assert http.get(me).status_code == 200
        assert len(sleeps) == 2
        assert restarted[0].stats["refresh_rotated"] == 1
        assert auth.store.load().refresh_token != tokens.refresh_token
    finally:
        for srv in restarted:
            srv.stop()


def test_invalid_grant_ends_the_session(server, lib):
    tokens = server.session(expired=True)
    server.srv.service.logout(refresh_token=tokens.refresh_token)
    reasons, events = [], []
    auth = server.auth(tokens=tokens, on_session_expired=reasons.append, on_event=events.append)
    with SyncHTTP(lib, auth) as http:
        with pytest.raises(SessionExpired) as info:
            http.get(server.me)
        assert "invalid_grant" in info.value.reason
        assert auth.store.load() is None
        assert reasons == [info.value.reason]
        with pytest.raises(NoTokens, match="session ended"):
            http.get(server.me)
    assert reasons == [info.value.reason]  # exactly once
    assert "session_expired" in [e.kind for e in events]


def test_400_and_401_from_the_token_endpoint_are_terminal(server, lib):
    for status in (400, 401):
        reasons = []
        auth = server.auth(tokens=server.session(expired=True), on_session_expired=reasons.append)
        server.faults.token_answers.append((status, JSON, b'{"error":"invalid_client"}'))
        with SyncHTTP(lib, auth) as http:
            with pytest.raises(SessionExpired, match="invalid_client"):
                http.get(server.me)
        assert reasons == ["invalid_client"]
        assert auth.store.load() is None


def test_the_session_end_hook_fires_once_for_many_concurrent_requests(server, lib):
    tokens = server.session()
    server.srv.service.logout(refresh_token=tokens.refresh_token)
    server.faults.revoked.add(tokens.access_token)
    reasons = []
    auth = server.auth(tokens=tokens, on_session_expired=reasons.append)
    barrier = threading.Barrier(20)
    with SyncHTTP(lib, auth) as http:

        def call(_):
            barrier.wait()
            try:
                return http.get(server.url + "/t/strict").status_code
            except (SessionExpired, NoTokens) as exc:
                return type(exc).__name__

        with ThreadPoolExecutor(20) as pool:
            outcomes = list(pool.map(call, range(20)))
    assert len(reasons) == 1
    assert set(outcomes) <= {"SessionExpired", "NoTokens"}
    assert "SessionExpired" in outcomes
    assert server.faults.token_calls == 1


def test_replayed_old_refresh_token_is_reuse_and_ends_the_session(make_server, lib):
    server = make_server(settings={"refresh_grace_seconds": 0})
    old = server.session(expired=True)
    auth = server.auth(tokens=old)
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
        # An attacker (or a stale copy) replays the old refresh token: reuse.
        answer = server.srv.service
        with pytest.raises(Exception, match=r"reuse|invalid"):
            answer.refresh(refresh_token=old.refresh_token)
        assert server.srv.stats["refresh_reuse"] == 1
        reasons = []
        auth.session.on_session_expired = reasons.append
        auth.session.replace_tokens(expires_at=0.0)
        with pytest.raises(SessionExpired):
            http.get(server.me)
        assert len(reasons) == 1


def test_invalid_grant_adopts_tokens_another_process_stored_meanwhile(server, tmp_path, lib):
    """Our refresh token was spent elsewhere; the store has a newer session: adopt it."""
    from freshtoken.client import FileStore

    store = FileStore(tmp_path / "tokens.json")
    tokens = server.session(expired=True)
    reasons = []
    auth = server.auth(store, tokens=tokens, on_session_expired=reasons.append)
    newer: list[TokenSet] = []

    def another_process_logs_in(form):
        # Meanwhile, another process logged the user in again and ended the old session.
        fresh = TokenSet.from_answer(server.srv.login("alice", "pw"), generation=7)
        store.save(fresh)
        newer.append(fresh)
        server.srv.service.logout(refresh_token=form["refresh_token"])

    server.faults.before_token = another_process_logs_in
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
    assert reasons == []
    assert auth.session.tokens == newer[0]
    assert store.load() == newer[0]
    assert server.srv.stats["refresh_failed"] == 1


def test_an_answer_without_refresh_token_keeps_the_old_one(server, lib):
    """A JSON API that does not rotate: the old refresh token must survive."""
    tokens = server.session(expired=True)
    auth = server.auth(tokens=tokens, refresher=OAuth2Refresher(server.token_url))
    server.faults.strip = {"refresh_token"}
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
    assert auth.store.load().refresh_token == tokens.refresh_token
    assert auth.store.load().access_token != tokens.access_token


class BrokenStore(MemoryStore):
    def __init__(self, tokens):
        super().__init__(tokens)
        self.fail = True

    def save(self, tokens):
        if self.fail:
            raise OSError("disk full")
        super().save(tokens)


def test_if_saving_fails_the_request_raises_but_the_new_token_is_kept(server, lib):
    tokens = server.session(expired=True)
    store = BrokenStore(tokens)
    auth = server.auth(store)
    with SyncHTTP(lib, auth) as http:
        with pytest.raises(TokenStoreError, match="disk full"):
            http.get(server.me)
        assert server.refreshes == 1
        assert server.faults.count("/api/me") == 0  # not sent after a failed save
        # The rotated token lives on in memory: no second refresh, no reuse.
        assert auth.session.tokens.generation == 1
        assert http.get(server.me).status_code == 200
    assert server.refreshes == 1
    assert server.srv.stats["refresh_reuse"] == 0


def test_no_tokens_in_the_store_is_a_clear_error(server, lib):
    auth = server.auth()
    with SyncHTTP(lib, auth) as http:
        with pytest.raises(NoTokens, match="log in first"):
            http.get(server.me)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"<html>login page</html>", "not JSON"),
        (200, b'{"token": "x"}', "without 'access_token'"),
        (404, b'{"error": "not_found"}', "HTTP 404"),
    ],
)
def test_a_token_endpoint_that_answers_nonsense(server, lib, status, body, message):
    tokens = server.session(expired=True)
    reasons = []
    auth = server.auth(tokens=tokens, on_session_expired=reasons.append)
    ctype = "text/html" if body.startswith(b"<") else "application/json"
    server.faults.token_answers.append((status, {"content-type": ctype}, body))
    with SyncHTTP(lib, auth) as http:
        with pytest.raises(ConfigurationError, match=message):
            http.get(server.me)
    assert auth.store.load() == tokens  # a misconfiguration never ends the session
    assert reasons == []


def test_a_json_refresher_pointed_at_the_wrong_fields(server, lib):
    tokens = server.session(expired=True)
    auth = server.auth(
        tokens=tokens,
        refresher=JSONRefresher(server.url + "/auth/refresh", access_token_field="accessToken"),
    )
    with SyncHTTP(lib, auth) as http:
        with pytest.raises(ConfigurationError, match=r"accessToken.*access_token"):
            http.get(server.me)


@pytest.mark.parametrize("url", ["", "auth.example.com/token", "ftp://x/token", "http:///token"])
def test_a_misconfigured_url_is_refused_up_front(url):
    with pytest.raises(ConfigurationError, match="URL"):
        OAuth2Refresher(url)
    with pytest.raises(ConfigurationError, match="URL"):
        JSONRefresher(url)


def test_refresh_failed_keeps_working_after_the_outage_with_json_details(server):
    # RefreshFailed keeps the cause chain for debugging.
    tokens = server.session(expired=True)
    auth = server.auth(tokens=tokens, retry=Retry(attempts=0))
    server.faults.token_answers.append((503, JSON, json.dumps({"error": "down"}).encode()))
    with SyncHTTP("httpx2", auth) as http:
        with pytest.raises(RefreshFailed) as info:
            http.get(server.me)
    assert "down" in str(info.value.__cause__)
