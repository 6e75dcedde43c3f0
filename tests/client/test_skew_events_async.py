"""Clock skew, events and logging, and the behaviours again through the async flows."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from client_helpers import SyncHTTP, async_client

from freshtoken import NoTokens, RefreshFailed, SessionExpired
from freshtoken.client import NOTE_HEADER, SKIP_AUTH, TokenSet
from freshtoken.testing import FakeClock

JSON = {"content-type": "application/json"}


def test_clock_behind_is_corrected_by_the_server_date(make_server, lib):
    server = make_server(settings={"access_token_ttl": 60})
    server.faults.strip = {"expires_in"}  # only the JWT exp (server time) is left
    clock = FakeClock(time.time() - 3600)  # the local clock is an hour behind
    auth = server.auth(tokens=TokenSet("x", server.session().refresh_token, 0.0), clock=clock)
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
        assert server.refreshes == 1
        assert auth.session.skew == pytest.approx(3600, abs=3)
        clock.advance(35)  # in server time ~25 s are left: inside the 30 s leeway
        assert http.get(server.me).status_code == 200
    assert server.refreshes == 2
    assert server.faults.statuses[("/api/me", 401)] == 0


def test_clock_ahead_does_not_cause_a_refresh_storm(make_server, lib):
    server = make_server(settings={"access_token_ttl": 60})
    server.faults.strip = {"expires_in"}
    clock = FakeClock(time.time() + 3600)  # an hour ahead: every JWT looks expired
    auth = server.auth(tokens=TokenSet("x", server.session().refresh_token, 0.0), clock=clock)
    with SyncHTTP(lib, auth) as http:
        for _ in range(5):
            assert http.get(server.me).status_code == 200
    assert server.refreshes == 1
    assert auth.session.skew == pytest.approx(-3600, abs=3)


def test_events_and_logs_never_contain_a_token(server, lib, caplog):
    caplog.set_level(logging.DEBUG, logger="freshtoken.client")
    tokens = server.session(expired=True)
    events = []
    reasons = []
    auth = server.auth(tokens=tokens, on_event=events.append, on_session_expired=reasons.append)
    server.faults.token_answers.append((503, JSON, b'{"error":"busy"}'))
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
        new = auth.session.tokens
        server.srv.service.logout(refresh_token=new.refresh_token)
        auth.session.replace_tokens(expires_at=0.0)
        with pytest.raises(SessionExpired):
            http.get(server.me)
    kinds = [e.kind for e in events]
    assert kinds == [
        "refresh_started",
        "refresh_retrying",
        "refresh_succeeded",
        "refresh_started",
        "refresh_failed",
        "session_expired",
    ]
    assert events[2].generation == 1 and events[2].duration is not None
    assert "refresh_succeeded generation=1" in caplog.text
    assert "session_expired" in caplog.text
    secrets_seen = {tokens.access_token, tokens.refresh_token, new.access_token, new.refresh_token}
    for secret in secrets_seen:
        assert secret not in caplog.text
        assert all(secret not in repr(e) for e in events)
    assert secret not in repr(new)


def test_a_failing_event_hook_does_not_break_requests(server, lib, caplog):
    def bad(event):
        raise RuntimeError("hook bug")

    auth = server.auth(tokens=server.session(expired=True), on_event=bad)
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
    assert "hook raised" in caplog.text


# --- the async flows (httpx2.AsyncClient and httpx.AsyncClient) ----------------------


async def test_async_401_refreshes_once_and_retries_once(server, alib):
    good = server.session()
    server.faults.revoked.add(good.access_token)
    auth = server.auth(tokens=good)
    async with async_client(alib, auth) as http:
        assert (await http.get(server.url + "/t/strict")).status_code == 200
        assert (await http.get(server.url + "/t/always401")).status_code == 401
    assert server.faults.count("/t/always401") == 2
    assert server.refreshes == 2


async def test_async_proactive_refresh(make_server, alib):
    clock = FakeClock()
    server = make_server(clock=clock, settings={"access_token_ttl": 120})
    auth = server.auth(
        tokens=TokenSet.from_answer(server.srv.login("alice", "pw"), now=clock.now()), clock=clock
    )
    async with async_client(alib, auth) as http:
        clock.advance(100)
        assert (await http.get(server.me)).status_code == 200
    assert server.refreshes == 1
    assert server.faults.statuses[("/api/me", 401)] == 0


async def test_async_transient_then_terminal(server, alib):
    sleeps = []

    async def fake_sleep(seconds):
        sleeps.append(seconds)

    reasons = []
    tokens = server.session(expired=True)
    auth = server.auth(tokens=tokens, async_sleep=fake_sleep, on_session_expired=reasons.append)
    server.faults.token_answers += [(503, JSON, b"{}"), (429, {**JSON, "retry-after": "3"}, b"{}")]
    async with async_client(alib, auth) as http:
        assert (await http.get(server.me)).status_code == 200
        assert len(sleeps) == 2 and sleeps[1] >= 3
        for _ in range(10):
            server.faults.token_answers.append((503, JSON, b"{}"))
        auth.session.replace_tokens(expires_at=0.0)
        with pytest.raises(RefreshFailed):
            await http.get(server.me)
        server.faults.token_answers.clear()
        server.srv.service.logout(refresh_token=auth.session.tokens.refresh_token)
        results = await asyncio.gather(
            *(http.get(server.me) for _ in range(10)), return_exceptions=True
        )
    assert all(isinstance(r, SessionExpired | NoTokens) for r in results)
    assert len(reasons) == 1
    assert auth.store.load() is None


async def test_async_stream_body_and_opt_out(server, alib):
    good = server.session()
    server.faults.revoked.add(good.access_token)
    auth = server.auth(tokens=good)

    async def body():
        yield b"abc"

    async with async_client(alib, auth) as http:
        r = await http.post(server.url + "/t/strict", content=body())
        assert r.status_code == 401
        assert "not retried" in r.headers[NOTE_HEADER]
        assert server.refreshes == 1
        r = await http.get(server.url + "/healthz", headers=SKIP_AUTH)
        assert r.status_code == 200
        assert server.faults.requests[-1] == ("/healthz", None)
        r = await http.get(server.url + "/healthz", auth=None)
        assert server.faults.requests[-1] == ("/healthz", None)


async def test_async_versioned_tokens_in_flight(server, alib):
    good = server.session()
    auth = server.auth(tokens=good)
    async with async_client(alib, auth) as http:
        held = asyncio.ensure_future(http.get(server.url + "/t/held"))
        assert await asyncio.to_thread(server.faults.held_arrived.wait, 10)
        server.faults.revoked.add(good.access_token)
        assert (await http.get(server.url + "/t/strict")).status_code == 200
        server.faults.release_held.set()
        assert (await held).status_code == 200
    assert server.refreshes == 1
    assert server.faults.count("/t/held") == 2


async def test_async_client_used_from_two_event_loops(server):
    """The flight is loop-agnostic: the same auth works on a second loop in another thread."""
    auth = server.auth(tokens=server.session(expired=True))

    def run_in_new_loop():
        async def go():
            async with async_client("httpx2", auth) as http:
                return [(await http.get(server.me)).status_code for _ in range(3)]

        return asyncio.run(go())

    first = await asyncio.to_thread(run_in_new_loop)
    async with async_client("httpx2", auth) as http:
        second = (await http.get(server.me)).status_code
    assert first == [200, 200, 200]
    assert second == 200
    assert server.refreshes == 1


async def test_cancelling_the_refreshing_task_frees_waiters_and_the_lock(server, tmp_path):
    import threading

    from freshtoken.client import FileStore

    store = FileStore(tmp_path / "tokens.json")
    store.save(server.session(expired=True))
    server.faults.hold_token = threading.Event()
    auth = server.auth(store)
    async with async_client("httpx2", auth) as http:
        leader = asyncio.ensure_future(http.get(server.me))
        assert await asyncio.to_thread(server.faults.token_waiting.wait, 10)
        waiter = asyncio.ensure_future(http.get(server.me))
        await asyncio.sleep(0.05)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        with pytest.raises(RefreshFailed, match="cancelled"):
            await waiter
        server.faults.hold_token.set()
        # The file lock was released; the lost answer is recovered by the grace window.
        assert (await http.get(server.me)).status_code == 200
    assert server.srv.stats["refresh_reuse"] == 0
