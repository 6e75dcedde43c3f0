"""Fixtures for the security suite: one real server on loopback per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sec_helpers import CONFIDENTIAL, FAST_ARGON2, PASSWORD, SPA_ORIGIN, USER

from freshtoken.testing import LiveServer


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    """A server with alice, a confidential client and the CORS origin of a SPA."""
    with LiveServer(
        settings={**FAST_ARGON2, "cors_origins": [SPA_ORIGIN]},
    ) as srv:
        srv.create_user(USER, PASSWORD)
        srv.create_client(
            CONFIDENTIAL[0],
            secret=CONFIDENTIAL[1],
            grant_types=("client_credentials", "refresh_token"),
            scope="read",
        )
        yield srv
