"""Races over real HTTP (DESIGN §3 "Concurrency"), on SQLite and PostgreSQL.

The conditional UPDATE is the only arbiter: however many callers present one
token at once, exactly one wins, the rest get the grace answer (the same
successor), and the session ends up with exactly one live refresh token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from freshtoken.testing import FakeClock, LiveServer

from .helpers import FAST_PASSWORDS, PASSWORD, SECRET_KEY, USERNAME, audit_rows, live_tokens

N = 50


@pytest.fixture
def server(database_url: str, clock: FakeClock) -> Iterator[LiveServer]:
    settings = {**FAST_PASSWORDS, "secret_key": SECRET_KEY}
    with LiveServer(clock=clock, database_url=database_url, settings=settings) as srv:
        srv.create_user(USERNAME, PASSWORD)
        yield srv


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call on its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def refresh_call(base_url: str, token: str) -> Callable[[], httpx.Response]:
    def call() -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            return client.post(
                "/oauth/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": token,
                    "client_id": "default",
                },
            )

    return call


def test_many_concurrent_refreshes_of_one_token(server: LiveServer) -> None:
    for round_ in range(3):
        login = server.login(USERNAME, PASSWORD)
        sid = server.service.decode_access_token(login["access_token"])["sid"]
        token = login["refresh_token"]
        if round_ == 2:  # also race a token that is itself a rotated child
            token = refresh_call(server.url, token)().json()["refresh_token"]
        before = server.stats.copy()

        answers = all_at_once([refresh_call(server.url, token)] * N)

        assert [r.status_code for r in answers] == [200] * N, {r.text for r in answers}
        tokens = {r.json()["refresh_token"] for r in answers}
        assert len(tokens) == 1  # every caller holds the one live token
        (live,) = live_tokens(server.service.db, sid)  # exactly one live child
        assert live.parent_id is not None
        stats = server.stats - before
        assert stats["refresh_rotated"] == 1
        assert stats["refresh_grace"] == N - 1
        assert stats["refresh_reuse"] == 0
        assert len({r.json()["access_token"] for r in answers}) == N  # each got its own
        assert audit_rows(server.service.db, "refresh_token_reuse_detected") == []
        # The shared successor works.
        assert refresh_call(server.url, tokens.pop())().status_code == 200


def test_two_servers_sharing_one_database(postgres_url: str, clock: FakeClock) -> None:
    """Two replicas (same database, same secret) presenting one token at the same instant."""
    settings = {**FAST_PASSWORDS, "secret_key": SECRET_KEY}
    database_url = postgres_url
    with LiveServer(clock=clock, database_url=database_url, settings=settings) as one:
        with LiveServer(clock=clock, database_url=database_url, settings=settings) as two:
            one.create_user(USERNAME, PASSWORD)
            login = one.login(USERNAME, PASSWORD)
            sid = one.service.decode_access_token(login["access_token"])["sid"]
            calls = [refresh_call(srv.url, login["refresh_token"]) for srv in (one, two) * (N // 4)]
            answers = all_at_once(calls)
            assert [r.status_code for r in answers] == [200] * len(calls)
            assert len({r.json()["refresh_token"] for r in answers}) == 1
            assert len(live_tokens(one.service.db, sid)) == 1
            assert one.stats["refresh_rotated"] + two.stats["refresh_rotated"] == 1


@pytest.mark.parametrize("ender", ["revoke", "logout"])
def test_refresh_racing_a_revoke_leaves_no_live_token(server: LiveServer, ender: str) -> None:
    for _ in range(5):
        login = server.login(USERNAME, PASSWORD)
        token = login["refresh_token"]
        sid = server.service.decode_access_token(login["access_token"])["sid"]
        left_after_revoke: list[int] = []

        def end_session() -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                if ender == "revoke":
                    response = client.post(
                        "/oauth/revoke", data={"token": token, "client_id": "default"}
                    )
                else:
                    response = client.post("/auth/logout", json={"refresh_token": token})
            # Once the revoke has answered, nothing in the session may be live.
            left_after_revoke.append(len(live_tokens(server.service.db, sid)))
            return response

        calls: list[Callable[[], httpx.Response]] = [refresh_call(server.url, token)] * 6
        calls.insert(3, end_session)
        answers = all_at_once(calls)

        ended = answers.pop(3)
        assert ended.status_code == 200
        assert left_after_revoke == [0]
        assert {r.status_code for r in answers} <= {200, 400}
        for r in answers:
            if r.status_code == 400:
                assert r.json()["error"] == "invalid_grant"
        assert live_tokens(server.service.db, sid) == []
        # Whatever a refresh handed out before the revoke is dead now.
        for successor in {r.json()["refresh_token"] for r in answers if r.status_code == 200}:
            assert refresh_call(server.url, successor)().status_code == 400


def test_grandparent_replay_racing_the_owner_is_reuse(server: LiveServer, clock: FakeClock) -> None:
    login = server.login(USERNAME, PASSWORD)
    sid = server.service.decode_access_token(login["access_token"])["sid"]
    second = refresh_call(server.url, login["refresh_token"])().json()["refresh_token"]
    third = refresh_call(server.url, second)().json()["refresh_token"]
    clock.advance(1)
    answers = all_at_once(
        [refresh_call(server.url, login["refresh_token"]), refresh_call(server.url, third)]
    )
    replay = answers[0]
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # Whichever order they ran in, the session is revoked and nothing is live.
    assert live_tokens(server.service.db, sid) == []
    assert len(audit_rows(server.service.db, "refresh_token_reuse_detected")) == 1
