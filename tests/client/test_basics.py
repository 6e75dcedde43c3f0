"""Attach, proactive refresh, refresh-on-401 once, opt-out, stream bodies — on every library."""

from __future__ import annotations

from dataclasses import replace

import pytest
from client_helpers import SyncHTTP

from freshtoken.client import NOTE_HEADER, SKIP_AUTH, TokenSet
from freshtoken.testing import FakeClock


def test_attaches_bearer_without_refreshing_a_fresh_token(server, lib):
    tokens = server.session()
    auth = server.auth(tokens=tokens)
    with SyncHTTP(lib, auth) as http:
        for _ in range(3):
            r = http.get(server.me)
            assert r.status_code == 200
    assert server.refreshes == 0
    bearers = [b for p, b in server.faults.requests if p == "/api/me"]
    assert bearers == ["Bearer " + tokens.access_token] * 3


def test_proactive_refresh_inside_the_leeway_sends_no_401(make_server, lib):
    clock = FakeClock()
    server = make_server(clock=clock, settings={"access_token_ttl": 120})
    answer = server.srv.login("alice", "pw")
    auth = server.auth(tokens=TokenSet.from_answer(answer, now=clock.now()), clock=clock)
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
        clock.advance(95)  # 25 s left < 30 s leeway: refresh before sending
        assert http.get(server.me).status_code == 200
        assert server.refreshes == 1
        clock.advance(60)  # the new token (120 s) still has 60 s: no refresh
        assert http.get(server.me).status_code == 200
    assert server.refreshes == 1
    assert server.faults.statuses[("/api/me", 401)] == 0
    assert auth.tokens.generation == 1


def test_leeway_is_configurable(make_server, lib):
    clock = FakeClock()
    server = make_server(clock=clock, settings={"access_token_ttl": 120})
    tokens = TokenSet.from_answer(server.srv.login("alice", "pw"), now=clock.now())
    auth = server.auth(tokens=tokens, clock=clock, leeway=5)
    with SyncHTTP(lib, auth) as http:
        clock.advance(100)  # 20 s left: outside a 5 s leeway
        assert http.get(server.me).status_code == 200
        assert server.refreshes == 0
        clock.advance(16)  # 4 s left
        assert http.get(server.me).status_code == 200
        assert server.refreshes == 1


def test_expiry_from_the_jwt_exp_when_the_answer_has_no_expires_in(make_server, lib):
    clock = FakeClock()
    server = make_server(clock=clock, settings={"access_token_ttl": 120})
    server.faults.strip = {"expires_in"}
    tokens = server.session(expired=True)
    auth = server.auth(tokens=tokens, clock=clock)
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.me).status_code == 200
        assert server.refreshes == 1
        new = auth.tokens
        # No expires_in in the answer: the unverified JWT exp was used.
        assert new.expires_at is not None
        assert abs(new.expires_at - (clock.now() + 120)) <= 1
        clock.advance(100)
        assert http.get(server.me).status_code == 200
    assert server.refreshes == 2


def test_a_401_refreshes_once_and_retries_once(server, lib):
    good = server.session()
    # The client thinks its token is fine, the server refuses it.
    auth = server.auth(tokens=replace(good, access_token="not-a-valid-token"))
    with SyncHTTP(lib, auth) as http:
        r = http.get(server.me)
        assert r.status_code == 200
    assert server.refreshes == 1
    assert server.faults.statuses[("/api/me", 401)] == 1
    assert server.faults.statuses[("/api/me", 200)] == 1
    assert auth.store.load().refresh_token != good.refresh_token


def test_a_second_401_goes_back_to_the_caller_no_loop(server, lib):
    auth = server.auth(tokens=server.session())
    with SyncHTTP(lib, auth) as http:
        r = http.get(server.url + "/t/always401")
        assert r.status_code == 401
        assert server.faults.count("/t/always401") == 2  # the try and one retry
        assert server.refreshes == 1
        r = http.get(server.url + "/t/always401")
        assert r.status_code == 401
        assert server.faults.count("/t/always401") == 4
        assert server.refreshes == 2
        assert http.get(server.me).status_code == 200


