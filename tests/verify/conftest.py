"""Fixtures for the verifier tests: keys, a token minter, and real loopback servers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from verify_helpers import (
    FakeAuthServer,
    LoopbackServer,
    Minter,
    SigningKey,
    new_key,
    serve,
)

from freshtoken.testing import FakeClock


@pytest.fixture(scope="session")
def es_key() -> SigningKey:
    return new_key("ES256", "es-1")


@pytest.fixture(scope="session")
def rs_key() -> SigningKey:
    return new_key("RS256", "rs-1")


@pytest.fixture(scope="session")
def ed_key() -> SigningKey:
    return new_key("Ed25519", "ed-1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def minter(clock: FakeClock, es_key: SigningKey) -> Minter:
    return Minter(clock, es_key)


@pytest.fixture
def jwks(es_key: SigningKey, rs_key: SigningKey, ed_key: SigningKey) -> dict[str, Any]:
    return {"keys": [es_key.jwk(), rs_key.jwk(), ed_key.jwk()]}


class _Dispatcher:
    """One long-lived loopback server per session; each test plugs in a fresh app."""

    def __init__(self) -> None:
        self.target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


@pytest.fixture(scope="session")
def _loopback_pair() -> Iterator[tuple[tuple[LoopbackServer, _Dispatcher], ...]]:
    pair = []
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            dispatcher = _Dispatcher()
            pair.append((stack.enter_context(serve(dispatcher)), dispatcher))
        yield tuple(pair)


@pytest.fixture
def auth_server(jwks: dict[str, Any], _loopback_pair) -> FakeAuthServer:
    """A fake auth server on loopback (JWKS, metadata, introspection), fresh state per test."""
    server, dispatcher = _loopback_pair[0]
    fake = FakeAuthServer(jwks={"keys": list(jwks["keys"])}, server=server)
    dispatcher.target = fake.app()
    return fake


@pytest.fixture
def attacker_server(_loopback_pair) -> FakeAuthServer:
    """A server an attacker controls; tests assert the verifier never calls it."""
    server, dispatcher = _loopback_pair[1]
    evil = new_key("ES256", "es-1")
    fake = FakeAuthServer(jwks={"keys": [evil.jwk()]}, server=server)
    dispatcher.target = fake.app()
    return fake


@pytest.fixture
def serve_app() -> Callable[[Any], LoopbackServer]:
    """Start any ASGI app on loopback for the duration of the test."""
    stack = contextlib.ExitStack()

    def start(app: Any) -> LoopbackServer:
        return stack.enter_context(serve(app))

    with stack:
        yield start  # type: ignore[misc]
