"""Drill 4 (CI size): the refresh answer is dropped by a proxy on its way back.
With the grace window the client's retry gets the same successor; with grace 0
the session is revoked as reuse (documented). Long version:
``python -m drills lost_response``."""

from __future__ import annotations

from drills import lost_response


def test_lost_response_retry_lands_in_the_grace_window() -> None:
    figures = lost_response.run(grace=10.0, sessions=2, drops_per_session=3)
    print(figures)
    assert figures["responses dropped"] == 6
    assert figures["retries answered from the grace window"] == 6
    assert figures["refreshes rotated (server)"] == 6 + 2
    assert figures["reuse detected (server)"] == 0
    assert figures["API requests failed"] == 0
    assert figures["API requests ok"] == 2 * (3 + 1)
    assert figures["sessions lost"] == 0


def test_lost_response_without_grace_is_revoked_as_reuse() -> None:
    figures = lost_response.run(grace=0.0, sessions=1, drops_per_session=1)
    print(figures)
    assert figures["responses dropped"] == 1
    assert figures["refreshes rotated (server)"] == 1
    assert figures["retries answered from the grace window"] == 0
    assert figures["reuse detected (server)"] == 1
    assert figures["sessions lost"] == 1
