"""Scale-out (DESIGN §3, §5): several server processes on different ports sharing one
PostgreSQL database and one Redis.

Server A is ``freshtoken serve --workers 2``, server B ``freshtoken serve``: three
processes. The same refresh token sent to several of them at the same instant gives
one winner and the same successor to every other caller; a rate limit counts across
processes through Redis; a key rotated with the CLI is served and accepted by all.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter

import httpx
import jwt
import pytest
from sqlalchemy import text

from .conftest import LOGIN_LIMIT_PER_USERNAME, Cluster

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RACE_ROUNDS = 12
TOKEN_PATH = "/oauth/token"


def refresh_body(token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": token, "client_id": "default"}


def race(clients: list[httpx.Client], token: str) -> list[httpx.Response]:
    """POST the same refresh token through every client at the same instant."""
    barrier = threading.Barrier(len(clients))
    answers: list[httpx.Response | BaseException | None] = [None] * len(clients)

    def send(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            answers[i] = clients[i].post(TOKEN_PATH, data=refresh_body(token))
        except BaseException as exc:  # reported below, never swallowed
            answers[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for a in answers:
        if not isinstance(a, httpx.Response):
            raise AssertionError(f"request failed: {a!r}")
    return answers  # type: ignore[return-value]


def session_events(cluster: Cluster, session_id: str) -> Counter[str]:
    with cluster.service.db.transaction() as conn:
        rows = conn.execute(
            text("SELECT event FROM audit_events WHERE session_id = :sid"), {"sid": session_id}
        ).all()
    return Counter(r.event for r in rows)


def live_token_hashes(cluster: Cluster, session_id: str) -> list[bytes]:
    from freshtoken.server.storage import repository as repo

    with cluster.service.db.transaction() as conn:
        rows = repo.live_tokens(conn, session_id, time.time())
    return [bytes(r.token_hash) for r in rows]


def test_same_token_on_several_servers_at_once_one_winner_same_successor(cluster: Cluster):
    a, b = cluster.servers
    cluster.service.create_user("racer", "racer-password")
    # Two connections to each server (A's may land on either of its two workers),
    # opened before the race so each POST leaves at the barrier.
    clients = [httpx.Client(base_url=s.url, timeout=20) for s in (a, b, a, b)]
    try:
        for c in clients:
            assert c.get("/healthz").status_code == 200
        for round_ in range(RACE_ROUNDS):
            issued = cluster.service.login(username="racer", password="racer-password")
            assert issued.refresh_token and issued.session_id
            racers = clients[:2] if round_ % 2 == 0 else clients
            answers = race(racers, issued.refresh_token)

            problems = [(r.status_code, r.text) for r in answers if r.status_code != 200]
            assert not problems, f"round {round_}: every racer must get 200: {problems}"
            successors = {r.json()["refresh_token"] for r in answers}
            assert len(successors) == 1, f"round {round_}: different successors {successors}"
            successor = successors.pop()
            assert successor != issued.refresh_token

            # Never two live tokens: the session's one live token is the shared successor.
            live = live_token_hashes(cluster, issued.session_id)
            assert live == [hashlib.sha256(successor.encode()).digest()]
            events = session_events(cluster, issued.session_id)
            assert events["refresh_rotated"] == 1, events
            assert events["refresh_grace_replay"] == len(racers) - 1, events
            assert events["refresh_token_reuse_detected"] == 0, events

            # The successor works on the other server.
            follow = clients[1 - round_ % 2].post(TOKEN_PATH, data=refresh_body(successor))
            assert follow.status_code == 200, follow.text
    finally:
        for c in clients:
            c.close()


def test_reuse_after_the_race_revokes_everywhere(cluster: Cluster):
    """An old ancestor replayed on one server revokes the session for all of them."""
    a, b = cluster.servers
    cluster.service.create_user("replayer", "replayer-password")
    issued = cluster.service.login(username="replayer", password="replayer-password")
    first = httpx.post(a.url + TOKEN_PATH, data=refresh_body(issued.refresh_token), timeout=10)
    assert first.status_code == 200
    second = httpx.post(
        b.url + TOKEN_PATH, data=refresh_body(first.json()["refresh_token"]), timeout=10
    )
    assert second.status_code == 200
    # The original token is now a grandparent: reuse, whatever server sees it.
    replay = httpx.post(b.url + TOKEN_PATH, data=refresh_body(issued.refresh_token), timeout=10)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    latest = second.json()["refresh_token"]
    for server in (a, b):
        r = httpx.post(server.url + TOKEN_PATH, data=refresh_body(latest), timeout=10)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    assert live_token_hashes(cluster, issued.session_id) == []


def test_login_rate_limit_counts_across_processes_through_redis(cluster: Cluster):
    """Per-process limits would let each of the three processes allow the limit; the
    shared Redis counter refuses the attempt after the limit, whichever server gets it."""
    import redis

    a, b = cluster.servers
    statuses = []
    for i in range(LOGIN_LIMIT_PER_USERNAME + 3):
        server = (a, b)[i % 2]
        r = httpx.post(
            server.url + TOKEN_PATH,
            data={
                "grant_type": "password",
                "client_id": "default",
                "username": "limited-user",
                "password": "wrong",
            },
            timeout=10,
        )
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"] == "rate_limited"
    assert statuses[:LOGIN_LIMIT_PER_USERNAME] == [400] * LOGIN_LIMIT_PER_USERNAME, statuses
    assert statuses[LOGIN_LIMIT_PER_USERNAME:] == [429] * 3, statuses
    client = redis.Redis.from_url(cluster.redis_url)
    try:
        assert any(b"limited-user" in key for key in client.keys("*")), "counter not in Redis"
    finally:
        client.close()


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_key_rotated_with_the_cli_is_served_and_accepted_by_every_server(cluster: Cluster):
    a, b = cluster.servers
    old_kids = {k["kid"] for k in httpx.get(a.url + "/.well-known/jwks.json").json()["keys"]}
    done = cluster.cli("keys", "rotate")
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"new signing key (\w+)", done.stdout)
    assert match, done.stdout
    new_kid = match.group(1)
    assert new_kid not in old_kids

    # Published everywhere before it signs (verifiers that cache the JWKS know it first).
    deadline = time.monotonic() + 10
    unpublished = [a, b]
    while unpublished and time.monotonic() < deadline:
        unpublished = [
            s
            for s in unpublished
            if new_kid
            not in {k["kid"] for k in httpx.get(s.url + "/.well-known/jwks.json").json()["keys"]}
        ]
        time.sleep(0.1)
    assert not unpublished, "the new key is not in every server's JWKS"

    cluster.service.create_user("keyuser", "keyuser-password")
    token = cluster.service.login(username="keyuser", password="keyuser-password").refresh_token
    assert token
    signed_by: dict[str, str] = {}
    deadline = time.monotonic() + 20  # reload every 0.5 s, activation after 2 s
    streak = 0
    seen: list[tuple[str, bool, str]] = []
    while time.monotonic() < deadline and streak < 6:
        server = (a, b)[streak % 2]
        jwks = httpx.get(server.url + "/.well-known/jwks.json", timeout=5).json()
        r = httpx.post(server.url + TOKEN_PATH, data=refresh_body(token), timeout=10)
        assert r.status_code == 200, r.text
        token = r.json()["refresh_token"]
        access = r.json()["access_token"]
        kids = {k["kid"] for k in jwks["keys"]}
        if new_kid in kids and _kid(access) == new_kid:
            streak += 1
            signed_by[server.name] = access
        else:
            streak = 0
            seen.append((server.name, new_kid in kids, _kid(access)))
            time.sleep(0.2)
    assert streak >= 6, f"not every server signs with {new_kid} after 20 s: {seen[-8:]}"

    # Each server's token is accepted by the other: by its resource API and by a
    # verifier holding only the other server's JWKS. The old keys stay published.
    for issuer_name, verifier in (("a", b), ("b", a)):
        access = signed_by[issuer_name]
        me = httpx.get(verifier.url + "/api/me", headers={"Authorization": f"Bearer {access}"})
        assert me.status_code == 200, me.text
        jwks = httpx.get(verifier.url + "/.well-known/jwks.json").json()
        assert old_kids <= {k["kid"] for k in jwks["keys"]}
        key = jwt.PyJWKSet.from_dict(jwks)[new_kid]
        claims = jwt.decode(
            access,
            key.key,
            algorithms=[key.algorithm_name],
            audience="freshtoken-api",
            issuer="http://freshtoken.test",
        )
        assert claims["sid"]