def test_401_after_a_proactive_refresh_is_not_refreshed_again(server, lib):
    auth = server.auth(tokens=server.session(expired=True))
    with SyncHTTP(lib, auth) as http:
        assert http.get(server.url + "/t/always401").status_code == 401
    assert server.refreshes == 1
    assert server.faults.count("/t/always401") == 1


def test_refresh_on_other_status_codes_and_a_predicate(server, lib):
    good = server.session()
    auth = server.auth(tokens=good, refresh_on=(401, 419))
    with SyncHTTP(lib, auth) as http:
        r = http.get(server.url + "/t/once419")
        assert r.status_code == 200
    assert server.refreshes == 1

    def says_expired(response):
        return response.status_code == 403 and "expired" in response.text

    auth2 = server.auth(tokens=server.session(), refresh_on=(), should_refresh=says_expired)
    with SyncHTTP(lib, auth2) as http:
        assert http.get(server.url + "/t/always401").status_code == 401
    assert server.refreshes == 1  # 401 no longer counts with refresh_on=()


def test_opt_out_per_request_with_the_skip_header(server, lib):
    auth = server.auth(tokens=server.session())
    with SyncHTTP(lib, auth) as http:
        r = http.get(server.url + "/healthz", headers=SKIP_AUTH)
        assert r.status_code == 200
    (path, bearer) = server.faults.requests[-1]
    assert path == "/healthz"
    assert bearer is None


@pytest.mark.parametrize("name", ["httpx2", "httpx"])
def test_opt_out_with_auth_none_on_httpx(server, name):
    auth = server.auth(tokens=server.session())
    with SyncHTTP(name, auth) as http:
        assert http.get(server.url + "/healthz", auth=None).status_code == 200
    assert server.faults.requests[-1] == ("/healthz", None)


def test_opt_out_works_without_any_tokens(server, lib):
    auth = server.auth()  # empty store: a login call must still work
    with SyncHTTP(lib, auth) as http:
        r = http.post(
            server.url + "/auth/login",
            json={"username": "alice", "password": "pw"},
            headers=SKIP_AUTH,
        )
        assert r.status_code == 200
        auth.set_tokens(r.json())
        assert http.get(server.me).status_code == 200


def _stream():
    yield b"part one,"
    yield b"part two"


def test_a_stream_body_is_not_resent_the_401_comes_back_with_a_note(server, lib):
    good = server.session()
    auth = server.auth(tokens=good)
    server.faults.revoked.add(good.access_token)
    with SyncHTTP(lib, auth) as http:
        r = http.post(server.url + "/t/strict", content=_stream())
        assert r.status_code == 401
        assert "cannot be sent twice" in r.headers[NOTE_HEADER]
        assert server.faults.count("/t/strict") == 1
        # ... but the token was refreshed, so sending again works.
        assert server.refreshes == 1
        r = http.post(server.url + "/t/strict", content=_stream())
        assert r.status_code == 200
        assert r.json()["body_len"] == len(b"part one,part two")


def test_a_bytes_body_is_resent_after_refresh(server, lib):
    good = server.session()
    auth = server.auth(tokens=good)
    server.faults.revoked.add(good.access_token)
    with SyncHTTP(lib, auth) as http:
        r = http.post(server.url + "/t/strict", content=b"x" * 1000)
        assert r.status_code == 200
        assert r.json()["body_len"] == 1000
    assert server.faults.count("/t/strict") == 2


def test_a_file_body_is_rewound_and_resent_by_requests(server, tmp_path):
    good = server.session()
    auth = server.auth(tokens=good)
    server.faults.revoked.add(good.access_token)
    path = tmp_path / "upload.bin"
    path.write_bytes(b"y" * 5000)
    with SyncHTTP("requests", auth) as http, path.open("rb") as fh:
        r = http.post(server.url + "/t/strict", content=fh)
        assert r.status_code == 200
        assert r.json()["body_len"] == 5000
