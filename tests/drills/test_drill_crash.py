"""Drill 1 (CI size): SIGKILL a real server process under refresh load, restart it;
no session lost, none with two live tokens. The long version: ``python -m drills crash``."""

from __future__ import annotations

import pytest

from drills import crash


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_crash_loses_nothing(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "postgresql":
        request.getfixturevalue("postgres_admin_url")  # skip (or fail in CI) without PostgreSQL
    figures = crash.run(backend, clients=4, duration=9.0, kills=2, seed=7)
    print(figures)
    assert figures["crashes survived (SIGKILL)"] == 2
    assert figures["rotations answered"] > 50
    assert figures["downtime per crash s (max)"] < figures["grace window s"]
    assert figures["sessions lost"] == 0
    assert figures["refreshes refused during the run"] == 0
    assert figures["reuse detected"] == 0
    assert figures["sessions with two live tokens"] == 0
    assert figures["sessions whose live token is not the client's"] == 0
    # Every answer that reached a client was a committed rotation (4 = final check).
    assert figures["rotations committed"] >= figures["rotations answered"]
