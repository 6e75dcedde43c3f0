"""Drill 2 (CI size): PostgreSQL cut through a fault proxy during load. 503 +
Retry-After, /readyz down, /healthz up; freshtoken clients ride it out.
The long version: ``python -m drills db_outage``."""

from __future__ import annotations

import pytest

from drills import db_outage


@pytest.mark.slow
def test_database_outage_is_ridden_out(postgres_url: str) -> None:
    figures = db_outage.run(clients=4, warmup=2.5, outage=4.0, after=3.5, database_url=postgres_url)
    print(figures)
    assert figures["during outage: /readyz"] == 503
    assert figures["during outage: /healthz"] == 200
    assert figures["during outage: /oauth/token"].startswith("503 temporarily_unavailable")
    assert "Retry-After=5" in figures["during outage: /oauth/token"]
    assert figures["refreshes that succeeded during the outage"] == 0
    assert figures["client refresh retries (backoff)"] > 0  # they did meet the outage
    assert figures["ready again after restore s"] is not None
    assert figures["API requests"] > 100
    assert figures["API requests failed"] == 0
    assert figures["sessions lost"] == 0
    assert figures["reuse detected (server)"] == 0
    # Everyone refreshed before and after the outage (2 s tokens).
    assert figures["refreshes (client)"] >= 4 * 2
