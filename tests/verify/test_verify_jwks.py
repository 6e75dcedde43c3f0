"""JWKS fetching against a real loopback server: cache, TTL, rotation, throttling, outages."""

from __future__ import annotations

import asyncio
import threading

import pytest
from verify_helpers import AUDIENCE, ISSUER, FakeAuthServer, Minter, new_key, serve

from freshtoken.errors import InvalidToken
from freshtoken.verify import JWKSCache, KeysUnavailable, Verifier

JWKS_PATH = "/.well-known/jwks.json"


def make(auth_server: FakeAuthServer, clock, **kw) -> Verifier:
    return Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=auth_server.jwks_url,
        clock=clock,
        jwks_ttl=300,
        jwks_min_refetch_interval=10,
        **kw,
    )


def code_of(verifier: Verifier, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    return info.value.code


def test_fetched_once_for_many_tokens(auth_server, clock, minter, rs_key, ed_key):
    verifier = make(auth_server, clock)
    for key in [minter.key, rs_key, ed_key] * 4:
        assert verifier.verify(Minter(clock, key).token()).sub == "user-1"
    assert auth_server.hits[JWKS_PATH] == 1


def test_default_jwks_url_is_under_the_issuer(auth_server, clock, minter):
    verifier = Verifier(issuer=auth_server.url, audience=AUDIENCE, clock=clock)
    assert verifier.verify(minter.token(iss=auth_server.url)).iss == auth_server.url
    assert auth_server.hits[JWKS_PATH] == 1


def test_ttl_expiry_refetches(auth_server, clock, minter):
    verifier = make(auth_server, clock)
    verifier.verify(minter.token())
    clock.advance(299)
    verifier.verify(minter.token())
    assert auth_server.hits[JWKS_PATH] == 1
    clock.advance(2)
    verifier.verify(minter.token())
    assert auth_server.hits[JWKS_PATH] == 2


def test_key_rotation_needs_no_restart(auth_server, clock, minter):
    verifier = make(auth_server, clock)
    verifier.verify(minter.token())
    new = new_key("ES256", "es-2")
    auth_server.jwks["keys"].append(new.jwk())
    clock.advance(10)  # refetches are at most one per min_refetch_interval
    assert verifier.verify(Minter(clock, new).token()).sub == "user-1"
    assert auth_server.hits[JWKS_PATH] == 2
    # Retired key removed from the JWKS: tokens signed with it stop verifying after the TTL.
    auth_server.jwks["keys"] = [new.jwk()]
    clock.advance(301)
    assert code_of(verifier, minter.token()) == "unknown_key"


def test_garbage_kids_cannot_hammer_the_auth_server(auth_server, clock, minter):
    verifier = make(auth_server, clock)
    verifier.verify(minter.token())
    clock.advance(11)
    for i in range(200):
        assert code_of(verifier, minter.token(header={"kid": f"garbage-{i}"})) == "unknown_key"
    assert auth_server.hits[JWKS_PATH] == 2  # the first garbage kid refetched, the rest did not
    # A key rotated in while the throttle is closed is found once it opens again.
    new = new_key("ES256", "es-3")
    auth_server.jwks["keys"].append(new.jwk())
    assert code_of(verifier, Minter(clock, new).token()) == "unknown_key"
    clock.advance(10)
    assert verifier.verify(Minter(clock, new).token()).sub == "user-1"
    assert auth_server.hits[JWKS_PATH] == 3


def test_endpoint_errors_keep_cached_keys(auth_server, clock, minter):
    verifier = make(auth_server, clock)
    verifier.verify(minter.token())
    auth_server.status = 503
    clock.advance(301)
    for _ in range(20):
        assert verifier.verify(minter.token()).sub == "user-1"
    assert auth_server.hits[JWKS_PATH] == 2  # one failed refresh attempt, then throttled
    assert verifier.keys.failures == 1  # type: ignore[attr-defined]
    clock.advance(11)
    auth_server.status = 200
    verifier.verify(minter.token())
    assert auth_server.hits[JWKS_PATH] == 3
    assert verifier.keys.failures == 1  # type: ignore[attr-defined]


async def test_endpoint_down_keeps_cached_keys(jwks, clock, minter):
    fake = FakeAuthServer(jwks=jwks)
    with serve(fake.app()) as server:
        fake.server = server
        verifier = make(fake, clock)
        verifier.verify(minter.token())
    # The server is gone now (connection refused).
    clock.advance(301)
    assert verifier.verify(minter.token()).sub == "user-1"
    assert (await verifier.averify(minter.token())).sub == "user-1"
    clock.advance(20)
    assert (await verifier.averify(minter.token())).sub == "user-1"
    assert verifier.keys.failures == 2  # type: ignore[attr-defined]
    assert code_of(verifier, minter.token(header={"kid": "new-kid"})) == "unknown_key"


def test_no_keys_ever_is_keys_unavailable_and_throttled(auth_server, clock, minter):
    auth_server.status = 500
    verifier = make(auth_server, clock)
    for _ in range(5):
        with pytest.raises(KeysUnavailable):
            verifier.verify(minter.token())
    assert auth_server.hits[JWKS_PATH] == 1
    clock.advance(10)
    auth_server.status = 200
    assert verifier.verify(minter.token()).sub == "user-1"


def test_oversized_jwks_is_refused(auth_server, clock, minter):
    verifier = Verifier(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=auth_server.url + "/huge.json", clock=clock
    )
    with pytest.raises(KeysUnavailable):
        verifier.verify(minter.token())
    assert auth_server.hits["/huge.json"] == 1


def test_redirects_are_not_followed(auth_server, clock, minter):
    verifier = Verifier(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=auth_server.url + "/redirect.json", clock=clock
    )
    with pytest.raises(KeysUnavailable):
        verifier.verify(minter.token())
    assert auth_server.hits[JWKS_PATH] == 0


async def test_from_issuer_discovers_jwks_uri(auth_server, clock, minter):
    verifier = Verifier.from_issuer(auth_server.url, audience=AUDIENCE, clock=clock)
    assert auth_server.hits == {}  # lazy: nothing fetched at construction
    token = minter.token(iss=auth_server.url)
    assert (await verifier.averify(token)).iss == auth_server.url
    assert verifier.verify(minter.token(iss=auth_server.url)).sub == "user-1"
    assert auth_server.hits["/.well-known/oauth-authorization-server"] == 1
    assert auth_server.hits["/keys/other.json"] == 1
    assert auth_server.hits[JWKS_PATH] == 0


def test_from_issuer_checks_the_metadata_issuer(auth_server, clock, minter):
    auth_server.issuer = "https://impostor.test"
    verifier = Verifier.from_issuer(auth_server.url, audience=AUDIENCE, clock=clock)
    with pytest.raises(KeysUnavailable):
        verifier.verify(minter.token(iss=auth_server.url))
    assert auth_server.hits["/keys/other.json"] == 0


async def test_async_fetches_are_single_flight(auth_server, clock, minter):
    verifier = make(auth_server, clock)
    tokens = [minter.token() for _ in range(30)]
    results = await asyncio.gather(*(verifier.averify(t) for t in tokens))
    assert {r.sub for r in results} == {"user-1"}
    assert auth_server.hits[JWKS_PATH] == 1
    new = new_key("ES256", "es-4")
    auth_server.jwks["keys"].append(new.jwk())
    rotated = [Minter(clock, new).token() for _ in range(30)]
    clock.advance(10)
    results = await asyncio.gather(*(verifier.averify(t) for t in rotated))
    assert len(results) == 30
    assert auth_server.hits[JWKS_PATH] == 2


def test_threads_share_one_fetch(auth_server, clock, minter):
    verifier = make(auth_server, clock)
    tokens = [minter.token() for _ in range(16)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            for token in tokens[i::8]:
                verifier.verify(token)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert auth_server.hits[JWKS_PATH] == 1


def test_jwks_cache_needs_one_source():
    from freshtoken.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        JWKSCache()
    with pytest.raises(ConfigurationError):
        JWKSCache("file:///etc/passwd")
